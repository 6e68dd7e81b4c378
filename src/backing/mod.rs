//! Backing-chain discovery from image headers (qcow2, qcow, QED, VMDK).
//!
//! When the domain XML has no `<backingStore>`, QEMU still opens every image named in the
//! overlay's header, so the profile must grant them (read-only) or the guest fails to start.
//! We read the same header fields QEMU reads and resolve the names the same way.
//!
//! Security is the point of this module, not an afterthought:
//! - an image whose format is `raw` or undeclared is never probed: the guest can write any header
//!   into its own raw disk, and probing it would let the guest choose which host files it gets
//!   (the reason libvirt does not probe raw either);
//! - a backing image's format is the one recorded in its parent's header; only when none is
//!   recorded do we look at magic bytes, and then (like libvirt) an image found that way may not
//!   pull in further images;
//! - images are opened without following any symlink and read only when the descriptor is a
//!   regular file or block device (`chain::open_image`); *whether* a file the chain names may be
//!   granted is not decided here but by [`crate::reach`] (the guest wrote the header);
//! - reads are bounded ([`MAX_HEADER_BYTES`], the formats' own name limits), parsing is a pure
//!   function ([`parse_header`]) that is fuzzed, and every failure becomes a one-line warning that
//!   stops the chain, never a panic or an error for the caller.
//!
//! The parts: `header` parses qcow, qcow2 and QED headers (pure, fuzzed), `vmdk` the VMDK
//! sparse header, descriptor text and extent names, `field` the byte readers both use (so
//! `vmdk` does not import `header`, which imports it), `chain` walks the chain on disk (what may
//! be opened, how names are joined and resolved, loops, depth). The walk's tests run against
//! images made by the real qemu-img and live with the integration tests (tests/backing.rs).

mod chain;
mod field;
mod header;
mod vmdk;

pub use chain::{HeaderCache, Top, probe_chain};
pub use header::parse_header;
pub use vmdk::vmdk_extents;

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// Most bytes read from the start of an image. Every header QEMU writes (and the VMDK descriptor
/// at sector 1) fits well within this; anything placed further out is refused rather than read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Longest backing name accepted from any format (Linux `PATH_MAX`, and QEMU's own buffer).
/// Individual formats are stricter: qcow and qcow2 allow 1023 bytes.
pub const MAX_BACKING_NAME_BYTES: usize = 4096;

/// Result of probing one image's backing chain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Backing images below `top`, nearest first, each resolved to an absolute path, and the
    /// data extents of those images (all opened read-only by QEMU).
    pub links: Vec<PathBuf>,
    /// For each of `links`, the resolved image whose header (or VMDK descriptor) named it: the
    /// file a refusal points at (see [`crate::reach`]).
    pub named_by: Vec<PathBuf>,
    /// Data extents of `top` itself (a VMDK text descriptor's files), resolved: QEMU opens them
    /// as it opens `top`, so they need the disk's own permissions.
    pub top_extents: Vec<PathBuf>,
    /// Human-readable, one-line warnings (unreadable image, loop, depth limit, network backing).
    pub warnings: Vec<String>,
}

/// The image formats whose headers we understand, plus `Raw` for "anything else": a file with no
/// magic we recognise is data, and data never names another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// QEMU's original copy-on-write format (qcow version 1).
    Qcow,
    /// qcow2 (versions 2 and 3), the format nearly every overlay uses.
    Qcow2,
    /// QEMU Enhanced Disk.
    Qed,
    /// VMware disk: a sparse extent (`KDMV`) or a text descriptor.
    Vmdk,
    /// Plain data, or a format without backing files: never probed.
    Raw,
}

impl ImageFormat {
    /// The format named the way libvirt's `<driver type=…>` and QEMU's backing-format fields
    /// name it; `None` for names we do not parse (callers treat those as the end of the chain).
    pub fn from_name(name: &str) -> Option<ImageFormat> {
        match name {
            "qcow" => Some(ImageFormat::Qcow),
            "qcow2" => Some(ImageFormat::Qcow2),
            "qed" => Some(ImageFormat::Qed),
            "vmdk" => Some(ImageFormat::Vmdk),
            "raw" => Some(ImageFormat::Raw),
            _ => None,
        }
    }

    /// The libvirt/QEMU name of the format, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qcow => "qcow",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Qed => "qed",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Raw => "raw",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one image header says about the next image down, as QEMU would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format recognised from the magic bytes (`Raw` when none matched).
    pub format: ImageFormat,
    /// Backing file name exactly as recorded (not yet joined or resolved); `None` when there is
    /// none. Cut at the first NUL, as QEMU's C strings are; never longer than
    /// [`MAX_BACKING_NAME_BYTES`].
    pub backing: Option<String>,
    /// Format of the backing file as recorded in this header (`None`: not recorded, so the
    /// backing file's format has to be detected).
    pub backing_format: Option<String>,
    /// Data extent files a VMDK text descriptor names (as recorded, not yet joined or resolved),
    /// the ones QEMU opens: see [`vmdk_extents`]. Empty for every other format.
    pub extents: Vec<String>,
    /// The descriptor text filled everything we read: extents named further on are unknown.
    pub extents_cut: bool,
}

/// Why a header could not be read. Each message is one line so it can become a warning as is.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer ends before the fixed part of the header does.
    #[error("{format} header is truncated ({have} bytes, need {need})")]
    Truncated {
        format: ImageFormat,
        need: usize,
        have: usize,
    },
    /// A version of the format QEMU would refuse too.
    #[error("{format} version {version} is not supported")]
    UnsupportedVersion { format: ImageFormat, version: u32 },
    /// A header field outside the range the format allows (corrupt or hostile image).
    #[error("{format} header field {field} has an invalid value {value}")]
    InvalidField {
        format: ImageFormat,
        field: &'static str,
        value: u64,
    },
    /// A name longer than the format allows.
    #[error("{format} {what} is {len} bytes, more than the format allows ({max})")]
    TooLong {
        format: ImageFormat,
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Data the header points to lies past what was read (or past the end of the file).
    #[error("{format} {what} at bytes {start}..{end} lies beyond the {have} bytes read")]
    OutOfRange {
        format: ImageFormat,
        what: &'static str,
        start: u64,
        end: u64,
        have: usize,
    },
    /// Text that does not have the shape the format requires.
    #[error("{format} {what} is malformed")]
    Malformed {
        format: ImageFormat,
        what: &'static str,
    },
    /// A name that is not UTF-8: it could not be checked and written into a profile safely.
    #[error("{format} {what} is not valid UTF-8")]
    NotUtf8 {
        format: ImageFormat,
        what: &'static str,
    },
}
