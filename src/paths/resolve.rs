//! Resolving a path the way the kernel will when QEMU opens it: the [`Resolver`] one derivation
//! owns (it remembers what it saw), the one-off [`resolve`], and the opens by descriptor that
//! refuse symlinks on the way.

use super::{MAX_PATH_BYTES, PathError, validate};
use super::{PathMap, PathSet};
use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path before we give up (the kernel's limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Resolves paths for one derivation and remembers what it saw, so that a guest with a thousand
/// disks over one base image stats each directory and resolves each backing name once.
///
/// One value per derivation (the derive context owns it and lends it to the backing-chain
/// prober): a long-running process never trusts an answer from an earlier guest, and whether the
/// prober may open a file is decided from the file type this resolver saw, not from a cache
/// filled elsewhere. Keys are the paths' bytes: `Path`'s own `Hash` re-parses the components on
/// every lookup, which showed up in profiles of 1000-disk guests. (The default, keyed SipHash
/// stays: the paths come from hostile XML, so no predictable hash.)
#[derive(Debug, Default)]
pub struct Resolver {
    /// Directories seen to exist and not be symlinks.
    plain_dirs: PathSet<OsString>,
    /// The file type seen for each existing path [`Resolver::resolve`] returned: the prober must
    /// know it *before* it opens a file (see [`Resolver::seen_file_type`]), and this saves it a
    /// second `stat`.
    final_types: PathMap<OsString, FileKind>,
    /// Whole answers by the raw string, for [`Resolver::resolve_repeated`].
    answers: PathMap<String, Result<PathBuf, PathError>>,
    /// The member of `plain_dirs` the last walk started from (see [`Resolver::walk`]): a string
    /// comparison instead of a hash for the next disk in the same directory.
    last_dir: String,
    /// How many walks in a row started from `last_dir`.
    last_dir_walks: u32,
    /// An `O_PATH` descriptor of `last_dir`, opened once a third walk in a row starts there
    /// (`Some(None)`: it could not be opened): a disk in that directory is then `lstat`ed by
    /// its name in it, and the kernel does not walk the whole path again for each. (Images are
    /// still opened by `backing::chain::open_image`, on their whole path.)
    last_dir_fd: Option<Option<OwnedFd>>,
    /// Whether only root can change `last_dir`'s entries (see [`sealed`]).
    last_dir_sealed: bool,
    /// A sealed `last_dir`'s entries and their types, read once (see [`read_entries`]); a
    /// type of `None` is one the filesystem does not report in its listing.
    last_dir_entries: Option<PathMap<OsString, Option<FileKind>>>,
    /// How many files this resolver was made for (see [`Resolver::with_capacity`]).
    expected_files: usize,
    /// The last path found in `last_dir` that is a regular file or block device, with the
    /// `O_PATH` descriptor that found it, or none when `last_dir` is sealed (see
    /// [`Resolver::take_found`]).
    held: Option<(PathBuf, Option<OwnedFd>)>,
}

/// How to open an image for reading: the file itself, never blocking (a FIFO swapped in must
/// not hang the hook), never becoming our controlling terminal.
pub(crate) const IMAGE_READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

/// A file resolution found by name in `last_dir` to be a regular file or block device, for the
/// image prober (see [`Resolver::take_found`]).
#[derive(Debug)]
pub enum Found {
    /// Its `O_PATH` descriptor: the prober reopens that very inode for reading.
    Handle(OwnedFd),
    /// Already open for reading (`IMAGE_READ_FLAGS`, `O_NOFOLLOW`), by name in a sealed
    /// directory, where the name still means what resolution saw.
    Opened(std::fs::File),
}

/// Whether only root can change a directory's entries: owned by root and writable by neither
/// group nor others (a POSIX ACL that grants anyone write shows in the group bits as its mask).
/// There a name found to be a regular file stays one — no one but root (trusted) can swap in a
/// device node or FIFO — so it can be opened by name for reading right away, without the
/// `O_PATH` descriptor reopened through `/proc/self/fd` that an open directory needs: on a
/// thousand-disk guest, one `openat` instead of `openat` + `fstat` + `openat` + `close`
/// per image, and the `/proc` reopen was the dearest of them. (A QEMU run as root could still
/// replace its own image in such a directory, but only with a file or FIFO: its profile grants
/// no `mknod` capability, so no device node, and a FIFO opens non-blocking and reads empty.)
fn sealed(st: &libc::stat) -> bool {
    st.st_uid == 0 && st.st_mode & 0o022 == 0
}

/// The type of file resolution saw at a path (its `S_IFMT` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind(libc::mode_t);

impl FileKind {
    pub fn is_dir(self) -> bool {
        self.0 == libc::S_IFDIR
    }
    pub fn is_symlink(self) -> bool {
        self.0 == libc::S_IFLNK
    }
    pub fn is_file(self) -> bool {
        self.0 == libc::S_IFREG
    }
    pub fn is_block_device(self) -> bool {
        self.0 == libc::S_IFBLK
    }
}

impl From<std::fs::FileType> for FileKind {
    fn from(t: std::fs::FileType) -> Self {
        FileKind(if t.is_dir() {
            libc::S_IFDIR
        } else if t.is_symlink() {
            libc::S_IFLNK
        } else if t.is_file() {
            libc::S_IFREG
        } else if t.is_block_device() {
            libc::S_IFBLK
        } else if t.is_char_device() {
            libc::S_IFCHR
        } else if t.is_fifo() {
            libc::S_IFIFO
        } else if t.is_socket() {
            libc::S_IFSOCK
        } else {
            0
        })
    }
}

/// `name` NUL-terminated in `buf`, if it fits and holds no NUL of its own.
fn c_name<'b>(name: &[u8], buf: &'b mut [u8; 256]) -> Option<&'b std::ffi::CStr> {
    if name.is_empty() || name.len() >= buf.len() || name.contains(&0) {
        return None;
    }
    buf[..name.len()].copy_from_slice(name);
    buf[name.len()] = 0;
    std::ffi::CStr::from_bytes_with_nul(&buf[..=name.len()]).ok()
}

