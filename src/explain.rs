//! `virt-aa-hook explain`: from an AppArmor record to what to do about it.
//!
//! A record's path is chosen by the guest (a compromised QEMU probes whatever it likes), so what
//! `explain` offers — and `--apply` writes — must never hand a guest what it should not have.
//! Each file access a guest's profile refused (or, in complain mode, would refuse) is decided
//! here by pure functions over the record, every guest's rules ([`crate::owner`]) and the host's
//! data places ([`crate::autogrant`]):
//! - **stale profile**: the guest's current rules (generated, `.files`, local) already grant it,
//!   matched with AppArmor's glob semantics: the loaded profile predates them; the reload command;
//! - **generator gap**: the guest's definition names the path (or a generated rule grants part of
//!   the access) but the generated profile does not grant it — a bug in virt-aa-hook; we print a
//!   ready bug report;
//! - **refused**: the host policy ([`crate::paths::HostPolicy`]) or the allow-list
//!   ([`crate::autogrant::check`]) forbids it, another guest's rules match it (its disk, or a file
//!   libvirt derives from its name or UUID: the guest is named), or it is a name any guest could
//!   take first (backup tools' defaults, with the option that avoids them);
//! - **grant only**: not refused, but not for a rule written automatically (a device node, a
//!   socket, outside the places guests' data lives): the `grant` command the admin may run;
//! - **site-specific**: none of the above — a rule for the guest's local file
//!   (`/etc/apparmor.d/local/libvirt/libvirt-<uuid>`), escaped by [`crate::paths::escape`], the
//!   one escaper every rule goes through. Only these are written by `--apply`.
//!
//! A rule offered is always one literal path, exactly the record's name, escaped: never a glob,
//! never a second rule (the fuzz target `denial` checks this on arbitrary records).

use crate::autogrant::{self, Asker, FileKind};
use crate::denial::{Outcome, Record};
use crate::domain::Domain;
use crate::owner::{GuestRules, OwnedRule, Source};
use crate::paths;
use crate::rules::{Perms, RuleLine, RuleSet};
use crate::xml::Element;
use std::collections::BTreeMap;
use std::path::Path;

/// The permissions a `requested_mask` asks for, as rule permissions. Create, delete and append
/// need `w` in a rule. Execution is never offered (a new program in QEMU's profile is a decision
/// for a person, not a log line).
pub fn perms_of_mask(mask: &str) -> Result<Perms, String> {
    let mut p = Perms::default();
    for c in mask.chars() {
        p = p.with(match c {
            'r' => Perms::R,
            'w' | 'a' | 'c' | 'd' => Perms::W,
            'k' => Perms::K,
            'l' => Perms::L,
            'm' => Perms::M,
            'x' | 'i' | 'u' | 'p' | 'P' | 'U' | 'C' => {
                return Err("execute access is never offered as a rule".into());
            }
            _ => Perms::default(),
        });
    }
    if p == Perms::default() {
        return Err(format!("requested mask {mask:?} has no file permission"));
    }
    Ok(p)
}

/// What to do about one access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a file access with a path (capability, signal, network, ...): no rule from us.
    NotFile(String),
    /// The record cannot become a rule (execute access, relative or odd path).
    Unusable(String),
    /// The current definition already grants it (`element`): the loaded profile predates it.
    Stale { element: String },
    /// The guest's definition names the path, the generated profile does not grant `perms`.
    GeneratorGap { element: String, perms: Perms },
    /// Not in any definition, in a place guests' data lives: this rule in the guest's local
    /// file grants exactly the path; `--apply` writes it.
    SiteSpecific { rule: String, perms: Perms },
    /// Not in any definition and not for `--apply` (a device node, a socket, outside the data
    /// places: [`autogrant::Refusal::grant_may`]): why, and the admin may `grant` it.
    GrantOnly {
        why: String,
        device: bool,
        perms: Perms,
    },
    /// Stays denied: why.
    Refused(String),
}

impl Verdict {
    /// One word for summaries and JSON.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::NotFile(_) => "not-a-file",
            Verdict::Unusable(_) => "unusable",
            Verdict::Stale { .. } => "stale-profile",
            Verdict::GeneratorGap { .. } => "generator-gap",
            Verdict::SiteSpecific { .. } => "site-specific",
            Verdict::GrantOnly { .. } => "grant-only",
            Verdict::Refused(_) => "refused",
        }
    }
}

/// What a definition claims: every rule of the guest ([`GuestRules`]: generated, libvirt's
/// files for it, and once read, its `.files` and local rules), and every absolute path written in
/// its XML (an element the generator may not know yet).
#[derive(Clone, Debug, Default)]
pub struct Claims {
    pub rules: GuestRules,
    /// `(path, element description)` of every absolute path in the XML.
    pub written: Vec<(String, String)>,
}

impl Claims {
    /// Gather from a definition and (if it could be generated) its rules.
    pub fn of(dom: &Domain, rules: Option<&RuleSet>) -> Claims {
        let mut c = Claims {
            rules: GuestRules::of(dom, rules),
            written: Vec::new(),
        };
        walk_paths(&dom.root, &mut Vec::new(), &mut c.written);
        c
    }

