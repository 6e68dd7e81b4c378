//! The chain walk: from the top image down, read each header, join and resolve the name it
//! records, and stop (with a warning) wherever QEMU's and our reading could disagree.

use super::vmdk::extent_name_ok;
use super::{Chain, Header, ImageFormat, MAX_HEADER_BYTES, parse_header};
use crate::backing::HeaderError;
use crate::paths;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Formats QEMU knows that never have a backing file: the chain ends there without a warning.
const LEAF_FORMATS: &[&str] = &[
    "raw",
    "host_device",
    "file",
    "iso",
    "luks",
    "vdi",
    "vpc",
    "vhdx",
    "dmg",
    "cloop",
    "bochs",
    "parallels",
    "ploop",
    "fat",
];

/// How the format of the image being probed is known.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// Declared in the XML or recorded in the parent's header: QEMU opens it as this format.
    Recorded(ImageFormat),
    /// Not recorded anywhere: detected from magic, and then not allowed to name further images.
    Detected,
}

/// Where the probe starts: the top image's path as written in the XML, or as the caller has
/// just resolved it (the disk's own grant did; it is not resolved a second time).
#[derive(Debug, Clone, Copy)]
pub enum Top<'a> {
    /// As written (exactly QEMU's join for relative backing names).
    Named(&'a Path),
    /// Already resolved: the same, unless the top image itself is a symlink into another
    /// directory (then its target's directory is used for relative names).
    Resolved(&'a Path),
}

/// Probe the backing chain of `top`, whose format libvirt was told is `format` (`None`: not
/// declared, treated as raw, never probed).
///
/// Returns the images QEMU will open below `top`, nearest first, resolved as the kernel will
/// resolve them, and a warning for every place the chain could not be followed. A backing file
/// that is missing or unreadable is still listed (QEMU will try to open that path, and the
/// profile must allow it) but not probed further. Never fails and never panics: a broken chain
/// only costs the guest the files we could not find, and QEMU then fails closed.
///
/// Relative backing names are joined to the directory of the image that names them *as that
/// image was named* (QEMU and libvirt join to the unresolved path, so for a backing image that
/// is itself a symlink into another directory the symlink's directory counts), then resolved.
///
/// `resolver` and `headers` belong to the derivation and are shared across the disks of one
/// guest: a thousand disks over one base image resolve its name and read its header once. The
/// resolver also decides what may be opened (see [`paths::Resolver::seen_file_type`]).
pub fn probe_chain(
    top: Top<'_>,
    format: Option<&str>,
    max_depth: usize,
    resolver: &mut paths::Resolver,
    headers: &mut HeaderCache,
) -> Chain {
    let mut cache = Probe { resolver, headers };
    match top {
        Top::Named(p) => probe_chain_inner(p, false, format, max_depth, &mut cache),
        Top::Resolved(p) => probe_chain_inner(p, true, format, max_depth, &mut cache),
    }
}

/// Headers already read during one derivation, by resolved path. A thousand disks over one
/// base image read the base's header once, not a thousand times.
#[derive(Debug, Default)]
pub struct HeaderCache {
    // Keyed by bytes, not `Path` (see `paths::Resolver`).
    map: paths::PathMap<OsString, Result<Header, String>>,
    /// The buffer headers are read into, reused from image to image: a fresh 4 KiB one per
    /// disk cost a `malloc` and a `free` each.
    buf: Vec<u8>,
}

/// What one probe works with: the derivation's resolver and header cache.
struct Probe<'r> {
    resolver: &'r mut paths::Resolver,
    headers: &'r mut HeaderCache,
}

impl Probe<'_> {
    fn resolve(&mut self, raw: &str) -> Result<PathBuf, paths::PathError> {
        self.resolver.resolve_repeated(raw)
    }

    /// The header of `path`; `keep` it for later probes (a backing image, which the disks of
    /// a guest share) or not (a disk's own image, read once: keeping a thousand of them cost a
    /// copy and a map entry each).
    fn read(&mut self, path: &Path, keep: bool) -> Result<Header, String> {
        if !keep {
            return read_header(path, &mut *self.resolver, &mut self.headers.buf);
        }
        if let Some(r) = self.headers.map.get(path.as_os_str()) {
            return r.clone();
        }
        let r = read_header(path, &mut *self.resolver, &mut self.headers.buf);
        self.headers
            .map
            .insert(path.as_os_str().to_os_string(), r.clone());
        r
    }
}

