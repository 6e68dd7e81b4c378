//! Whose file is this? Every guest's rules as AppArmor matches them.
//!
//! A path belongs to a guest when one of its rules matches it with AppArmor's glob semantics
//! ([`crate::rules::glob_matches`]: `*` and `?` stop at `/`, `**` crosses it, `{a,b}`, `[...]`):
//! the rules the generator derives from its definition (literal paths *and* our fixed patterns
//! built from its name, short name and UUID), libvirt's helper's `.files`, and the admin's local
//! rules. On top, [`identity_patterns`] are the files libvirt derives from a guest's name and UUID
//! whether it runs or not (its per-domain directory under any domain id, pid file, monitor
//! socket, swtpm state, log, NVRAM, save image): a guest that is shut off has no id, so its
//! generated rules cannot name `domain-<id>-<name>`, but the next run's files are still its.
//!
//! `explain` and `grant` ask this one module, so a rule we add for one guest never matches a file
//! another guest's profile grants.

use crate::domain::Domain;
use crate::paths;
use crate::rules::{Perms, RuleLine, RuleSet, glob_matches};

/// Where a rule of a guest comes from, for the messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Derived from this element of the definition (`disk 'vda'`).
    Element(String),
    /// One of the generator's fixed patterns (per-domain directories, pid file, ...).
    Generated,
    /// A file libvirt derives from the guest's name or UUID ([`identity_patterns`]), with a
    /// readable form (`domain-<id>-db/**`).
    Identity(String),
    /// libvirt's helper's `libvirt-<uuid>.files`.
    HelperFiles,
    /// The admin's local rules file.
    Local,
}

/// One rule of a guest: an AppArmor pattern as written in a profile (escaped) and its permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRule {
    pub pattern: String,
    pub perms: Perms,
    pub source: Source,
    /// The pattern's literal text before its first glob character: a path that does not start
    /// with it cannot match, which spares the glob matcher for nearly every rule.
    prefix: String,
}

impl OwnedRule {
    /// A rule with its pattern's fixed prefix.
    pub fn new(pattern: String, perms: Perms, source: Source) -> OwnedRule {
        let prefix = fixed_prefix(&pattern);
        OwnedRule {
            pattern,
            perms,
            source,
            prefix,
        }
    }

    /// Whether the rule's pattern matches `path` (AppArmor glob semantics).
    pub fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix) && glob_matches(&self.pattern, path)
    }

    /// `disk 'vda'` / `its rule "<pattern>"`: what to name in a message.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Element(e) => format!("{e} in its definition"),
            Source::Generated => format!("its profile's rule \"{}\"", self.pattern),
            Source::Identity(label) => format!("libvirt's file for it, {label}"),
            Source::HelperFiles => format!("\"{}\" in its .files", self.pattern),
            Source::Local => format!("\"{}\" in its local rules", self.pattern),
        }
    }
}

/// All the rules of one guest.
#[derive(Clone, Debug, Default)]
pub struct GuestRules {
    pub rules: Vec<OwnedRule>,
}

impl GuestRules {
    /// The generator's rules (`None` if generation failed) and the identity patterns of `dom`.
    pub fn of(dom: &Domain, generated: Option<&RuleSet>) -> GuestRules {
        let mut g = GuestRules::default();
        if let Some(rs) = generated {
            for r in rs.rules() {
                let source = match &r.device {
                    Some(d) => Source::Element(d.clone()),
                    None => Source::Generated,
                };
                g.rules
                    .push(OwnedRule::new(r.pattern.clone(), r.perms, source));
            }
        }
        for (pattern, label) in identity_patterns(dom) {
            g.rules
                .push(OwnedRule::new(pattern, Perms::RWK, Source::Identity(label)));
        }
        g
    }

