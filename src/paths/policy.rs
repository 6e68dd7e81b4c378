//! The host policy: the host locations a guest is never granted ([`REFUSED`], and
//! virt-aa-hook's own files where the configuration puts them), the read-only exceptions inside
//! them ([`READ_ONLY_OK`]) and the device files a guest is given read-write ([`RW_OVERRIDE`],
//! PCI sysfs).

use super::{PathError, is_under, normalize_lexically};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Host locations a guest may never write (and, outside [`READ_ONLY_OK`], never read either),
/// besides virt-aa-hook's own files, whose places the configuration says ([`HostPolicy::new`]).
/// Component-wise, so `/lib` does not catch `/library`.
pub const REFUSED: &[&str] = &[
    "/bin",
    "/boot",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/proc",
    "/sbin",
    "/selinux",
    "/sys",
    "/usr",
    "/var/lib/dpkg",
    "/var/lib/rpm",
    "/var/lib/apt",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
    "/root/.ssh",
];

/// Inside [`REFUSED`], the places real distributions keep firmware, kernels and other things a
/// guest legitimately *reads*: Debian/Ubuntu, Fedora, Arch and SUSE OVMF/AAVMF/edk2 builds,
/// SeaBIOS, iPXE ROMs, u-boot, OpenSBI, host kernels and initrds, smartcard NSS databases.
pub const READ_ONLY_OK: &[&str] = &[
    "/boot",
    "/vmlinuz",
    "/vmlinuz.old",
    "/initrd.img",
    "/initrd.img.old",
    "/usr/share/AAVMF",
    "/usr/share/OVMF",
    "/usr/share/ovmf",
    "/usr/share/edk2",
    "/usr/share/edk2-ovmf",
    "/usr/share/edk2-armvirt",
    "/usr/share/qemu",
    "/usr/share/qemu-efi",
    "/usr/share/qemu-efi-aarch64",
    "/usr/share/seabios",
    "/usr/share/ipxe",
    "/usr/share/ipxe.efi",
    "/usr/share/sgabios",
    "/usr/share/misc/sgabios.bin",
    "/usr/share/vgabios",
    "/usr/share/slof",
    "/usr/share/openbios",
    "/usr/share/opensbi",
    "/usr/share/u-boot",
    "/usr/lib/u-boot",
    "/usr/lib/riscv64-linux-gnu/opensbi",
    "/usr/lib/ipxe",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/lib/modules",
    "/etc/pki/nssdb",
    "/etc/pki/qemu",
    "/etc/pki/libvirt",
];

/// Places inside [`REFUSED`] that are device interfaces a guest is explicitly given, read-write:
/// PCI device sysfs files for hostdevs and the vhost-scsi configfs.
pub const RW_OVERRIDE: &[&str] = &["/sys/kernel/config/target/vhost"];

/// The host policy in force: [`REFUSED`] plus virt-aa-hook's own files where the configuration
/// in force puts them (AppArmor policy, profiles, local rules, template, log, state), so a moved
/// `state_dir` is refused as the default one is. Build it once per configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    refused: Vec<String>,
}

impl Default for HostPolicy {
    /// The policy under the default configuration.
    fn default() -> Self {
        HostPolicy::new(&crate::config::Config::default())
    }
}

impl HostPolicy {
    /// The default configuration's policy, built once (tests, the fuzzer, fixed sites).
    pub fn defaults() -> &'static HostPolicy {
        static DEFAULTS: std::sync::LazyLock<HostPolicy> =
            std::sync::LazyLock::new(HostPolicy::default);
        &DEFAULTS
    }

    /// [`REFUSED`] and the configured places of our own files (under the config's `root`).
    pub fn new(cfg: &crate::config::Config) -> HostPolicy {
        let mut refused: Vec<String> = REFUSED.iter().map(|p| p.to_string()).collect();
        for own in [
            &cfg.apparmor_dir,
            &cfg.profile_dir,
            &cfg.local_dir,
            &cfg.template,
            &cfg.log_file,
            &cfg.state_dir,
        ] {
            let p = normalize_lexically(&cfg.rooted(own));
            if !refused.iter().any(|r| is_under(&p, r)) {
                refused.push(p.to_string_lossy().into_owned());
            }
        }
        HostPolicy { refused }
    }

    /// Apply the host policy to a resolved path. `writes` says whether the grant includes `w`.
    pub fn check(&self, path: &Path, writes: bool, perms: &str) -> Result<(), PathError> {
        if RW_OVERRIDE.iter().any(|p| is_under(path, p)) || is_pci_sysfs(path) {
            return Ok(());
        }
        self.check_base(path, writes, perms)
    }

    /// The policy without the device-file exemptions ([`RW_OVERRIDE`], PCI sysfs): those name
    /// single files a hostdev is given; a whole tree under `/sys` would hand the guest every
    /// device's config space and BARs.
    fn check_base(&self, path: &Path, writes: bool, perms: &str) -> Result<(), PathError> {
        if !self.refused.iter().any(|p| is_under(path, p)) {
            return Ok(());
        }
        if !writes && READ_ONLY_OK.iter().any(|p| is_under(path, p)) {
            return Ok(());
        }
        Err(PathError::Refused {
            path: path.to_string_lossy().into_owned(),
            perms: perms.to_string(),
        })
    }

    /// Apply the host policy to a whole directory tree granted recursively (`<dir>/**`):
    /// besides the directory itself, no refused host location may lie inside it — `/` or `/var`
    /// shared with a guest would otherwise hand it `/etc` or `/var/lib/dpkg`. The device-file
    /// exemptions of [`HostPolicy::check`] do not apply: no tree under `/sys` (PCI sysfs
    /// included) or `/proc` is ever granted, whoever asks (a `<filesystem>` directory,
    /// libvirt's `-F <dir>/{,**}`).
    pub fn check_tree(&self, dir: &Path, writes: bool, perms: &str) -> Result<(), PathError> {
        self.check_base(dir, writes, perms)?;
        let d = dir.to_string_lossy();
        if let Some(inside) = self
            .refused
            .iter()
            .find(|p| is_under(Path::new(p), &d) && Path::new(p) != dir)
        {
            return Err(PathError::RefusedTree {
                path: d.into_owned(),
                inside: inside.clone(),
                perms: perms.to_string(),
            });
        }
        Ok(())
    }
}

