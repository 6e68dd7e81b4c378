//! `gc`: remove the profiles of guests libvirt no longer knows.
//!
//! A guest undefined while its profile was in place (or a `release` event that never came, e.g.
//! the host lost power) leaves `libvirt-<uuid>` behind, loaded until reboot. `gc` removes those,
//! but only files we wrote (first line is [`MARKER`]) and only with the complete list of defined
//! guests in hand: a file of libvirt's or the admin's, or a guest we could not see, is never
//! touched. Each removal is re-checked under the guest's lock, so a guest started in the
//! meantime keeps its fresh profile.

use super::conn::{self, Libvirt, LvError};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use virt::error::ErrorNumber;
use virt_aa_hook::config::Config;
use virt_aa_hook::lifecycle::{self, LifecycleError, Profiles};
use virt_aa_hook::log::{Level, Log};
#[cfg(test)]
use virt_aa_hook::profile::MARKER;

/// How long `gc` waits for a hook event of the same guest before leaving its file alone.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// One file of the profile directory, as `gc` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// File name inside the profile directory.
    pub name: String,
    /// First line starts with [`MARKER`] (only meaningful for main profile files).
    pub ours: bool,
}

/// What to do with one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Our profile of an undefined guest: unload and remove.
    Remove,
    /// libvirt's `.files` include beside a profile we remove.
    RemoveCompanion,
    /// Undefined guest, but the file is not ours (libvirt's or the admin's).
    KeepNotOurs,
    /// A `.files` whose main profile we do not remove.
    KeepCompanion,
    /// Belongs to a defined guest.
    KeepDefined,
}

/// A verdict for one file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// File name inside the profile directory.
    pub file: String,
    /// Guest UUID the file belongs to (the lock and the re-check use it).
    pub uuid: String,
    /// What happens to it.
    pub verdict: Verdict,
}

/// `libvirt-<uuid>` or `libvirt-<uuid>.files` → (uuid, is_companion). Only the exact spelling
/// libvirt uses (lowercase, hyphenated) counts; anything else in the directory is not a guest
/// profile and is ignored.
pub fn parse_name(file: &str) -> Option<(String, bool)> {
    let (main, companion) = match file.strip_suffix(".files") {
        Some(m) => (m, true),
        None => (file, false),
    };
    let u = uuid::Uuid::parse_str(main.strip_prefix("libvirt-")?).ok()?;
    let canonical = virt_aa_hook::domain::profile_name(&u);
    (canonical == main).then(|| (u.hyphenated().to_string(), companion))
}

/// The pure decision: given the UUIDs libvirt knows and the directory listing, what happens to
/// each guest profile file. Sorted by file name, so a main file comes before its `.files`.
pub fn decide(defined: &HashSet<String>, entries: &[DirEntry]) -> Vec<Decision> {
    let removable: HashSet<String> = entries
        .iter()
        .filter_map(|e| {
            let (u, companion) = parse_name(&e.name)?;
            (!companion && e.ours && !defined.contains(&u)).then_some(u)
        })
        .collect();
    let mut out: Vec<Decision> = entries
        .iter()
        .filter_map(|e| {
            let (uuid, companion) = parse_name(&e.name)?;
            let verdict = if defined.contains(&uuid) {
                Verdict::KeepDefined
            } else if companion {
                if removable.contains(&uuid) {
                    Verdict::RemoveCompanion
                } else {
                    Verdict::KeepCompanion
                }
            } else if e.ours {
                Verdict::Remove
            } else {
                Verdict::KeepNotOurs
            };
            Some(Decision {
                file: e.name.clone(),
                uuid,
                verdict,
            })
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// List the profile directory (missing directory: empty).
pub fn scan(dir: &Path) -> Result<Vec<DirEntry>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("cannot list {}: {e}", dir.display())),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if parse_name(&name).is_none() || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let ours = lifecycle::is_ours(&e.path());
        v.push(DirEntry { name, ours });
    }
    Ok(v)
}

/// Is the guest defined now? Asked again, under the guest's lock, right before a removal.
fn still_unknown(lv: &Libvirt, uuid: &str) -> Result<bool, LvError> {
    let u = uuid.to_string();
    lv.run(move |c| match c.lookup_domain_by_uuid_string(&u) {
        Ok(_) => Ok(false),
        Err(e) if e.code().is(ErrorNumber::NoDomain) => Ok(true),
        Err(e) => Err(anyhow!("cannot look up {u}: {}", conn::msg(&e))),
    })
}