impl Resolver {
    /// A resolver that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A resolver that has seen nothing yet, with room to remember about `files` paths without
    /// regrowing (a guest's disks: each regrowth rehashes every key).
    pub fn with_capacity(files: usize) -> Self {
        Resolver {
            final_types: PathMap::with_capacity_and_hasher(files, Default::default()),
            expected_files: files,
            ..Self::default()
        }
    }

    /// [`resolve`] `raw`, using (and filling) this resolver's memory of directories and file
    /// types.
    pub fn resolve(&mut self, raw: &str) -> Result<PathBuf, PathError> {
        self.walk(raw)
    }

    /// [`Resolver::resolve`] for names that repeat across the disks of a guest (backing files,
    /// VMDK extents): the whole answer is kept and a repeated name costs one lookup. Paths that
    /// are granted once (each disk's own) do not pay for keeping it.
    pub fn resolve_repeated(&mut self, raw: &str) -> Result<PathBuf, PathError> {
        if let Some(r) = self.answers.get(raw) {
            return r.clone();
        }
        let r = self.walk(raw);
        self.answers.insert(raw.to_string(), r.clone());
        r
    }

    /// The file type seen at `resolved` (a path this resolver returned), if the path existed then.
    pub fn seen_file_type(&self, resolved: &Path) -> Option<FileKind> {
        self.final_types.get(resolved.as_os_str()).copied()
    }

