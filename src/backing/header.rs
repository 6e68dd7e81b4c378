//! qcow, qcow2 and QED headers: the backing name and format, as QEMU reads them.

use super::field::{be32, be64, bytes_at, c_name, le32, le64, need};
use super::vmdk::{is_vmdk_descriptor, parse_vmdk_descriptor, parse_vmdk_sparse};
use super::{Header, HeaderError, ImageFormat, MAX_BACKING_NAME_BYTES};

/// qcow/qcow2 refuse a `backing_file_size` above this (QEMU: "Backing file name too long").
const QCOW_MAX_BACKING_NAME: u64 = 1023;
/// QEMU keeps a qcow2 backing-format name in a 16-byte C buffer: 15 bytes of name at most.
const QCOW2_MAX_FORMAT_NAME: u64 = 15;
/// qcow2 header extension: name of the backing file's format.
pub(super) const QCOW2_EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
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

/// Parse the start of an image (at most [`MAX_HEADER_BYTES`](super::MAX_HEADER_BYTES) are
/// needed): recognise the format from its magic and extract the backing file name and format.
/// Pure, total and bounded, so it can be fuzzed; anything inconsistent is an error rather than a guess, because a guess here
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
