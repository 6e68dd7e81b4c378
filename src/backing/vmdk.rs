//! VMDK: the sparse extent's embedded descriptor, the text descriptor's parent hint and the
//! data extents it names, and which of those names we grant.

use super::field::{c_name, le32, le64, need};
use super::{Header, HeaderError, ImageFormat, MAX_BACKING_NAME_BYTES, MAX_HEADER_BYTES};

/// Fixed part of a VMDK sparse-extent header we look at (magic to descriptorSize).
const VMDK_SPARSE_HEADER_BYTES: usize = 44;
/// QEMU reads the parent hint of a sparse extent at sector 1, whatever `descriptorOffset` says.
const VMDK_SPARSE_DESC_OFFSET: usize = 0x200;
/// QEMU reads at most this much descriptor text when looking for the parent hint.
const VMDK_DESC_BYTES: usize = 20 * 512;
/// The descriptor key naming a VMDK's parent image.
const VMDK_PARENT_KEY: &[u8] = b"parentFileNameHint";

/// VMDK sparse extent: the descriptor text QEMU searches for the parent hint starts at sector 1.
pub(super) fn parse_vmdk_sparse(buf: &[u8]) -> Result<Header, HeaderError> {
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
pub(super) fn parse_vmdk_descriptor(buf: &[u8]) -> Result<Header, HeaderError> {
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
pub(super) fn is_vmdk_descriptor(buf: &[u8]) -> bool {
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

/// Which extent names we grant: a plain file name beside the descriptor, named after it —
/// `<stem>-….vmdk` for a descriptor `<stem>.vmdk`, the convention of VMware and qemu-img
/// (`disk-flat.vmdk`, `disk-s001.vmdk`, `disk-f001.vmdk`). QEMU rewrites the descriptor while the
/// guest runs, so a compromised QEMU could otherwise name any file there and be granted it —
/// read-write for the top image — at the next start.
pub(super) fn extent_name_ok(descriptor_named: &str, name: &str) -> Result<(), &'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `header::parse_header` does with descriptor text (not imported: `header` imports
    /// this module).
    fn parse_header(buf: &[u8]) -> Result<Header, HeaderError> {
        assert!(is_vmdk_descriptor(buf));
        parse_vmdk_descriptor(buf)
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
}