    /// `path`'s last component and the open descriptor of its directory, when that directory
    /// is `last_dir` and its descriptor is open.
    fn in_last_dir<'p>(&self, path: &'p Path) -> Option<(libc::c_int, &'p [u8])> {
        let fd = self.last_dir_fd.as_ref()?.as_ref()?.as_raw_fd();
        let name = path
            .as_os_str()
            .as_bytes()
            .strip_prefix(self.last_dir.as_bytes())?
            .strip_prefix(b"/")?;
        (!name.contains(&b'/')).then_some((fd, name))
    }

    /// `lstat` of `path`, by name in `last_dir` when `path` is in it.
    ///
    /// There the name is opened with `O_PATH|O_NOFOLLOW` in the directory's descriptor (itself
    /// reached with no symlink on its path) and the type read from that descriptor (`fstat`),
    /// which tells what `lstat` tells: a symlink is found as a symlink, never followed. A
    /// regular file or block device keeps its descriptor (see [`Resolver::take_found`]): the
    /// image prober reopens it for reading instead of opening and checking the path again,
    /// which spares a thousand-disk guest a thousand path walks and `fstat`s. In a [`sealed`]
    /// directory the name is `fstatat`ed instead (no descriptor), and the prober's open is one
    /// `openat` by that name.
    fn lstat(&mut self, path: &Path) -> std::io::Result<FileKind> {
        let mut buf = [0u8; 256];
        if let Some((fd, name)) = self.in_last_dir(path) {
            if let Some(c) = c_name(name, &mut buf) {
                if self.last_dir_sealed {
                    if let Some(entries) = &self.last_dir_entries {
                        match entries.get(OsStr::from_bytes(name)) {
                            Some(Some(kind)) => {
                                let kind = *kind;
                                if kind.is_file() || kind.is_block_device() {
                                    self.hold(path, None);
                                }
                                return Ok(kind);
                            }
                            None => return Err(std::io::ErrorKind::NotFound.into()),
                            // The listing did not say: ask the file itself.
                            Some(None) => {}
                        }
                    }
                    // SAFETY: a zeroed `stat` is a valid value to be overwritten.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: `fd` is an open directory descriptor owned by `self`, `c` is
                    // NUL-terminated and `st` a valid, writable `stat`.
                    if unsafe { libc::fstatat(fd, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }
                        != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    let kind = FileKind(st.st_mode & libc::S_IFMT);
                    if kind.is_file() || kind.is_block_device() {
                        self.hold(path, None);
                    }
                    return Ok(kind);
                }
                // SAFETY: `fd` is an open directory descriptor owned by `self` and `c` is
                // NUL-terminated; the returned descriptor is new and owned below.
                let r = unsafe {
                    libc::openat(
                        fd,
                        c.as_ptr(),
                        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: a fresh descriptor from the kernel.
                let opened = unsafe { OwnedFd::from_raw_fd(r) };
                // SAFETY: a zeroed `stat` is a valid value to be overwritten.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `opened` is open and ours; `st` is a valid, writable `stat`.
                if unsafe { libc::fstat(opened.as_raw_fd(), &mut st) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let kind = FileKind(st.st_mode & libc::S_IFMT);
                if kind.is_file() || kind.is_block_device() {
                    self.hold(path, Some(opened));
                }
                return Ok(kind);
            }
        }
        std::fs::symlink_metadata(path).map(|m| FileKind::from(m.file_type()))
    }

    /// Remember `path` as just found in `last_dir` (reusing the path buffer).
    fn hold(&mut self, path: &Path, handle: Option<OwnedFd>) {
        let mut p = self.held.take().map(|(p, _)| p).unwrap_or_default();
        p.clear();
        p.push(path);
        self.held = Some((p, handle));
    }

    /// `resolved`, if resolution just found it by name in a directory reached with no symlink
    /// on its path to be a regular file or block device: its `O_PATH` descriptor, or, in a
    /// sealed directory, the file opened for reading (taken: asked again, `None`).
    pub fn take_found(&mut self, resolved: &Path) -> Option<std::io::Result<Found>> {
        match &self.held {
            Some((p, _)) if p.as_os_str() == resolved.as_os_str() => {}
            _ => return None,
        }
        let (_, handle) = self.held.take()?;
        if let Some(h) = handle {
            return Some(Ok(Found::Handle(h)));
        }
        let (fd, name) = self.in_last_dir(resolved)?;
        let mut buf = [0u8; 256];
        let c = c_name(name, &mut buf)?;
        // SAFETY: `fd` is an open directory descriptor owned by `self`, `c` is NUL-terminated;
        // the returned descriptor is new and owned below.
        let r = unsafe { libc::openat(fd, c.as_ptr(), IMAGE_READ_FLAGS | libc::O_NOFOLLOW) };
        if r < 0 {
            return Some(Err(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor from the kernel.
        Some(Ok(Found::Opened(unsafe { std::fs::File::from_raw_fd(r) })))
    }

    /// The walk itself, using (and filling) the directory and file-type memory.
    fn walk(&mut self, raw: &str) -> Result<PathBuf, PathError> {
        validate(raw)?;
        let mut out = PathBuf::with_capacity(raw.len() + 1);
        // Components still to walk, last first: borrowed from `raw`, owned only for the ones a
        // symlink's target brings in.
        let mut pending: Vec<Cow<'_, OsStr>> = Vec::new();
        match raw.rsplit_once('/') {
            // `<dir>/<name>` with `<dir>` a directory this resolver has seen (its entries are
            // clean, and so are their ancestors, all seen too): the walk would find every
            // component of `<dir>` in memory and go on from `<dir>` with `<name>`, so it starts
            // there (a guest's disks mostly share a directory).
            Some((dir, name))
                if !dir.is_empty()
                    && !matches!(name, "" | "." | "..")
                    && (self.last_dir == dir || self.plain_dirs.contains(OsStr::new(dir))) =>
            {
                if self.last_dir != dir {
                    self.last_dir.clear();
                    self.last_dir.push_str(dir);
                    self.last_dir_walks = 0;
                    self.last_dir_fd = None;
                    self.last_dir_sealed = false;
                    self.last_dir_entries = None;
                }
                self.last_dir_walks += 1;
                if self.last_dir_walks >= 3 && self.last_dir_fd.is_none() {
                    let opened = open_dir_nofollow(dir);
                    self.last_dir_sealed = opened.as_ref().is_some_and(|(_, s)| *s);
                    if self.last_dir_sealed && self.expected_files >= LIST_FROM_FILES {
                        let fd = opened.as_ref().map(|(fd, _)| fd.as_raw_fd());
                        self.last_dir_entries =
                            fd.and_then(|fd| read_entries(fd, self.expected_files * 4 + 64));
                    }
                    self.last_dir_fd = Some(opened.map(|(fd, _)| fd));
                }
                out.push(dir);
                pending.push(Cow::Borrowed(OsStr::new(name)));
            }
            _ => {
                out.push("/");
                pending.extend(Path::new(raw).components().rev().filter_map(|c| match c {
                    Component::Normal(n) => Some(Cow::Borrowed(n)),
                    Component::ParentDir => Some(Cow::Borrowed(OsStr::new(".."))),
                    _ => None,
                }));
            }
        }
        let mut exists = true;
        let mut links = 0usize;
        while let Some(comp) = pending.pop() {
            if comp == OsStr::new("..") {
                out.pop();
                continue;
            }
            out.push(&comp);
            if !exists {
                continue;
            }
            let intermediate = !pending.is_empty();
            if intermediate && self.plain_dirs.contains(out.as_os_str()) {
                continue;
            }
            match self.lstat(&out) {
                Ok(m) if m.is_dir() => {
                    if intermediate {
                        self.plain_dirs.insert(out.as_os_str().to_os_string());
                    } else {
                        self.final_types.insert(out.as_os_str().to_os_string(), m);
                    }
                }
                Ok(m) if m.is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(PathError::SymlinkLoop(raw.to_string()));
                    }
                    let target = match std::fs::read_link(&out) {
                        Ok(t) => t,
                        Err(_) => {
                            exists = false;
                            continue;
                        }
                    };
                    out.pop();
                    if target.is_absolute() {
                        out = PathBuf::from("/");
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => pending.push(Cow::Owned(n.to_os_string())),
                            Component::ParentDir => pending.push(Cow::Borrowed(OsStr::new(".."))),
                            _ => {}
                        }
                    }
                }
                Ok(m) => {
                    if !intermediate {
                        self.final_types.insert(out.as_os_str().to_os_string(), m);
                    }
                }
                Err(_) => exists = false,
            }
        }
        if out.as_os_str().len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(out)
    }
}

/// From how many files (a guest's disks) a sealed directory's listing is read once instead of
/// `fstatat`ing each name in it.
const LIST_FROM_FILES: usize = 16;

/// The entries of the directory open as `dir` (an `O_PATH` descriptor) with the types its
/// listing reports, or `None` when it has more than `max` entries or cannot be read.
///
/// Only for a [`sealed`] directory: there an entry's type changes only by root's hand, so the
/// listing tells what `fstatat` would, for all names at once — one `getdents64` for a
/// directory of a thousand images instead of a thousand `fstatat`s (a third of the cost). The
/// bound keeps a huge shared directory from costing more than the lookups it replaces.
fn read_entries(dir: libc::c_int, max: usize) -> Option<PathMap<OsString, Option<FileKind>>> {
    // SAFETY: `dir` is an open directory descriptor; "." is NUL-terminated. The new descriptor
    // is handed to `fdopendir`, which owns it from then on (`closedir` closes it).
    let fd = unsafe {
        libc::openat(
            dir,
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a directory descriptor we just opened.
    let stream = unsafe { libc::fdopendir(fd) };
    if stream.is_null() {
        // SAFETY: `fdopendir` failed, so `fd` is still ours to close.
        unsafe { libc::close(fd) };
        return None;
    }
    let mut map = PathMap::with_capacity_and_hasher(max.min(4096), Default::default());
    let complete = loop {
        // SAFETY: `stream` is a valid directory stream until `closedir` below.
        let e = unsafe { libc::readdir(stream) };
        if e.is_null() {
            break true;
        }
        if map.len() >= max {
            break false;
        }
        // SAFETY: `readdir` returned a valid entry whose `d_name` is NUL-terminated.
        let (name, d_type) = unsafe {
            (
                std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_bytes(),
                (*e).d_type,
            )
        };
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match d_type {
            libc::DT_REG => Some(libc::S_IFREG),
            libc::DT_DIR => Some(libc::S_IFDIR),
            libc::DT_LNK => Some(libc::S_IFLNK),
            libc::DT_BLK => Some(libc::S_IFBLK),
            libc::DT_CHR => Some(libc::S_IFCHR),
            libc::DT_FIFO => Some(libc::S_IFIFO),
            libc::DT_SOCK => Some(libc::S_IFSOCK),
            _ => None,
        };
        map.insert(OsStr::from_bytes(name).to_os_string(), kind.map(FileKind));
    };
    // SAFETY: `stream` came from `fdopendir` and is closed once.
    unsafe { libc::closedir(stream) };
    complete.then_some(map)
}

/// An `O_PATH` descriptor of the directory `dir`, reached with no symlink on its path (as
/// `backing::chain::open_image` reaches an image), if it opens and is a directory; and whether
/// it is [`sealed`].
fn open_dir_nofollow(dir: &str) -> Option<(OwnedFd, bool)> {
    let fd = open_path_no_symlinks(dir).ok()?;
    // SAFETY: a zeroed `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and ours; `st` is a valid, writable `stat`.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    (r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR).then(|| (fd, sealed(&st)))
}

/// Set once `openat2` failed with `ENOSYS`/`EPERM` (an old kernel, a seccomp filter): those do
/// not change while the process runs, so later opens go straight to [`open_path_walk`] instead
/// of one failing system call each.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `openat2` was found missing (see [`set_openat2_unavailable`]).
pub(crate) fn openat2_unavailable() -> bool {
    NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed)
}

/// Remember that `openat2` failed with `ENOSYS` or `EPERM`.
pub(crate) fn set_openat2_unavailable() {
    NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// An `O_PATH` descriptor of `path` reached with no symlink anywhere on it: `openat2` with
/// `RESOLVE_NO_SYMLINKS`, or [`open_path_walk`] where `openat2` is missing.
fn open_path_no_symlinks(path: &str) -> std::io::Result<OwnedFd> {
    if !openat2_unavailable() {
        let c = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
        match openat2_path(&c) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                set_openat2_unavailable();
            }
            r => return r,
        }
    }
    open_path_walk(Path::new(path))
}

/// `openat2(AT_FDCWD, path, O_PATH|O_NOFOLLOW|O_CLOEXEC, RESOLVE_NO_SYMLINKS)`.
pub(crate) fn openat2_path(path: &std::ffi::CStr) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: `open_how` is plain data (non-exhaustive, so built from zeroes).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: valid path and `open_how` pointers with the struct's size, as openat2(2) takes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

/// The fallback for kernels without `openat2`: open `/`, then each component relative to the
/// last with `O_PATH|O_NOFOLLOW` (directories also `O_DIRECTORY`), so no symlink is followed
/// anywhere on the path.
pub(crate) fn open_path_walk(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let open_at = |dir: libc::c_int, name: &[u8], extra: libc::c_int| -> std::io::Result<OwnedFd> {
        let c = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        // SAFETY: NUL-terminated name, a directory descriptor we own (or AT_FDCWD).
        let fd = unsafe {
            libc::openat(
                dir,
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor from the kernel.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut cur = open_at(libc::AT_FDCWD, b"/", libc::O_DIRECTORY)?;
    let comps: Vec<&[u8]> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect();
    for (i, name) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        cur = open_at(
            cur.as_raw_fd(),
            name,
            if last { 0 } else { libc::O_DIRECTORY },
        )?;
    }
    Ok(cur)
}

/// Resolve a path the way the kernel will when QEMU opens it: symlinks in the existing part are
/// followed (component by component, so `link/..` means the link target's parent), the
/// non-existent remainder is normalised lexically. The result is absolute and clean.
/// A one-off; a derivation resolves through its own [`Resolver`].
pub fn resolve(raw: &str) -> Result<PathBuf, PathError> {
    Resolver::new().walk(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_symlinks_then_lexical() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc-link")).unwrap();
        let base = d.path().canonicalize().unwrap();
        let got = resolve(&format!("{}/link/./x//y/../z.img", d.path().display())).unwrap();
        assert_eq!(got, base.join("real/x/z.img"));
        let got = resolve(&format!("{}/etc-link/shadow", d.path().display())).unwrap();
        assert_eq!(got, PathBuf::from("/etc/shadow"));
        // `..` after a symlink applies to the target, as in the kernel.
        let got = resolve(&format!("{}/etc-link/../tmp/q", d.path().display())).unwrap();
        assert_eq!(got, PathBuf::from("/tmp/q"));
        std::os::unix::fs::symlink("loop2", d.path().join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", d.path().join("loop2")).unwrap();
        assert!(matches!(
            resolve(&format!("{}/loop1/x", d.path().display())),
            Err(PathError::SymlinkLoop(_))
        ));
    }

    #[test]
    fn a_resolver_remembers_only_what_it_resolved() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("disk.img");
        std::fs::write(&f, b"x").unwrap();
        let mut r = Resolver::new();
        let got = r.resolve(f.to_str().unwrap()).unwrap();
        assert!(r.seen_file_type(&got).is_some_and(|t| t.is_file()));
        assert_eq!(r.resolve_repeated(f.to_str().unwrap()).unwrap(), got);
        assert_eq!(r.resolve_repeated(f.to_str().unwrap()).unwrap(), got);
        // A new derivation's resolver trusts nothing from an earlier one.
        assert!(Resolver::new().seen_file_type(&got).is_none());
        assert_eq!(resolve(f.to_str().unwrap()).unwrap(), got);
    }

    #[test]
    fn a_directory_walked_into_again_and_again_gives_the_same_answers() {
        // A directory only root can change (the temporary directory as root: 0700) and one
        // anyone can write to.
        for files in [0, LIST_FROM_FILES] {
            same_answers_in(0o700, files);
            same_answers_in(0o777, files);
        }
    }

    #[test]
    fn a_listing_longer_than_its_bound_is_not_kept() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(d.path().join(format!("f{i}")), b"").unwrap();
        }
        std::os::unix::fs::symlink("f0", d.path().join("l")).unwrap();
        let dir = open_dir_nofollow(d.path().to_str().unwrap()).unwrap().0;
        assert!(read_entries(dir.as_raw_fd(), 10).is_none());
        let all = read_entries(dir.as_raw_fd(), 11).unwrap();
        assert_eq!(all.len(), 11, "no . or ..");
        assert!(all[OsStr::new("f3")].unwrap().is_file());
        assert!(all[OsStr::new("l")].unwrap().is_symlink());
    }

    fn same_answers_in(mode: u32, files: usize) {
        use std::os::unix::fs::PermissionsExt;
        // From the third path in a row in one directory on, names are looked up in that
        // directory's descriptor: the answers must not change.
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().canonicalize().unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        // SAFETY: geteuid cannot fail.
        let sealed = unsafe { libc::geteuid() } == 0 && mode & 0o022 == 0;
        let other = tempfile::tempdir().unwrap();
        let other = other.path().canonicalize().unwrap();
        std::fs::write(other.join("target.img"), b"T").unwrap();
        for i in 0..5 {
            std::fs::write(dir.join(format!("f{i}.img")), format!("{i}")).unwrap();
        }
        std::os::unix::fs::symlink(other.join("target.img"), dir.join("link.img")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        let mut r = Resolver::with_capacity(files);
        for round in 0..2 {
            for i in 0..5 {
                let p = dir.join(format!("f{i}.img"));
                let got = r.resolve(p.to_str().unwrap()).unwrap();
                assert_eq!(got, p, "round {round}");
                assert!(r.seen_file_type(&got).unwrap().is_file());
                // From the third walk in a row in the directory on (the first one was not
                // there yet), the file was found by name in the directory's descriptor and is
                // handed over once: in a sealed directory already open for reading, else as
                // its `O_PATH` descriptor.
                if round == 1 || i >= 3 {
                    let mut content = String::new();
                    match r.take_found(&got).expect("held").unwrap() {
                        Found::Opened(mut f) => {
                            assert!(sealed, "opened by name only in a sealed directory");
                            std::io::Read::read_to_string(&mut f, &mut content).unwrap();
                        }
                        Found::Handle(fd) => {
                            assert!(!sealed, "a sealed directory's files are opened by name");
                            let meta = std::fs::File::from(fd).metadata().unwrap();
                            content = "x".repeat(meta.len() as usize);
                        }
                    }
                    assert_eq!(content.len(), 1);
                    assert!(r.take_found(&got).is_none(), "taken");
                }
            }
            let link = dir.join("link.img");
            let got = r.resolve(link.to_str().unwrap()).unwrap();
            assert_eq!(got, other.join("target.img"));
            assert!(r.seen_file_type(&got).unwrap().is_file());
            // A symlink is never held, nor is its target outside the directory.
            assert!(r.take_found(&link).is_none());
            assert!(r.take_found(&got).is_none());
            let sub = dir.join("sub");
            let got = r.resolve(sub.to_str().unwrap()).unwrap();
            assert!(r.seen_file_type(&got).unwrap().is_dir());
            let gone = dir.join("gone.img");
            assert_eq!(r.resolve(gone.to_str().unwrap()).unwrap(), gone);
            assert!(r.seen_file_type(&gone).is_none());
            assert!(r.take_found(&gone).is_none());
            assert!(r.take_found(&sub).is_none());
        }
        assert!(
            r.last_dir_fd.as_ref().is_some_and(|f| f.is_some()),
            "the directory descriptor was used"
        );
        assert_eq!(r.last_dir_sealed, sealed);
        // A sealed directory of a guest with many files was listed once.
        assert_eq!(
            r.last_dir_entries.is_some(),
            sealed && files >= LIST_FROM_FILES
        );
    }
}
