//! Everything derivation asks the host rather than the XML: sysfs (PCI, USB, SCSI, mdev, TPM),
//! `/dev/dri`, `/proc/mounts` and libvirt's storage pool definitions.
//!
//! One place, so the host facts a profile depends on are listed together, and every one is
//! rooted in [`Options::host_root`](super::Options::host_root) (a temp dir in tests). A lookup
//! that finds nothing answers `None` or empty: the caller decides whether that is a warning.

use std::path::{Path, PathBuf};

/// The host as seen from `root` (`/` except in tests).
#[derive(Clone, Copy)]
pub(super) struct Host<'a> {
    pub(super) root: &'a Path,
}

impl Host<'_> {
    /// A volume of a directory-backed pool (`<source pool= volume=>`), from the pool's own
    /// definition file ([`crate::pools`]).
    pub(super) fn pool_volume_path(&self, pool: &str, vol: &str) -> Option<String> {
        crate::pools::volume_path(self.root, pool, vol)
    }

    /// The first DRI render node (`/dev/dri/renderD*`, by name).
    pub(super) fn first_render_node(&self) -> Option<String> {
        let dir = self.root.join("dev/dri");
        let mut nodes: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("renderD"))
            .collect();
        nodes.sort();
        nodes.first().map(|n| format!("/dev/dri/{n}"))
    }

    /// The sysfs directory of PCI device `bdf` (`DDDD:BB:SS.F`).
    pub(super) fn pci_device_dir(&self, bdf: &str) -> PathBuf {
        self.root.join("sys/bus/pci/devices").join(bdf)
    }

    /// The sysfs files QEMU opens for a PCI device it drives directly (libvirt's helper list),
    /// resolved to their real location under `/sys/devices`, in name order.
    pub(super) fn pci_device_files(&self, bdf: &str) -> Vec<PathBuf> {
        let mut v = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.pci_device_dir(bdf)) else {
            return v;
        };
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if matches!(n.as_ref(), "config" | "rom" | "vendor" | "device" | "reset")
                || n.starts_with("resource")
            {
                v.push(e.path());
            }
        }
        v.sort();
        v.iter()
            .filter_map(|f| std::fs::canonicalize(f).ok())
            .collect()
    }

    /// The VFIO device files (`vfioN`) of a PCI device bound to vfio-pci with iommufd.
    pub(super) fn pci_vfio_cdevs(&self, bdf: &str) -> Vec<String> {
        std::fs::read_dir(self.pci_device_dir(bdf).join("vfio-dev"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| {
                        n.strip_prefix("vfio")
                            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    }

    /// The `iommu_group` link of a PCI device.
    pub(super) fn pci_iommu_group_link(&self, bdf: &str) -> PathBuf {
        self.pci_device_dir(bdf).join("iommu_group")
    }

    /// The `iommu_group` link of a mediated device.
    pub(super) fn mdev_iommu_group_link(&self, uuid: &str) -> PathBuf {
        self.root
            .join("sys/bus/mdev/devices")
            .join(uuid)
            .join("iommu_group")
    }

    /// The group number an `iommu_group` link points to; `Ok(None)` when the target is not a
    /// number, an error when there is no link (device absent or IOMMU off).
    pub(super) fn iommu_group(&self, link: &Path) -> std::io::Result<Option<String>> {
        let t = std::fs::read_link(link)?;
        Ok(t.file_name()
            .and_then(|n| n.to_str())
            .filter(|g| g.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string))
    }

    /// `/dev/bus/usb/BBB/DDD` of the first USB device with this vendor and product id.
    pub(super) fn usb_device_by_id(&self, vendor: u64, product: u64) -> Option<String> {
        let dir = self.root.join("sys/bus/usb/devices");
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let rd = |f: &str| {
                std::fs::read_to_string(p.join(f))
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
            };
            let rdd = |f: &str| {
                std::fs::read_to_string(p.join(f))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
            };
            if rd("idVendor") == Some(vendor) && rd("idProduct") == Some(product) {
                return Some(format!(
                    "/dev/bus/usb/{:03}/{:03}",
                    rdd("busnum")?,
                    rdd("devnum")?
                ));
            }
        }
        None
    }

    /// The SCSI generic node (`/dev/sgN`) of SCSI device `host:bus:target:unit`.
    pub(super) fn scsi_generic(
        &self,
        host: u32,
        bus: u64,
        target: u64,
        unit: u64,
    ) -> Option<String> {
        let dir = self.root.join(format!(
            "sys/bus/scsi/devices/{host}:{bus}:{target}:{unit}/scsi_generic"
        ));
        let sg = std::fs::read_dir(dir).ok()?.flatten().next()?.file_name();
        Some(format!("/dev/{}", sg.to_str()?))
    }

    /// The real location of TPM `name`'s cancel file
    /// (`/sys/class/{tpm,misc}/<name>/device/cancel`), the first class that has one.
    pub(super) fn tpm_cancel_file(&self, name: &str) -> Option<PathBuf> {
        ["tpm", "misc"].iter().find_map(|class| {
            let c = self
                .root
                .join(format!("sys/class/{class}/{name}/device/cancel"));
            std::fs::canonicalize(&c).ok()
        })
    }

    /// The hugetlbfs mount points in `/proc/mounts` (ones with escaped characters left out).
    pub(super) fn hugetlbfs_mounts(&self) -> Vec<String> {
        let Ok(m) = std::fs::read_to_string(self.root.join("proc/mounts")) else {
            return Vec::new();
        };
        m.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (_dev, mnt, fs) = (f.next()?, f.next()?, f.next()?);
                (fs == "hugetlbfs" && !mnt.contains('\\')).then(|| mnt.to_string())
            })
            .collect()
    }
}
