//! The guests libvirt has, read from its own files, for commands that must not link libvirt
//! (`explain`): persistent definitions in `/etc/libvirt/qemu/*.xml` and the live status of
//! running guests in `/run/libvirt/qemu/*.xml` (`<domstatus state=… pid=…><domain>…`). The live
//! definition wins where both exist: it has what libvirt filled in at start (backing chains,
//! the domain id behind per-domain directories).

use crate::config::Config;
use crate::domain::Domain;
use crate::layout::{QEMU_CONFIG_DIR, QEMU_STATUS_DIR};
use crate::xml;
use std::path::{Path, PathBuf};

/// One guest as libvirt's files describe it.
#[derive(Clone, Debug)]
pub struct GuestDef {
    pub domain: Domain,
    /// `running`, `paused`, ... from the status file; `shut off` without one.
    pub state: String,
    /// QEMU's pid from the status file.
    pub pid: Option<u32>,
    /// The file the definition came from.
    pub source: PathBuf,
}

impl GuestDef {
    /// Whether `key` names this guest (name, or UUID in any case).
    pub fn is(&self, key: &str) -> bool {
        self.domain.name == key || uuid::Uuid::parse_str(key).is_ok_and(|u| u == self.domain.uuid)
    }
}

/// Every guest, and one warning per file that could not be read.
pub fn load_all(cfg: &Config) -> (Vec<GuestDef>, Vec<String>) {
    let mut out: Vec<GuestDef> = Vec::new();
    let mut warnings = Vec::new();
    for f in crate::store::xml_files(&cfg.rooted(Path::new(QEMU_STATUS_DIR))) {
        match read(&f, true) {
            Ok(g) => out.push(g),
            Err(e) => warnings.push(format!("{}: {e}", f.display())),
        }
    }
    for f in crate::store::xml_files(&cfg.rooted(Path::new(QEMU_CONFIG_DIR))) {
        match read(&f, false) {
            Ok(g) if out.iter().any(|o| o.domain.uuid == g.domain.uuid) => {}
            Ok(g) => out.push(g),
            Err(e) => warnings.push(format!("{}: {e}", f.display())),
        }
    }
    out.sort_by(|a, b| a.domain.name.cmp(&b.domain.name));
    (out, warnings)
}

/// The target directories of libvirt's directory-backed storage pools (`dir`, `fs`, `netfs`):
/// the places the admin configured for images ([`crate::pools`]).
pub fn pool_dirs(cfg: &Config) -> Vec<String> {
    crate::pools::dirs(&cfg.root)
}

fn read(path: &Path, status: bool) -> Result<GuestDef, String> {
    let bytes = crate::store::read_capped(path)
        .map_err(|e| e.to_string())?
        .ok_or("vanished")?;
    let root = xml::parse(&bytes).map_err(|e| e.to_string())?;
    let (dom_el, state, pid) = if status && root.name == "domstatus" {
        let state = root.attr("state").unwrap_or("running").to_string();
        let pid = root.attr("pid").and_then(|p| p.parse().ok());
        let d = root
            .children
            .into_iter()
            .find(|c| c.name == "domain")
            .ok_or("status file has no <domain>")?;
        (d, state, pid)
    } else {
        (root, "shut off".to_string(), None)
    };
    let domain = Domain::from_element(dom_el).map_err(|e| e.to_string())?;
    Ok(GuestDef {
        domain,
        state,
        pid,
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_status_wins_over_config() {
        let (_d, cfg) = crate::config::test_root();
        let etc = cfg.rooted(Path::new(QEMU_CONFIG_DIR));
        let run = cfg.rooted(Path::new(QEMU_STATUS_DIR));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let dom = |name: &str, u: &str| {
            format!("<domain type='qemu'><name>{name}</name><uuid>{u}</uuid></domain>")
        };
        let u1 = "aaaaaaaa-0000-4000-8000-000000000001";
        let u2 = "aaaaaaaa-0000-4000-8000-000000000002";
        std::fs::write(etc.join("a.xml"), dom("a", u1)).unwrap();
        std::fs::write(etc.join("b.xml"), dom("b", u2)).unwrap();
        std::fs::write(etc.join("broken.xml"), "<domain").unwrap();
        std::fs::write(
            run.join("a.xml"),
            format!(
                "<domstatus state='running' pid='42'>{}</domstatus>",
                dom("a", u1)
            ),
        )
        .unwrap();
        let (g, w) = load_all(&cfg);
        assert_eq!(g.len(), 2);
        assert_eq!(w.len(), 1);
        assert_eq!((g[0].state.as_str(), g[0].pid), ("running", Some(42)));
        assert_eq!(g[1].state, "shut off");
        assert!(g[0].is(u1) && g[0].is("a") && !g[0].is("b"));
        assert!(g[0].is(&u1.to_uppercase()));
    }
}
