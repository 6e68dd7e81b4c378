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
//! - reads are bounded ([`MAX_HEADER_BYTES`], the formats' own name limits), parsing is a pure
//!   function ([`parse_header`]) that is fuzzed, and every failure becomes a one-line warning that
//!   stops the chain, never a panic or an error for the caller.

use crate::paths;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Most bytes read from the start of an image. Every header QEMU writes (and the VMDK descriptor
/// at sector 1) fits well within this; anything placed further out is refused rather than read.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Longest backing name accepted from any format (Linux `PATH_MAX`, and QEMU's own buffer).
/// Individual formats are stricter: qcow and qcow2 allow 1023 bytes.
pub const MAX_BACKING_NAME_BYTES: usize = 4096;

/// qcow/qcow2 refuse a `backing_file_size` above this (QEMU: "Backing file name too long").
const QCOW_MAX_BACKING_NAME: u64 = 1023;
/// QEMU keeps a qcow2 backing-format name in a 16-byte C buffer: 15 bytes of name at most.
const QCOW2_MAX_FORMAT_NAME: u64 = 15;
/// qcow2 header extension: name of the backing file's format.
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
/// qcow2 header extension: end of the extension list.
const QCOW2_EXT_END: u32 = 0;
/// Fixed part of a qcow2 version 2 header; version 3 headers are at least 104 bytes.
const QCOW2_V2_HEADER_BYTES: usize = 72;
const QCOW2_V3_MIN_HEADER_BYTES: usize = 104;
/// Fixed part of a qcow (version 1) header.
const QCOW_HEADER_BYTES: usize = 48;
/// Fixed part of a QED header (up to and including the backing name size).
const QED_HEADER_BYTES: usize = 64;
/// QED feature bit: the image has a backing file.
const QED_F_BACKING_FILE: u64 = 1;
/// QED feature bit: the backing file is raw and must not be probed.
const QED_F_BACKING_FORMAT_NO_PROBE: u64 = 4;
/// Fixed part of a VMDK sparse-extent header we look at (magic to descriptorSize).
const VMDK_SPARSE_HEADER_BYTES: usize = 44;
/// QEMU reads the parent hint of a sparse extent at sector 1, whatever `descriptorOffset` says.
const VMDK_SPARSE_DESC_OFFSET: usize = 0x200;
/// QEMU reads at most this much descriptor text when looking for the parent hint.
const VMDK_DESC_BYTES: usize = 20 * 512;
/// The descriptor key naming a VMDK's parent image.
const VMDK_PARENT_KEY: &[u8] = b"parentFileNameHint";

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

/// Result of probing one image's backing chain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Backing images below `top`, nearest first, each resolved to an absolute path, and the
    /// data extents of those images (all opened read-only by QEMU).
    pub links: Vec<PathBuf>,
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

/// Parse the start of an image (at most [`MAX_HEADER_BYTES`] are needed): recognise the format
/// from its magic and extract the backing file name and format. Pure, total and bounded, so it
/// can be fuzzed; anything inconsistent is an error rather than a guess, because a guess here
/// becomes a file the guest may read.
pub fn parse_header(buf: &[u8]) -> Result<Header, HeaderError> {
    match buf.get(0..4) {
        Some(b"QFI\xfb") => {
            if buf.len() < 8 {
                return Err(HeaderError::Truncated {
                    format: ImageFormat::Qcow2,
                    need: 8,
                    have: buf.len(),
                });
            }
            if be32(buf, 4) == 1 {
                parse_qcow(buf)
            } else {
                parse_qcow2(buf)
            }
        }
        Some(b"QED\0") => parse_qed(buf),
        Some(b"KDMV") => parse_vmdk_sparse(buf),
        _ if is_vmdk_descriptor(buf) => parse_vmdk_descriptor(buf),
        _ => Ok(Header {
            format: ImageFormat::Raw,
            backing: None,
            backing_format: None,
            extents: Vec::new(),
            extents_cut: false,
        }),
    }
}

/// Big-endian u32 at `at`; 0 if out of range (callers check lengths first).
fn be32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at.saturating_add(4)) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

/// Big-endian u64 at `at`; 0 if out of range (callers check lengths first).
fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at..at.saturating_add(8)) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

/// Little-endian u32 at `at`; 0 if out of range (callers check lengths first).
fn le32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at.saturating_add(4)) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

/// Little-endian u64 at `at`; 0 if out of range (callers check lengths first).
fn le64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at..at.saturating_add(8)) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Fail with `Truncated` unless the buffer holds the `need` bytes of a fixed header.
fn need(buf: &[u8], format: ImageFormat, need: usize) -> Result<(), HeaderError> {
    if buf.len() < need {
        return Err(HeaderError::Truncated {
            format,
            need,
            have: buf.len(),
        });
    }
    Ok(())
}

/// The `len` bytes at `start`, or `OutOfRange` (overflow-safe: both come from the image).
fn bytes_at<'a>(
    buf: &'a [u8],
    format: ImageFormat,
    what: &'static str,
    start: u64,
    len: u64,
) -> Result<&'a [u8], HeaderError> {
    let end = start.saturating_add(len);
    match (usize::try_from(start), usize::try_from(end)) {
        (Ok(s), Ok(e)) if e <= buf.len() => Ok(&buf[s..e]),
        _ => Err(HeaderError::OutOfRange {
            format,
            what,
            start,
            end,
            have: buf.len(),
        }),
    }
}

/// A C string stored in a fixed-size field: QEMU and libvirt both stop at the first NUL, and an
/// empty name means "none".
fn c_name(
    bytes: &[u8],
    format: ImageFormat,
    what: &'static str,
) -> Result<Option<String>, HeaderError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    if bytes.is_empty() {
        return Ok(None);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Some(s.to_string())),
        Err(_) => Err(HeaderError::NotUtf8 { format, what }),
    }
}

/// qcow (version 1): backing name only, no recorded backing format.
fn parse_qcow(buf: &[u8]) -> Result<Header, HeaderError> {
    let f = ImageFormat::Qcow;
    need(buf, f, QCOW_HEADER_BYTES)?;
    let offset = be64(buf, 8);
    let size = u64::from(be32(buf, 16));
    let mut backing = None;
    if offset != 0 {
        if size > QCOW_MAX_BACKING_NAME {
            return Err(HeaderError::TooLong {
                format: f,
                what: "backing file name",
                len: size,
                max: QCOW_MAX_BACKING_NAME,
            });
        }
        let raw = bytes_at(buf, f, "backing file name", offset, size)?;
        backing = c_name(raw, f, "backing file name")?;
    }
    Ok(Header {
        format: f,
        backing,
        backing_format: None,
        extents: Vec::new(),
        extents_cut: false,
    })
}