    /// Add the file rules of a profile fragment (`.files`, a local file). Lines we cannot read
    /// as one file rule (`deny`, `owner`, network, includes, blocks) are skipped.
    pub fn add_text(&mut self, text: &str, source: Source) {
        for l in text.lines() {
            if let Some(r) = RuleLine::parse(l) {
                self.rules.push(OwnedRule::new(
                    r.pattern.to_string(),
                    r.perms,
                    source.clone(),
                ));
            }
        }
    }

    /// The rules matching `path`, in order.
    pub fn matching<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a OwnedRule> + 'a {
        self.rules.iter().filter(move |r| r.matches(path))
    }

    /// A rule of this guest for a file inside the tree `dir` (for a recursive grant): one that
    /// matches the directory itself, or whose fixed part (up to the first glob character) lies
    /// under it.
    pub fn reaching_into(&self, dir: &str) -> Option<&OwnedRule> {
        let d = dir.trim_end_matches('/');
        self.rules.iter().find(|r| {
            glob_matches(&r.pattern, d)
                || glob_matches(&r.pattern, &format!("{d}/"))
                || paths::is_under(std::path::Path::new(&fixed_prefix(&r.pattern)), d)
        })
    }
}

/// The literal text of a pattern up to its first unescaped glob character, unescaped.
fn fixed_prefix(pattern: &str) -> String {
    let mut out = String::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some('x') => {
                    let h: String = it.by_ref().take(2).collect();
                    match u8::from_str_radix(&h, 16) {
                        Ok(b) => out.push(char::from(b)),
                        Err(_) => break,
                    }
                }
                Some(e) => out.push(e),
                None => break,
            },
            '*' | '?' | '[' | '{' | '@' => break,
            c => out.push(c),
        }
    }
    out
}

