//! What the admin reads: repeated records collapsed into findings, each rendered with its fix.

use super::{Verdict, rule_line};
use crate::denial::{Outcome, Record};
use crate::xml::Element;
use std::collections::BTreeMap;

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
