//! Why a file named by an image header (not by the definition) is not granted: the verdicts of
//! [`crate::reach`]'s policy, as errors. Below both `reach` (which judges) and `paths` (whose
//! `PathError` carries a refusal to the guest's one-line error), so neither imports the other's
//! way back.

use std::fmt;
use std::os::unix::fs::FileTypeExt;
use thiserror::Error;

/// What a candidate path is on the host, as far as the policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    BlockDevice,
    CharDevice,
    Fifo,
    Socket,
    Directory,
    /// Nothing there (yet): QEMU will fail to open it; only its place is judged.
    Missing,
}

impl FileKind {
    /// The kind of a file from its (not followed) metadata.
    pub fn of(t: std::fs::FileType) -> FileKind {
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_fifo() {
            FileKind::Fifo
        } else {
            // Sockets, and a symlink (a resolved path holds none; one swapped in since counts
            // as "not a regular file").
            FileKind::Socket
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "regular file",
            FileKind::BlockDevice => "block device",
            FileKind::CharDevice => "character device",
            FileKind::Fifo => "FIFO",
            FileKind::Socket => "socket or other special file",
            FileKind::Directory => "directory",
            FileKind::Missing => "missing file",
        })
    }
}

/// Why a header-named file is not granted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Distrust {
    #[error("another guest's writable disk (guest '{guest}', disk '{disk}')")]
    OtherGuestsDisk { guest: String, disk: String },
    #[error("a {0}, not a regular file")]
    NotRegular(FileKind),
    #[error(
        "outside the directories trusted for images (the guest's own disk directories and image_dirs: {dirs})"
    )]
    Untrusted { dirs: String },
}

/// A refused backing file, ready for the guest's one-line error: which file, what named it,
/// why.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{what} {file} (named by {named_by}) is {why}")]
pub struct Refused {
    /// `backing file`, `data file` or `extent`.
    pub what: &'static str,
    pub file: String,
    pub named_by: String,
    pub why: Distrust,
}
