//! Classify one record: the decision between stale, generator gap, refused, grant-only and
//! site-specific (see the module doc of [`crate::explain`]).

use super::{Claims, Verdict, rule_line};
use crate::autogrant::{self, Asker, FileKind};
use crate::denial::Record;
use crate::paths;
use crate::rules::Perms;
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
