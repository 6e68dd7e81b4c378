//! The emulator wrapper links: one hard link `/usr/lib/libvirt/virt-aa-hook.<emulator>` to the
//! hook binary per `qemu-system-*` in the emulator directory (see [`crate::wrapper`]).
//!
//! They are made here, by the binary (`virt-aa-hook setup-links` / `remove-links`, run by the
//! package's maintainer scripts), not by shell: the wrapper naming and the emulator directory are
//! facts this crate owns. Hard links, not symlinks: AppArmor attaches profiles by the exec'd path
//! after resolving symlinks, so a symlink would run under the hook's own profile.
//!
//! A package upgrade replaces the binary with a new inode, leaving the old links on the old
//! binary: `setup-links` therefore replaces every link that is not the binary's inode, and
//! removes the links whose emulator is gone. Every replacement is atomic (link beside, rename).

use crate::layout::WRAPPER_PREFIX;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Emulators that get a wrapper: the file-name prefix in the emulator directory.
pub const EMULATOR_PREFIX: &str = "qemu-system-";

/// Why the links could not be made or removed.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path} exists and is a directory; remove it first")]
    NotAFile { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LinkError + '_ {
    move |err| LinkError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// One change made (or, for `Unchanged`, checked).
#[derive(Debug, PartialEq, Eq)]
pub enum LinkChange {
    Created(PathBuf),
    /// Was a link to an older binary (or another file) and now is the binary.
    Replaced(PathBuf),
    Unchanged(PathBuf),
    /// Its emulator is gone, or `remove-links` was asked for.
    Removed(PathBuf),
}

impl std::fmt::Display for LinkChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, p) = match self {
            LinkChange::Created(p) => ("created", p),
            LinkChange::Replaced(p) => ("replaced", p),
            LinkChange::Unchanged(p) => ("unchanged", p),
            LinkChange::Removed(p) => ("removed", p),
        };
        write!(f, "{verb} {}", p.display())
    }
}

/// The emulator names (`qemu-system-x86_64`, …) in `emulator_dir`, sorted: executables only.
fn emulators(emulator_dir: &Path) -> Result<Vec<String>, LinkError> {
    let rd = match std::fs::read_dir(emulator_dir) {
        Ok(rd) => rd,
        // No QEMU installed (yet): no wrappers.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(emulator_dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io(emulator_dir))?;
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !name.starts_with(EMULATOR_PREFIX) || name.len() == EMULATOR_PREFIX.len() {
            continue;
        }
        // Follow symlinks: the wrapper execs whatever this name resolves to.
        match std::fs::metadata(e.path()) {
            Ok(m) if m.is_file() && m.mode() & 0o111 != 0 => out.push(name),
            _ => {}
        }
    }
    out.sort();
    Ok(out)
}

/// Wrapper file names (`virt-aa-hook.qemu-system-*`) present in `libexec`, sorted.
fn existing_wrappers(libexec: &Path) -> Result<Vec<String>, LinkError> {
    let rd = match std::fs::read_dir(libexec) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(libexec)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io(libexec))?;
        if let Some(name) = e.file_name().to_str()
            && name
                .strip_prefix(WRAPPER_PREFIX)
                .is_some_and(|t| t.starts_with(EMULATOR_PREFIX))
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Make `libexec/virt-aa-hook.<emulator>` a hard link to `binary` for every `qemu-system-*`
/// in `emulator_dir`, and remove wrappers whose emulator is gone. Idempotent.
pub fn setup_links(
    libexec: &Path,
    binary: &Path,
    emulator_dir: &Path,
) -> Result<Vec<LinkChange>, LinkError> {
    let bin = std::fs::metadata(binary).map_err(io(binary))?;
    let wanted = emulators(emulator_dir)?;
    let mut changes = Vec::new();
    for emu in &wanted {
        let path = libexec.join(format!("{WRAPPER_PREFIX}{emu}"));
        let existed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Err(LinkError::NotAFile { path }),
            Ok(m) if m.is_file() && m.dev() == bin.dev() && m.ino() == bin.ino() => {
                changes.push(LinkChange::Unchanged(path));
                continue;
            }
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&path)(e)),
        };
        let tmp = libexec.join(format!(".{WRAPPER_PREFIX}{emu}.tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::fs::hard_link(binary, &tmp).map_err(io(&tmp))?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        changes.push(if existed {
            LinkChange::Replaced(path)
        } else {
            LinkChange::Created(path)
        });
    }
    for name in existing_wrappers(libexec)? {
        let emu = &name[WRAPPER_PREFIX.len()..];
        if !wanted.iter().any(|w| w == emu) {
            changes.push(remove_one(&libexec.join(name))?);
        }
    }
    Ok(changes)
}

/// Remove every `virt-aa-hook.qemu-system-*` wrapper in `libexec` (package removal).
pub fn remove_links(libexec: &Path) -> Result<Vec<LinkChange>, LinkError> {
    existing_wrappers(libexec)?
        .into_iter()
        .map(|name| remove_one(&libexec.join(name)))
        .collect()
}

