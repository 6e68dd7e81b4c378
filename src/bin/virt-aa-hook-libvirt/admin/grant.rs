//! `virt-aa-hook grant GUEST PATH...`: let one guest open a file (or a directory tree) it was not
//! given by its definition, by adding the rule to its local file and reloading its profile.
//!
//! Why: in standalone mode (libvirt without its AppArmor driver) nothing tells us about a
//! hotplug, a snapshot overlay or a block-commit target; a script that is about to run one can
//! grant the path first (`grant web /srv/img/new.qcow2 && virsh attach-disk …`). In libvirt mode
//! helper mode makes this unnecessary for storage libvirt labels; it still serves paths libvirt
//! never labels (a backup tool's socket, a site-specific file).
//!
//! The path is resolved (symlinks), then goes through the same decision as `explain --apply`
//! ([`autogrant::check`]: the host policy of a disk, and the locations no rule we write ever
//! reaches — `/proc`, `/sys`, `/etc`, crontabs, AppArmor's and libvirt's own files, `/root`,
//! kernel devices), except that the admin may reach outside the data places and, with
//! `--device`, device nodes; and it must not be (or, with `--tree`, hold) a file another guest's
//! rules match ([`virt_aa_hook::owner`]), so the refusal names that guest. The rule is escaped
//! like every other ([`RuleSet::grant_resolved`]). The rule lands in `/etc/apparmor.d/local/libvirt/libvirt-<uuid>` (the admin's file,
//! kept across starts; [`localrules::apply`] merges, writes atomically and puts the old file back
//! if the profile does not take it). `--revoke` is left to the admin's editor on purpose: the
//! local file is theirs.

use anyhow::{Result, bail};
use std::sync::Arc;
use virt_aa_hook::autogrant::{self, Asker, FileKind};
use virt_aa_hook::config::Config;
use virt_aa_hook::guests;
use virt_aa_hook::host::Host;
use virt_aa_hook::layout;
use virt_aa_hook::localrules::{self, Applied};
use virt_aa_hook::paths;
use virt_aa_hook::rules::{Perms, RuleSet, Scope};

/// What a granted path must not be: one of these guests' files (`(name, claims)`).
pub type Others<'a> = &'a [(String, virt_aa_hook::explain::Claims)];

