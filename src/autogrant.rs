//! May a path be handed to a guest by a rule we write on someone's behalf?
//!
//! `explain` turns kernel records into rules, and a record's path is chosen by the guest: a
//! compromised QEMU that probes `/root/.bashrc` in complain mode (or is denied it in enforce mode)
//! would otherwise choose what `explain --apply` writes. So rules written automatically follow an
//! allow-list: **only literal rules for regular files and directories (or files not created yet)
//! in the places guests' data lives** — [`DEFAULT_DATA_DIRS`] (`/srv`, libvirt's image and boot
//! directories), the target directories of libvirt's directory storage pools, and the config's
//! `data_dirs`. `/tmp`, `/var/tmp` and `/dev/shm` are not among them on purpose: a name there can
//! be taken first by any guest (or any local user), so a rule for it is a decision for a person.
//!
//! `grant` is the admin's explicit request: it may reach outside the data places (images live
//! anywhere), and a device node needs its `--device` flag; but the locations below are refused to
//! both, whoever asks (each with a one-line why, [`Refusal`]):
//! - `/` itself; `/proc`; `/sys` (PCI `resource0`/`remove`, the security filesystem: a guest's
//!   devices come from its definition, never from a log line);
//! - `/etc` (host configuration, crontabs in `/etc/cron*`), crontabs in `/var/spool`;
//! - AppArmor's own policy and cache (`/etc/apparmor*`, `/var/cache/apparmor`,
//!   `/var/lib/apparmor`, `/usr/share/apparmor`, `/sys/kernel/security`);
//! - libvirt's control sockets and state (`/run/libvirt`, `/var/run/libvirt`, `/etc/libvirt`,
//!   libvirt's swtpm, secrets and network state under `/var/lib/libvirt`), host logs
//!   (`/var/log`);
//! - home directories: `/root`, and the dot-files of `/home/<user>` (shell start-up files, keys);
//! - kernel interfaces under `/dev` no guest is given (`/dev/kmsg`, watchdogs, `/dev/mem`, ttys, …);
//! - everything the generator's host policy ([`paths::HostPolicy`]) refuses.
//!
//! Other guests' files are not decided here (they are not a matter of location but of whose
//! profile grants them): [`crate::explain`] matches every guest's rules first.

use crate::paths::{self, PathError};
use crate::rules::Perms;
use std::path::Path;
use thiserror::Error;

/// Where guests' data lives on any host: `/srv` (the FHS place for served data), and libvirt's
/// default pool and boot-media directories.
pub const DEFAULT_DATA_DIRS: &[&str] =
    &["/srv", "/var/lib/libvirt/images", "/var/lib/libvirt/boot"];

/// Host locations no rule from `explain` or `grant` ever reaches, with why (see the module doc).
const NEVER: &[(&str, &str)] = &[
    ("/proc", "the kernel's view of every process"),
    (
        "/sys",
        "kernel and device controls; a guest's devices come from its definition",
    ),
    ("/etc", "host configuration"),
    ("/var/spool/cron", "crontabs"),
    ("/var/spool", "host spools (crontabs, mail, print jobs)"),
    ("/var/cache/apparmor", "AppArmor's policy cache"),
    ("/var/lib/apparmor", "AppArmor's policy cache"),
    ("/usr/share/apparmor", "AppArmor's policy"),
    ("/run/libvirt", "libvirt's control sockets and state"),
    ("/var/run/libvirt", "libvirt's control sockets and state"),
    ("/var/lib/libvirt/swtpm", "libvirt's TPM state"),
    ("/var/lib/libvirt/secrets", "libvirt's secrets"),
    ("/var/lib/libvirt/dnsmasq", "libvirt's network state"),
    ("/var/lib/libvirt/network", "libvirt's network state"),
    ("/var/log", "host logs"),
    ("/root", "root's home directory"),
];