fn remove_one(path: &Path) -> Result<LinkChange, LinkError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(LinkError::NotAFile {
            path: path.to_path_buf(),
        }),
        Ok(_) => {
            std::fs::remove_file(path).map_err(io(path))?;
            Ok(LinkChange::Removed(path.to_path_buf()))
        }
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Root {
        _t: tempfile::TempDir,
        libexec: PathBuf,
        bin: PathBuf,
        emu: PathBuf,
    }

    fn root(emulators: &[&str]) -> Root {
        let t = tempfile::tempdir().unwrap();
        let libexec = t.path().join("usr/lib/libvirt");
        let emu = t.path().join("usr/bin");
        std::fs::create_dir_all(&libexec).unwrap();
        std::fs::create_dir_all(&emu).unwrap();
        let bin = libexec.join("virt-aa-hook");
        std::fs::write(&bin, "binary v1").unwrap();
        for e in emulators {
            let p = emu.join(e);
            std::fs::write(&p, "qemu").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Root {
            _t: t,
            libexec,
            bin,
            emu,
        }
    }

    fn same_inode(a: &Path, b: &Path) -> bool {
        let (a, b) = (std::fs::metadata(a).unwrap(), std::fs::metadata(b).unwrap());
        a.ino() == b.ino() && a.dev() == b.dev()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_one_hard_link_per_emulator_and_is_idempotent() {
        let r = root(&["qemu-system-x86_64", "qemu-system-aarch64", "qemu-img"]);
        // Not an emulator we wrap: not executable.
        std::fs::write(r.emu.join("qemu-system-doc"), "x").unwrap();
        let c = setup_links(&r.libexec, &r.bin, &r.emu).unwrap();
        assert_eq!(
            c,
            vec![
                LinkChange::Created(r.libexec.join("virt-aa-hook.qemu-system-aarch64")),
                LinkChange::Created(r.libexec.join("virt-aa-hook.qemu-system-x86_64")),
            ]
        );
        assert!(same_inode(
            &r.libexec.join("virt-aa-hook.qemu-system-x86_64"),
            &r.bin
        ));
        let again = setup_links(&r.libexec, &r.bin, &r.emu).unwrap();
        assert!(again.iter().all(|c| matches!(c, LinkChange::Unchanged(_))));
        assert_eq!(
            names(&r.libexec),
            [
                "virt-aa-hook",
                "virt-aa-hook.qemu-system-aarch64",
                "virt-aa-hook.qemu-system-x86_64"
            ]
        );
    }

    #[test]
    fn upgrade_relinks_to_the_new_binary_and_drops_wrappers_of_removed_emulators() {
        let r = root(&["qemu-system-x86_64", "qemu-system-arm"]);
        setup_links(&r.libexec, &r.bin, &r.emu).unwrap();
        // dpkg replaces the binary by rename: a new inode; the old links keep the old one.
        let new = r.libexec.join(".new");
        std::fs::write(&new, "binary v2").unwrap();
        std::fs::rename(&new, &r.bin).unwrap();
        std::fs::remove_file(r.emu.join("qemu-system-arm")).unwrap();
        let c = setup_links(&r.libexec, &r.bin, &r.emu).unwrap();
        assert_eq!(
            c,
            vec![
                LinkChange::Replaced(r.libexec.join("virt-aa-hook.qemu-system-x86_64")),
                LinkChange::Removed(r.libexec.join("virt-aa-hook.qemu-system-arm")),
            ]
        );
        let w = r.libexec.join("virt-aa-hook.qemu-system-x86_64");
        assert!(same_inode(&w, &r.bin));
        assert_eq!(std::fs::read_to_string(w).unwrap(), "binary v2");
        assert_eq!(
            names(&r.libexec),
            ["virt-aa-hook", "virt-aa-hook.qemu-system-x86_64"]
        );
    }

    #[test]
    fn remove_links_removes_only_wrappers() {
        let r = root(&["qemu-system-x86_64"]);
        setup_links(&r.libexec, &r.bin, &r.emu).unwrap();
        std::fs::write(r.libexec.join("virt-aa-helper"), "libvirt's").unwrap();
        std::fs::write(r.libexec.join("virt-aa-hook-libvirt"), "ours, packaged").unwrap();
        let c = remove_links(&r.libexec).unwrap();
        assert_eq!(
            c,
            vec![LinkChange::Removed(
                r.libexec.join("virt-aa-hook.qemu-system-x86_64")
            )]
        );
        assert_eq!(
            names(&r.libexec),
            ["virt-aa-helper", "virt-aa-hook", "virt-aa-hook-libvirt"]
        );
        assert!(remove_links(&r.libexec).unwrap().is_empty());
    }

    #[test]
    fn no_emulator_dir_means_no_wrappers_and_a_directory_in_the_way_is_an_error() {
        let r = root(&[]);
        std::fs::remove_dir(&r.emu).unwrap();
        assert!(setup_links(&r.libexec, &r.bin, &r.emu).unwrap().is_empty());
        let r = root(&["qemu-system-x86_64"]);
        std::fs::create_dir(r.libexec.join("virt-aa-hook.qemu-system-x86_64")).unwrap();
        let e = setup_links(&r.libexec, &r.bin, &r.emu).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = setup_links(&r.libexec, &r.libexec.join("missing"), &r.emu).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
