//! Files on disk: atomic replacement and the per-guest lock.
//!
//! A profile on disk is always either the old one or the new one: we write a temporary file in
//! the same directory, fsync it, rename it over the old one and fsync the directory. libvirt's
//! helper treats a zero-length profile as corrupt and recreates it from its own template, so a
//! half-written file would silently lose our rules.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest file we read back (profiles, `.files`): virt-aa-helper's 10 MiB cap.
pub const MAX_READ: u64 = 10 * 1024 * 1024;

/// A temporary file next to its destination, removed on drop unless committed.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Write `contents` to a fresh temp file beside `dest` and fsync it.
    pub fn write(dest: &Path, contents: &[u8]) -> io::Result<Staged> {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let staged = Staged {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&staged.tmp)
            .map_err(|e| annotate(e, &staged.tmp))?;
        f.write_all(contents)
            .and_then(|_| f.sync_all())
            .map_err(|e| annotate(e, &staged.tmp))?;
        Ok(staged)
    }

    /// The temporary file's path (for validating it before it replaces anything).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Rename over the destination and fsync the directory. On failure the temporary file stays
    /// until this value is dropped, so a caller that already loaded it can still unload it.
    pub fn commit(&mut self) -> io::Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| annotate(e, &self.dest))?;
        self.committed = true;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn annotate(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// Remove temporary files a killed writer left beside `dest` (`.<name>.tmp.<pid>`). Call it
/// while holding the guest's lock, so no live writer's file is touched. Returns how many.
pub fn remove_stale_temps(dest: &Path) -> usize {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return 0;
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// The `*.xml` files of a directory, sorted by name (libvirt's definition directories); none
/// when it cannot be read.
pub fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml") && p.is_file())
        .collect();
    v.sort();
    v
}

/// Atomically replace `dest` with `contents`.
pub fn write_atomic(dest: &Path, contents: &[u8]) -> io::Result<()> {
    Staged::write(dest, contents)?.commit()
}

/// Read a file we own, size-capped. `Ok(None)` when it does not exist.
pub fn read_capped(p: &Path) -> io::Result<Option<Vec<u8>>> {
    let f = match File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(annotate(e, p)),
    };
    let mut v = Vec::new();
    f.take(MAX_READ + 1)
        .read_to_end(&mut v)
        .map_err(|e| annotate(e, p))?;
    if v.len() as u64 > MAX_READ {
        return Err(io::Error::other(format!(
            "{}: larger than {MAX_READ} bytes",
            p.display()
        )));
    }
    Ok(Some(v))
}

/// Remove a file; a missing file is not an error. Returns whether something was removed.
pub fn remove_if_exists(p: &Path) -> io::Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(annotate(e, p)),
    }
}

/// An exclusive `flock` held until drop: serialises the events of one guest.
pub struct GuestLock {
    _file: File,
}

impl GuestLock {
    /// Take the lock `<dir>/<key>.lock`, waiting at most `timeout`.
    pub fn acquire(dir: &Path, key: &str, timeout: Duration) -> io::Result<GuestLock> {
        std::fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        let p = dir.join(format!("{key}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| annotate(e, &p))?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is touched.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(GuestLock { _file: f });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(annotate(err, &p));
            }
            if start.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: another event of this guest still holds the lock after {}s",
                        p.display(),
                        timeout.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        {
            let s = Staged::write(&p, b"three").unwrap();
            assert!(s.path().exists());
        } // dropped uncommitted
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(read_capped(&d.path().join("none")).unwrap(), None);
        assert!(remove_if_exists(&p).unwrap());
        assert!(!remove_if_exists(&p).unwrap());
        std::fs::write(d.path().join(".f.tmp.123"), b"half").unwrap();
        std::fs::write(d.path().join(".g.tmp.123"), b"other guest").unwrap();
        assert_eq!(remove_stale_temps(&p), 1);
        assert!(d.path().join(".g.tmp.123").exists());
    }

    #[test]
    fn lock_times_out_while_held() {
        let d = tempfile::tempdir().unwrap();
        let _a = GuestLock::acquire(d.path(), "g", Duration::from_secs(1)).unwrap();
        // flock locks are per open file description, so a second open in-process conflicts.
        let e = GuestLock::acquire(d.path(), "g", Duration::from_millis(50))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let _b = GuestLock::acquire(d.path(), "other", Duration::from_millis(50)).unwrap();
    }
}
