//! The emulator wrapper: confinement when libvirt's AppArmor driver is off.
//!
//! Installed as `/usr/lib/libvirt/virt-aa-hook.<emulator>` (a hard link to this binary) and set
//! as a guest's `<emulator>` by `enroll`. libvirt runs it as the QEMU user; it finds the guest
//! UUID in QEMU's `-uuid` argument, asks the kernel to switch to `libvirt-<uuid>` at the next
//! exec, and execs the real emulator. Capability probing (no `-uuid`) and kernels without
//! AppArmor pass straight through. It fails closed: if the profile cannot be applied on a kernel
//! with AppArmor, QEMU is not started and the reason lands in the guest's log and virsh's error.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::layout::WRAPPER_PREFIX;

/// Why the wrapper refuses to start QEMU.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WrapperError {
    #[error("-uuid is given more than once with different values ({0} and {1})")]
    ConflictingUuid(String, String),
    #[error("-uuid needs a value")]
    MissingUuid,
    #[error("-uuid {0:?} is not a UUID")]
    BadUuid(String),
    #[error("cannot confine QEMU as {profile}: {reason}; refusing to start it unconfined")]
    Apply { profile: String, reason: String },
}

/// The guest UUID from QEMU's arguments: `None` when there is no `-uuid` (capability probing).
pub fn find_uuid(args: &[OsString]) -> Result<Option<uuid::Uuid>, WrapperError> {
    let mut found: Option<(String, uuid::Uuid)> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.as_bytes();
        let val = if a == b"-uuid" || a == b"--uuid" {
            Some(
                it.next()
                    .ok_or(WrapperError::MissingUuid)?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            a.strip_prefix(b"-uuid=")
                .or_else(|| a.strip_prefix(b"--uuid="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(v) = val {
            let u = uuid::Uuid::parse_str(&v).map_err(|_| WrapperError::BadUuid(v.clone()))?;
            match &found {
                Some((prev, pu)) if *pu != u => {
                    return Err(WrapperError::ConflictingUuid(prev.clone(), v));
                }
                _ => found = Some((v, u)),
            }
        }
    }
    Ok(found.map(|(_, u)| u))
}

/// The real emulator for a wrapper name: `<emulator_dir>/<name without prefix>`.
pub fn real_emulator(argv0: &Path, emulator_dir: &Path) -> Option<PathBuf> {
    let name = argv0.file_name()?.to_str()?;
    let tail = name.strip_prefix(WRAPPER_PREFIX)?;
    if tail.is_empty() || tail.contains('/') {
        return None;
    }
    Some(emulator_dir.join(tail))
}

/// Ask the kernel to switch to `profile` at the next exec.
pub fn change_onexec(profile: &str) -> Result<(), String> {
    let cmd = format!("exec {profile}");
    let mut last = String::new();
    for p in ["/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"] {
        match std::fs::write(p, cmd.as_bytes()) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{p}: {e}"),
        }
    }
    Err(last)
}

/// Run as the wrapper; returns only on failure (with the exit code).
pub fn main(argv0: &Path, args: Vec<OsString>) -> i32 {
    use std::os::unix::process::CommandExt;
    let cfg = crate::config::Config::load().unwrap_or_default();
    let Some(real) = real_emulator(argv0, &cfg.emulator_dir) else {
        eprintln!(
            "virt-aa-hook wrapper: cannot tell the real emulator from {}",
            argv0.display()
        );
        return 1;
    };
    let uuid = match find_uuid(&args) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("virt-aa-hook wrapper: {e}");
            return 1;
        }
    };
    if let Some(u) = uuid {
        let profile = crate::domain::profile_name(&u);
        let kernel = crate::apparmorfs::Kernel::default();
        match kernel.status() {
            crate::apparmorfs::Status::Disabled(why) => {
                eprintln!(
                    "virt-aa-hook wrapper: {why}; starting {} unconfined",
                    real.display()
                );
            }
            crate::apparmorfs::Status::Enabled => {
                if let Err(reason) = change_onexec(&profile) {
                    let e = WrapperError::Apply { profile, reason };
                    eprintln!("virt-aa-hook wrapper: {e}");
                    return 1;
                }
            }
        }
    }
    let err = std::process::Command::new(&real)
        .arg0(&real)
        .args(&args)
        .exec();
    eprintln!(
        "virt-aa-hook wrapper: cannot exec {}: {err}",
        real.display()
    );
    127
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }
    const U: &str = "92c4f559-3323-44d7-abd5-34c49aef304a";

    #[test]
    fn uuid_argument_handling() {
        assert_eq!(find_uuid(&a(&["-machine", "none", "-qmp", "x"])), Ok(None));
        assert_eq!(
            find_uuid(&a(&["-name", "g", "-uuid", U]))
                .unwrap()
                .unwrap()
                .to_string(),
            U
        );
        assert!(find_uuid(&a(&["-uuid", U, "-uuid", U])).unwrap().is_some());
        assert!(matches!(
            find_uuid(&a(&[
                "-uuid",
                U,
                "-uuid",
                "00000000-0000-0000-0000-000000000000"
            ])),
            Err(WrapperError::ConflictingUuid(..))
        ));
        assert_eq!(find_uuid(&a(&["-uuid"])), Err(WrapperError::MissingUuid));
        assert!(matches!(
            find_uuid(&a(&["-uuid", "../../x"])),
            Err(WrapperError::BadUuid(_))
        ));
        assert!(find_uuid(&a(&[&format!("--uuid={U}")])).unwrap().is_some());
        // an argument that merely contains the word is not the option
        assert_eq!(find_uuid(&a(&["-name", "-uuid-ish"])), Ok(None));
    }

    #[test]
    fn real_emulator_mapping() {
        assert_eq!(
            real_emulator(
                Path::new("/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64"),
                Path::new("/usr/bin")
            ),
            Some(PathBuf::from("/usr/bin/qemu-system-x86_64"))
        );
        assert_eq!(
            real_emulator(
                Path::new("/usr/lib/libvirt/virt-aa-hook"),
                Path::new("/usr/bin")
            ),
            None
        );
        assert_eq!(
            real_emulator(Path::new("virt-aa-hook."), Path::new("/usr/bin")),
            None
        );
    }
}