fn probe_chain_inner(
    top: &Path,
    top_is_resolved: bool,
    format: Option<&str>,
    max_depth: usize,
    cache: &mut Probe<'_>,
) -> Chain {
    let mut chain = Chain::default();
    let Some(first) = format.and_then(ImageFormat::from_name) else {
        return chain;
    };
    if first == ImageFormat::Raw {
        return chain;
    }
    let Some(top_str) = top.to_str() else {
        chain.warnings.push(format!(
            "{}: path is not valid UTF-8; backing chain not probed",
            top.display()
        ));
        return chain;
    };
    let resolved_top = if top_is_resolved {
        Ok(top.to_path_buf())
    } else {
        cache.resolve(top_str)
    };
    let top_resolved = match resolved_top {
        Ok(p) => p,
        Err(e) => {
            chain
                .warnings
                .push(format!("{}: {e}; backing chain not probed", top.display()));
            return chain;
        }
    };

    // Loop detection compares against `top_resolved` and `chain.links` (at most `max_depth`
    // entries: a linear scan beats hashing paths).
    // The image being probed: its path as named (for joining relative names) and resolved.
    let mut named = top_str.to_string();
    let mut resolved = top_resolved.clone();
    let mut known = Known::Recorded(first);
    let mut at_top = true;
    // Backing images followed so far (`chain.links` also holds their VMDK extents).
    let mut depth = 0usize;

    loop {
        let header = match cache.read(&resolved, !at_top) {
            Ok(h) => h,
            Err(reason) => {
                chain.warnings.push(format!(
                    "cannot probe {}: {reason}; backing chain stops there",
                    resolved.display()
                ));
                break;
            }
        };
        match known {
            Known::Recorded(want) if header.format != want => {
                chain.warnings.push(format!(
                    "{} is not a {want} image (its header looks {}); backing chain stops there",
                    resolved.display(),
                    header.format
                ));
                break;
            }
            _ => {}
        }
        if !header.extents.is_empty() || header.extents_cut {
            add_extents(&mut chain, cache, &header, known, &named, &resolved, at_top);
        }
        at_top = false;
        let Some(name) = header.backing else {
            break;
        };
        if let Known::Detected = known {
            // libvirt's rule: an image whose format had to be guessed may not pull in more
            // files (the guess could have been steered by whoever wrote its contents).
            chain.warnings.push(format!(
                "the format of {} is not recorded in its parent's header; its own backing file is not followed",
                resolved.display()
            ));
            break;
        }
        let local = match local_name(&name) {
            Ok(l) => l,
            Err(why) => {
                chain.warnings.push(format!(
                    "backing file of {} {why}; backing chain stops there",
                    resolved.display()
                ));
                break;
            }
        };
        let next_named = if local.starts_with('/') {
            local.to_string()
        } else {
            let dir = Path::new(&named).parent().unwrap_or(Path::new("/"));
            format!("{}/{local}", dir.to_string_lossy().trim_end_matches('/'))
        };
        let next_resolved = match cache.resolve(&next_named) {
            Ok(p) => p,
            Err(e) => {
                chain.warnings.push(format!(
                    "backing file of {}: {e}; backing chain stops there",
                    resolved.display()
                ));
                break;
            }
        };
        // Byte comparison: every path here is the resolver's canonical form, where equal
        // components mean equal bytes (`Path`'s `==` walks the components, ~470 instructions a
        // disk for a thousand disks that never loop).
        let same = |p: &PathBuf| p.as_os_str() == next_resolved.as_os_str();
        if same(&top_resolved) || chain.links.iter().any(same) {
            chain.warnings.push(format!(
                "backing chain of {} loops at {}",
                top.display(),
                next_resolved.display()
            ));
            break;
        }
        if depth >= max_depth {
            chain.warnings.push(format!(
                "backing chain of {} is deeper than {max_depth} images; not followed past {}",
                top.display(),
                resolved.display()
            ));
            break;
        }
        chain.links.push(next_resolved.clone());
        chain.named_by.push(resolved.clone());
        depth += 1;

        known = match header.backing_format.as_deref() {
            None => Known::Detected,
            Some(fmt) => match ImageFormat::from_name(fmt) {
                Some(ImageFormat::Raw) => break,
                Some(f) => Known::Recorded(f),
                None => {
                    if !LEAF_FORMATS.contains(&fmt) {
                        chain.warnings.push(format!(
                            "{} has unknown backing format {fmt:?}; backing chain stops at {}",
                            resolved.display(),
                            next_resolved.display()
                        ));
                    }
                    break;
                }
            },
        };
        named = next_named;
        resolved = next_resolved;
    }
    chain
}