/// `/sys/devices/pci<domain>:<bus>/...`: the real location of PCI device files.
fn is_pci_sysfs(path: &Path) -> bool {
    // Components `sys` and `pci…` each follow a `/`: without both, no need to split the path.
    let b = path.as_os_str().as_bytes();
    let has = |n: &[u8]| b.windows(n.len()).any(|w| w == n);
    if !has(b"/sys") || !has(b"/pci") {
        return false;
    }
    let mut it = path.components();
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(Component::RootDir), Some(Component::Normal(a)), Some(Component::Normal(b)), Some(Component::Normal(c)))
            if a == OsStr::new("sys") && b == OsStr::new("devices") && c.as_bytes().starts_with(b"pci")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_component_wise() {
        let pol = HostPolicy::default();
        // May a guest have `path`, read-only or (`writes`) read-write?
        let ok = |path: &str, writes: bool| pol.check(Path::new(path), writes, "rw").is_ok();
        assert!(ok("/library/x.img", true));
        assert!(!ok("/lib/x.img", true));
        assert!(!ok("/usr/libexec/x", true));
        assert!(!ok("/etc/shadow", false));
        assert!(ok("/usr/share/OVMF/OVMF_CODE.fd", false));
        assert!(!ok("/usr/share/OVMF/OVMF_CODE.fd", true));
        assert!(ok("/usr/lib/modules/6.1.0/vmlinuz", false));
        assert!(!ok("/boot/vmlinuz", true));
        assert!(ok("/sys/devices/pci0000:00/0000:00:02.0/config", true));
        assert!(!ok("/sys/kernel/debug", false));
        assert!(ok("/var/lib/libvirt/images/a", true));
        assert!(!ok("/dev/mem", false));
        assert!(ok("/dev/sdb", true));
        assert!(pol.check_tree(Path::new("/"), false, "r").is_err());
        assert!(pol.check_tree(Path::new("/var"), true, "rw").is_err());
        assert!(pol.check_tree(Path::new("/srv/share"), true, "rw").is_ok());
        assert!(
            pol.check_tree(Path::new("/usr/share/OVMF"), false, "r")
                .is_ok()
        );
        // The PCI sysfs and configfs exemptions are for single files, never a tree.
        for t in [
            "/sys/devices/pci0000:00",
            "/sys/devices/pci0000:00/0000:00:02.0",
            "/sys/kernel/config/target/vhost",
            "/proc/self",
        ] {
            assert!(pol.check_tree(Path::new(t), false, "r").is_err(), "{t}");
            assert!(pol.check_tree(Path::new(t), true, "rw").is_err(), "{t}");
        }
    }

    #[test]
    fn the_configured_places_of_our_files_are_refused() {
        let default = HostPolicy::default();
        for p in [
            "/var/lib/virt-aa-hook/caps.json",
            "/var/log/libvirt/virt-aa-hook.log",
        ] {
            assert!(default.check(Path::new(p), false, "r").is_err(), "{p}");
        }
        assert!(matches!(
            default.check_tree(Path::new("/var/log/libvirt"), false, "r"),
            Err(PathError::RefusedTree { inside, .. }) if inside == "/var/log/libvirt/virt-aa-hook.log"
        ));
        let cfg = crate::config::Config {
            state_dir: "/srv/vah-state".into(),
            log_file: "/srv/logs/vah.log".into(),
            ..Default::default()
        };
        let moved = HostPolicy::new(&cfg);
        let refused = |pol: &HostPolicy, p: &str| pol.check(Path::new(p), true, "rw").is_err();
        assert!(refused(&moved, "/srv/vah-state/caps.json"));
        assert!(refused(&moved, "/srv/logs/vah.log"));
        assert!(moved.check_tree(Path::new("/srv"), true, "rw").is_err());
        assert!(!refused(&moved, "/srv/images/a.img"));
        assert!(!refused(&default, "/srv/vah-state/caps.json"));
        // Rooted like every path we own (tests).
        let rooted = crate::config::Config::rooted_at(Path::new("/tmp/r"));
        assert!(refused(
            &HostPolicy::new(&rooted),
            "/tmp/r/var/lib/virt-aa-hook/x"
        ));
    }
}
