//! Character devices and the devices built on them: serial/console/channel/redirdev sources,
//! the auto-generated channel socket directories, smartcards and RNG back-ends.

use super::{Cx, label_of};
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;

impl Cx<'_> {
    /// Character devices by source type. `pipe` is two FIFOs `<path>.in`/`.out` (and the plain
    /// path, which QEMU falls back to); a `<log file=…>` is written by QEMU itself.
    pub(super) fn chardev(&mut self, label: &str, c: &Element) -> Result<(), GrantError> {
        let kind = c.attr("type").unwrap_or("");
        for src in c.children_named("source") {
            let Some(path) = src.attr_nonempty("path") else {
                continue;
            };
            match kind {
                "file" | "dev" | "pty" | "unix" => {
                    self.grant(label, path, Perms::RW, Scope::File)?
                }
                "pipe" => {
                    self.grant(label, &format!("{path}.in"), Perms::RW, Scope::File)?;
                    self.grant(label, &format!("{path}.out"), Perms::RW, Scope::File)?;
                    self.grant(label, path, Perms::RW, Scope::File)?;
                }
                _ => {}
            }
        }
        if let Some(f) = c.child("log").and_then(|l| l.attr_nonempty("file")) {
            self.grant(label, f, Perms::RW, Scope::File)?;
        }
        Ok(())
    }
    /// The per-guest directory of auto-generated channel sockets (`<channel type='unix'>`
    /// without a path; the live XML then names the socket libvirt made up). libvirt moved it
    /// in 9.7.0 (qemu_domain.c, qemuDomainChrDefDropDefaultPath):
    /// - 1.3.3 – 9.6: `/var/lib/libvirt/qemu/channel/target/domain-<id>-<short name>/<target>`
    /// - 9.7.0 on:   `/run/libvirt/qemu/channel/<id>-<short name>/<target>`
    ///
    /// The directory of whichever layout the XML's socket paths use is granted; an XML without
    /// paths yet (the `prepare` event) gets both, since it does not tell the libvirt version.
    pub(super) fn channel_dirs(&mut self) {
        const OLD: &str = super::CHANNEL_DIR_OLD;
        const NEW: &str = super::CHANNEL_DIR_NEW;
        let Some(devs) = self.dom.root.child("devices") else {
            return;
        };
        let (mut old, mut new) = (false, false);
        for c in devs.children_named("channel") {
            if c.attr("type") != Some("unix") {
                continue;
            }
            match c.child("source").and_then(|s| s.attr_nonempty("path")) {
                Some(p) if p.starts_with(OLD) => old = true,
                Some(p) if p.starts_with(NEW) => new = true,
                Some(_) => {}
                None => {
                    if c.child("target").and_then(|t| t.attr("type")) == Some("virtio") {
                        (old, new) = (true, true);
                    }
                }
            }
        }
        for short in self.dom.short_names() {
            if old {
                self.fixed_with_name(&format!("{OLD}domain-"), &short, "/{,*}", Perms::RW);
            }
            if new {
                self.fixed_with_name(NEW, &short, "/{,*}", Perms::RW);
            }
        }
    }
    pub(super) fn smartcard(&mut self, s: &Element, i: usize) -> Result<(), GrantError> {
        let label = format!("smartcard #{}", i + 1);
        match s.attr("mode").unwrap_or("") {
            "host" => self.out.rules.fixed("/etc/pki/nssdb/{,*}", Perms::RK),
            "host-certificates" => match s.child("database").and_then(|d| d.text_nonempty()) {
                Some(db) => self.grant(&label, db, Perms::RK, Scope::DirEntries)?,
                None => self.out.rules.fixed("/etc/pki/nssdb/{,*}", Perms::RK),
            },
            "passthrough" => self.chardev(&label, s)?,
            _ => {}
        }
        Ok(())
    }
    pub(super) fn rng(&mut self, r: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("rng", r, i);
        let Some(b) = r.child("backend") else {
            return Ok(());
        };
        match b.attr("model").unwrap_or("") {
            "random" => {
                let dev = b.text_nonempty().unwrap_or("/dev/random").to_string();
                self.grant(&label, &dev, Perms::R, Scope::File)?;
            }
            "egd" => self.chardev(&label, b)?,
            _ => {}
        }
        Ok(())
    }
}