/// qcow2 (versions 2 and 3): backing name from the header, backing format from the header
/// extensions, with the same bounds QEMU's `qcow2_do_open` enforces.
fn parse_qcow2(buf: &[u8]) -> Result<Header, HeaderError> {
    let f = ImageFormat::Qcow2;
    let version = be32(buf, 4);
    if version != 2 && version != 3 {
        return Err(HeaderError::UnsupportedVersion { format: f, version });
    }
    need(buf, f, QCOW2_V2_HEADER_BYTES)?;
    let cluster_bits = be32(buf, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(HeaderError::InvalidField {
            format: f,
            field: "cluster_bits",
            value: cluster_bits.into(),
        });
    }
    let cluster_size = 1u64 << cluster_bits;
    let header_length = if version == 2 {
        QCOW2_V2_HEADER_BYTES as u64
    } else {
        need(buf, f, QCOW2_V3_MIN_HEADER_BYTES)?;
        let hl = u64::from(be32(buf, 100));
        if hl < QCOW2_V3_MIN_HEADER_BYTES as u64 || hl > cluster_size {
            return Err(HeaderError::InvalidField {
                format: f,
                field: "header_length",
                value: hl,
            });
        }
        hl
    };

    let offset = be64(buf, 8);
    let size = u64::from(be32(buf, 16));
    let mut backing = None;
    if offset != 0 {
        if offset > cluster_size {
            return Err(HeaderError::InvalidField {
                format: f,
                field: "backing_file_offset",
                value: offset,
            });
        }
        if size > QCOW_MAX_BACKING_NAME {
            return Err(HeaderError::TooLong {
                format: f,
                what: "backing file name",
                len: size,
                max: QCOW_MAX_BACKING_NAME,
            });
        }
        let raw = bytes_at(buf, f, "backing file name", offset, size)?;
        backing = c_name(raw, f, "backing file name")?;
    }

    // Header extensions run from the end of the header to the backing name (or the end of the
    // first cluster). QEMU reads them even without a backing file; so do we, so that a corrupt
    // list is reported the same way. The last backing-format extension wins, as in QEMU.
    let ext_end = if offset != 0 { offset } else { cluster_size };
    let mut pos = header_length;
    let mut backing_format = None;
    while pos < ext_end {
        let ext = bytes_at(buf, f, "header extension", pos, 8)?;
        let kind = be32(ext, 0);
        let len = u64::from(be32(ext, 4));
        pos += 8;
        if kind == QCOW2_EXT_END {
            break;
        }
        if pos.saturating_add(len) > ext_end {
            return Err(HeaderError::InvalidField {
                format: f,
                field: "header extension length",
                value: len,
            });
        }
        if kind == QCOW2_EXT_BACKING_FORMAT {
            if len > QCOW2_MAX_FORMAT_NAME {
                return Err(HeaderError::TooLong {
                    format: f,
                    what: "backing format name",
                    len,
                    max: QCOW2_MAX_FORMAT_NAME,
                });
            }
            let raw = bytes_at(buf, f, "backing format name", pos, len)?;
            backing_format = c_name(raw, f, "backing format name")?;
        }
        pos = pos.saturating_add((len + 7) & !7);
    }

    Ok(Header {
        format: f,
        backing_format: if backing.is_some() {
            backing_format
        } else {
            None
        },
        backing,
        extents: Vec::new(),
        extents_cut: false,
    })
}

/// QED: little-endian header; the backing format is not named, only "raw, do not probe" (a
/// feature bit) or "probe".
fn parse_qed(buf: &[u8]) -> Result<Header, HeaderError> {
    let f = ImageFormat::Qed;
    need(buf, f, QED_HEADER_BYTES)?;
    let cluster_size = le32(buf, 4);
    if !cluster_size.is_power_of_two() || !(4096..=64 << 20).contains(&cluster_size) {
        return Err(HeaderError::InvalidField {
            format: f,
            field: "cluster_size",
            value: cluster_size.into(),
        });
    }
    let header_size = le32(buf, 12);
    let features = le64(buf, 16);
    if features & QED_F_BACKING_FILE == 0 {
        return Ok(Header {
            format: f,
            backing: None,
            backing_format: None,
            extents: Vec::new(),
            extents_cut: false,
        });
    }
    let offset = u64::from(le32(buf, 56));
    let size = u64::from(le32(buf, 60));
    let header_bytes = u64::from(cluster_size) * u64::from(header_size);
    if offset + size > header_bytes {
        return Err(HeaderError::InvalidField {
            format: f,
            field: "backing_filename_offset",
            value: offset,
        });
    }
    // QEMU copies the name into a PATH_MAX buffer with its NUL: 4095 bytes of name at most.
    if size >= MAX_BACKING_NAME_BYTES as u64 {
        return Err(HeaderError::TooLong {
            format: f,
            what: "backing file name",
            len: size,
            max: MAX_BACKING_NAME_BYTES as u64 - 1,
        });
    }
    let raw = bytes_at(buf, f, "backing file name", offset, size)?;
    let backing = c_name(raw, f, "backing file name")?;
    let backing_format = (backing.is_some() && features & QED_F_BACKING_FORMAT_NO_PROBE != 0)
        .then(|| "raw".to_string());
    Ok(Header {
        format: f,
        backing,
        backing_format,
        extents: Vec::new(),
        extents_cut: false,
    })
}

/// VMDK sparse extent: the descriptor text QEMU searches for the parent hint starts at sector 1.
fn parse_vmdk_sparse(buf: &[u8]) -> Result<Header, HeaderError> {
    let f = ImageFormat::Vmdk;
    need(buf, f, VMDK_SPARSE_HEADER_BYTES)?;
    let version = le32(buf, 4);
    if !(1..=3).contains(&version) {
        return Err(HeaderError::UnsupportedVersion { format: f, version });
    }
    // descriptorOffset 0 means "no embedded descriptor"; any other value than sector 1 is a
    // layout QEMU does not read the parent hint from, so we refuse rather than disagree.
    let desc_offset = le64(buf, 28);
    if desc_offset == 0 {
        return Ok(Header {
            format: f,
            backing: None,
            backing_format: None,
            extents: Vec::new(),
            extents_cut: false,
        });
    }
    if desc_offset != 1 {
        return Err(HeaderError::InvalidField {
            format: f,
            field: "descriptorOffset",
            value: desc_offset,
        });
    }
    let start = VMDK_SPARSE_DESC_OFFSET.min(buf.len());
    let end = (VMDK_SPARSE_DESC_OFFSET + VMDK_DESC_BYTES).min(buf.len());
    vmdk_parent(&buf[start..end])
}

/// Standalone VMDK descriptor file (text): QEMU searches its first 10 KiB for the parent hint,
/// and the whole text for the extent lines naming the data files.
fn parse_vmdk_descriptor(buf: &[u8]) -> Result<Header, HeaderError> {
    let mut h = vmdk_parent(&buf[..VMDK_DESC_BYTES.min(buf.len())])?;
    let text = &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())];
    h.extents = vmdk_extents(text);
    h.extents_cut = text.len() >= MAX_HEADER_BYTES;
    Ok(h)
}

/// Longest extent file name QEMU reads from a descriptor line (`%511[^\n\r\"]`).
const VMDK_MAX_EXTENT_NAME: usize = 511;
/// Extent types QEMU opens a file for (`ZERO` has none).
const VMDK_FILE_EXTENTS: &[&[u8]] = &[b"FLAT", b"SPARSE", b"VMFS", b"VMFSSPARSE", b"SESPARSE"];

