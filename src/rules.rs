//! The access rules of one guest: a deduplicated, ordered set of path grants.
//!
//! Every grant goes through [`RuleSet::grant`], which resolves and validates the path, applies the
//! host policy and escapes it; fixed rules we write ourselves (globs such as the GL block) go
//! through [`RuleSet::fixed`]. Grants of the same pattern merge their permissions, so a thousand
//! disks over one base image give one base-image rule, not a thousand.

use crate::paths::{self, PathError};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// AppArmor file permissions we emit. A small bit set rather than strings, so merging is a union.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms(u8);

impl Perms {
    pub const R: Perms = Perms(1);
    pub const W: Perms = Perms(2);
    pub const K: Perms = Perms(4);
    pub const L: Perms = Perms(8);
    pub const M: Perms = Perms(16);
    /// `ix`: inherit-execute (the emulator binary after the profile switch).
    pub const IX: Perms = Perms(32);
    pub const RW: Perms = Perms(3);
    pub const RK: Perms = Perms(5);
    pub const RWK: Perms = Perms(7);

    /// Union of two permission sets.
    pub const fn with(self, o: Perms) -> Perms {
        Perms(self.0 | o.0)
    }
    /// Whether every permission in `o` is in `self`.
    pub const fn contains(self, o: Perms) -> bool {
        self.0 & o.0 == o.0
    }
    /// Whether the set grants any kind of write.
    pub const fn writes(self) -> bool {
        self.0 & (Self::W.0 | Self::L.0) != 0
    }

    /// Parse an AppArmor permission string (`rwk`, `mr`, `rix`, ...). Unknown letters are ignored
    /// except that `a` counts as write, which is what a comparison needs.
    pub fn parse(s: &str) -> Perms {
        let mut p = Perms::default();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            p = p.with(match c {
                'r' => Perms::R,
                'w' | 'a' => Perms::W,
                'k' => Perms::K,
                'l' => Perms::L,
                'm' => Perms::M,
                'i' | 'p' | 'c' | 'u' | 'P' | 'C' | 'U' => {
                    if chars.peek() == Some(&'x') {
                        chars.next();
                    }
                    Perms::IX
                }
                'x' => Perms::IX,
                _ => Perms::default(),
            });
        }
        p
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, s) in [
            (Perms::M, "m"),
            (Perms::R, "r"),
            (Perms::W, "w"),
            (Perms::L, "l"),
            (Perms::K, "k"),
            (Perms::IX, "ix"),
        ] {
            if self.contains(bit) {
                f.write_str(s)?;
            }
        }
        Ok(())
    }
}

/// How a grant applies to the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Exactly this file.
    File,
    /// A directory and everything below it: `"<dir>/" r,` + `"<dir>/**" <perms>,`.
    Tree,
    /// The directory itself and its direct entries: `"<dir>/{,*}"`.
    DirEntries,
}

/// One rendered rule and where it came from (for logs and the differential test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The pattern as it appears between the quotes (escaped, with our own glob tail).
    pub pattern: String,
    pub perms: Perms,
    /// The literal resolved path for grants derived from the XML (`None` for fixed rules).
    pub literal: Option<String>,
    /// The element that first asked for it (`disk 'vda'`), for `explain` (`None` for fixed
    /// rules).
    pub device: Option<String>,
}

/// A grant that was refused, with the device it came from, ready to be reported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{device}: {cause}")]
pub struct GrantError {
    pub device: String,
    /// What is wrong with the path (part of the message, deliberately not a `source()`, so the
    /// one-line error is not repeated by error-chain printers).
    pub cause: PathError,
}

/// Device labels are built from XML values (`<target dev>`, aliases, names): control characters
/// are escaped so an error stays one line and cannot forge lines in libvirt's error output.
pub fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

/// Ordered, deduplicated rules.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: HashMap<String, usize>,
    /// Comment lines (`# ...`) emitted before the rules; they explain fixed blocks.
    pub notes: Vec<String>,
}

