//! Fixed fields read out of an image's first bytes: integers, bounds checks and C strings,
//! shared by the qcow/qcow2/QED parser (`header`) and the VMDK parser (`vmdk`).
//!
//! They live below both so that neither parser imports the other back: `header` dispatches to
//! `vmdk` by magic, and `vmdk` needs only these readers (an import cycle between the two made
//! each module's dependencies the whole pair).

use super::{HeaderError, ImageFormat};

/// The `N` bytes at `at`; zeros if out of range (callers check lengths first).
fn fixed_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    if let Some(s) = buf.get(at..at.saturating_add(N)) {
        b.copy_from_slice(s);
    }
    b
}

/// Big-endian u32 at `at`; 0 if out of range (callers check lengths first).
pub(super) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(fixed_at(buf, at))
}

/// Big-endian u64 at `at`; 0 if out of range (callers check lengths first).
pub(super) fn be64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(fixed_at(buf, at))
}

/// Little-endian u32 at `at`; 0 if out of range (callers check lengths first).
pub(super) fn le32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(fixed_at(buf, at))
}

/// Little-endian u64 at `at`; 0 if out of range (callers check lengths first).
pub(super) fn le64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(fixed_at(buf, at))
}

/// Fail with `Truncated` unless the buffer holds the `need` bytes of a fixed header.
pub(super) fn need(buf: &[u8], format: ImageFormat, need: usize) -> Result<(), HeaderError> {
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
pub(super) fn bytes_at<'a>(
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
pub(super) fn c_name(
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