/// Device nodes no guest is ever given, even with `--device`: kernel log, watchdogs (opening one
/// starts the countdown that reboots the host), raw memory and I/O ports, consoles and ttys.
const NEVER_DEVICES: &[&str] = &[
    "/dev/kmsg",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
    "/dev/console",
    "/dev/cpu",
    "/dev/snapshot",
    "/dev/mapper/control",
    "/dev/loop-control",
    "/dev/uinput",
    "/dev/autofs",
    "/dev/btrfs-control",
];

/// Device-name prefixes refused like [`NEVER_DEVICES`] (`/dev/watchdog0`, `/dev/tty1`, `/dev/vcs2`).
const NEVER_DEVICE_PREFIXES: &[&str] = &["/dev/watchdog", "/dev/tty", "/dev/vcs"];

/// tmpfs and hugetlbfs mounts under `/dev`: files there are memory, not devices.
const MEMORY_FS: &[&str] = &["/dev/shm", "/dev/hugepages"];

/// What is at the path on the host now. The caller looks (so this module stays pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Nothing yet (the record asked to create it), or it could not be looked at.
    Missing,
    Regular,
    Directory,
    /// A socket, FIFO, device node or symlink, named for the message.
    Special(&'static str),
}

impl FileKind {
    /// What `symlink_metadata` says about `path` (`Missing` when it cannot tell).
    pub fn of(path: &Path) -> FileKind {
        use std::os::unix::fs::FileTypeExt;
        let Ok(m) = std::fs::symlink_metadata(path) else {
            return FileKind::Missing;
        };
        let t = m.file_type();
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_symlink() {
            FileKind::Special("symbolic link")
        } else if t.is_socket() {
            FileKind::Special("socket")
        } else if t.is_fifo() {
            FileKind::Special("FIFO")
        } else if t.is_block_device() {
            FileKind::Special("block device")
        } else if t.is_char_device() {
            FileKind::Special("character device")
        } else {
            FileKind::Special("special file")
        }
    }
}

/// Who is asking for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker<'a> {
    /// `explain --apply`: the path came from a log line a guest can steer. `data_dirs` are the
    /// places guests' data lives on this host (see [`data_dirs`]).
    Apply { data_dirs: &'a [String] },
    /// `grant`, typed by the admin; `device`: its `--device` flag was given.
    Grant { device: bool },
}

/// Why a path is not given to a guest by a rule we write.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("\"/\" is the whole host: no guest gets it")]
    Root,
    #[error("{path} is under {place} ({why}): no guest gets it from a rule we write")]
    Never {
        path: String,
        place: &'static str,
        why: &'static str,
    },
    #[error(
        "{path} is in a home directory's dot-files (shell start-up files, keys): no guest gets it"
    )]
    HomeDotfile { path: String },
    #[error("{path} is a kernel device no guest is given (kernel log, watchdog, memory, console)")]
    KernelDevice { path: String },
    #[error(transparent)]
    HostPath(#[from] PathError),
    #[error("{path} is a device node: only granted explicitly (`virt-aa-hook grant --device`)")]
    Device { path: String },
    #[error(
        "{path} is a {kind}, not a regular file or directory: only granted explicitly \
         (`virt-aa-hook grant`)"
    )]
    Special { path: String, kind: &'static str },
    #[error(
        "{path} is outside the places guests' data lives ({dirs}): only granted explicitly \
         (`virt-aa-hook grant`)"
    )]
    Outside { path: String, dirs: String },
}

impl Refusal {
    /// Whether the admin's explicit `grant` could still give it (the refusal is only about
    /// rules written automatically, or about the `--device` flag).
    pub fn grant_may(&self) -> bool {
        matches!(
            self,
            Refusal::Device { .. } | Refusal::Special { .. } | Refusal::Outside { .. }
        )
    }
}

