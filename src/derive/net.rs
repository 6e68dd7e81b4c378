//! Network interfaces: vhost-user and vDPA back-ends, SR-IOV hostdev NICs, passt sockets,
//! tap/vhost back-end files and vhost-net.

use super::{Cx, label_of};
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;

impl Cx<'_> {
    pub(super) fn interface(&mut self, n: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("interface", n, i);
        let kind = n.attr("type").unwrap_or("");
        match kind {
            "vhostuser" => {
                if let Some(src) = n.child("source") {
                    match src.attr("type").unwrap_or("unix") {
                        "unix" => {
                            if let Some(p) = src.attr_nonempty("path") {
                                self.grant(&label, p, Perms::RW, Scope::File)?;
                            }
                        }
                        "pipe" => {
                            if let Some(p) = src.attr_nonempty("path") {
                                self.grant(&label, &format!("{p}.in"), Perms::RW, Scope::File)?;
                                self.grant(&label, &format!("{p}.out"), Perms::RW, Scope::File)?;
                            }
                        }
                        _ => {}
                    }
                }
            }
            "vdpa" => {
                if let Some(d) = n.child("source").and_then(|s| s.attr_nonempty("dev")) {
                    self.grant(&label, d, Perms::RW, Scope::File)?;
                }
            }
            // SR-IOV VF given to the guest as a NIC: libvirt adds it to the domain's hostdev
            // list, so it is a PCI hostdev in every respect (VFIO group, /dev/vfio/vfio).
            "hostdev" => {
                if let Some(a) = n
                    .child("source")
                    .and_then(|s| s.child("address"))
                    .filter(|a| a.attr("type").unwrap_or("pci") == "pci")
                {
                    let driver = n.child("driver");
                    self.pci_hostdev(&label, a, driver)?;
                }
            }
            _ => {}
        }
        // passt back-end (type='user' since 9.0, type='vhostuser' since 11.1): QEMU connects to
        // the socket libvirt's passt listens on, `<passtStateDir>/<short name>-<alias>.socket`
        // (qemu_passt.c qemuPasstCreateSocketPath; passtStateDir = /run/libvirt/qemu/passt).
        // The alias is known in live XML; before that any alias of this guest.
        if n.child("backend").and_then(|b| b.attr("type")) == Some("passt") {
            let alias = n.child("alias").and_then(|a| a.attr_nonempty("name"));
            for short in self.dom.short_names() {
                match alias {
                    Some(a) if !a.contains('/') => {
                        let p = format!("/run/libvirt/qemu/passt/{short}-{a}.socket");
                        self.grant(&label, &p, Perms::RW, Scope::File)?;
                    }
                    _ => self.fixed_with_name(
                        "/run/libvirt/qemu/passt/",
                        &short,
                        "-*.socket",
                        Perms::RW,
                    ),
                }
            }
        }
        if let Some(b) = n.child("backend") {
            for a in ["tap", "vhost"] {
                if let Some(p) = b.attr_nonempty(a) {
                    self.grant(&label, p, Perms::RW, Scope::File)?;
                }
            }
        }
        let model = n.child("model").and_then(|m| m.attr("type"));
        let driver = n.child("driver").and_then(|d| d.attr("name"));
        if self.dom.virt_type == "kvm"
            && (model.is_none() || (model == Some("virtio") && driver != Some("qemu")))
        {
            self.out.rules.fixed("/dev/vhost-net", Perms::RW);
        }
        Ok(())
    }
}
