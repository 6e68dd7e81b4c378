//! libvirt's directory-backed storage pools (`dir`, `fs`, `netfs`), read from their own
//! definition files in `/etc/libvirt/storage` (never from libvirt itself: hooks must not call
//! back into the daemon). The one owner of "which pool is a directory, and where": a `<disk
//! type='volume'>`'s file (the guest's own profile, and the index of other guests' writable
//! disks), and the directories `explain` treats as the admin's image places.

use crate::layout::STORAGE_POOL_DIR;
use std::path::{Path, PathBuf};

/// The target directory of a directory-backed pool's definition (absolute, without a trailing
/// `/`), `None` for other pool types or a definition that names none.
pub fn target_dir(pool_xml: &[u8]) -> Option<String> {
    let el = crate::xml::parse(pool_xml).ok()?;
    if !matches!(el.attr("type"), Some("dir" | "fs" | "netfs")) {
        return None;
    }
    let t = el.path(&["target", "path"])?.text_nonempty()?;
    let t = t.trim_end_matches('/');
    (t.starts_with('/') && !t.is_empty()).then(|| t.to_string())
}

fn pool_files(root: &Path) -> PathBuf {
    root.join(STORAGE_POOL_DIR.trim_start_matches('/'))
}

fn read_target(file: &Path) -> Option<String> {
    target_dir(&crate::store::read_capped(file).ok()??)
}

/// The target directories of every directory-backed pool under `root`, in file-name order.
pub fn dirs(root: &Path) -> Vec<String> {
    crate::store::xml_files(&pool_files(root))
        .iter()
        .filter_map(|f| read_target(f))
        .collect()
}

/// The file of volume `vol` in the directory-backed pool `pool` (`<source pool= volume=>`):
/// libvirt names a directory pool's volumes by their file names. `None` when either name is
/// not a plain name, or the pool is unknown or not a directory.
pub fn volume_path(root: &Path, pool: &str, vol: &str) -> Option<String> {
    let plain = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    if !plain(pool) || !plain(vol) {
        return None;
    }
    let dir = read_target(&pool_files(root).join(format!("{pool}.xml")))?;
    Some(format!("{dir}/{vol}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(t: &str, p: &str) -> String {
        format!("<pool type='{t}'><name>x</name><target><path>{p}</path></target></pool>")
    }

    #[test]
    fn directory_pools_and_their_volumes() {
        let d = tempfile::tempdir().unwrap();
        let files = pool_files(d.path());
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("a.xml"), pool("dir", "/data/vms/")).unwrap();
        std::fs::write(files.join("b.xml"), pool("logical", "/dev/vg0")).unwrap();
        std::fs::write(files.join("c.xml"), pool("dir", "relative")).unwrap();
        assert_eq!(dirs(d.path()), vec!["/data/vms".to_string()]);
        assert_eq!(
            volume_path(d.path(), "a", "v.qcow2").as_deref(),
            Some("/data/vms/v.qcow2")
        );
        for (p, v) in [
            ("a", "../x"),
            ("a", ".."),
            ("../a", "v"),
            ("b", "v"),
            ("c", "v"),
            ("z", "v"),
        ] {
            assert_eq!(volume_path(d.path(), p, v), None, "{p}/{v}");
        }
    }
}