impl RuleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grant `perms` on a path taken from the domain XML (or derived from it). The path is
    /// validated, resolved (symlinks), checked against the host policy and escaped. `device`
    /// names the element for the error message, e.g. `disk 'vda'`.
    /// Returns the resolved path (the backing-chain prober starts from it).
    pub fn grant(
        &mut self,
        device: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<PathBuf, GrantError> {
        let err = |cause| GrantError {
            device: one_line(device),
            cause,
        };
        let resolved = paths::resolve(raw).map_err(err)?;
        self.grant_resolved(device, &resolved, perms, scope)?;
        Ok(resolved)
    }

    /// Like [`grant`](Self::grant) for a path that is already resolved (e.g. by the backing-chain
    /// prober or from sysfs).
    pub fn grant_resolved(
        &mut self,
        device: &str,
        resolved: &Path,
        perms: Perms,
        scope: Scope,
    ) -> Result<(), GrantError> {
        let err = |cause| GrantError {
            device: one_line(device),
            cause,
        };
        let s = resolved.to_str().ok_or_else(|| {
            err(PathError::ControlChar(
                resolved.to_string_lossy().into_owned(),
            ))
        })?;
        paths::validate(s).map_err(err)?;
        match scope {
            Scope::File => paths::check_policy(resolved, perms.writes(), &perms.to_string()),
            Scope::Tree | Scope::DirEntries => {
                paths::check_tree_policy(resolved, perms.writes(), &perms.to_string())
            }
        }
        .map_err(err)?;
        let esc = paths::escape(s);
        // "/" + "/**" must not become "//**"; a file rule for "/" itself stays "/".
        let base = if s == "/" { String::new() } else { esc.clone() };
        match scope {
            Scope::File => self.insert(esc, perms, Some(s.to_string()), device),
            Scope::Tree => {
                self.insert(format!("{base}/"), Perms::R, Some(format!("{s}/")), device);
                self.insert(format!("{base}/**"), perms, Some(s.to_string()), device);
            }
            Scope::DirEntries => {
                self.insert(format!("{base}/{{,*}}"), perms, Some(s.to_string()), device);
            }
        }
        Ok(())
    }

    /// Add a rule whose pattern we wrote ourselves (never from input).
    pub fn fixed(&mut self, pattern: &str, perms: Perms) {
        self.insert(pattern.to_string(), perms, None, "");
    }

    fn insert(&mut self, pattern: String, perms: Perms, literal: Option<String>, device: &str) {
        if let Some(&i) = self.index.get(&pattern) {
            let r = &mut self.rules[i];
            r.perms = r.perms.with(perms);
            return;
        }
        self.index.insert(pattern.clone(), self.rules.len());
        let device = literal.as_ref().map(|_| one_line(device));
        self.rules.push(Rule {
            pattern,
            perms,
            literal,
            device,
        });
    }

    /// The rules in first-granted order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as profile body lines: `  "<pattern>" <perms>,` one per line.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.rules.len() * 64);
        for n in &self.notes {
            out.push_str("  # ");
            out.push_str(n);
            out.push('\n');
        }
        for r in &self.rules {
            use std::fmt::Write;
            let _ = writeln!(out, "  \"{}\" {},", r.pattern, r.perms);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_roundtrip_and_merge() {
        assert_eq!(Perms::parse("rwk").to_string(), "rwk");
        assert_eq!(Perms::parse("rk").with(Perms::W).to_string(), "rwk");
        assert_eq!(Perms::parse("mr").to_string(), "mr");
        assert_eq!(Perms::parse("rmix").to_string(), "mrix");
        assert!(Perms::RWK.contains(Perms::RK));
        assert!(!Perms::RK.writes());
    }

    #[test]
    fn duplicate_grants_merge() {
        let mut s = RuleSet::new();
        s.grant(
            "disk 'a'",
            "/var/lib/libvirt/images/base.img",
            Perms::RK,
            Scope::File,
        )
        .unwrap();
        s.grant(
            "disk 'b'",
            "/var/lib/libvirt/images/base.img",
            Perms::RK,
            Scope::File,
        )
        .unwrap();
        s.grant(
            "disk 'c'",
            "/var/lib/libvirt/images//./base.img",
            Perms::RWK,
            Scope::File,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.render(), "  \"/var/lib/libvirt/images/base.img\" rwk,\n");
    }

    #[test]
    fn hostile_names_are_escaped_and_refusals_name_the_device() {
        let mut s = RuleSet::new();
        s.grant("disk 'vda'", "/srv/*/{a,b}\"x", Perms::RWK, Scope::File)
            .unwrap();
        assert_eq!(s.render(), "  \"/srv/\\*/\\{a\\,b\\}\\\"x\" rwk,\n");
        let e = s
            .grant("disk 'vda'", "/etc/shadow", Perms::RWK, Scope::File)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk 'vda': /etc/shadow is a host system path and cannot be granted rwk"
        );
        assert!(
            s.grant("disk 'vdb'", "/a\nb", Perms::R, Scope::File)
                .is_err()
        );
    }

    #[test]
    fn tree_scope_adds_dir_rule() {
        let mut s = RuleSet::new();
        s.grant(
            "filesystem 'share'",
            "/srv/share/",
            Perms::RW.with(Perms::L),
            Scope::Tree,
        )
        .unwrap();
        assert_eq!(
            s.render(),
            "  \"/srv/share/\" r,\n  \"/srv/share/**\" rwl,\n"
        );
    }
}
