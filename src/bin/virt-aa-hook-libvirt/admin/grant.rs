//! `virt-aa-hook grant GUEST PATH...`: let one guest open a file (or a directory tree) it was not
//! given by its definition, by adding the rule to its local file and reloading its profile.
//!
//! Why: in standalone mode (libvirt without its AppArmor driver) nothing tells us about a
//! hotplug, a snapshot overlay or a block-commit target; a script that is about to run one can
//! grant the path first (`grant web /srv/img/new.qcow2 && virsh attach-disk …`). In libvirt mode
//! helper mode makes this unnecessary for storage libvirt labels; it still serves paths libvirt
//! never labels (a backup tool's socket, a site-specific file).
//!
//! The path goes through the same policy and escaping as a disk of the definition
//! ([`RuleSet::grant`]): a host system path or a glob character is refused, a symlink is
//! resolved. The rule lands in `/etc/apparmor.d/local/libvirt/libvirt-<uuid>` (the admin's file,
//! kept across starts; [`localrules::apply`] merges, writes atomically and puts the old file back
//! if the profile does not take it). `--revoke` is left to the admin's editor on purpose: the
//! local file is theirs.

use anyhow::{Result, bail};
use virt_aa_hook::aaparser::Parser;
use virt_aa_hook::config::Config;
use virt_aa_hook::guests;
use virt_aa_hook::localrules::{self, Applied};
use virt_aa_hook::paths;
use virt_aa_hook::rules::{Perms, RuleSet, Scope};

/// The rule lines (`"<pattern>" <perms>,`) for `paths`, or the first refusal.
pub fn rules_for(paths: &[String], read_only: bool, tree: bool) -> Result<Vec<String>, String> {
    let perms = if read_only { Perms::R } else { Perms::RWK };
    let scope = if tree { Scope::Tree } else { Scope::File };
    let mut rs = RuleSet::new();
    let mut resolver = paths::Resolver::new();
    for p in paths {
        rs.grant(&mut resolver, "path granted by the admin", p, perms, scope)
            .map_err(|e| e.to_string())?;
    }
    Ok(rs
        .render()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

pub fn run(
    cfg: &Config,
    guest: &str,
    paths: &[String],
    read_only: bool,
    tree: bool,
) -> Result<i32> {
    let (defs, _warnings) = guests::load_all(cfg);
    let Some(g) = defs.iter().find(|g| g.is(guest)) else {
        bail!(
            "no guest named {guest:?} in libvirt's files ({} and {})",
            guests::CONFIG_DIR,
            guests::STATUS_DIR
        );
    };
    let rules = match rules_for(paths, read_only, tree) {
        Ok(r) => r,
        Err(e) => bail!("{}: not granted: {e}", g.domain.name),
    };
    let parser = Parser::from_config(cfg).ok();
    let local = cfg.local_path(&g.domain.profile_name());
    match localrules::apply(cfg, parser.as_ref(), &g.domain.uuid, &rules)? {
        Applied::Unchanged => {
            println!("{}: {} already grants this", g.domain.name, local.display())
        }
        Applied::Written(how) => {
            for r in &rules {
                println!("{}: added {r}", g.domain.name);
            }
            println!("{}: {}; {how}", g.domain.name, local.display());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_escaped_and_host_paths_refused() {
        let r = rules_for(&["/srv/img/a b.qcow2".into()], false, false).unwrap();
        assert_eq!(r, vec![r#""/srv/img/a b.qcow2" rwk,"#.to_string()]);
        let r = rules_for(&["/srv/img/x[1].qcow2".into()], true, false).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].contains(r"\[1\]") && r[0].ends_with(" r,"), "{r:?}");
        assert!(rules_for(&["/etc/shadow".into()], true, false).is_err());
        assert!(rules_for(&["relative".into()], false, false).is_err());
        let t = rules_for(&["/srv/backup".into()], false, true).unwrap();
        assert!(
            t.iter().any(|l| l.starts_with("\"/srv/backup/**\"")),
            "{t:?}"
        );
    }
}