    /// Add the rules of the guest's `.files` or local file.
    pub fn add_text(&mut self, text: &str, source: Source) {
        self.rules.add_text(text, source);
    }

    /// What the guest's current rules grant on `path`: the union of the permissions of every
    /// rule matching it (libvirt's name-derived files of other runs excluded: the loaded profile
    /// never had them), and the generator's first rule among them (its element, or the rule).
    fn coverage(&self, path: &str) -> (Perms, Option<String>) {
        let mut have = Perms::default();
        let mut generated = None;
        for r in self.rules.matching(path) {
            match &r.source {
                Source::Identity(_) => continue,
                Source::Element(e) => {
                    generated.get_or_insert_with(|| e.clone());
                }
                Source::Generated => {
                    generated.get_or_insert_with(|| r.describe());
                }
                Source::HelperFiles | Source::Local => {}
            }
            have = have.with(r.perms);
        }
        (have, generated)
    }

    /// The first rule granting `path`, described for a message.
    fn first_rule(&self, path: &str) -> Option<String> {
        self.rules
            .matching(path)
            .find(|r| !matches!(r.source, Source::Identity(_)))
            .map(|r| match &r.source {
                Source::Element(e) => e.clone(),
                _ => r.describe(),
            })
    }

    /// The XML element that writes `path`.
    fn written_by(&self, path: &str) -> Option<&str> {
        self.written
            .iter()
            .find(|(p, _)| p == path || paths::normalize_lexically(Path::new(p)) == Path::new(path))
            .map(|(_, e)| e.as_str())
    }

    /// Whether the guest's rules match or its definition names `path` at all, described.
    pub fn claims(&self, path: &str) -> Option<String> {
        self.rules
            .matching(path)
            .next()
            .map(OwnedRule::describe)
            .or_else(|| {
                self.written_by(path)
                    .map(|e| format!("{e} in its definition"))
            })
    }
}

/// What `classify` needs to know about the host: the places guests' data lives
/// ([`autogrant::data_dirs`]) and what is at a path now.
pub struct Site<'a> {
    pub data_dirs: &'a [String],
    pub kind: &'a dyn Fn(&str) -> FileKind,
    /// The host policy of the configuration in force.
    pub policy: &'a paths::HostPolicy,
}

impl Site<'_> {
    /// The default data places; every path looks not yet created (tests, the fuzzer).
    pub fn fixed(data_dirs: &[String]) -> Site<'_> {
        Site {
            data_dirs,
            kind: &|_| FileKind::Missing,
            policy: paths::HostPolicy::defaults(),
        }
    }
}

/// Every attribute value or text that is an absolute path, with `<a><b attr=...>` naming it.
fn walk_paths(e: &Element, stack: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    let mut here = e.name.clone();
    if let Some(t) = e
        .child("target")
        .and_then(|t| t.attr_nonempty("dev").or(t.attr_nonempty("dir")))
    {
        here = format!("{here} (target {t})");
    } else if let Some(a) = e.child("alias").and_then(|a| a.attr_nonempty("name")) {
        here = format!("{here} (alias {a})");
    }
    stack.push(here);
    let chain = |last: &str| format!("<{}>{last}", stack.join("><"));
    for (k, v) in &e.attrs {
        if v.starts_with('/') {
            out.push((v.clone(), chain(&format!(" {k}="))));
        }
    }
    if let Some(t) = e.text_nonempty() {
        if t.starts_with('/') {
            out.push((t.to_string(), chain(" text")));
        }
    }
    for c in &e.children {
        walk_paths(c, stack, out);
    }
    stack.pop();
}