/// Grant-worthy data extents of one VMDK descriptor (see [`extent_name_ok`]) into `chain`.
fn add_extents(
    chain: &mut Chain,
    cache: &mut Probe<'_>,
    header: &Header,
    known: Known,
    named: &str,
    resolved: &Path,
    at_top: bool,
) {
    if let Known::Detected = known {
        chain.warnings.push(format!(
            "the format of {} is not recorded in its parent's header; its extents are not followed",
            resolved.display()
        ));
        return;
    }
    if header.extents_cut {
        chain.warnings.push(format!(
            "the descriptor {} is longer than {MAX_HEADER_BYTES} bytes; extents named after that are not granted",
            resolved.display()
        ));
    }
    let dir = Path::new(named).parent().unwrap_or(Path::new("/"));
    for name in &header.extents {
        if let Err(why) = extent_name_ok(named, name) {
            chain.warnings.push(format!(
                "{}: extent {name:?} {why}; not granted (grant it in the guest's local override if it is meant)",
                resolved.display()
            ));
            continue;
        }
        let joined = format!("{}/{name}", dir.to_string_lossy().trim_end_matches('/'));
        match cache.resolve(&joined) {
            Ok(p) => {
                if at_top {
                    if !chain.top_extents.contains(&p) {
                        chain.top_extents.push(p);
                    }
                } else if !chain.links.contains(&p) {
                    chain.links.push(p);
                    chain.named_by.push(resolved.to_path_buf());
                }
            }
            Err(e) => chain.warnings.push(format!(
                "{}: extent {name:?}: {e}; not granted",
                resolved.display()
            )),
        }
    }
}

/// Split a backing name into "local file" or "not followed", the way QEMU's `path_has_protocol`
/// does: a `:` before the first `/` makes it a protocol (`nbd:`, `rbd:`, `json:`, URIs…).
/// `file:/abs` is QEMU's explicit local-file protocol and is accepted. Only the protocol name is
/// echoed back: the rest of such a string may hold credentials (`rbd:…:key=…`, `http://u:p@…`).
fn local_name(name: &str) -> Result<&str, String> {
    let Some(i) = name.find([':', '/']) else {
        return Ok(name);
    };
    if name.as_bytes()[i] != b':' {
        return Ok(name);
    }
    let proto = &name[..i];
    if proto == "file" && name[i + 1..].starts_with('/') {
        return Ok(&name[i + 1..]);
    }
    let shown = if !proto.is_empty()
        && proto.len() <= 32
        && proto
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
    {
        proto
    } else {
        "unrecognised"
    };
    Err(format!("is a {shown}: protocol source, not a local file"))
}

