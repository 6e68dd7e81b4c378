//! `virt-aa-hook explain`: the I/O around [`virt_aa_hook::explain`] — read the host's log, find
//! each record's guest in libvirt's files, generate what each guest's definition grants,
//! classify, print, and with `--apply` write the site-specific rules
//! ([`virt_aa_hook::localrules`]). The guests come from libvirt's own files, so it works with the
//! daemon down. It lives in the libvirt-linked binary because that one runs unconfined: the
//! hook's own AppArmor profile (which `/usr/sbin/virt-aa-hook` runs under) may neither run
//! `dmesg`/`journalctl` nor write the admin's local rules.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use virt_aa_hook::autogrant::{self, FileKind};
use virt_aa_hook::config::Config;
use virt_aa_hook::denial::{self, Record};
use virt_aa_hook::explain::{self, Claims, Finding, Site, Verdict};
use virt_aa_hook::generate;
use virt_aa_hook::guests::{self, GuestDef};
use virt_aa_hook::host::Host;
use virt_aa_hook::hostlog;
use virt_aa_hook::layout;
use virt_aa_hook::localrules::{self, Applied};
use virt_aa_hook::owner::Source;

/// What the generator makes of one guest: its claims (generated rules, libvirt's name-derived
/// files, its `.files` and local rules) and the `generate` output for a report.
pub struct Generated {
    pub claims: Claims,
    rules_text: Result<String, String>,
}

/// Generate one guest's rules and read its `.files` and local file (rooted in the config's
/// prefix), so [`Claims`] hold every rule its profile really has.
pub fn generate_for(host: &Host, g: &GuestDef) -> Generated {
    let mode = host.mode().0;
    let opts = host.derive_options();
    let settings = generate::Settings {
        mode,
        default_enforcement: host.cfg.enforcement,
        template: virt_aa_hook::profile::DEFAULT_TEMPLATE,
        derive: &opts,
    };
    let mut out = match generate::from_domain(g.domain.clone(), &settings) {
        Ok(out) => Generated {
            claims: Claims::of(&g.domain, Some(&out.derived.rules)),
            rules_text: Ok(out.rules_text),
        },
        Err(e) => Generated {
            claims: Claims::of(&g.domain, None),
            rules_text: Err(e.to_string()),
        },
    };
    let profile = g.domain.profile_name();
    for (path, source) in [
        (host.cfg.files_path(&profile), Source::HelperFiles),
        (host.cfg.local_path(&profile), Source::Local),
    ] {
        if let Ok(Some(b)) = virt_aa_hook::store::read_capped(&path) {
            out.claims.add_text(&String::from_utf8_lossy(&b), source);
        }
    }
    out
}

/// The places guests' data lives on this host: the defaults, the config's `data_dirs` and
/// libvirt's directory pools.
pub fn data_dirs(cfg: &Config) -> Vec<String> {
    autogrant::data_dirs(cfg.data_dirs.iter().cloned().chain(guests::pool_dirs(cfg)))
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .into_owned();
    text.lines().next().map(|l| l.trim().to_string())
}

/// The bug report text for a generator gap.
fn bug_report(host: &Host, g: &GuestDef, gen_: &Generated, rec: &Record) -> String {
    let parser = virt_aa_hook::aaparser::Parser::from_config(&host.cfg)
        .ok()
        .and_then(|p| p.version());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let libvirt = first_line("libvirtd", &["--version"]).unwrap_or_else(|| "?".into());
    let path = rec.name.as_deref().unwrap_or("");
    let element = explain::element_writing(&g.domain.root, path)
        .map(virt_aa_hook::xml::element_xml)
        .unwrap_or_else(|| "(derived from the definition; see the rules below)\n".into());
    let mut s = String::new();
    s.push_str(&format!(
        "--- virt-aa-hook bug report: generator gap ---\nvirt-aa-hook {} | {} | kernel {kernel} | {libvirt} | mode {}\n",
        env!("CARGO_PKG_VERSION"),
        parser.unwrap_or_else(|| "apparmor_parser ?".into()),
        host.mode().0
    ));
    s.push_str(&format!(
        "record: apparmor={:?} operation={:?} profile={:?} name={path:?} requested_mask={:?}\nelement:\n",
        rec.outcome,
        rec.operation,
        rec.profile,
        rec.requested.as_deref().unwrap_or("")
    ));
    s.push_str(&element);
    s.push_str("virt-aa-hook generate (rules):\n");
    match &gen_.rules_text {
        Ok(t) => s.push_str(t),
        Err(e) => s.push_str(&format!("(generation failed: {e})\n")),
    }
    s.push_str("--- end ---");
    s
}