/// The data extent names in VMDK descriptor text, as QEMU's `vmdk_parse_extents` reads each line
/// (`RW <sectors> <TYPE> "<name>" [<offset>]`): only `RW` lines with a positive sector count and a
/// type that has a file; a name is 1 to 511 bytes up to the closing quote. Everything else is
/// skipped, as QEMU skips it (or refuses the image, which needs no grant). Bounded by the text.
pub fn vmdk_extents(text: &[u8]) -> Vec<String> {
    fn token(l: &[u8]) -> (&[u8], &[u8]) {
        let l = l.trim_ascii_start();
        let end = l
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(l.len());
        (&l[..end], &l[end..])
    }
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let (access, rest) = token(line);
        if access != b"RW" {
            continue;
        }
        let (sectors, rest) = token(rest);
        let positive = std::str::from_utf8(sectors)
            .ok()
            .and_then(|t| t.strip_prefix('+').unwrap_or(t).parse::<i64>().ok())
            .is_some_and(|n| n > 0);
        let (kind, rest) = token(rest);
        if !positive || !VMDK_FILE_EXTENTS.contains(&kind) {
            continue;
        }
        let Some(quoted) = rest.trim_ascii_start().strip_prefix(b"\"") else {
            continue;
        };
        let Some(len) = quoted
            .iter()
            .position(|&b| matches!(b, b'"' | b'\r' | b'\n'))
        else {
            continue;
        };
        if len == 0 || len > VMDK_MAX_EXTENT_NAME || quoted[len] != b'"' {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(&quoted[..len]) {
            out.push(name.to_string());
        }
    }
    out
}

/// Whether `buf` starts like a VMDK text descriptor: the same test as QEMU's `vmdk_probe`
/// (comment lines and blank lines, then `version=1`, `2` or `3` on a line of its own).
fn is_vmdk_descriptor(buf: &[u8]) -> bool {
    let mut p = 0;
    while p < buf.len() {
        match buf[p] {
            b'#' => {
                while p < buf.len() && buf[p] != b'\n' {
                    p += 1;
                }
                p += 1;
            }
            b' ' => {
                while p < buf.len() && buf[p] == b' ' {
                    p += 1;
                }
                if p < buf.len() && buf[p] == b'\r' {
                    p += 1;
                }
                if p >= buf.len() || buf[p] != b'\n' {
                    return false;
                }
                p += 1;
            }
            _ => {
                let rest = &buf[p..];
                return [b'1', b'2', b'3'].iter().any(|&v| {
                    let line = [b'v', b'e', b'r', b's', b'i', b'o', b'n', b'=', v];
                    rest.starts_with(&line)
                        && (rest[line.len()..].starts_with(b"\n")
                            || rest[line.len()..].starts_with(b"\r\n"))
                });
            }
        }
    }
    false
}

/// Extract `parentFileNameHint="…"` from VMDK descriptor text the way QEMU does (first
/// occurrence in the NUL-terminated text). A VMDK's parent is always opened as VMDK.
fn vmdk_parent(desc: &[u8]) -> Result<Header, HeaderError> {
    let f = ImageFormat::Vmdk;
    let desc = &desc[..desc.iter().position(|&b| b == 0).unwrap_or(desc.len())];
    let Some(at) = desc
        .windows(VMDK_PARENT_KEY.len())
        .position(|w| w == VMDK_PARENT_KEY)
    else {
        return Ok(Header {
            format: f,
            backing: None,
            backing_format: None,
            extents: Vec::new(),
            extents_cut: false,
        });
    };
    let rest = &desc[at + VMDK_PARENT_KEY.len()..];
    let Some(value) = rest.strip_prefix(b"=\"") else {
        return Err(HeaderError::Malformed {
            format: f,
            what: "parentFileNameHint",
        });
    };
    let Some(len) = value.iter().position(|&b| b == b'"') else {
        return Err(HeaderError::Malformed {
            format: f,
            what: "parentFileNameHint",
        });
    };
    if len >= MAX_BACKING_NAME_BYTES {
        return Err(HeaderError::TooLong {
            format: f,
            what: "parentFileNameHint",
            len: len as u64,
            max: MAX_BACKING_NAME_BYTES as u64 - 1,
        });
    }
    let backing = c_name(&value[..len], f, "parentFileNameHint")?;
    let backing_format = backing.as_ref().map(|_| "vmdk".to_string());
    Ok(Header {
        format: f,
        backing,
        backing_format,
        extents: Vec::new(),
        extents_cut: false,
    })
}

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
    map: HashMap<OsString, Result<Header, String>>,
}

/// What one probe works with: the derivation's resolver and header cache.
struct Probe<'r> {
    resolver: &'r mut paths::Resolver,
    headers: &'r mut HeaderCache,
}

impl Probe<'_> {
    fn resolve(&mut self, raw: &str) -> Result<PathBuf, paths::PathError> {
        self.resolver.resolve(raw)
    }

    fn read(&mut self, path: &Path) -> Result<Header, String> {
        if let Some(r) = self.headers.map.get(path.as_os_str()) {
            return r.clone();
        }
        let r = read_header(path, self.resolver);
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
        let header = match cache.read(&resolved) {
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
        if next_resolved == top_resolved || chain.links.contains(&next_resolved) {
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
                let list = if at_top {
                    &mut chain.top_extents
                } else {
                    &mut chain.links
                };
                if !list.contains(&p) {
                    list.push(p);
                }
            }
            Err(e) => chain.warnings.push(format!(
                "{}: extent {name:?}: {e}; not granted",
                resolved.display()
            )),
        }
    }
}