/// Read at most [`MAX_HEADER_BYTES`] from the start of a regular file or block device and parse
/// them. Only such files are ever opened for reading (see [`open_image`]); a FIFO or a device
/// named by an image can never hang the hook or act on hardware.
fn read_header(
    path: &Path,
    resolver: &mut paths::Resolver,
    buf: &mut Vec<u8>,
) -> Result<Header, String> {
    // A cheap first filter from what resolution just saw; the decision that counts is made on
    // the descriptor itself, in `open_image`.
    if let Some(kind) = resolver.seen_file_type(path) {
        if !kind.is_file() && !kind.is_block_device() {
            return Err(NOT_AN_IMAGE.to_string());
        }
    }
    // Resolution may have just found this very file by name in its directory (see
    // `paths::Resolver::take_found`): reopen the `O_PATH` descriptor it found a regular file or
    // block device on (a file's type never changes), or take the file it opened in a sealed
    // directory, instead of opening and checking the path again.
    let file = match resolver.take_found(path) {
        Some(Ok(paths::Found::Handle(handle))) => reopen_for_reading(&handle)?,
        Some(Ok(paths::Found::Opened(file))) => file,
        Some(Err(e)) => return Err(format!("cannot open: {e}")),
        None => open_image(path)?,
    };
    // Almost every header and backing name sits in the first 4 KiB; read more only if the
    // header points further (one image per disk is read, so this matters for big guests).
    buf.clear();
    buf.reserve(FIRST_READ);
    let mut file: File = file;
    (&mut file)
        .take(FIRST_READ as u64)
        .read_to_end(buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    match parse_header(buf) {
        Err(HeaderError::Truncated { .. } | HeaderError::OutOfRange { .. })
            if buf.len() == FIRST_READ =>
        {
            file.take((MAX_HEADER_BYTES - FIRST_READ) as u64)
                .read_to_end(buf)
                .map_err(|e| format!("cannot read: {e}"))?;
            parse_header(buf).map_err(|e| e.to_string())
        }
        // A VMDK text descriptor lists its extents all through the text: read on to its end.
        Ok(h)
            if h.format == ImageFormat::Vmdk
                && buf.len() == FIRST_READ
                && !buf.starts_with(b"KDMV")
                && !buf.contains(&0) =>
        {
            file.take((MAX_HEADER_BYTES - FIRST_READ) as u64)
                .read_to_end(buf)
                .map_err(|e| format!("cannot read: {e}"))?;
            parse_header(buf).map_err(|e| e.to_string())
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// First read of an image header; see [`read_header`].
const FIRST_READ: usize = 4096;

/// Why a file is not read as an image.
const NOT_AN_IMAGE: &str = "not a regular file or block device";

/// Open a resolved image path for reading without a race between "what is it" and "open it".
///
/// The name may come from a header the guest wrote, and the directories on the way may be
/// changed while we look (a directory swapped for a symlink into `/dev` in a loop). So the path
/// is opened with `O_PATH` — which runs no device's open handler — and no symlink anywhere on it
/// (`openat2` with `RESOLVE_NO_SYMLINKS`, or, on kernels before 5.6, a walk that opens each
/// component with `O_NOFOLLOW`; the path is resolved, so a symlink on it was swapped in and
/// fails the open). The type is then read from that descriptor (`fstat`), and only a regular
/// file or block device is reopened for reading through `/proc/self/fd`, which reaches the
/// very inode checked (non-blocking, never a controlling tty).
pub(crate) fn open_image(path: &Path) -> Result<File, String> {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let cannot = |e: std::io::Error| format!("cannot open: {e}");
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err("cannot open: path contains a NUL byte".to_string());
    }
    let handle: OwnedFd = if paths::openat2_unavailable() {
        paths::open_path_walk(path).map_err(cannot)?
    } else {
        // The path NUL-terminated on the stack when it fits (one image per disk is opened).
        let mut stack = [0u8; 256];
        let heap;
        let c: &std::ffi::CStr = if bytes.len() < stack.len() {
            stack[..bytes.len()].copy_from_slice(bytes);
            std::ffi::CStr::from_bytes_with_nul(&stack[..=bytes.len()])
                .map_err(|_| "cannot open: path contains a NUL byte".to_string())?
        } else {
            heap = std::ffi::CString::new(bytes)
                .map_err(|_| "cannot open: path contains a NUL byte".to_string())?;
            &heap
        };
        match paths::openat2_path(c) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                paths::set_openat2_unavailable();
                paths::open_path_walk(path).map_err(cannot)?
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err("cannot open: a symbolic link appeared on the path".to_string());
            }
            Err(e) => return Err(cannot(e)),
        }
    };
    // `fstat` on the `O_PATH` descriptor itself (Linux >= 3.6): no duplicate to make and close.
    // SAFETY: a zeroed `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `handle` is an open descriptor we own; `st` is a valid, writable `stat`.
    if unsafe { libc::fstat(handle.as_raw_fd(), &mut st) } != 0 {
        return Err(cannot(std::io::Error::last_os_error()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFBLK {
        return Err(NOT_AN_IMAGE.to_string());
    }
    reopen_for_reading(&handle)
}

/// Reopen `handle`, an `O_PATH` descriptor of a regular file or block device, for reading
/// through `/proc/self/fd`: the very inode, non-blocking, never a controlling tty.
fn reopen_for_reading(handle: &std::os::fd::OwnedFd) -> Result<File, String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let cannot = |e: std::io::Error| format!("cannot open: {e}");
    let reopen = paths::IMAGE_READ_FLAGS;
    let fd = match proc_fd_dir() {
        // The descriptor's number in our own `/proc/<pid>/fd`, held open: the same magic link
        // as `/proc/self/fd/<n>`, without looking up `self` and `fd` again for every image.
        Some(dir) => {
            let mut name = [0u8; 16];
            let name = decimal(handle.as_raw_fd(), &mut name);
            // SAFETY: a NUL-terminated name in a directory descriptor that stays open; the
            // returned descriptor is owned below.
            unsafe { libc::openat(dir, name.as_ptr(), reopen) }
        }
        None => {
            let mut proc_path = [0u8; 32];
            let proc_path = proc_fd_path(handle.as_raw_fd(), &mut proc_path);
            // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
            unsafe { libc::open(proc_path.as_ptr(), reopen) }
        }
    };
    if fd < 0 {
        return Err(cannot(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    Ok(file)
}

/// `/proc/self/fd/<fd>`, NUL-terminated in `buf` (written without `format!`: it runs once per
/// disk).
fn proc_fd_path(fd: std::os::fd::RawFd, buf: &mut [u8; 32]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 16];
    let digits = decimal(fd, &mut digits).to_bytes_with_nul();
    buf[PREFIX.len()..PREFIX.len() + digits.len()].copy_from_slice(digits);
    std::ffi::CStr::from_bytes_with_nul(&buf[..PREFIX.len() + digits.len()])
        .expect("one NUL, at the end")
}

/// A descriptor number in decimal, NUL-terminated in `buf`.
fn decimal(fd: std::os::fd::RawFd, buf: &mut [u8; 16]) -> &std::ffi::CStr {
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    buf[..len].copy_from_slice(&digits[i..]);
    buf[len] = 0;
    std::ffi::CStr::from_bytes_with_nul(&buf[..=len]).expect("digits hold no NUL")
}

/// This process's `/proc/<pid>/fd` as an `O_PATH` directory descriptor, opened at the first
/// image and kept (`None`: it could not be opened, and the full `/proc/self/fd/<n>` path is
/// used). A forked child drops it (a `pthread_atfork` handler): the child has a descriptor
/// table of its own, and the parent's directory would reach the parent's descriptors.
fn proc_fd_dir() -> Option<std::os::fd::RawFd> {
    use std::sync::Once;
    use std::sync::atomic::{AtomicI32, Ordering};
    /// Not opened yet.
    const UNSET: i32 = -2;
    /// Could not be opened.
    const FAILED: i32 = -1;
    static DIR: AtomicI32 = AtomicI32::new(UNSET);
    static AT_FORK: Once = Once::new();
    extern "C" fn in_child() {
        let fd = DIR.swap(UNSET, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: our own descriptor; close(2) is async-signal-safe.
            unsafe { libc::close(fd) };
        }
    }
    let fd = DIR.load(Ordering::SeqCst);
    if fd != UNSET {
        return (fd >= 0).then_some(fd);
    }
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic and closes a descriptor.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    // SAFETY: a NUL-terminated literal path; the descriptor is kept in `DIR` (or closed).
    let new = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let new = if new >= 0 { new } else { FAILED };
    match DIR.compare_exchange(UNSET, new, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => (new >= 0).then_some(new),
        Err(other) => {
            // Another thread opened it first: use that one.
            if new >= 0 {
                // SAFETY: the descriptor just opened, never shared.
                unsafe { libc::close(new) };
            }
            (other >= 0).then_some(other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    /// Both ways of opening: only regular files (and block devices) are opened for reading, and
    /// no symlink on the path is followed, wherever it sits.
    #[test]
    fn open_image_reads_only_plain_files_reached_without_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().canonicalize().unwrap();
        std::fs::create_dir(dir.join("real")).unwrap();
        std::fs::write(dir.join("real/img"), b"QFI").unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.join("real/img"), dir.join("real/img-link")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("real/fifo").to_str().unwrap()).unwrap();
        // SAFETY: plain mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut buf = Vec::new();
        open_image(&dir.join("real/img"))
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap();
        assert_eq!(buf, b"QFI");
        for bad in ["link/img", "real/img-link", "real/fifo"] {
            let e = open_image(&dir.join(bad)).unwrap_err();
            assert!(
                e.contains("symbolic link") || e.contains(NOT_AN_IMAGE),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            open_image(Path::new("/dev/null")).unwrap_err(),
            NOT_AN_IMAGE
        );
        assert!(open_image(&dir.join("real/missing")).is_err());
        // The fallback walk, on its own.
        let kind = |p: &str| {
            paths::open_path_walk(&dir.join(p))
                .map(|fd| File::from(fd).metadata().unwrap().file_type())
        };
        assert!(kind("real/img").unwrap().is_file());
        assert!(kind("link/img").is_err());
        assert!(kind("real/img-link").unwrap().is_symlink());
        assert!(kind("real/fifo").unwrap().is_fifo());
    }

    #[test]
    fn images_reopen_through_the_kept_proc_directory() {
        let dir = proc_fd_dir().expect("/proc/self/fd opens");
        assert_eq!(proc_fd_dir(), Some(dir), "kept");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().canonicalize().unwrap().join("img");
        std::fs::write(&f, b"QFI\xfb").unwrap();
        for _ in 0..3 {
            let mut buf = Vec::new();
            open_image(&f).unwrap().read_to_end(&mut buf).unwrap();
            assert_eq!(buf, b"QFI\xfb");
        }
    }

    #[test]
    fn proc_fd_paths() {
        let mut b = [0u8; 32];
        assert_eq!(proc_fd_path(0, &mut b).to_bytes(), b"/proc/self/fd/0");
        assert_eq!(proc_fd_path(7, &mut b).to_bytes(), b"/proc/self/fd/7");
        assert_eq!(proc_fd_path(1024, &mut b).to_bytes(), b"/proc/self/fd/1024");
        assert_eq!(
            proc_fd_path(i32::MAX, &mut b).to_bytes(),
            b"/proc/self/fd/2147483647"
        );
    }

    #[test]
    fn protocol_names() {
        assert_eq!(local_name("base.qcow2"), Ok("base.qcow2"));
        assert_eq!(local_name("/a/b:c.qcow2"), Ok("/a/b:c.qcow2"));
        assert_eq!(local_name("dir/b:c"), Ok("dir/b:c"));
        assert_eq!(local_name("file:/a/b"), Ok("/a/b"));
        for n in [
            "nbd://host/x",
            "nbd+unix:///exp?socket=/s",
            "rbd:pool/img:id=admin:key=SECRET",
            "gluster://h/v/i",
            "https://u:pw@h/i",
            "iscsi://h/iqn/0",
            "ssh://h/i",
            "json:{\"file\":{\"driver\":\"file\",\"filename\":\"/x\"}}",
            "file:relative",
            "a:b",
            ":x",
        ] {
            let e = local_name(n).unwrap_err();
            assert!(!e.contains("SECRET") && !e.contains("pw"), "{e}");
        }
        assert!(local_name("rbd:pool/img").unwrap_err().contains("rbd:"));
        assert!(
            local_name("we\nird:x")
                .unwrap_err()
                .contains("unrecognised")
        );
    }
}
