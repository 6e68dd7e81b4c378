//! Host devices handed to the guest: USB, PCI (VFIO group or iommufd cdev), mdev, SCSI.

use super::Cx;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;
use std::path::Path;

impl Cx<'_> {
    pub(super) fn hostdev(&mut self, h: &Element, i: usize) -> Result<(), GrantError> {
        if h.attr("mode").unwrap_or("subsystem") != "subsystem" {
            return Ok(());
        }
        let kind = h.attr("type").unwrap_or("");
        let label = format!("hostdev {kind} #{}", i + 1);
        let Some(src) = h.child("source") else {
            return Ok(());
        };
        match kind {
            "usb" => match self.usb_device(src) {
                Some(p) => self.grant(&label, &p, Perms::RW, Scope::File)?,
                None => self.warn(format!("{label}: USB device not found on this host")),
            },
            "pci" => {
                if let Some(a) = src.child("address") {
                    self.pci_hostdev(&label, a, h.child("driver"))?;
                }
            }
            "mdev" => {
                if let Some(uuid) = src.child("address").and_then(|a| a.attr_nonempty("uuid")) {
                    if uuid.contains('/') {
                        return Ok(());
                    }
                    let link = self.host().mdev_iommu_group_link(uuid);
                    self.vfio_group_from_link(&label, &link)?;
                }
            }
            "scsi" => {
                if src.attr("protocol") == Some("iscsi") {
                    return Ok(());
                }
                match self.scsi_sg(src) {
                    Some(sg) => self.grant(&label, &sg, Perms::RW, Scope::File)?,
                    None => self.warn(format!("{label}: SCSI device not found on this host")),
                }
            }
            "scsi_host" => {
                self.grant(&label, "/dev/vhost-scsi", Perms::RW, Scope::File)?;
            }
            _ => {}
        }
        Ok(())
    }
    /// A PCI device QEMU drives directly (`<hostdev type='pci'>`, `<interface type='hostdev'>`):
    /// its sysfs files and, with the VFIO driver, its VFIO group — or, with
    /// `<driver iommufd='yes'/>` (libvirt 12.2), `/dev/iommu` and its VFIO cdev
    /// `/dev/vfio/devices/vfioN` as virt-aa-helper 12.x grants.
    pub(super) fn pci_hostdev(
        &mut self,
        label: &str,
        a: &Element,
        driver: Option<&Element>,
    ) -> Result<(), GrantError> {
        let Some(bdf) = pci_bdf(a) else {
            self.warn(format!("{label}: bad PCI address"));
            return Ok(());
        };
        let host = self.host();
        for real in host.pci_device_files(&bdf) {
            self.out
                .rules
                .grant_resolved(label, &real, Perms::RW, Scope::File)?;
        }
        if driver.and_then(|d| d.attr("name")).unwrap_or("vfio") != "vfio" {
            return Ok(());
        }
        if driver.is_some_and(|d| d.attr_yes("iommufd")) {
            self.out.rules.fixed("/dev/iommu", Perms::RW);
            let cdevs = host.pci_vfio_cdevs(&bdf);
            if cdevs.is_empty() {
                self.warn(format!(
                    "{label}: no VFIO device file under {}; device absent or not bound to vfio-pci",
                    host.pci_device_dir(&bdf).join("vfio-dev").display()
                ));
            }
            for c in cdevs {
                self.grant(
                    label,
                    &format!("/dev/vfio/devices/{c}"),
                    Perms::RW,
                    Scope::File,
                )?;
            }
            return Ok(());
        }
        self.pci_vfio_group(label, a)
    }
    /// The VFIO group device of a PCI address (`/dev/vfio/<group>`) — only that group, not
    /// every group on the host as libvirt's helper grants.
    pub(super) fn pci_vfio_group(&mut self, label: &str, addr: &Element) -> Result<(), GrantError> {
        let Some(bdf) = pci_bdf(addr) else {
            self.warn(format!("{label}: bad PCI address"));
            return Ok(());
        };
        let link = self.host().pci_iommu_group_link(&bdf);
        self.vfio_group_from_link(label, &link)
    }
    pub(super) fn vfio_group_from_link(
        &mut self,
        label: &str,
        link: &Path,
    ) -> Result<(), GrantError> {
        self.needs_vfio = true;
        match self.host().iommu_group(link) {
            Ok(Some(g)) => {
                let dev = format!("/dev/vfio/{g}");
                self.grant(label, &dev, Perms::RW, Scope::File)?;
            }
            Ok(None) => {}
            Err(_) => self.warn(format!(
                "{label}: no IOMMU group at {}; device absent or IOMMU off",
                link.display()
            )),
        }
        Ok(())
    }
    pub(super) fn usb_device(&self, src: &Element) -> Option<String> {
        if let Some(a) = src.child("address") {
            let bus = parse_num(a.attr("bus")?)?;
            let dev = parse_num(a.attr("device")?)?;
            return Some(format!("/dev/bus/usb/{bus:03}/{dev:03}"));
        }
        let vendor = parse_num(src.child("vendor")?.attr("id")?)?;
        let product = parse_num(src.child("product")?.attr("id")?)?;
        self.host().usb_device_by_id(vendor, product)
    }
    pub(super) fn scsi_sg(&self, src: &Element) -> Option<String> {
        let adapter = src.child("adapter")?.attr_nonempty("name")?;
        let host = adapter.strip_prefix("scsi_host")?.parse::<u32>().ok()?;
        let a = src.child("address")?;
        let (b, t, u) = (
            parse_num(a.attr("bus")?)?,
            parse_num(a.attr("target")?)?,
            parse_num(a.attr("unit")?)?,
        );
        self.host().scsi_generic(host, b, t, u)
    }
}

/// `DDDD:BB:SS.F` from a libvirt `<address domain= bus= slot= function=>`.
fn pci_bdf(a: &Element) -> Option<String> {
    let d = parse_num(a.attr("domain").unwrap_or("0"))?;
    let b = parse_num(a.attr("bus")?)?;
    let s = parse_num(a.attr("slot")?)?;
    let f = parse_num(a.attr("function").unwrap_or("0"))?;
    (d <= 0xffff && b <= 0xff && s <= 0x1f && f <= 7)
        .then(|| format!("{d:04x}:{b:02x}:{s:02x}.{f:x}"))
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