/// Classify one record of guest `own`, given the other guests' claims (`(name, claims)`) and
/// the host's data places. Only a [`Verdict::SiteSpecific`] rule is ever written by `--apply`:
/// it passed [`autogrant::check`] and matches no rule of any other guest.
pub fn classify(rec: &Record, own: &Claims, others: &[(String, Claims)], site: &Site) -> Verdict {
    if !rec.is_file() {
        return Verdict::NotFile(format!(
            "operation {:?}{}{} is not a file access: explain offers no rule for it",
            rec.operation,
            rec.class
                .as_deref()
                .map(|c| format!(" (class {c})"))
                .unwrap_or_default(),
            rec.what()
                .map(|w| format!(" asking for {w}"))
                .unwrap_or_default(),
        ));
    }
    let path = rec.name.as_deref().unwrap_or("");
    let mask = rec.requested.as_deref().unwrap_or("");
    let perms = match perms_of_mask(mask) {
        Ok(p) => p,
        Err(e) => return Verdict::Unusable(e),
    };
    if let Err(e) = paths::validate(path) {
        return Verdict::Unusable(e.to_string());
    }
    // The kernel logs the resolved path; anything with `.`/`..`/`//` left in it is not a path
    // the rule could match as written.
    let clean = paths::normalize_lexically(Path::new(path));
    if clean.as_os_str() != path.trim_end_matches('/') && path != "/" {
        return Verdict::Unusable(format!("{path:?} is not a normalised absolute path"));
    }
    let (granted, generated) = own.coverage(path);
    if granted.contains(perms) {
        let element = own.first_rule(path).unwrap_or_default();
        return Verdict::Stale { element };
    }
    if let Some(element) = generated {
        let want = granted.with(perms);
        return match site
            .policy
            .check(Path::new(path), want.writes(), &want.to_string())
        {
            Ok(()) => Verdict::GeneratorGap { element, perms },
            Err(e) => Verdict::Refused(format!("{e} (the guest's {element} asks for it)")),
        };
    }
    if let Err(e) = site
        .policy
        .check(Path::new(path), perms.writes(), &perms.to_string())
    {
        return Verdict::Refused(e.to_string());
    }
    if let Some(element) = own.written_by(path) {
        return Verdict::GeneratorGap {
            element: element.to_string(),
            perms,
        };
    }
    if let Some((name, el)) = others
        .iter()
        .find_map(|(n, c)| c.claims(path).map(|e| (n, e)))
    {
        return Verdict::Refused(format!(
            "{path} belongs to guest {name:?} ({el}); one guest never gets another's files"
        ));
    }
    if let Some(why) = shared_name(path) {
        return Verdict::Refused(why);
    }
    let kind = (site.kind)(path);
    match autogrant::check(
        site.policy,
        path,
        perms,
        kind,
        Asker::Apply {
            data_dirs: site.data_dirs,
        },
    ) {
        Ok(()) => Verdict::SiteSpecific {
            rule: rule_line(path, perms),
            perms,
        },
        Err(e) if e.grant_may() => Verdict::GrantOnly {
            why: e.to_string(),
            device: matches!(e, autogrant::Refusal::Device { .. }),
            perms,
        },
        Err(e) => Verdict::Refused(e.to_string()),
    }
}

/// Files well-known tools create under a name any guest could take first (a fixed prefix in a
/// world-writable directory): granting one to a guest lets a compromised QEMU squat the name for
/// another guest's next run (for a backup socket: serve the backup tool, running as root, its own
/// data; for a scratch file: read another guest's backup). A rule for one random name would
/// also not help the next run. `(prefix, what it is, the fix)`.
const SHARED_NAMES: &[(&str, &str, &str)] = &[
    (
        "/var/tmp/virtnbdbackup.",
        "virtnbdbackup's default NBD socket (/var/tmp/virtnbdbackup.<pid>)",
        "run virtnbdbackup with -f /var/lib/libvirt/qemu/domain-<id>-<name>/nbd.sock, the guest's \
         own directory, which only its profile grants",
    ),
    (
        "/var/tmp/backup.",
        "virtnbdbackup's default scratch file (/var/tmp/backup.<random>.<disk>, its -S default)",
        "run virtnbdbackup with -S /var/lib/libvirt/qemu/domain-<id>-<name>, the guest's own \
         directory, which only its profile grants",
    ),
];

/// Why `path` stays denied although no definition claims it: a name shared by every guest.
fn shared_name(path: &str) -> Option<String> {
    SHARED_NAMES
        .iter()
        .find(|(prefix, _, _)| path.starts_with(prefix))
        .map(|(_, what, fix)| format!("{path} is {what}, a name any guest could take first: {fix}"))
}

/// The rule for the local file: one escaped literal path.
pub fn rule_line(path: &str, perms: Perms) -> String {
    RuleLine {
        pattern: &paths::escape(path),
        perms,
    }
    .to_string()
}

/// Header of the block `--apply` writes in a local file.
pub const APPLY_HEADER: &str = "# added by virt-aa-hook explain --apply";