/// Run `gc [--dry-run]`.
pub fn run(cfg: &Config, lv: &Libvirt, dry_run: bool) -> Result<i32> {
    let lv = lv.read_only();
    let guests = lv
        .run(conn::list_guests)
        .map_err(|e| anyhow!("{e}; nothing was removed"))?;
    let defined: HashSet<String> = guests.iter().map(|g| g.uuid.clone()).collect();
    let dir = cfg.rooted(&cfg.profile_dir);
    let decisions = decide(&defined, &scan(&dir)?);
    let profiles = Profiles::new(cfg);
    let log = Log::new(cfg.rooted(&cfg.log_file));
    let (mut removed, mut not_ours, mut of_defined, mut errors) = (0, 0, 0, 0);
    let mut failed: HashSet<String> = HashSet::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    for d in &decisions {
        let path = dir.join(&d.file);
        match d.verdict {
            Verdict::KeepDefined => of_defined += 1,
            Verdict::KeepNotOurs => {
                not_ours += 1;
                println!("kept (not ours)  {}", path.display());
            }
            Verdict::KeepCompanion => {
                println!(
                    "kept (not ours)  {}  (its profile is not ours)",
                    path.display()
                );
            }
            Verdict::RemoveCompanion => {
                if failed.contains(&d.uuid) {
                    println!(
                        "kept             {}  (its profile was kept)",
                        path.display()
                    );
                } else if dry_run {
                    println!("{verb:<16} {}", path.display());
                } else {
                    let name = format!("{}{}", virt_aa_hook::domain::PROFILE_PREFIX, d.uuid);
                    match profiles.remove_companion(&name) {
                        Ok(_) => println!("{verb:<16} {}", path.display()),
                        Err(e) => {
                            errors += 1;
                            println!("FAILED           {}: {e}", path.display());
                        }
                    }
                }
            }
            Verdict::Remove if dry_run => {
                removed += 1;
                println!("{verb:<16} {}", path.display());
            }
            Verdict::Remove => match remove_one(&profiles, &lv, &d.uuid) {
                Ok(Some(note)) => {
                    removed += 1;
                    println!("{verb:<16} {}{note}", path.display());
                    log.line(
                        Level::Info,
                        &format!(
                            "[(gc) {}] gc/remove: removed {}{note}: guest no longer defined at {}",
                            d.uuid,
                            path.display(),
                            lv.uri
                        ),
                    );
                }
                Ok(None) => {
                    failed.insert(d.uuid.clone());
                    println!("kept (guest is defined again)  {}", path.display());
                }
                Err(e) => {
                    failed.insert(d.uuid.clone());
                    errors += 1;
                    println!("FAILED           {}: {e:#}", path.display());
                }
            },
        }
    }
    let what = if dry_run { "would remove" } else { "removed" };
    println!(
        "gc: {what} {removed} stale profile(s) of ours; kept {not_ours} not ours; \
         {of_defined} file(s) belong to defined guests{}",
        if errors > 0 {
            format!("; {errors} failure(s)")
        } else {
            String::new()
        }
    );
    Ok(i32::from(errors > 0))
}