/// May a rule granting `perms` on `path` (a normalised absolute path, one literal) be written
/// for `asker`? The one decision every automatically or explicitly added rule goes through.
/// `policy` is the host policy of the configuration in force.
pub fn check(
    policy: &paths::HostPolicy,
    path: &str,
    perms: Perms,
    kind: FileKind,
    asker: Asker<'_>,
) -> Result<(), Refusal> {
    let p = Path::new(path);
    let owned = || path.to_string();
    if path.trim_end_matches('/').is_empty() {
        return Err(Refusal::Root);
    }
    if let Some(&(place, why)) = NEVER.iter().find(|(pre, _)| paths::is_under(p, pre)) {
        return Err(Refusal::Never {
            path: owned(),
            place,
            why,
        });
    }
    if is_home_dotfile(path) {
        return Err(Refusal::HomeDotfile { path: owned() });
    }
    if NEVER_DEVICES.iter().any(|d| paths::is_under(p, d))
        || NEVER_DEVICE_PREFIXES.iter().any(|d| path.starts_with(d))
    {
        return Err(Refusal::KernelDevice { path: owned() });
    }
    policy.check(p, perms.writes(), &perms.to_string())?;
    // Memory-backing file systems under /dev hold files, not device nodes.
    let device = paths::is_under(p, "/dev") && !MEMORY_FS.iter().any(|m| paths::is_under(p, m));
    match asker {
        Asker::Grant { device: flag } => {
            if device && !flag {
                return Err(Refusal::Device { path: owned() });
            }
            Ok(())
        }
        Asker::Apply { data_dirs } => {
            if device {
                return Err(Refusal::Device { path: owned() });
            }
            if let FileKind::Special(kind) = kind {
                return Err(Refusal::Special {
                    path: owned(),
                    kind,
                });
            }
            if !data_dirs.iter().any(|d| paths::is_under(p, d)) {
                return Err(Refusal::Outside {
                    path: owned(),
                    dirs: data_dirs.join(", "),
                });
            }
            Ok(())
        }
    }
}

/// `/home/<user>/.<anything>`: start-up files, keys and tokens of a user.
fn is_home_dotfile(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/home/") else {
        return false;
    };
    let mut parts = rest.split('/');
    let _user = parts.next();
    parts.next().is_some_and(|n| n.starts_with('.'))
}

