//! Path handling for profile rules: validation, canonicalisation, escaping and the host policy.
//!
//! AppArmor mediates the *resolved* path a process opens, so a rule must name the path after
//! symlinks are followed; and a rule is a pattern, so every character AppArmor treats specially
//! must be escaped or a hostile disk name (`/images/*`) would widen access. Both are done here,
//! once, for every path that reaches a profile.
//!
//! - `resolve.rs`: the [`Resolver`] (one per derivation), the one-off [`resolve`], and the
//!   opens by descriptor that refuse symlinks;
//! - `escape.rs`: a literal path as an AppArmor pattern ([`escape`]);
//! - `policy.rs`: the host policy ([`HostPolicy`], [`REFUSED`], [`READ_ONLY_OK`],
//!   [`RW_OVERRIDE`]);
//! - here: the error every path check returns, the raw-string check, lexical normalisation and
//!   the component-wise prefix test they all use.

mod escape;
mod policy;
mod resolve;

pub use escape::{escape, escape_path};
pub use policy::{HostPolicy, READ_ONLY_OK, REFUSED, RW_OVERRIDE};
pub use resolve::{FileKind, Found, Resolver, resolve};
pub(crate) use resolve::{
    IMAGE_READ_FLAGS, open_path_walk, openat2_path, openat2_unavailable, set_openat2_unavailable,
};

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// The hash maps keyed by paths and rules of one derivation. The keys come from hostile XML and
/// image headers, so the hash stays keyed per process (foldhash's random seed), but it is not
/// SipHash: on a thousand-disk guest SipHash was 5 % of the instructions of a whole `generate`.
pub type PathMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`PathMap`].
pub type PathSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Longest path we accept (Linux PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a path cannot be granted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("{0:?} contains a control character (newline, NUL, ...)")]
    ControlChar(String),
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("{0} resolves through too many symbolic links")]
    SymlinkLoop(String),
    #[error("{path} is a host system path and cannot be granted {perms}")]
    Refused { path: String, perms: String },
    /// A backing file named by an image header that [`crate::reach::judge`] refuses.
    #[error("{0}")]
    Unreachable(Box<crate::distrust::Refused>),
    #[error(
        "{path} contains the host system path {inside} and cannot be granted {perms} recursively"
    )]
    RefusedTree {
        path: String,
        inside: String,
        perms: String,
    },
}

/// Check the raw string from the XML: absolute, no control characters, bounded length.
pub fn validate(raw: &str) -> Result<(), PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    // Printable ASCII (every byte in 0x20..0x7f) has no control character; anything else is
    // checked char by char (U+0080..U+009F are control characters too).
    let plain_ascii = raw.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !plain_ascii && raw.chars().any(|c| c.is_control()) {
        return Err(PathError::ControlChar(raw.to_string()));
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute(raw.to_string()));
    }
    Ok(())
}

/// Lexically normalise an absolute path: drop `.`, collapse `//`, apply `..` (never above `/`).
pub fn normalize_lexically(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// True when `path` is `prefix` or lies below it, comparing whole components (so `/lib` does not
/// cover `/library`).
#[inline]
pub fn is_under(path: &Path, prefix: &str) -> bool {
    // Byte comparison on the clean, absolute paths `resolve` returns: much cheaper than
    // component iteration, and this runs ~50 times per granted path.
    let p = path.as_os_str().as_bytes();
    let pre = prefix.trim_end_matches('/').as_bytes();
    // The second byte first: most prefixes differ there, and it spares a `memcmp` call.
    (pre.len() < 2 || p.get(1) == Some(&pre[1]))
        && p.starts_with(pre)
        && (p.len() == pre.len() || p[pre.len()] == b'/' || pre.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_normalisation() {
        assert_eq!(
            normalize_lexically(Path::new("/a//b/./c/../d")),
            PathBuf::from("/a/b/d")
        );
        assert_eq!(
            normalize_lexically(Path::new("/../../x")),
            PathBuf::from("/x")
        );
    }

    #[test]
    fn validation_rejects_bad_strings() {
        assert!(matches!(validate("rel/x"), Err(PathError::NotAbsolute(_))));
        assert!(matches!(validate("/a\nb"), Err(PathError::ControlChar(_))));
        assert!(matches!(validate("/a\0b"), Err(PathError::ControlChar(_))));
        assert!(validate("/a b/ü").is_ok());
    }
}