/// Remove one stale profile: lock, re-check with libvirt, then the lifecycle's removal of a
/// stale profile (unload if loaded, delete; only if ours). `Ok(None)`: the guest exists again,
/// nothing done.
fn remove_one(profiles: &Profiles, lv: &Libvirt, uuid: &str) -> Result<Option<String>> {
    let _lock = profiles.lock_for(uuid, LOCK_WAIT)?;
    match still_unknown(lv, uuid) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => bail!("{e}"),
    }
    let name = format!("{}{uuid}", virt_aa_hook::domain::PROFILE_PREFIX);
    match profiles.remove_stale(&name) {
        Ok(None) => bail!("no longer ours (changed since the scan)"),
        Ok(Some(unloaded)) => Ok(Some(if unloaded { " (unloaded)" } else { "" }.into())),
        Err(e @ LifecycleError::Parser { .. }) => {
            Err(anyhow::Error::new(e).context("cannot unload it; file kept"))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000000-0000-0000-0000-00000000000a";
    const B: &str = "00000000-0000-0000-0000-00000000000b";
    const C: &str = "00000000-0000-0000-0000-00000000000c";
    const D: &str = "00000000-0000-0000-0000-00000000000d";

    fn e(name: &str, ours: bool) -> DirEntry {
        DirEntry {
            name: name.into(),
            ours,
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name(&format!("libvirt-{A}")), Some((A.into(), false)));
        assert_eq!(
            parse_name(&format!("libvirt-{A}.files")),
            Some((A.into(), true))
        );
        assert_eq!(parse_name(&format!("libvirt-{}", A.to_uppercase())), None);
        assert_eq!(parse_name("libvirt-qemu"), None);
        assert_eq!(parse_name("TEMPLATE.qemu"), None);
        assert_eq!(parse_name(&format!(".libvirt-{A}.tmp.12")), None);
    }

    #[test]
    fn decisions() {
        let defined: HashSet<String> = [B.to_string()].into();
        let entries = vec![
            e(&format!("libvirt-{A}.files"), false),
            e(&format!("libvirt-{A}"), true), // ours, undefined → remove (+ .files)
            e(&format!("libvirt-{B}"), true), // ours, defined → keep
            e(&format!("libvirt-{B}.files"), false),
            e(&format!("libvirt-{C}"), false), // not ours, undefined → keep
            e(&format!("libvirt-{C}.files"), false),
            e(&format!("libvirt-{D}.files"), false), // orphan .files → keep
            e("TEMPLATE.qemu", false),
        ];
        let got: Vec<(String, Verdict)> = decide(&defined, &entries)
            .into_iter()
            .map(|d| (d.file, d.verdict))
            .collect();
        assert_eq!(
            got,
            vec![
                (format!("libvirt-{A}"), Verdict::Remove),
                (format!("libvirt-{A}.files"), Verdict::RemoveCompanion),
                (format!("libvirt-{B}"), Verdict::KeepDefined),
                (format!("libvirt-{B}.files"), Verdict::KeepDefined),
                (format!("libvirt-{C}"), Verdict::KeepNotOurs),
                (format!("libvirt-{C}.files"), Verdict::KeepCompanion),
                (format!("libvirt-{D}.files"), Verdict::KeepCompanion),
            ]
        );
    }

    #[test]
    fn scan_reads_markers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(format!("libvirt-{A}")),
            format!("{MARKER} x\n"),
        )
        .unwrap();
        std::fs::write(d.path().join(format!("libvirt-{C}")), "profile x {}\n").unwrap();
        std::fs::write(d.path().join("README"), "x").unwrap();
        let mut v = scan(d.path()).unwrap();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            v,
            vec![
                e(&format!("libvirt-{A}"), true),
                e(&format!("libvirt-{C}"), false)
            ]
        );
        assert!(scan(&d.path().join("none")).unwrap().is_empty());
    }

    #[test]
    #[serial_test::serial]
    fn removes_only_stale_files_of_ours() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::rooted_at(d.path());
        let dir = cfg.rooted(&cfg.profile_dir);
        std::fs::create_dir_all(&dir).unwrap();
        let test_guest = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        for (u, ours) in [(A, true), (C, false), (test_guest, true)] {
            let body = if ours {
                format!("{MARKER}\n")
            } else {
                "x\n".into()
            };
            std::fs::write(dir.join(format!("libvirt-{u}")), body).unwrap();
        }
        std::fs::write(dir.join(format!("libvirt-{A}.files")), "x\n").unwrap();
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        assert_eq!(run(&cfg, &lv, true).unwrap(), 0);
        assert!(dir.join(format!("libvirt-{A}")).exists());
        assert_eq!(run(&cfg, &lv, false).unwrap(), 0);
        assert!(!dir.join(format!("libvirt-{A}")).exists());
        assert!(!dir.join(format!("libvirt-{A}.files")).exists());
        assert!(dir.join(format!("libvirt-{C}")).exists());
        assert!(dir.join(format!("libvirt-{test_guest}")).exists());
        let log = std::fs::read_to_string(cfg.rooted(&cfg.log_file)).unwrap();
        assert_eq!(log.lines().count(), 1);
        assert!(
            log.contains(&format!("[(gc) {A}] gc/remove: removed")),
            "{log}"
        );
    }
}