pub fn run(
    cfg: &Config,
    since: Option<String>,
    guest: Option<String>,
    apply: bool,
    log: Option<PathBuf>,
) -> Result<i32> {
    let cfg = cfg.clone();
    let host = Host::new(cfg.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let since = since
        .map(|s| hostlog::parse_since(&s, now))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (source, text) = match log {
        Some(p) if p.as_os_str() == "-" => {
            let mut t = Vec::new();
            std::io::stdin()
                .lock()
                .take(hostlog::MAX_BYTES)
                .read_to_end(&mut t)
                .context("reading stdin")?;
            (
                "stdin".to_string(),
                String::from_utf8_lossy(&t).into_owned(),
            )
        }
        Some(p) => {
            let src = hostlog::Source::File(p);
            let t = hostlog::read_source(&src, since)?;
            (src.to_string(), t)
        }
        None => {
            let (s, t) = hostlog::read_host(&cfg, since)?;
            (s.to_string(), t)
        }
    };
    let (records, bad) = hostlog::guest_records(&text, since);
    let (defs, warnings) = guests::load_all(&cfg);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if let Some(k) = &guest {
        if !defs.iter().any(|g| g.is(k)) && uuid::Uuid::parse_str(k).is_err() {
            bail!(
                "no guest {k:?} in {} or {}",
                layout::QEMU_CONFIG_DIR,
                layout::QEMU_STATUS_DIR
            );
        }
    }
    // Records by guest UUID, in first-seen order.
    let mut by_guest: BTreeMap<uuid::Uuid, Vec<Record>> = BTreeMap::new();
    let mut order: Vec<uuid::Uuid> = Vec::new();
    for r in records {
        let Some((u, _)) = denial::guest_of(&r.profile) else {
            continue;
        };
        if let Some(k) = &guest {
            let named = defs.iter().any(|g| g.is(k) && g.domain.uuid == u);
            if !named && uuid::Uuid::parse_str(k).ok() != Some(u) {
                continue;
            }
        }
        if !by_guest.contains_key(&u) {
            order.push(u);
        }
        by_guest.entry(u).or_default().push(r);
    }
    println!(
        "source: {source}{}: {} record(s) of {} guest(s)",
        since.map(|s| format!(" since @{s}")).unwrap_or_default(),
        by_guest.values().map(Vec::len).sum::<usize>(),
        by_guest.len()
    );
    if !bad.is_empty() {
        println!(
            "{} record(s) could not be read and were skipped (first: {})",
            bad.len(),
            bad[0]
        );
    }
    if by_guest.is_empty() {
        println!("no AppArmor denials of libvirt guests");
        return Ok(0);
    }
    let generated: Vec<Generated> = defs.iter().map(|g| generate_for(&host, g)).collect();
    let dirs = data_dirs(&cfg);
    let host_root = host.derive_options().host_root;
    let kind = |p: &str| FileKind::of(&host_root.join(p.trim_start_matches('/')));
    let policy = virt_aa_hook::paths::HostPolicy::new(&cfg);
    let site = Site {
        data_dirs: &dirs,
        kind: &kind,
        policy: &policy,
    };
    let mut failed = false;
    for u in order {
        let recs = by_guest.remove(&u).unwrap_or_default();
        let profile = virt_aa_hook::domain::profile_name(&u);
        let local = cfg.local_path(&profile);
        let pfile = cfg.profile_path(&profile);
        let me = defs.iter().position(|g| g.domain.uuid == u);
        match me {
            Some(i) => println!(
                "\nguest {} ({u}, {}): {} record(s), profile {profile}",
                defs[i].domain.name,
                defs[i].state,
                recs.len()
            ),
            None => println!(
                "\nguest {u} (unknown: no definition in {} or {}): {} record(s)",
                layout::QEMU_CONFIG_DIR,
                layout::QEMU_STATUS_DIR,
                recs.len()
            ),
        }
        let guest_word = me
            .map(|i| defs[i].domain.name.clone())
            .unwrap_or_else(|| u.to_string());
        let empty = Claims::default();
        let own = me.map(|i| &generated[i].claims).unwrap_or(&empty);
        let others: Vec<(String, Claims)> = defs
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me)
            .map(|(i, g)| (g.domain.name.clone(), generated[i].claims.clone()))
            .collect();
        let mut to_apply: Vec<String> = Vec::new();
        for (record, count, outcomes) in explain::collapse(recs) {
            let child = denial::guest_of(&record.profile).and_then(|(_, c)| c);
            let mut verdict = explain::classify(&record, own, &others, &site);
            if me.is_none()
                && matches!(
                    verdict,
                    Verdict::SiteSpecific { .. } | Verdict::GrantOnly { .. }
                )
            {
                verdict = Verdict::Unusable(format!(
                    "no defined guest has UUID {u}: a rule in its local file would be inherited \
                     by a guest defined later with it (define the guest first)"
                ));
            }
            let report = match (&verdict, me) {
                (Verdict::GeneratorGap { .. }, Some(i)) => {
                    Some(bug_report(&host, &defs[i], &generated[i], &record))
                }
                _ => None,
            };
            if let (Verdict::SiteSpecific { rule, .. }, None) = (&verdict, &child) {
                to_apply.push(rule.clone());
            }
            let f = Finding {
                record,
                count,
                outcomes,
                verdict,
            };
            print!(
                "{}",
                explain::render(
                    &f,
                    &guest_word,
                    &local.display().to_string(),
                    &pfile.display().to_string(),
                    child.as_deref(),
                    report.as_deref()
                )
            );
        }
        if apply && me.is_none() {
            // A later guest defined with this UUID would inherit the local file.
            println!(
                "apply: nothing written: no defined guest has UUID {u}, and a guest defined later \
                 with it would inherit the rules"
            );
        } else if apply && !to_apply.is_empty() {
            match localrules::apply(&cfg, &u, &to_apply) {
                Ok(Applied::Unchanged) => {
                    println!("apply: {} already has these rules", local.display())
                }
                Ok(Applied::Written(how)) => println!(
                    "apply: added {} rule(s) to {}; {how}",
                    to_apply.len(),
                    local.display()
                ),
                Err(e) => {
                    eprintln!("error: apply: {e}");
                    failed = true;
                }
            }
        } else if apply {
            // Every record is granted already (a local rule applied before: the records
            // predate its reload), refused, or for the admin to grant by hand.
            println!(
                "apply: nothing to write to {}: no record asks for a rule that is not there yet \
                 and may be applied automatically",
                local.display()
            );
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const WEB: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const DB: &str = "aaaaaaaa-0000-4000-8000-000000000002";
    const UNKNOWN: &str = "aaaaaaaa-0000-4000-8000-0000000000ff";

    fn line(uuid: &str, path: &str, mask: &str) -> String {
        let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
        format!(
            r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="open" profile="libvirt-{uuid}" name={hex} requested_mask="{mask}" denied_mask="{mask}""#
        )
    }

    /// `--apply` end to end in a temporary root: only the site file of a defined guest is
    /// written; another guest's derived file, host locations, a device and every record of an
    /// unknown UUID are not.
    #[test]
    fn apply_writes_only_allowed_rules_of_defined_guests() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            apparmor_parser: Some("/nonexistent/apparmor_parser".into()),
            probe_backing: false,
            ..Config::rooted_at(d.path())
        };
        let etc = cfg.rooted(Path::new(layout::QEMU_CONFIG_DIR));
        std::fs::create_dir_all(&etc).unwrap();
        for (name, u) in [("web", WEB), ("db", DB)] {
            std::fs::write(
                etc.join(format!("{name}.xml")),
                format!(
                    "<domain type='kvm'><name>{name}</name><uuid>{u}</uuid><devices>\
                     <disk type='file' device='disk'><source file='/srv/vah-test/{name}.img'/>\
                     <target dev='vda'/></disk></devices></domain>"
                ),
            )
            .unwrap();
        }
        let site = "/srv/vah-test/site data/x 1.img";
        let log = [
            line(WEB, site, "r"),
            line(WEB, "/srv/vah-test/db.img", "r"),
            line(WEB, "/var/lib/libvirt/qemu/domain-3-db/master-key.aes", "r"),
            line(WEB, "/run/libvirt/qemu/db.pid", "w"),
            line(WEB, "/root/.bashrc", "w"),
            line(WEB, "/dev/sda", "rw"),
            line(WEB, "/", "r"),
            line(UNKNOWN, "/srv/vah-test/squat.img", "rw"),
            line(UNKNOWN, "/dev/sdb", "rw"),
        ]
        .join("\n");
        let logf = d.path().join("kern.log");
        std::fs::write(&logf, log).unwrap();
        let rc = run(&cfg, None, None, true, Some(logf.clone())).unwrap();
        assert_eq!(rc, 0);
        let local = cfg.local_path(&format!("libvirt-{WEB}"));
        let text = std::fs::read_to_string(&local).unwrap();
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('"'))
            .collect();
        assert_eq!(rules, vec![format!("\"{site}\" r,").as_str()], "{text}");
        assert!(!cfg.local_path(&format!("libvirt-{UNKNOWN}")).exists());
        assert!(!cfg.local_path(&format!("libvirt-{DB}")).exists());
        // A second run changes nothing.
        run(&cfg, None, None, true, Some(logf)).unwrap();
        assert_eq!(std::fs::read_to_string(&local).unwrap(), text);
    }
}