/// The places guests' data lives: [`DEFAULT_DATA_DIRS`], then `extra` (the config's `data_dirs`
/// and the target directories of libvirt's directory pools), deduplicated, each absolute and
/// not `/` (a pool at `/` would make every host path a data place), with no trailing `/`.
pub fn data_dirs<I: IntoIterator<Item = String>>(extra: I) -> Vec<String> {
    let mut v: Vec<String> = DEFAULT_DATA_DIRS.iter().map(|s| s.to_string()).collect();
    for d in extra {
        if !d.starts_with('/') {
            continue;
        }
        let d = paths::normalize_lexically(Path::new(&d))
            .to_string_lossy()
            .into_owned();
        if d != "/" && !v.contains(&d) {
            v.push(d);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileKind::*;

    fn apply(path: &str, perms: Perms, kind: FileKind) -> Result<(), Refusal> {
        let dirs = data_dirs(["/data/vms".to_string()]);
        let policy = paths::HostPolicy::defaults();
        check(policy, path, perms, kind, Asker::Apply { data_dirs: &dirs })
    }
    fn grant(path: &str, device: bool) -> Result<(), Refusal> {
        let policy = paths::HostPolicy::defaults();
        check(policy, path, Perms::RWK, Missing, Asker::Grant { device })
    }

    #[test]
    fn the_issue_cases_are_never_applied_nor_granted() {
        for (path, perms) in [
            ("/root/.bashrc", Perms::RW),
            ("/var/spool/cron/crontabs/root", Perms::W),
            ("/etc/cron.d/x", Perms::W),
            ("/run/libvirt/libvirt-sock", Perms::RW),
            ("/var/run/libvirt/libvirt-sock-ro", Perms::RW),
            ("/etc/libvirt/qemu/web.xml", Perms::R),
            ("/var/cache/apparmor/abc123/libvirt-x", Perms::RW),
            ("/etc/apparmor.d/local/libvirt/libvirt-x", Perms::W),
            ("/sys/kernel/security/apparmor/policy/.replace", Perms::W),
            ("/dev/kmsg", Perms::R),
            ("/dev/watchdog", Perms::W),
            ("/dev/watchdog0", Perms::W),
            ("/sys/devices/pci0000:00/0000:00:02.0/resource0", Perms::RW),
            ("/sys/bus/pci/devices/0000:00:02.0/remove", Perms::W),
            ("/proc/sysrq-trigger", Perms::W),
            ("/", Perms::RW),
            ("/home/alice/.ssh/authorized_keys", Perms::R),
            (
                "/var/lib/libvirt/swtpm/aaaa/tpm2/tpm2-00.permall",
                Perms::RW,
            ),
        ] {
            let a = apply(path, perms, Regular);
            assert!(a.as_ref().is_err_and(|e| !e.grant_may()), "{path}: {a:?}");
            let g = grant(path, true);
            assert!(g.is_err(), "{path}: grant --device: {g:?}");
        }
        assert_eq!(apply("/", Perms::RW, Directory), Err(Refusal::Root));
    }

    #[test]
    fn device_nodes_need_the_flag() {
        let a = apply("/dev/sda", Perms::RW, Special("block device"));
        assert!(matches!(a, Err(Refusal::Device { .. })), "{a:?}");
        assert!(a.unwrap_err().grant_may());
        assert!(matches!(
            grant("/dev/sda", false),
            Err(Refusal::Device { .. })
        ));
        assert_eq!(grant("/dev/sda", true), Ok(()));
        assert_eq!(grant("/dev/vg0/web", true), Ok(()));
        // A host-policy refusal holds with the flag too.
        assert!(matches!(
            grant("/dev/mem", true),
            Err(Refusal::KernelDevice { .. })
        ));
    }

    #[test]
    fn only_regular_files_and_directories_in_data_places_are_applied() {
        assert_eq!(apply("/srv/extra/a b.img", Perms::R, Regular), Ok(()));
        assert_eq!(apply("/srv/extra/new.img", Perms::RW, Missing), Ok(()));
        assert_eq!(apply("/srv/extra/", Perms::R, Directory), Ok(()));
        assert_eq!(
            apply("/var/lib/libvirt/images/x.qcow2", Perms::RW, Regular),
            Ok(())
        );
        assert_eq!(apply("/data/vms/x.qcow2", Perms::RW, Regular), Ok(()));
        let s = apply("/srv/sock", Perms::RW, Special("socket"));
        assert!(
            matches!(s, Err(Refusal::Special { kind: "socket", .. })),
            "{s:?}"
        );
        for outside in [
            "/var/tmp/backup.1234.vda",
            "/tmp/x",
            "/dev/shm/x",
            "/home/alice/vm.img",
            "/data/vmsx/y",
            "/srvx/y",
            "/var/lib/mysql/ibdata1",
            "/opt/x",
        ] {
            let r = apply(outside, Perms::RW, Regular);
            assert!(
                r.as_ref().is_err_and(Refusal::grant_may),
                "{outside}: {r:?}"
            );
            // The admin may grant it explicitly.
            assert_eq!(grant(outside, false), Ok(()), "{outside}");
        }
        // The generator's host policy holds for both.
        assert!(matches!(
            apply("/usr/bin/x", Perms::W, Regular),
            Err(Refusal::HostPath(_))
        ));
        assert!(grant("/boot/vmlinuz", false).is_err());
    }

    #[test]
    fn data_dirs_are_clean() {
        let d = data_dirs([
            "/".into(),
            "relative".into(),
            "/srv/".into(),
            "/p//q/".into(),
        ]);
        assert_eq!(
            d,
            vec![
                "/srv",
                "/var/lib/libvirt/images",
                "/var/lib/libvirt/boot",
                "/p/q"
            ]
        );
    }
}