/// Files libvirt names after a guest whether it runs or not (so under any domain id): its
/// per-domain and channel directories (`domain-<id>-<short name>`), pid and status files,
/// monitor socket, swtpm state and sockets, logs, NVRAM, managed-save image, snapshot and
/// checkpoint metadata. Escaped AppArmor patterns.
pub fn identity_patterns(dom: &Domain) -> Vec<(String, String)> {
    let name = paths::escape(&dom.name);
    let short: String = paths::escape(&dom.name.chars().take(20).collect::<String>());
    let uuid = dom.uuid.hyphenated().to_string();
    // A domain id: 1 to 7 digits (`*` would also match `1-x` of a guest named `x-<name>`).
    let id = (1..=7)
        .map(|n| "[0-9]".repeat(n))
        .collect::<Vec<_>>()
        .join(",");
    let id = format!("{{{id}}}");
    [
        "/var/lib/libvirt/qemu/domain-<id>-<short>/",
        "/var/lib/libvirt/qemu/domain-<id>-<short>/**",
        "/var/lib/libvirt/qemu/channel/target/domain-<id>-<short>/{,**}",
        "/var/lib/libvirt/qemu/ram/<id>-<short>/{,**}",
        "/var/lib/libvirt/qemu/domain-<name>/{,**}",
        "/var/lib/libvirt/qemu/nvram/<name>_VARS.*",
        "/var/lib/libvirt/qemu/save/<name>.save",
        "/var/lib/libvirt/qemu/snapshot/<name>/{,**}",
        "/var/lib/libvirt/qemu/checkpoint/<name>/{,**}",
        "/{,var/}run/libvirt/qemu/<name>.{pid,xml}",
        "/{,var/}run/libvirt/qemu/swtpm/<id>-<short>-swtpm.*",
        "/{,var/}run/libvirt/qemu/dbus/<id>-<short>-*",
        "/{,var/}run/libvirt/qemu/passt/<id>-<short>-*",
        "/var/lib/libvirt/swtpm/<uuid>/{,**}",
        "/var/log/libvirt/**/<name>.log",
        "/var/log/swtpm/libvirt/qemu/<name>-swtpm.log",
    ]
    .iter()
    .map(|t| {
        let pattern = t
            .replace("<id>", &id)
            .replace("<short>", &short)
            .replace("<name>", &name)
            .replace("<uuid>", &uuid);
        let label = t
            .replace("<short>", &dom.name.chars().take(20).collect::<String>())
            .replace("<name>", &dom.name)
            .replace("<uuid>", &uuid);
        (pattern, label)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, uuid: &str, id: Option<u32>) -> Domain {
        let id = id.map(|i| format!(" id='{i}'")).unwrap_or_default();
        Domain::parse(
            format!(
                "<domain type='kvm'{id}><name>{name}</name><uuid>{uuid}</uuid><devices>\
                 <disk type='file' device='disk'><source file='/srv/{name}.img'/><target dev='vda'/></disk>\
                 <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\
                 </devices></domain>"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn rules(d: &Domain) -> GuestRules {
        let derived = crate::derive::derive_unprobed(d);
        GuestRules::of(d, derived.as_ref().map(|x| &x.rules))
    }

    const U: &str = "aaaaaaaa-0000-4000-8000-00000000000b";

    #[test]
    fn derived_files_of_a_guest_running_or_not() {
        for id in [Some(7), None] {
            let g = rules(&dom("db", U, id));
            for p in [
                "/var/lib/libvirt/qemu/domain-7-db/master-key.aes",
                "/var/lib/libvirt/qemu/domain-12-db/monitor.sock",
                "/var/lib/libvirt/qemu/domain-12-db/",
                "/run/libvirt/qemu/db.pid",
                "/var/run/libvirt/qemu/db.xml",
                "/run/libvirt/qemu/swtpm/7-db-swtpm.sock",
                "/var/lib/libvirt/swtpm/aaaaaaaa-0000-4000-8000-00000000000b/tpm2/tpm2-00.permall",
                "/var/log/libvirt/qemu/db.log",
                "/var/lib/libvirt/qemu/nvram/db_VARS.fd",
                "/var/lib/libvirt/qemu/save/db.save",
                "/srv/db.img",
            ] {
                assert!(g.matching(p).next().is_some(), "{id:?}: {p}");
            }
            for p in [
                "/var/lib/libvirt/qemu/domain-7-dbx/master-key.aes",
                "/var/lib/libvirt/qemu/domain-1-x-db/master-key.aes",
                "/run/libvirt/qemu/db2.pid",
                "/var/log/libvirt/qemu/db-2.log",
                "/var/lib/libvirt/qemu/nvram/web_VARS.fd",
                "/srv/db.img2",
            ] {
                assert!(g.matching(p).next().is_none(), "{id:?}: {p}");
            }
        }
    }

    #[test]
    fn hostile_names_stay_literal() {
        let g = rules(&dom("a*", U, None));
        assert!(g.matching("/run/libvirt/qemu/a*.pid").next().is_some());
        assert!(g.matching("/run/libvirt/qemu/ab.pid").next().is_none());
    }

    #[test]
    fn fragments_and_trees() {
        let mut g = GuestRules::default();
        g.add_text(
            "# c\n  \"/srv/a b.img\" rwk,\n/srv/www/ r,\n  deny /srv/x r,\n  owner /srv/o r,\n#include <x>\n",
            Source::Local,
        );
        assert_eq!(g.rules.len(), 2);
        assert!(g.matching("/srv/a b.img").next().is_some());
        assert!(g.matching("/srv/www/").next().is_some());
        assert!(g.reaching_into("/srv").is_some());
        assert!(g.reaching_into("/srv/www").is_some());
        assert!(g.reaching_into("/opt").is_none());
        assert_eq!(fixed_prefix(r"/a\*b/c*d"), "/a*b/c");
        assert_eq!(fixed_prefix(r"/a\x5cb{x,y}"), "/a\\b");
        assert_eq!(
            RuleLine::parse(r#"  allow "/x\"y" rw,"#),
            Some(RuleLine {
                pattern: r#"/x\"y"#,
                perms: Perms::RW
            })
        );
    }
}
