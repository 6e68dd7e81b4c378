//! Everything else: shared filesystems, TPM, SEV and `<qemu:commandline>` file options.

use super::{Cx, label_of};
use crate::paths;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;
use std::path::Path;

/// What swtpm's OpenSSL reads (AppArmor's abstractions/openssl, which we do not include: the
/// guest profile must compile where that abstraction differs or is missing).
const SWTPM_OPENSSL_READS: [&str; 4] = [
    "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/openssl.cnf",
    "/usr/share/ssl/openssl.cnf",
    "/proc/sys/crypto/fips_enabled",
];

impl Cx<'_> {
    pub(super) fn filesystem(&mut self, f: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("filesystem", f, i);
        let kind = f.attr("type").unwrap_or("mount");
        let driver = f
            .child("driver")
            .and_then(|d| d.attr("type"))
            .unwrap_or("path");
        let ro = f.child("readonly").is_some();
        let src = f.child("source");
        match (kind, driver) {
            ("mount", "virtiofs") => {
                if let Some(s) = src.and_then(|s| s.attr_nonempty("socket")) {
                    self.grant(&label, s, Perms::RW, Scope::File)?;
                }
                if let Some(d) = src.and_then(|s| s.attr_nonempty("dir")) {
                    let p = if ro {
                        Perms::R
                    } else {
                        Perms::RW.with(Perms::L).with(Perms::K)
                    };
                    self.grant(&label, d, p, Scope::Tree)?;
                }
            }
            ("mount", "path" | "handle") => {
                if let Some(d) = src.and_then(|s| s.attr_nonempty("dir")) {
                    let p = if ro {
                        Perms::R
                    } else {
                        Perms::RW.with(Perms::L)
                    };
                    self.grant(&label, d, p, Scope::Tree)?;
                }
            }
            ("file", _) => {
                if let Some(p) = src.and_then(|s| s.attr_nonempty("file")) {
                    let perms = if ro { Perms::RK } else { Perms::RWK };
                    self.grant(&label, p, perms, Scope::File)?;
                }
            }
            ("block", _) => {
                if let Some(p) = src.and_then(|s| s.attr_nonempty("dev")) {
                    let perms = if ro { Perms::RK } else { Perms::RWK };
                    self.grant(&label, p, perms, Scope::File)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    pub(super) fn tpm(&mut self, t: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("tpm", t, i);
        let Some(b) = t.child("backend") else {
            return Ok(());
        };
        match b.attr("type").unwrap_or("") {
            "emulator" => {
                let dir = match b.attr("version") {
                    Some("1.2") => "tpm1.2",
                    _ => "tpm2",
                };
                let name = self.dom.name.clone();
                let uuid = self.dom.uuid.hyphenated().to_string();
                for short in self.dom.short_names() {
                    self.fixed_with_name(
                        "/run/libvirt/qemu/swtpm/",
                        &short,
                        "-swtpm.sock",
                        Perms::RW,
                    );
                    self.fixed_with_name(
                        "/run/libvirt/qemu/swtpm/",
                        &short,
                        "-swtpm.pid",
                        Perms::RW,
                    );
                }
                self.out
                    .rules
                    .fixed(&format!("/var/lib/libvirt/swtpm/{uuid}/{dir}/"), Perms::R);
                self.out.rules.fixed(
                    &format!("/var/lib/libvirt/swtpm/{uuid}/{dir}/**"),
                    Perms::RWK,
                );
                self.fixed_with_name(
                    "/var/log/swtpm/libvirt/qemu/",
                    &name,
                    "-swtpm.log",
                    Perms::W,
                );
                // In libvirt mode swtpm runs under the guest's profile. libtpms links OpenSSL 3,
                // which reads its configuration when swtpm sets up a new TPM (measured on Debian
                // 12: `open /etc/ssl/openssl.cnf r comm=swtpm`): what AppArmor's own
                // abstractions/openssl grants, read-only.
                for cnf in SWTPM_OPENSSL_READS {
                    self.out.rules.fixed(cnf, Perms::R);
                }
                if let Some(p) = b.child("source").and_then(|s| s.attr_nonempty("path")) {
                    self.grant(&label, p, Perms::RWK, Scope::Tree)?;
                }
            }
            "passthrough" => {
                let dev = b
                    .child("device")
                    .and_then(|d| d.attr_nonempty("path"))
                    .unwrap_or("/dev/tpm0")
                    .to_string();
                self.grant(&label, &dev, Perms::RW, Scope::File)?;
                // The cancel file QEMU writes to abort a command: /sys/class/tpm/tpmN/device/cancel.
                if let Some(n) = Path::new(&dev).file_name().and_then(|n| n.to_str()) {
                    let n = n.replace("tpmrm", "tpm");
                    if let Some(real) = self.host().tpm_cancel_file(&n) {
                        if real.starts_with("/sys/devices") {
                            let esc = paths::escape(&real.to_string_lossy());
                            self.out.rules.fixed(&esc, Perms::RW);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
    pub(super) fn launch_security(&mut self) -> Result<(), GrantError> {
        if let Some(ls) = self.dom.root.child("launchSecurity") {
            if matches!(ls.attr("type"), Some("sev" | "sev-snp")) {
                self.grant("launchSecurity sev", "/dev/sev", Perms::RW, Scope::File)?;
            }
        }
        Ok(())
    }
    /// `<qemu:commandline>` arguments are invisible to libvirt's helper; we grant the files
    /// named by `file=`, `path=` and `filename=` options (read-write: we cannot know better).
    pub(super) fn qemu_commandline(&mut self) -> Result<(), GrantError> {
        let Some(cl) = self.dom.root.child("commandline") else {
            return Ok(());
        };
        for a in cl.children_named("arg") {
            let Some(v) = a.attr("value") else { continue };
            for opt in v.split(',') {
                if let Some((k, val)) = opt.split_once('=') {
                    if matches!(k, "file" | "path" | "filename") && val.starts_with('/') {
                        self.grant("qemu:commandline", val, Perms::RW, Scope::File)?;
                    }
                }
            }
        }
        Ok(())
    }
}