/// The rule lines (`"<pattern>" <perms>,`) for `paths`, or the first refusal. Each path is
/// resolved (symlinks), then goes through [`autogrant::check`] (`device`: the `--device` flag)
/// and must not be, or with `tree` contain, a file another guest's rules match.
pub fn rules_for(
    policy: &Arc<paths::HostPolicy>,
    paths: &[String],
    read_only: bool,
    tree: bool,
    device: bool,
    others: Others<'_>,
) -> Result<Vec<String>, String> {
    let perms = if read_only { Perms::R } else { Perms::RWK };
    let scope = if tree { Scope::Tree } else { Scope::File };
    let mut rs = RuleSet::with_policy(policy.clone());
    let mut resolver = paths::Resolver::new();
    for p in paths {
        paths::validate(p).map_err(|e| e.to_string())?;
        let resolved = resolver.resolve(p).map_err(|e| e.to_string())?;
        let r = resolved.to_string_lossy();
        for (name, c) in others {
            let hit = if tree {
                c.rules.reaching_into(&r).map(|o| o.describe())
            } else {
                c.claims(&r)
            };
            if let Some(why) = hit {
                return Err(format!(
                    "{r} {} guest {name:?} ({why}); one guest never gets another's files",
                    if tree { "holds files of" } else { "belongs to" }
                ));
            }
        }
        autogrant::check(
            policy,
            &r,
            perms,
            FileKind::Missing,
            Asker::Grant { device },
        )
        .map_err(|e| e.to_string())?;
        rs.grant_resolved("path granted by the admin", &resolved, perms, scope)
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
    device: bool,
) -> Result<i32> {
    let (defs, _warnings) = guests::load_all(cfg);
    let Some(g) = defs.iter().find(|g| g.is(guest)) else {
        bail!(
            "no guest named {guest:?} in libvirt's files ({} and {})",
            layout::QEMU_CONFIG_DIR,
            layout::QEMU_STATUS_DIR
        );
    };
    let host = Host::new(cfg.clone());
    let others: Vec<(String, virt_aa_hook::explain::Claims)> = defs
        .iter()
        .filter(|o| o.domain.uuid != g.domain.uuid)
        .map(|o| {
            (
                o.domain.name.clone(),
                super::explain::generate_for(&host, o).claims,
            )
        })
        .collect();
    let policy = Arc::new(paths::HostPolicy::new(cfg));
    let rules = match rules_for(&policy, paths, read_only, tree, device, &others) {
        Ok(r) => r,
        Err(e) => bail!("{}: not granted: {e}", g.domain.name),
    };
    let local = cfg.local_path(&g.domain.profile_name());
    match localrules::apply(cfg, &g.domain.uuid, &rules)? {
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

    /// [`super::rules_for`] under the default configuration's host policy.
    fn rules_for(
        p: &[String],
        ro: bool,
        t: bool,
        d: bool,
        o: Others,
    ) -> Result<Vec<String>, String> {
        super::rules_for(&Arc::new(paths::HostPolicy::default()), p, ro, t, d, o)
    }
    use virt_aa_hook::domain::Domain;
    use virt_aa_hook::explain::Claims;

    fn other() -> Vec<(String, Claims)> {
        let d = Domain::parse(
            b"<domain type='kvm'><name>db</name><uuid>aaaaaaaa-0000-4000-8000-000000000002</uuid>\
              <devices><disk type='file' device='disk'><source file='/srv/img/db.qcow2'/>\
              <target dev='vda'/></disk></devices></domain>",
        )
        .unwrap();
        let opts = virt_aa_hook::derive::Options {
            probe_backing: false,
            ..Default::default()
        };
        let rs = virt_aa_hook::derive::derive(&d, &opts).unwrap();
        vec![("db".into(), Claims::of(&d, Some(&rs.rules)))]
    }

    #[test]
    fn rules_are_escaped_and_host_paths_refused() {
        let none: Others<'_> = &[];
        let r = rules_for(&["/srv/img/a b.qcow2".into()], false, false, false, none).unwrap();
        assert_eq!(r, vec![r#""/srv/img/a b.qcow2" rwk,"#.to_string()]);
        let r = rules_for(&["/srv/img/x[1].qcow2".into()], true, false, false, none).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].contains(r"\[1\]") && r[0].ends_with(" r,"), "{r:?}");
        assert!(rules_for(&["/etc/shadow".into()], true, false, false, none).is_err());
        assert!(rules_for(&["relative".into()], false, false, false, none).is_err());
        let t = rules_for(&["/srv/backup".into()], false, true, false, none).unwrap();
        assert!(
            t.iter().any(|l| l.starts_with("\"/srv/backup/**\"")),
            "{t:?}"
        );
    }

    #[test]
    fn the_same_checks_as_apply_and_devices_need_the_flag() {
        let none: Others<'_> = &[];
        for p in [
            "/root/.bashrc",
            "/run/libvirt/libvirt-sock",
            "/var/cache/apparmor/x",
            "/dev/kmsg",
            "/dev/watchdog",
            "/",
        ] {
            let e = rules_for(&[p.into()], false, false, true, none);
            assert!(e.is_err(), "{p}: {e:?}");
        }
        let e = rules_for(&["/dev/null-ish-disk".into()], false, false, false, none);
        assert!(e.is_err_and(|e| e.contains("--device")));
        assert!(rules_for(&["/dev/null-ish-disk".into()], false, false, true, none).is_ok());
        // Another guest's disk and derived files, or a tree holding them: refused, naming it.
        let o = other();
        for p in [
            "/srv/img/db.qcow2",
            "/var/lib/libvirt/qemu/domain-3-db/master-key.aes",
            "/run/libvirt/qemu/db.pid",
        ] {
            let e = rules_for(&[p.into()], false, false, false, &o);
            assert!(
                e.as_ref().is_err_and(|e| e.contains("\"db\"")),
                "{p}: {e:?}"
            );
        }
        let e = rules_for(&["/srv/img".into()], false, true, false, &o);
        assert!(e.is_err_and(|e| e.contains("holds files of guest \"db\"")));
        assert!(rules_for(&["/srv/img/web.qcow2".into()], false, false, false, &o).is_ok());
    }
}
