//! Backing-chain discovery from image headers (qcow2, qcow, QED, VMDK). Placeholder: being written.

use std::path::{Path, PathBuf};

/// Result of probing one image's backing chain.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Backing images below `top`, nearest first, each resolved to an absolute path.
    pub links: Vec<PathBuf>,
    /// Human-readable, one-line warnings (unreadable image, loop, depth limit, network backing).
    pub warnings: Vec<String>,
}

/// Probe the backing chain of `top`, whose format libvirt was told is `format` (`None`: not
/// declared, treated as raw, never probed).
pub fn probe_chain(top: &Path, format: Option<&str>, max_depth: usize) -> Chain {
    let _ = (top, format, max_depth);
    Chain::default()
}