/// The local file with `rules` (lines from [`rule_line`]) merged in: a rule whose pattern is
/// already there with the permissions is skipped, one with fewer permissions is widened in
/// place, the rest appended under [`APPLY_HEADER`]. `None` when nothing changes (idempotent).
pub fn merge_local(existing: &str, rules: &[String]) -> Option<String> {
    let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
    let mut changed = false;
    let mut appended: Vec<String> = Vec::new();
    for r in rules {
        let Some(RuleLine {
            pattern: pat,
            perms,
        }) = RuleLine::parse(r)
        else {
            continue;
        };
        let pos = lines
            .iter()
            .position(|l| RuleLine::parse(l).is_some_and(|l| l.pattern == pat));
        match pos {
            Some(i) => {
                let have = RuleLine::parse(&lines[i]).expect("matched above").perms;
                if !have.contains(perms) {
                    let indent: String =
                        lines[i].chars().take_while(|c| c.is_whitespace()).collect();
                    let wider = RuleLine {
                        pattern: pat,
                        perms: have.with(perms),
                    };
                    lines[i] = format!("{indent}{wider}");
                    changed = true;
                }
            }
            None => {
                if let Some(a) = appended
                    .iter_mut()
                    .find(|a| RuleLine::parse(a).is_some_and(|l| l.pattern == pat))
                {
                    let have = RuleLine::parse(a).expect("ours").perms;
                    let wider = RuleLine {
                        pattern: pat,
                        perms: have.with(perms),
                    };
                    *a = format!("  {wider}");
                } else {
                    appended.push(format!("  {r}"));
                }
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    if !appended.is_empty() {
        if !lines.iter().any(|l| l.trim() == APPLY_HEADER) {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push(APPLY_HEADER.to_string());
        }
        lines.extend(appended);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Some(out)
}

/// One access of one guest, with how often it was logged.
#[derive(Clone, Debug)]
pub struct Finding {
    pub record: Record,
    pub count: usize,
    pub outcomes: Vec<Outcome>,
    pub verdict: Verdict,
}

/// Collapse repeated records of the same access (profile, path, operation), merging their
/// requested masks, in first-seen order.
pub fn collapse(records: Vec<Record>) -> Vec<(Record, usize, Vec<Outcome>)> {
    let mut order: Vec<(Record, usize, Vec<Outcome>)> = Vec::new();
    let mut index: BTreeMap<(String, Option<String>, String), usize> = BTreeMap::new();
    for r in records {
        match index.get(&r.key()) {
            Some(&i) => {
                let e = &mut order[i];
                e.1 += 1;
                if !e.2.contains(&r.outcome) {
                    e.2.push(r.outcome);
                }
                if let (Some(a), Some(b)) = (&mut e.0.requested, &r.requested) {
                    for c in b.chars() {
                        if !a.contains(c) {
                            a.push(c);
                        }
                    }
                }
            }
            None => {
                index.insert(r.key(), order.len());
                let o = r.outcome;
                order.push((r, 1, vec![o]));
            }
        }
    }
    order
}

/// The `<devices>` child (or other top-level element) whose subtree writes `path`.
pub fn element_writing<'a>(root: &'a Element, path: &str) -> Option<&'a Element> {
    fn has(e: &Element, path: &str) -> bool {
        e.attrs.iter().any(|(_, v)| v == path)
            || e.text.trim() == path
            || e.children.iter().any(|c| has(c, path))
    }
    let scopes = root
        .child("devices")
        .into_iter()
        .flat_map(|d| d.children.iter())
        .chain(root.children.iter().filter(|c| c.name != "devices"));
    scopes.into_iter().find(|c| has(c, path))
}

/// A word for a shell command line the admin copies: single-quoted unless plain.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@=".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// What the admin reads about one access (several lines, indented under the guest heading).
/// `guest` names it in commands; `local` and `profile_file` are the guest's paths, `child` the child profile if the record
/// came from one, `report` the bug report for a generator gap.
pub fn render(
    f: &Finding,
    guest: &str,
    local: &str,
    profile_file: &str,
    child: Option<&str>,
    report: Option<&str>,
) -> String {
    use std::fmt::Write;
    let r = &f.record;
    let mut s = String::new();
    let outcomes: Vec<String> = f
        .outcomes
        .iter()
        .map(|o| format!("{o:?}").to_uppercase())
        .collect();
    let _ = writeln!(
        s,
        "{} {} {} {}{}{}",
        outcomes.join("/"),
        r.operation,
        r.name
            .as_deref()
            .map(|n| format!("{n:?}"))
            .or_else(|| r.what())
            .unwrap_or_else(|| "-".into()),
        r.requested.as_deref().unwrap_or("-"),
        if f.count > 1 {
            format!(" ({}×)", f.count)
        } else {
            String::new()
        },
        child
            .map(|c| format!(" [child profile {c}]"))
            .unwrap_or_default(),
    );
    match &f.verdict {
        Verdict::NotFile(why) | Verdict::Unusable(why) => {
            let _ = writeln!(s, "  no rule offered: {why}");
        }
        Verdict::Refused(why) => {
            let _ = writeln!(s, "  refused by policy, stays denied: {why}");
        }
        Verdict::Stale { element } => {
            let _ = writeln!(
                s,
                "  stale profile: the guest's current rules already grant it ({element}); the loaded profile is older.\n  reload: apparmor_parser -r {profile_file}   (or restart the guest)"
            );
        }
        Verdict::GrantOnly { why, device, perms } => {
            let _ = writeln!(s, "  not applied automatically: {why}");
            let _ = writeln!(
                s,
                "  if the guest should have it: virt-aa-hook grant{}{} {} {}",
                if *device { " --device" } else { "" },
                if perms.writes() { "" } else { " --read-only" },
                shell_word(guest),
                shell_word(r.name.as_deref().unwrap_or(""))
            );
        }
        Verdict::GeneratorGap { element, perms } => {
            let _ = writeln!(
                s,
                "  generator gap: the guest's definition names it ({element}) but its profile does not grant {perms}.\n  This is a bug in virt-aa-hook; please report it with the text below. Meanwhile the site-specific rule works:\n      {}",
                rule_line(r.name.as_deref().unwrap_or(""), *perms)
            );
            if let Some(rep) = report {
                for l in rep.lines() {
                    let _ = writeln!(s, "  | {l}");
                }
            }
        }
        Verdict::SiteSpecific { rule, .. } => {
            let _ = writeln!(
                s,
                "  site-specific: not in the guest's definition. Rule for {local}:"
            );
            let _ = writeln!(s, "      {rule}");
            if let Some(c) = child {
                let _ = writeln!(
                    s,
                    "  note: the access was made under the child profile {c}; put the rule inside its block (--apply writes only rules of the main profile)"
                );
            } else {
                let _ = writeln!(
                    s,
                    "  then: apparmor_parser -r {profile_file}   (or: explain --apply)"
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denial::parse_line;

    const U: &str = "aaaaaaaa-0000-4000-8000-000000000001";

    fn dom(name: &str, uuid: &str, devs: &str) -> Domain {
        Domain::parse(
            format!(
                "<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid><devices>\
                 <emulator>/usr/bin/qemu-system-x86_64</emulator>{devs}</devices></domain>"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn claims(d: &Domain) -> Claims {
        let opts = crate::derive::Options {
            probe_backing: false,
            ..Default::default()
        };
        let derived = crate::derive::derive(d, &opts).ok();
        Claims::of(d, derived.as_ref().map(|x| &x.rules))
    }

    /// Classify with the default data places, every path not created yet.
    fn cls(rec: &Record, own: &Claims, others: &[(String, Claims)]) -> Verdict {
        let dirs = autogrant::data_dirs([]);
        classify(rec, own, others, &Site::fixed(&dirs))
    }

    fn rec(name_field: &str, mask: &str) -> Record {
        parse_line(&format!(
            r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="open" profile="libvirt-{U}" {name_field} requested_mask="{mask}" denied_mask="{mask}""#
        ))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn three_classes() {
        let me = dom(
            "web",
            U,
            "<disk type='file' device='disk'><source file='/srv/web.img'/><target dev='vda'/></disk>\
             <disk type='file' device='cdrom'><source file='/srv/iso/x.iso'/><target dev='hdc'/><readonly/></disk>",
        );
        let other = dom(
            "db",
            "aaaaaaaa-0000-4000-8000-000000000002",
            "<disk type='file' device='disk'><source file='/srv/db.img'/><target dev='vda'/></disk>",
        );
        let (own, others) = (claims(&me), vec![("db".to_string(), claims(&other))]);
        // Outside every definition: one escaped literal rule.
        let v = cls(&rec(r#"name="/srv/extra/a*b.img""#, "r"), &own, &others);
        assert_eq!(
            v,
            Verdict::SiteSpecific {
                rule: r#""/srv/extra/a\*b.img" r,"#.into(),
                perms: Perms::R
            }
        );
        // Another guest's disk: refused, names the guest.
        let v = cls(&rec(r#"name="/srv/db.img""#, "rw"), &own, &others);
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("\"db\"") && w.contains("vda")),
            "{v:?}"
        );
        // virtnbdbackup's default socket: a name any guest could squat; the fix is -f.
        let v = cls(
            &rec(r#"name="/var/tmp/virtnbdbackup.704""#, "c"),
            &own,
            &others,
        );
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("-f /var/lib/libvirt/qemu/domain-")),
            "{v:?}"
        );
        // A host system path: refused by the host policy.
        let v = cls(&rec(r#"name="/etc/shadow""#, "r"), &own, &others);
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("host system path")),
            "{v:?}"
        );
        // Granted read-only (cdrom), written: a generator gap naming the element.
        let v = cls(&rec(r#"name="/srv/iso/x.iso""#, "w"), &own, &others);
        assert_eq!(
            v,
            Verdict::GeneratorGap {
                element: "disk 'hdc'".into(),
                perms: Perms::W
            }
        );
        // Granted already: the loaded profile is stale.
        let v = cls(&rec(r#"name="/srv/web.img""#, "r"), &own, &others);
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
        // Execute and relative paths are never offered.
        assert!(matches!(
            cls(&rec(r#"name="/srv/x""#, "x"), &own, &others),
            Verdict::Unusable(_)
        ));
        assert!(matches!(
            cls(&rec(r#"name="/srv/../etc/x""#, "r"), &own, &others),
            Verdict::Unusable(_)
        ));
    }

    #[test]
    fn element_lookup_for_paths_not_granted() {
        // A path the XML names but the generator does not grant (an element it does not know).
        let me = dom("web", U, "<foo><bar path='/srv/foo.bin'/></foo>");
        let v = cls(&rec(r#"name="/srv/foo.bin""#, "r"), &claims(&me), &[]);
        assert!(
            matches!(&v, Verdict::GeneratorGap { element, .. } if element.contains("<domain><devices><foo><bar> path=")),
            "{v:?}"
        );
        let e = element_writing(&me.root, "/srv/foo.bin").unwrap();
        assert_eq!(
            crate::xml::element_xml(e),
            "<foo>\n  <bar path='/srv/foo.bin'/>\n</foo>\n"
        );
    }

    #[test]
    fn hostile_names_give_one_escaped_literal() {
        let path = "/srv/x\" rwk,\n/etc/shadow r,";
        let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
        // The newline makes the record unusable already at parse time.
        assert!(
            parse_line(&format!(
                r#"apparmor="DENIED" operation="open" profile="libvirt-{U}" name={hex} requested_mask="r""#
            ))
            .is_err()
        );
        let path = "/srv/x\" rwk, /etc/shadow r, \"y{a,b}";
        let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
        let v = cls(&rec(&format!("name={hex}"), "r"), &Claims::default(), &[]);
        assert_eq!(
            v,
            Verdict::SiteSpecific {
                rule: r#""/srv/x\" rwk\, /etc/shadow r\, \"y\{a\,b\}" r,"#.into(),
                perms: Perms::R
            }
        );
    }

    #[test]
    fn merging_is_idempotent_and_deduplicated() {
        let base = "# mine\n/srv/www/ r,\n";
        let a = rule_line("/srv/a b.img", Perms::R);
        let b = rule_line("/srv/b,c", Perms::RW);
        let once = merge_local(base, &[a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(
            once,
            format!(
                "# mine\n/srv/www/ r,\n\n{APPLY_HEADER}\n  \"/srv/a b.img\" r,\n  \"/srv/b\\,c\" rw,\n"
            )
        );
        assert_eq!(merge_local(&once, &[a.clone(), b.clone()]), None);
        // Wider permissions widen the existing line in place.
        let wider = merge_local(&once, &[rule_line("/srv/a b.img", Perms::RWK)]).unwrap();
        assert!(wider.contains("  \"/srv/a b.img\" rwk,\n"), "{wider}");
        assert_eq!(wider.matches("a b.img").count(), 1);
        assert_eq!(wider.matches(APPLY_HEADER).count(), 1);
        // Appended twice with different masks in one run: one line.
        let two = merge_local("", &[rule_line("/x", Perms::R), rule_line("/x", Perms::W)]).unwrap();
        assert_eq!(two, format!("{APPLY_HEADER}\n  \"/x\" rw,\n"));
    }

    #[test]
    fn masks() {
        assert_eq!(perms_of_mask("wr").unwrap(), Perms::RW);
        assert_eq!(perms_of_mask("wc").unwrap(), Perms::W);
        assert_eq!(perms_of_mask("k").unwrap(), Perms::K);
        assert!(perms_of_mask("rx").is_err());
        assert!(perms_of_mask("").is_err());
    }

    #[test]
    fn collapsing_merges_masks() {
        let v = collapse(vec![
            rec(r#"name="/a""#, "r"),
            rec(r#"name="/a""#, "w"),
            rec(r#"name="/b""#, "r"),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].1, 2);
        assert_eq!(v[0].0.requested.as_deref(), Some("rw"));
    }

    const UDB: &str = "aaaaaaaa-0000-4000-8000-000000000002";

    /// `web` running as domain 7 and `db` running as domain 3 with a TPM.
    fn pair() -> (Claims, Vec<(String, Claims)>) {
        let parse = |x: String| Domain::parse(x.as_bytes()).unwrap();
        let web = parse(format!(
            "<domain type='kvm' id='7'><name>web</name><uuid>{U}</uuid><devices>\
             <disk type='file' device='disk'><source file='/srv/web.img'/><target dev='vda'/></disk>\
             </devices></domain>"
        ));
        let db = parse(format!(
            "<domain type='kvm' id='3'><name>db</name><uuid>{UDB}</uuid><devices>\
             <disk type='file' device='disk'><source file='/var/lib/libvirt/images/db.qcow2'/><target dev='vda'/></disk>\
             <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\
             </devices></domain>"
        ));
        (claims(&web), vec![("db".to_string(), claims(&db))])
    }

    #[test]
    fn other_guests_derived_files_are_refused_naming_the_guest() {
        let (own, others) = pair();
        for p in [
            "/var/lib/libvirt/qemu/domain-3-db/master-key.aes",
            "/var/lib/libvirt/qemu/domain-9-db/master-key.aes",
            "/var/lib/libvirt/qemu/domain-3-db/monitor.sock",
            "/run/libvirt/qemu/db.pid",
            "/run/libvirt/qemu/swtpm/3-db-swtpm.sock",
            "/var/lib/libvirt/swtpm/aaaaaaaa-0000-4000-8000-000000000002/tpm2/tpm2-00.permall",
            "/var/log/libvirt/qemu/db.log",
            "/var/lib/libvirt/qemu/nvram/db_VARS.fd",
            "/var/lib/libvirt/images/db.qcow2",
        ] {
            let v = cls(&rec(&format!("name=\"{p}\""), "rw"), &own, &others);
            assert!(
                matches!(&v, Verdict::Refused(w) if w.contains("belongs to guest \"db\"")),
                "{p}: {v:?}"
            );
        }
    }

    #[test]
    fn own_current_rules_mean_a_stale_profile() {
        let (mut own, others) = pair();
        let v = cls(
            &rec(
                r#"name="/var/lib/libvirt/qemu/domain-7-web/master-key.aes""#,
                "r",
            ),
            &own,
            &others,
        );
        assert!(
            matches!(&v, Verdict::Stale { element } if element.contains("domain-7-web/")),
            "{v:?}"
        );
        let f = Finding {
            record: rec(r#"name="/run/libvirt/qemu/web.pid""#, "w"),
            count: 1,
            outcomes: vec![Outcome::Denied],
            verdict: cls(
                &rec(r#"name="/run/libvirt/qemu/web.pid""#, "w"),
                &own,
                &others,
            ),
        };
        let out = render(&f, "web", "/l", "/p/libvirt-x", None, None);
        assert!(
            out.contains("stale profile") && out.contains("apparmor_parser -r /p/libvirt-x"),
            "{out}"
        );
        // A rule of the guest's local file that the loaded profile lacks: stale too.
        own.add_text("  \"/srv/site/a.img\" rw,\n", Source::Local);
        let v = cls(&rec(r#"name="/srv/site/a.img""#, "r"), &own, &others);
        assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
        // Wider than the local rule: site-specific, not a generator gap.
        let v = cls(&rec(r#"name="/srv/site/a.img""#, "k"), &own, &others);
        assert!(matches!(v, Verdict::SiteSpecific { .. }), "{v:?}");
    }

    #[test]
    fn host_locations_from_the_issue_are_never_offered() {
        let (own, others) = pair();
        for (p, m) in [
            ("/root/.bashrc", "w"),
            ("/var/spool/cron/crontabs/root", "wc"),
            ("/run/libvirt/libvirt-sock", "rw"),
            ("/var/cache/apparmor/26b63962.0/libvirt-x", "w"),
            ("/dev/kmsg", "r"),
            ("/dev/watchdog", "w"),
            ("/sys/devices/pci0000:00/0000:00:02.0/resource0", "rw"),
            ("/sys/devices/pci0000:00/0000:00:02.0/remove", "w"),
            ("/", "rw"),
        ] {
            let v = cls(&rec(&format!("name=\"{p}\""), m), &own, &others);
            assert!(matches!(v, Verdict::Refused(_)), "{p}: {v:?}");
        }
        // A disk device: listed, grant --device is the way.
        let v = cls(&rec(r#"name="/dev/sda""#, "rw"), &own, &others);
        assert!(
            matches!(v, Verdict::GrantOnly { device: true, .. }),
            "{v:?}"
        );
        let f = Finding {
            record: rec(r#"name="/dev/sda""#, "r"),
            count: 1,
            outcomes: vec![Outcome::Denied],
            verdict: cls(&rec(r#"name="/dev/sda""#, "r"), &own, &others),
        };
        let out = render(&f, "web", "/l", "/p", None, None);
        assert!(
            out.contains("virt-aa-hook grant --device --read-only web /dev/sda"),
            "{out}"
        );
        // Outside the data places: not applied, the admin may grant it.
        let v = cls(&rec(r#"name="/opt/data/x.img""#, "r"), &own, &others);
        assert!(
            matches!(v, Verdict::GrantOnly { device: false, .. }),
            "{v:?}"
        );
        // A socket in a data place is not a regular file.
        let dirs = autogrant::data_dirs([]);
        let site = Site {
            data_dirs: &dirs,
            kind: &|_| FileKind::Special("socket"),
            policy: paths::HostPolicy::defaults(),
        };
        let v = classify(&rec(r#"name="/srv/s.sock""#, "rw"), &own, &others, &site);
        assert!(matches!(v, Verdict::GrantOnly { .. }), "{v:?}");
    }

    #[test]
    fn backup_scratch_files_get_the_scratch_dir_advice() {
        let (own, others) = pair();
        let v = cls(
            &rec(r#"name="/var/tmp/backup.Xa3k9Q.vda""#, "rwc"),
            &own,
            &others,
        );
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("-S /var/lib/libvirt/qemu/domain-")),
            "{v:?}"
        );
    }

    #[test]
    fn capability_and_network_records_name_what_was_asked() {
        let line = format!(
            r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="capable" class="cap" profile="libvirt-{U}" pid=1 comm="qemu" capability=21 capname="sys_admin""#
        );
        let r = parse_line(&line).unwrap().unwrap();
        let f = Finding {
            verdict: cls(&r, &Claims::default(), &[]),
            record: r,
            count: 1,
            outcomes: vec![Outcome::Denied],
        };
        let out = render(&f, "web", "/l", "/p", None, None);
        assert!(
            out.starts_with("DENIED capable capability sys_admin -"),
            "{out}"
        );
        assert!(out.contains("asking for capability sys_admin"), "{out}");
        let line = format!(
            r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="create" class="net" profile="libvirt-{U}" pid=1 comm="qemu" family="inet" sock_type="stream" protocol=6 requested_mask="create" denied_mask="create""#
        );
        let r = parse_line(&line).unwrap().unwrap();
        assert!(
            matches!(cls(&r, &Claims::default(), &[]), Verdict::NotFile(w) if w.contains("network inet stream protocol 6"))
        );
    }

    /// A small deterministic generator (no proptest in the tree): xorshift64*.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[(self.next() % v.len() as u64) as usize]
        }
    }

    /// Property: for random guests and random records, a rule `explain` offers (the only ones
    /// `--apply` writes) never matches a file another guest's rules grant, never lies in a
    /// location [`autogrant`] refuses, and is exactly the record's path.
    #[test]
    fn no_offered_rule_reaches_another_guest_or_a_refused_place() {
        const NAMES: &[&str] = &["web", "db", "a", "ab", "a-b", "x*y", "sp ace", "web2", "w"];
        const DIRS: &[&str] = &[
            "/srv",
            "/srv/img",
            "/var/lib/libvirt/images",
            "/data/vm",
            "/var/tmp",
            "/home/u",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut offered, mut refused) = (0, 0);
        for round in 0..40 {
            let n = 2 + (rng.next() % 3) as usize;
            let mut doms = Vec::new();
            let mut used = Vec::new();
            while doms.len() < n {
                let name = *rng.pick(NAMES);
                if used.contains(&name) {
                    continue;
                }
                used.push(name);
                let id = if rng.next() % 2 == 0 {
                    format!(" id='{}'", rng.next() % 40)
                } else {
                    String::new()
                };
                let uuid = format!("aaaaaaaa-0000-4000-8000-{:012x}", round * 10 + doms.len());
                let mut devs = String::new();
                for (i, t) in ["vda", "vdb"].iter().enumerate() {
                    if i == 0 || rng.next() % 2 == 0 {
                        let dir = rng.pick(DIRS);
                        devs += &format!(
                            "<disk type='file' device='disk'><source file='{dir}/{name}-{t}.img'/><target dev='{t}'/></disk>"
                        );
                    }
                }
                if rng.next() % 2 == 0 {
                    devs += "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
                }
                if rng.next() % 3 == 0 {
                    devs += &format!(
                        "<filesystem type='mount'><source dir='{}/share-{name}'/><target dir='s'/></filesystem>",
                        rng.pick(DIRS)
                    );
                }
                let xml = format!(
                    "<domain type='kvm'{id}><name>{name}</name><uuid>{uuid}</uuid><devices>{devs}</devices></domain>"
                )
                .replace('&', "&amp;");
                doms.push(Domain::parse(xml.as_bytes()).unwrap());
            }
            let all: Vec<(String, Claims)> =
                doms.iter().map(|d| (d.name.clone(), claims(d))).collect();
            for _ in 0..80 {
                let me = (rng.next() % n as u64) as usize;
                let other = &doms[(me + 1 + (rng.next() % (n as u64 - 1)) as usize) % n];
                let on = &other.name;
                let short = format!("{}-{}", rng.next() % 40, on);
                let path = match rng.next() % 14 {
                    0 => format!("/var/lib/libvirt/qemu/domain-{short}/master-key.aes"),
                    1 => format!("/run/libvirt/qemu/{on}.pid"),
                    2 => format!("/var/lib/libvirt/qemu/domain-{short}/monitor.sock"),
                    3 => format!("/var/lib/libvirt/swtpm/{}/tpm2/x", other.uuid),
                    4 => format!("/var/log/libvirt/qemu/{on}.log"),
                    5 => format!("/var/lib/libvirt/qemu/nvram/{on}_VARS.fd"),
                    6 => format!("{}/{on}-vda.img", rng.pick(DIRS)),
                    7 => format!("{}/share-{on}/f", rng.pick(DIRS)),
                    8 => rng
                        .pick(&[
                            "/root/.bashrc",
                            "/var/spool/cron/crontabs/root",
                            "/run/libvirt/libvirt-sock",
                            "/var/cache/apparmor/a/b",
                            "/dev/sda",
                            "/dev/kmsg",
                            "/dev/watchdog",
                            "/sys/devices/pci0000:00/0000:00:02.0/resource0",
                            "/",
                            "/etc/passwd",
                            "/proc/1/mem",
                            "/home/u/.ssh/id_rsa",
                        ])
                        .to_string(),
                    9 => format!("/var/tmp/backup.{:x}.vda", rng.next() % 4096),
                    _ => format!(
                        "{}/site-{}/{}",
                        rng.pick(DIRS),
                        rng.next() % 5,
                        rng.pick(NAMES)
                    ),
                };
                let mask = *rng.pick(&["r", "w", "rw", "wc", "k", "rwk", "m"]);
                let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
                let r = parse_line(&format!(
                    r#"apparmor="DENIED" operation="open" profile="libvirt-{}" name={hex} requested_mask="{mask}""#,
                    doms[me].uuid
                ))
                .unwrap()
                .unwrap();
                let others: Vec<(String, Claims)> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != me)
                    .map(|(_, c)| c.clone())
                    .collect();
                let v = cls(&r, &all[me].1, &others);
                let Verdict::SiteSpecific { rule, perms } = v else {
                    refused += 1;
                    continue;
                };
                offered += 1;
                assert_eq!(rule, rule_line(&path, perms), "{path}");
                for (on, c) in &others {
                    assert!(
                        c.rules.matching(&path).next().is_none(),
                        "rule {rule} for {} matches guest {on:?}'s rules",
                        doms[me].name
                    );
                }
                let dirs = autogrant::data_dirs([]);
                assert_eq!(
                    autogrant::check(
                        paths::HostPolicy::defaults(),
                        &path,
                        perms,
                        FileKind::Missing,
                        Asker::Apply { data_dirs: &dirs }
                    ),
                    Ok(()),
                    "{path}"
                );
            }
        }
        // The generator is not degenerate: both outcomes are exercised.
        assert!(
            offered > 50 && refused > 1000,
            "{offered} offered, {refused} refused"
        );
    }
}