/// Which extent names we grant: a plain file name beside the descriptor, named after it —
/// `<stem>-….vmdk` for a descriptor `<stem>.vmdk`, the convention of VMware and qemu-img
/// (`disk-flat.vmdk`, `disk-s001.vmdk`, `disk-f001.vmdk`). QEMU rewrites the descriptor while the
/// guest runs, so a compromised QEMU could otherwise name any file there and be granted it —
/// read-write for the top image — at the next start.
fn extent_name_ok(descriptor_named: &str, name: &str) -> Result<(), &'static str> {
    if name.contains('/') || name.contains(':') {
        return Err("is not a plain file name beside the descriptor");
    }
    let file = descriptor_named.rsplit('/').next().unwrap_or("");
    let stem = file.strip_suffix(".vmdk").unwrap_or(file);
    match name.strip_prefix(stem).and_then(|r| r.strip_prefix('-')) {
        Some(rest) if rest.len() > ".vmdk".len() && rest.ends_with(".vmdk") => Ok(()),
        _ => Err("is not named after the descriptor (<name>-….vmdk)"),
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
/// them. Opened non-blocking and without becoming a controlling tty, so a FIFO or a device named
/// by an image can never hang the hook; anything but a file or a block device is refused.
fn read_header(path: &Path, resolver: &paths::Resolver) -> Result<Header, String> {
    // Only regular files and block devices are opened, and that is decided *before* the open:
    // opening a character device can act on hardware (a watchdog starts its countdown, a tape
    // rewinds), and the name that led here may come from a header the guest wrote. The type is
    // the one resolution just saw (else a `stat`); `O_NOFOLLOW` keeps a symlink swapped in since
    // then from redirecting the open (the path is resolved, so it holds none of its own).
    let kind = match resolver.seen_file_type(path) {
        Some(k) => k,
        None => std::fs::metadata(path)
            .map_err(|e| format!("cannot open: {e}"))?
            .file_type(),
    };
    if !kind.is_file() && !kind.is_block_device() {
        return Err("not a regular file or block device".to_string());
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    // Almost every header and backing name sits in the first 4 KiB; read more only if the
    // header points further (one image per disk is read, so this matters for big guests).
    let mut buf = Vec::with_capacity(FIRST_READ);
    let mut file = file;
    (&mut file)
        .take(FIRST_READ as u64)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    match parse_header(&buf) {
        Err(HeaderError::Truncated { .. } | HeaderError::OutOfRange { .. })
            if buf.len() == FIRST_READ =>
        {
            file.take((MAX_HEADER_BYTES - FIRST_READ) as u64)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read: {e}"))?;
            parse_header(&buf).map_err(|e| e.to_string())
        }
        // A VMDK text descriptor lists its extents all through the text: read on to its end.
        Ok(h)
            if h.format == ImageFormat::Vmdk
                && buf.len() == FIRST_READ
                && !buf.starts_with(b"KDMV")
                && !buf.contains(&0) =>
        {
            file.take((MAX_HEADER_BYTES - FIRST_READ) as u64)
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read: {e}"))?;
            parse_header(&buf).map_err(|e| e.to_string())
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// First read of an image header; see [`read_header`].
const FIRST_READ: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    // ---- helpers -------------------------------------------------------------------------

    /// [`probe_chain`] from a path as written, with a resolver and header cache of its own.
    fn probe(top: &Path, format: Option<&str>, max_depth: usize) -> Chain {
        probe_chain(
            Top::Named(top),
            format,
            max_depth,
            &mut paths::Resolver::new(),
            &mut HeaderCache::default(),
        )
    }

    /// Whether the real qemu-img is installed (tests that need it are skipped, loudly, if not).
    fn have_qemu_img() -> bool {
        let ok = Command::new("qemu-img").arg("--version").output().is_ok();
        if !ok {
            // tests/run.sh installs qemu-utils: there, a skip would be a silent hole
            assert!(
                std::env::var_os("VIRT_AA_HOOK_TESTS_STRICT").is_none(),
                "qemu-img not found under tests/run.sh"
            );
            eprintln!("qemu-img not found: skipping (install qemu-utils)");
        }
        ok
    }

    /// Run qemu-img in `dir`; true on success. Its stderr is shown on failure.
    fn try_qemu_img(dir: &Path, args: &[&str]) -> bool {
        let out = Command::new("qemu-img")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run qemu-img");
        if !out.status.success() {
            eprintln!(
                "qemu-img {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    /// Run qemu-img in `dir` and insist it succeeds.
    fn qemu_img(dir: &Path, args: &[&str]) {
        assert!(try_qemu_img(dir, args), "qemu-img {args:?}");
    }

    /// A fresh temporary directory, canonicalised (so expected paths match resolved ones).
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().canonicalize().unwrap();
        (t, p)
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    /// Replace the qcow2 backing-format header extension with an unknown (ignored) one, giving
    /// an image whose backing format is not recorded (qemu-img no longer creates those).
    fn drop_backing_format(path: &Path) {
        let mut b = std::fs::read(path).unwrap();
        let mut pos = if be32(&b, 4) == 2 {
            72
        } else {
            be32(&b, 100) as usize
        };
        loop {
            let kind = be32(&b, pos);
            let len = be32(&b, pos + 4) as usize;
            assert_ne!(kind, 0, "no backing-format extension found");
            if kind == QCOW2_EXT_BACKING_FORMAT {
                b[pos..pos + 4].copy_from_slice(&0x1234_5678u32.to_be_bytes());
                break;
            }
            pos += 8 + ((len + 7) & !7);
        }
        std::fs::write(path, b).unwrap();
        assert_eq!(
            parse_header(&std::fs::read(path).unwrap())
                .unwrap()
                .backing_format,
            None
        );
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// A hand-made qcow2 v3 header (64 KiB clusters, 4 KiB buffer): backing name at 0x200,
    /// optional backing-format extension right after the 104-byte header.
    fn qcow2_buf(backing: &[u8], fmt: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(b"QFI\xfb");
        put32(&mut b, 4, 3);
        put32(&mut b, 20, 16);
        put32(&mut b, 100, 104);
        if !backing.is_empty() {
            put64(&mut b, 8, 0x200);
            put32(&mut b, 16, backing.len() as u32);
            b[0x200..0x200 + backing.len()].copy_from_slice(backing);
        }
        if let Some(f) = fmt {
            put32(&mut b, 104, QCOW2_EXT_BACKING_FORMAT);
            put32(&mut b, 108, f.len() as u32);
            b[112..112 + f.len()].copy_from_slice(f);
        }
        b
    }

    /// A hand-made QED header (4 KiB clusters, 1-cluster header) with the name at 64.
    fn qed_buf(backing: &[u8], features: u64) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(b"QED\0");
        b[4..8].copy_from_slice(&4096u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..24].copy_from_slice(&features.to_le_bytes());
        b[56..60].copy_from_slice(&64u32.to_le_bytes());
        b[60..64].copy_from_slice(&(backing.len() as u32).to_le_bytes());
        b[64..64 + backing.len()].copy_from_slice(backing);
        b
    }

    // ---- parse_header on hand-built buffers ----------------------------------------------

    #[test]
    fn header_unknown_magic_is_raw() {
        for buf in [&b""[..], b"QF", b"hello world", &[0u8; 512]] {
            let h = parse_header(buf).unwrap();
            assert_eq!(h.format, ImageFormat::Raw);
            assert_eq!(h.backing, None);
        }
    }

    #[test]
    fn header_qcow2_backing_and_format() {
        let h = parse_header(&qcow2_buf(b"base.qcow2", Some(b"qcow2"))).unwrap();
        assert_eq!(h.format, ImageFormat::Qcow2);
        assert_eq!(h.backing.as_deref(), Some("base.qcow2"));
        assert_eq!(h.backing_format.as_deref(), Some("qcow2"));
        let h = parse_header(&qcow2_buf(b"base.raw", None)).unwrap();
        assert_eq!(h.backing_format, None);
        let h = parse_header(&qcow2_buf(b"", Some(b"raw"))).unwrap();
        assert_eq!((h.backing, h.backing_format), (None, None));
    }

    #[test]
    fn header_qcow2_truncated() {
        let full = qcow2_buf(b"base", None);
        for len in [4, 7, 8, 50, 71, 100] {
            let e = parse_header(&full[..len]).unwrap_err();
            assert!(matches!(e, HeaderError::Truncated { .. }), "{len}: {e}");
        }
        // The fixed header is there but the extension list runs off the buffer.
        assert!(matches!(
            parse_header(&full[..106]).unwrap_err(),
            HeaderError::OutOfRange { .. }
        ));
    }

    #[test]
    fn header_qcow2_offset_beyond_buffer() {
        let mut b = qcow2_buf(b"base", None);
        put64(&mut b, 8, 0x1000 - 2); // name would end 2 bytes past the 4 KiB buffer
        put32(&mut b, 16, 4);
        let e = parse_header(&b).unwrap_err();
        assert!(matches!(e, HeaderError::OutOfRange { .. }), "{e}");
        // Past the first cluster: QEMU refuses that outright.
        put64(&mut b, 8, 1 << 20);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField {
                field: "backing_file_offset",
                ..
            }
        ));
        put64(&mut b, 8, u64::MAX);
        assert!(parse_header(&b).is_err());
    }

    #[test]
    fn header_qcow2_size_zero_and_huge() {
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 16, 0);
        assert_eq!(parse_header(&b).unwrap().backing, None);
        put32(&mut b, 16, 1024);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::TooLong { len: 1024, .. }
        ));
        put32(&mut b, 16, u32::MAX);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::TooLong { .. }
        ));
        // 1023 is the limit itself.
        let name = vec![b'a'; 1023];
        let h = parse_header(&qcow2_buf(&name, None)).unwrap();
        assert_eq!(h.backing.unwrap().len(), 1023);
    }

    #[test]
    fn header_qcow2_nul_and_utf8() {
        let h = parse_header(&qcow2_buf(b"base\0/etc/shadow", None)).unwrap();
        assert_eq!(h.backing.as_deref(), Some("base"));
        assert!(matches!(
            parse_header(&qcow2_buf(b"\xff\xfe", None)).unwrap_err(),
            HeaderError::NotUtf8 { .. }
        ));
        // A name that is all NUL is no name.
        assert_eq!(
            parse_header(&qcow2_buf(b"\0\0", None)).unwrap().backing,
            None
        );
    }

    #[test]
    fn header_qcow2_bad_fields() {
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 4, 4);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::UnsupportedVersion { version: 4, .. }
        ));
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 20, 40);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField {
                field: "cluster_bits",
                ..
            }
        ));
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 100, 50);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField {
                field: "header_length",
                ..
            }
        ));
        // Backing format name of 16 bytes: QEMU's buffer holds 15.
        let e = parse_header(&qcow2_buf(b"base", Some(&[b'q'; 16]))).unwrap_err();
        assert!(matches!(e, HeaderError::TooLong { len: 16, .. }), "{e}");
        // An extension whose length runs past the backing name.
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 104, 0x1111_1111);
        put32(&mut b, 108, 0x1000);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField {
                field: "header extension length",
                ..
            }
        ));
    }

    #[test]
    fn header_qcow2_v2_and_qcow_v1() {
        let mut b = qcow2_buf(b"base", None);
        put32(&mut b, 4, 2);
        put32(&mut b, 72, QCOW2_EXT_BACKING_FORMAT);
        put32(&mut b, 76, 3);
        b[80..83].copy_from_slice(b"raw");
        let h = parse_header(&b).unwrap();
        assert_eq!(h.backing_format.as_deref(), Some("raw"));

        let mut b = vec![0u8; 600];
        b[0..4].copy_from_slice(b"QFI\xfb");
        put32(&mut b, 4, 1);
        put64(&mut b, 8, 48);
        put32(&mut b, 16, 4);
        b[48..52].copy_from_slice(b"base");
        let h = parse_header(&b).unwrap();
        assert_eq!(h.format, ImageFormat::Qcow);
        assert_eq!(h.backing.as_deref(), Some("base"));
        assert_eq!(h.backing_format, None);
        put32(&mut b, 16, 2000);
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::TooLong { .. }
        ));
        assert!(matches!(
            parse_header(&b[..20]).unwrap_err(),
            HeaderError::Truncated { .. }
        ));
    }

    #[test]
    fn header_qed() {
        let h = parse_header(&qed_buf(b"base.qcow2", QED_F_BACKING_FILE)).unwrap();
        assert_eq!(h.format, ImageFormat::Qed);
        assert_eq!(h.backing.as_deref(), Some("base.qcow2"));
        assert_eq!(h.backing_format, None);
        let h = parse_header(&qed_buf(b"b.raw", QED_F_BACKING_FILE | 4)).unwrap();
        assert_eq!(h.backing_format.as_deref(), Some("raw"));
        // Name present but the feature bit is not: QEMU ignores the name.
        assert_eq!(parse_header(&qed_buf(b"x", 0)).unwrap().backing, None);
        // Name running past the header clusters.
        let mut b = qed_buf(b"base", QED_F_BACKING_FILE);
        b[56..60].copy_from_slice(&4094u32.to_le_bytes());
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField { .. }
        ));
        // Huge header_size makes the name "in range" of the header but beyond the buffer.
        b[12..16].copy_from_slice(&16u32.to_le_bytes());
        b[60..64].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::OutOfRange { .. }
        ));
        // Size limit (4095) and bad cluster size.
        let mut b = qed_buf(b"", QED_F_BACKING_FILE);
        b[12..16].copy_from_slice(&4u32.to_le_bytes());
        b[60..64].copy_from_slice(&4096u32.to_le_bytes());
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::TooLong { .. }
        ));
        let mut b = qed_buf(b"base", QED_F_BACKING_FILE);
        b[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::InvalidField {
                field: "cluster_size",
                ..
            }
        ));
        assert!(matches!(
            parse_header(&qed_buf(b"x", 1)[..40]).unwrap_err(),
            HeaderError::Truncated { .. }
        ));
    }

    #[test]
    fn header_vmdk_descriptor() {
        let d = b"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\ncreateType=\"monolithicSparse\"\nparentFileNameHint=\"p.vmdk\"\n";
        let h = parse_header(d).unwrap();
        assert_eq!(h.format, ImageFormat::Vmdk);
        assert_eq!(h.backing.as_deref(), Some("p.vmdk"));
        assert_eq!(h.backing_format.as_deref(), Some("vmdk"));
        let h = parse_header(b"# Disk DescriptorFile\r\n  \r\nversion=2\r\nx=1\r\n").unwrap();
        assert_eq!((h.format, h.backing), (ImageFormat::Vmdk, None));
        // Not descriptors: data first, or another version.
        assert_eq!(
            parse_header(b"hello\nversion=1\n").unwrap().format,
            ImageFormat::Raw
        );
        assert_eq!(
            parse_header(b"version=4\n").unwrap().format,
            ImageFormat::Raw
        );
        assert_eq!(
            parse_header(b"# only a comment").unwrap().format,
            ImageFormat::Raw
        );
        let e = parse_header(b"version=1\nparentFileNameHint=\"never closed").unwrap_err();
        assert!(matches!(e, HeaderError::Malformed { .. }), "{e}");
        let e = parse_header(b"version=1\nparentFileNameHint p").unwrap_err();
        assert!(matches!(e, HeaderError::Malformed { .. }), "{e}");
        let mut long = b"version=1\nparentFileNameHint=\"".to_vec();
        long.extend(vec![b'a'; 5000]);
        long.push(b'"');
        // 10 KiB of descriptor is read: the closing quote is beyond it, so it is unterminated.
        assert!(parse_header(&long).is_err());
        let mut long = b"version=1\nparentFileNameHint=\"".to_vec();
        long.extend(vec![b'a'; 4096]);
        long.push(b'"');
        assert!(matches!(
            parse_header(&long).unwrap_err(),
            HeaderError::TooLong { .. }
        ));
        // Text after a NUL is not part of the descriptor.
        let h = parse_header(b"version=1\n\0parentFileNameHint=\"p\"").unwrap();
        assert_eq!(h.backing, None);
    }

    #[test]
    fn header_vmdk_sparse() {
        let mut b = vec![0u8; 0x200 + 64];
        b[0..4].copy_from_slice(b"KDMV");
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[28..36].copy_from_slice(&1u64.to_le_bytes());
        b[36..44].copy_from_slice(&20u64.to_le_bytes());
        let d = b"parentFileNameHint=\"/p.vmdk\"\n";
        b[0x200..0x200 + d.len()].copy_from_slice(d);
        let h = parse_header(&b).unwrap();
        assert_eq!(h.backing.as_deref(), Some("/p.vmdk"));
        b[28..36].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(parse_header(&b).unwrap().backing, None);
        b[28..36].copy_from_slice(&7u64.to_le_bytes());
        assert!(parse_header(&b).is_err());
        b[4..8].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(
            parse_header(&b).unwrap_err(),
            HeaderError::UnsupportedVersion { .. }
        ));
        assert!(matches!(
            parse_header(&b[..30]).unwrap_err(),
            HeaderError::Truncated { .. }
        ));
    }

    #[test]
    fn errors_are_one_line() {
        let bufs: Vec<Vec<u8>> = vec![
            qcow2_buf(b"\xff", None),
            qcow2_buf(b"a", Some(&[b'x'; 20])),
            b"QFI\xfb\0\0".to_vec(),
            b"version=1\nparentFileNameHint=\"x".to_vec(),
        ];
        for b in bufs {
            let m = parse_header(&b).unwrap_err().to_string();
            assert!(!m.contains('\n') && !m.is_empty(), "{m}");
        }
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

    // ---- probe_chain on real images made by qemu-img -------------------------------------

    #[test]
    fn chain_qcow2_qcow2_raw() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        let (base, mid, top) = (d.join("base.raw"), d.join("mid.qcow2"), d.join("top.qcow2"));
        qemu_img(&d, &["create", "-f", "raw", s(&base), "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                s(&base),
                "-F",
                "raw",
                s(&mid),
            ],
        );
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                s(&mid),
                "-F",
                "qcow2",
                s(&top),
            ],
        );
        let c = probe(&top, Some("qcow2"), 200);
        assert_eq!(c.links, vec![mid.clone(), base.clone()]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Probing from the middle gives the rest.
        assert_eq!(probe(&mid, Some("qcow2"), 200).links, vec![base]);
    }

    #[test]
    fn chain_relative_names() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        std::fs::create_dir(d.join("sub")).unwrap();
        qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
        // sub/mid.qcow2 names "../base.raw": relative to sub/, not to the cwd.
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "../base.raw",
                "-F",
                "raw",
                "sub/mid.qcow2",
                "1M",
            ],
        );
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "sub/mid.qcow2",
                "-F",
                "qcow2",
                "top.qcow2",
            ],
        );
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("sub/mid.qcow2"), d.join("base.raw")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn chain_through_symlinks() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        std::fs::create_dir(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        qemu_img(&d, &["create", "-f", "raw", "real/base.raw", "1M"]);
        qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "base.raw",
                "-F",
                "raw",
                "real/mid.qcow2",
                "1M",
            ],
        );
        // Backing named through a symlinked directory: listed as its target.
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "link/mid.qcow2",
                "-F",
                "qcow2",
                "top.qcow2",
                "1M",
            ],
        );
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(
            c.links,
            vec![d.join("real/mid.qcow2"), d.join("real/base.raw")]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // The backing image itself is a symlink into another directory: QEMU joins its relative
        // backing name to the symlink's directory (as named), so base.raw is d/base.raw.
        symlink(d.join("real/mid.qcow2"), d.join("m.qcow2")).unwrap();
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "m.qcow2",
                "-F",
                "qcow2",
                "top2.qcow2",
                "1M",
            ],
        );
        let c = probe(&d.join("top2.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("real/mid.qcow2"), d.join("base.raw")]);
    }

    #[test]
    fn chain_loop() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "qcow2", "b.qcow2", "1M"]);
        qemu_img(
            &d,
            &[
                "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2",
            ],
        );
        qemu_img(
            &d,
            &["rebase", "-u", "-F", "qcow2", "-b", "a.qcow2", "b.qcow2"],
        );
        let a = d.join("a.qcow2");
        let c = probe(&a, Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("b.qcow2")]);
        assert_eq!(
            c.warnings,
            vec![format!(
                "backing chain of {} loops at {}",
                a.display(),
                a.display()
            )]
        );
        // Self-loop.
        qemu_img(
            &d,
            &["rebase", "-u", "-F", "qcow2", "-b", "a.qcow2", "a.qcow2"],
        );
        let c = probe(&a, Some("qcow2"), 200);
        assert!(c.links.is_empty());
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn chain_depth_limit() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "qcow2", "i0.qcow2", "1M"]);
        for i in 1..5 {
            let (b, o) = (format!("i{}.qcow2", i - 1), format!("i{i}.qcow2"));
            qemu_img(&d, &["create", "-f", "qcow2", "-b", &b, "-F", "qcow2", &o]);
        }
        let top = d.join("i4.qcow2");
        let c = probe(&top, Some("qcow2"), 200);
        assert_eq!(c.links.len(), 4);
        assert!(c.warnings.is_empty());
        let c = probe(&top, Some("qcow2"), 4);
        assert_eq!(c.links.len(), 4);
        assert!(c.warnings.is_empty());
        let c = probe(&top, Some("qcow2"), 2);
        assert_eq!(c.links, vec![d.join("i3.qcow2"), d.join("i2.qcow2")]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("deeper than 2"), "{:?}", c.warnings);
    }

    #[test]
    fn devices_and_fifos_in_a_chain_are_never_opened() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        // A FIFO as backing file: a writer blocked in open() is released the moment anybody
        // opens the FIFO for reading, so the flag proves whether the prober opened it.
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f2, o2) = (fifo.clone(), opened.clone());
        let writer = std::thread::spawn(move || {
            let _w = std::fs::OpenOptions::new().write(true).open(&f2);
            o2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for (name, backing) in [
            ("f.qcow2", fifo.to_str().unwrap()),
            ("n.qcow2", "/dev/null"),
        ] {
            qemu_img(
                &d,
                &[
                    "create", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", name, "1M",
                ],
            );
            let c = probe(&d.join(name), Some("qcow2"), 200);
            assert_eq!(c.links, vec![PathBuf::from(backing)]);
            assert!(
                c.warnings.len() == 1
                    && c.warnings[0].contains("not a regular file or block device"),
                "{:?}",
                c.warnings
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let was_opened = opened.load(std::sync::atomic::Ordering::SeqCst);
        // release the writer
        let _r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        writer.join().unwrap();
        assert!(
            !was_opened,
            "the prober opened a FIFO named by an image header"
        );
    }

    #[test]
    fn chain_missing_backing_is_listed() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "gone.qcow2",
                "-F",
                "qcow2",
                "top.qcow2",
                "1M",
            ],
        );
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("gone.qcow2")]);
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("gone.qcow2") && c.warnings[0].contains("cannot open"),
            "{:?}",
            c.warnings
        );
        // The top itself missing: nothing, one warning.
        let c = probe(&d.join("nope.qcow2"), Some("qcow2"), 200);
        assert!(c.links.is_empty());
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn chain_garbage_and_truncated_headers() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "qcow2", "mid.qcow2", "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "mid.qcow2",
                "-F",
                "qcow2",
                "top.qcow2",
            ],
        );
        // The backing image is overwritten with a truncated header.
        std::fs::write(d.join("mid.qcow2"), b"QFI\xfb\0\0\0\x03garbage").unwrap();
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("mid.qcow2")]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("truncated"), "{:?}", c.warnings);
        // Not a qcow2 at all although recorded as one.
        std::fs::write(d.join("mid.qcow2"), vec![0x5au8; 70000]).unwrap();
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("mid.qcow2")]);
        assert!(
            c.warnings[0].contains("not a qcow2 image"),
            "{:?}",
            c.warnings
        );
        // Declared qcow2 at the top but garbage / empty / a directory / a FIFO.
        std::fs::write(d.join("g.qcow2"), b"").unwrap();
        let c = probe(&d.join("g.qcow2"), Some("qcow2"), 200);
        assert_eq!((c.links.len(), c.warnings.len()), (0, 1));
        let c = probe(&d, Some("qcow2"), 200);
        assert_eq!((c.links.len(), c.warnings.len()), (0, 1));
        let fifo = d.join("fifo");
        let cpath = std::ffi::CString::new(s(&fifo)).unwrap();
        assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
        qemu_img(
            &d,
            &[
                "create", "-f", "qcow2", "-u", "-b", "fifo", "-F", "qcow2", "f.qcow2", "1M",
            ],
        );
        let c = probe(&d.join("f.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![fifo]);
        assert!(
            c.warnings[0].contains("not a regular file"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn raw_or_undeclared_is_never_probed() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "raw", "secret", "1M"]);
        // A "raw" disk whose guest wrote a qcow2 header naming a host file.
        qemu_img(
            &d,
            &[
                "create", "-f", "qcow2", "-b", "secret", "-F", "raw", "disk.img",
            ],
        );
        let disk = d.join("disk.img");
        assert_eq!(probe(&disk, Some("raw"), 200), Chain::default());
        assert_eq!(probe(&disk, None, 200), Chain::default());
        assert_eq!(probe(&disk, Some("vdi"), 200), Chain::default());
        assert_eq!(
            probe(&disk, Some("qcow2"), 200).links,
            vec![d.join("secret")]
        );
        // A qcow2 recording its backing as raw: the backing's qcow2-looking header is ignored.
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "disk.img",
                "-F",
                "raw",
                "top.qcow2",
            ],
        );
        let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![disk]);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn chain_without_backing_format_detects_magic() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
        qemu_img(&d, &["create", "-f", "qcow2", "base.qcow2", "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "base.raw",
                "-F",
                "raw",
                "over-raw.qcow2",
            ],
        );
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "base.qcow2",
                "-F",
                "qcow2",
                "over-q.qcow2",
            ],
        );
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "over-raw.qcow2",
                "-F",
                "qcow2",
                "over-over.qcow2",
            ],
        );
        for f in ["over-raw.qcow2", "over-q.qcow2", "over-over.qcow2"] {
            drop_backing_format(&d.join(f));
        }
        let c = probe(&d.join("over-raw.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("base.raw")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = probe(&d.join("over-q.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("base.qcow2")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Detected as qcow2, but it has a backing file itself: not followed (libvirt's rule).
        let c = probe(&d.join("over-over.qcow2"), Some("qcow2"), 200);
        assert_eq!(c.links, vec![d.join("over-raw.qcow2")]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("not recorded"), "{:?}", c.warnings);
    }

    #[test]
    fn chain_protocol_backing_names() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                "nbd://x/y",
                "-F",
                "raw",
                "n.qcow2",
                "1M",
            ],
        );
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-u",
                "-b",
                r#"json:{"file":{"driver":"file","filename":"/etc/shadow"}}"#,
                "-F",
                "raw",
                "j.qcow2",
                "1M",
            ],
        );
        let c = probe(&d.join("n.qcow2"), Some("qcow2"), 200);
        assert!(c.links.is_empty());
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("nbd:"), "{:?}", c.warnings);
        let c = probe(&d.join("j.qcow2"), Some("qcow2"), 200);
        assert!(c.links.is_empty());
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("json:"), "{:?}", c.warnings);
    }

    #[test]
    fn chain_qed() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "base.raw",
                "-F",
                "raw",
                "mid.qcow2",
            ],
        );
        if !try_qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qed",
                "-b",
                "mid.qcow2",
                "-F",
                "qcow2",
                "top.qed",
            ],
        ) {
            eprintln!("qemu-img cannot create QED images: skipping");
            return;
        }
        // QED can only record "raw" as a backing format, so mid.qcow2 is detected as qcow2 and,
        // as in libvirt, a detected image may not pull in its own backing file.
        let c = probe(&d.join("top.qed"), Some("qed"), 200);
        assert_eq!(c.links, vec![d.join("mid.qcow2")]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("not recorded"), "{:?}", c.warnings);
        // QED over a qcow2 without a backing file: a full chain.
        qemu_img(&d, &["create", "-f", "qcow2", "leaf.qcow2", "1M"]);
        qemu_img(
            &d,
            &[
                "create",
                "-f",
                "qed",
                "-b",
                "leaf.qcow2",
                "-F",
                "qcow2",
                "q2.qed",
            ],
        );
        let c = probe(&d.join("q2.qed"), Some("qed"), 200);
        assert_eq!(c.links, vec![d.join("leaf.qcow2")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // QED over raw records "do not probe": the raw image is not read.
        qemu_img(
            &d,
            &[
                "create", "-f", "qed", "-b", "base.raw", "-F", "raw", "r.qed",
            ],
        );
        let h = parse_header(&std::fs::read(d.join("r.qed")).unwrap()).unwrap();
        assert_eq!(h.backing_format.as_deref(), Some("raw"));
        let c = probe(&d.join("r.qed"), Some("qed"), 200);
        assert_eq!(c.links, vec![d.join("base.raw")]);
    }

    #[test]
    fn chain_qcow_v1() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
        if !try_qemu_img(
            &d,
            &[
                "create", "-f", "qcow", "-b", "base.raw", "-F", "raw", "v1.qcow",
            ],
        ) {
            eprintln!("qemu-img cannot create qcow images: skipping");
            return;
        }
        let c = probe(&d.join("v1.qcow"), Some("qcow"), 200);
        assert_eq!(c.links, vec![d.join("base.raw")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // Declared qcow2 but it is qcow v1: refused with a warning.
        let c = probe(&d.join("v1.qcow"), Some("qcow2"), 200);
        assert!(c.links.is_empty());
        assert!(
            c.warnings[0].contains("not a qcow2 image"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn chain_vmdk() {
        if !have_qemu_img() {
            return;
        }
        let (_t, d) = tmp();
        qemu_img(&d, &["create", "-f", "vmdk", "p.vmdk", "1M"]);
        if !try_qemu_img(
            &d,
            &[
                "create", "-f", "vmdk", "-b", "p.vmdk", "-F", "vmdk", "c.vmdk",
            ],
        ) {
            eprintln!("qemu-img cannot create VMDK images with a parent: skipping");
            return;
        }
        let c = probe(&d.join("c.vmdk"), Some("vmdk"), 200);
        assert_eq!(c.links, vec![d.join("p.vmdk")]);
        // a sparse file's embedded descriptor names the file itself: no extents of its own
        assert!(c.top_extents.is_empty(), "{:?}", c.top_extents);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // A standalone descriptor file (twoGbMaxExtentSparse: descriptor + extent files) with a
        // parent, if qemu-img makes one (it refuses a parent for monolithicFlat).
        if try_qemu_img(
            &d,
            &[
                "create",
                "-f",
                "vmdk",
                "-o",
                "subformat=twoGbMaxExtentSparse",
                "-b",
                "c.vmdk",
                "-F",
                "vmdk",
                "split.vmdk",
            ],
        ) {
            let h = parse_header(&std::fs::read(d.join("split.vmdk")).unwrap()).unwrap();
            assert_eq!(h.backing.as_deref(), Some("c.vmdk"));
            let c = probe(&d.join("split.vmdk"), Some("vmdk"), 200);
            assert_eq!(c.links, vec![d.join("c.vmdk"), d.join("p.vmdk")]);
            // its data files need the disk's own permissions: they are listed apart
            assert_eq!(c.top_extents, vec![d.join("split-s001.vmdk")]);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        } else {
            eprintln!("qemu-img cannot create a split VMDK with a parent: skipped");
        }
    }

    #[test]
    fn vmdk_extent_lines_as_qemu_reads_them() {
        let d = b"# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n\
            RW 4194304 FLAT \"d-f001.vmdk\" 0\n\
            RW 100 SPARSE \"d-s001.vmdk\"\r\n\
            \tRW   7 VMFS \"d-v.vmdk\"\n\
            RW 9 VMFSSPARSE \"d-vs.vmdk\"\nRW 9 SESPARSE \"d-se.vmdk\"\n\
            RW 100 ZERO\nRDONLY 100 FLAT \"ro.vmdk\" 0\nNOACCESS 1 FLAT \"na.vmdk\" 0\n\
            RW 0 FLAT \"zero-size.vmdk\" 0\nRW -5 FLAT \"neg.vmdk\" 0\nRW x FLAT \"nan.vmdk\" 0\n\
            RW 5 WEIRD \"weird.vmdk\"\nRW 5 FLAT \"\" 0\nRW 5 FLAT \"unterminated\n\
            RW 5 FLAT noquotes.vmdk 0\n# RW 5 FLAT \"comment.vmdk\" 0\n";
        let h = parse_header(d).unwrap();
        assert_eq!(
            h.extents,
            [
                "d-f001.vmdk",
                "d-s001.vmdk",
                "d-v.vmdk",
                "d-vs.vmdk",
                "d-se.vmdk"
            ]
        );
        let long = format!("version=1\nRW 5 FLAT \"{}\" 0\n", "a".repeat(512));
        assert!(parse_header(long.as_bytes()).unwrap().extents.is_empty());
    }

    #[test]
    fn vmdk_extent_names_must_be_the_descriptors_own() {
        for ok in ["d-flat.vmdk", "d-f001.vmdk", "d-s001.vmdk"] {
            assert_eq!(extent_name_ok("/i/d.vmdk", ok), Ok(()), "{ok}");
        }
        assert_eq!(extent_name_ok("/i/disk", "disk-x.vmdk"), Ok(()));
        for bad in [
            "/etc/shadow",
            "../d-f001.vmdk",
            "sub/d-f001.vmdk",
            "other.img",
            "d.vmdk",
            "d-.vmdk",
            "dd-f001.vmdk",
            "d-f001.img",
            "nbd:d-x.vmdk",
        ] {
            assert!(extent_name_ok("/i/d.vmdk", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chain_vmdk_descriptor_extents() {
        let (_t, d) = tmp();
        let desc = |extents: &[&str], parent: Option<&str>| {
            let mut t =
                String::from("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n");
            if let Some(p) = parent {
                t.push_str(&format!("parentFileNameHint=\"{p}\"\n"));
            }
            for e in extents {
                t.push_str(&format!("RW 8 FLAT \"{e}\" 0\n"));
            }
            t
        };
        std::fs::write(d.join("base.vmdk"), desc(&["base-flat.vmdk"], None)).unwrap();
        std::fs::write(d.join("base-flat.vmdk"), b"").unwrap();
        std::fs::write(
            d.join("top.vmdk"),
            desc(
                &["top-f001.vmdk", "top-f002.vmdk", "top-f001.vmdk"],
                Some("base.vmdk"),
            ),
        )
        .unwrap();
        let c = probe(&d.join("top.vmdk"), Some("vmdk"), 200);
        // missing extent files are still granted (QEMU will try them; it fails closed)
        assert_eq!(
            c.top_extents,
            vec![d.join("top-f001.vmdk"), d.join("top-f002.vmdk")]
        );
        assert_eq!(c.links, vec![d.join("base.vmdk"), d.join("base-flat.vmdk")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // hostile names: warned about, never granted
        std::fs::write(
            d.join("evil.vmdk"),
            desc(
                &["/etc/shadow", "../x-f1.vmdk", "other.img", "evil-ok.vmdk"],
                None,
            ),
        )
        .unwrap();
        let c = probe(&d.join("evil.vmdk"), Some("vmdk"), 200);
        assert_eq!(c.top_extents, vec![d.join("evil-ok.vmdk")]);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(
            c.warnings
                .iter()
                .all(|w| w.contains("not granted") && !w.contains('\n'))
        );

        // extents of a backing image do not count as chain depth
        std::fs::write(
            d.join("mid.vmdk"),
            desc(&["mid-f1.vmdk", "mid-f2.vmdk"], Some("base.vmdk")),
        )
        .unwrap();
        std::fs::write(d.join("up.vmdk"), desc(&[], Some("mid.vmdk"))).unwrap();
        let c = probe(&d.join("up.vmdk"), Some("vmdk"), 2);
        assert_eq!(
            c.links,
            vec![
                d.join("mid.vmdk"),
                d.join("mid-f1.vmdk"),
                d.join("mid-f2.vmdk"),
                d.join("base.vmdk"),
                d.join("base-flat.vmdk")
            ]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // a long descriptor is read to its end (past the first 4 KiB)
        let many: Vec<String> = (0..300).map(|i| format!("long-f{i:03}.vmdk")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        std::fs::write(d.join("long.vmdk"), desc(&refs, None)).unwrap();
        assert!(std::fs::metadata(d.join("long.vmdk")).unwrap().len() > 4096);
        let c = probe(&d.join("long.vmdk"), Some("vmdk"), 200);
        assert_eq!(c.top_extents.len(), 300);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn chain_never_panics_on_odd_tops() {
        assert_eq!(
            probe(Path::new("relative.qcow2"), Some("qcow2"), 200)
                .warnings
                .len(),
            1
        );
        assert_eq!(
            probe(Path::new("/nonexistent/x"), Some("qcow2"), 0)
                .warnings
                .len(),
            1
        );
        assert_eq!(probe(Path::new("/"), Some("vmdk"), 200).warnings.len(), 1);
    }
}
