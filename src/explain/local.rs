//! The rules `explain` offers for a guest's local file, and merging them into it (`--apply`).

use crate::paths;
use crate::rules::{Perms, RuleLine};

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
