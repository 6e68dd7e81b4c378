//! The access rules of one guest: a deduplicated, ordered set of path grants.
//!
//! Every grant goes through [`RuleSet::grant`], which resolves and validates the path, applies the
//! host policy and escapes it; fixed rules we write ourselves (globs such as the GL block) go
//! through [`RuleSet::fixed`]. Grants of the same pattern merge their permissions, so a thousand
//! disks over one base image give one base-image rule, not a thousand.

use crate::paths::PathMap;
use crate::paths::{self, PathError};
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

/// One file rule line, `"<pattern>" <perms>,` with the pattern already escaped: the one place
/// that writes the format (profiles, `.files`, local files, `explain`'s fixes) and reads it back
/// (whose file is this, `explain --apply`'s merge, the helper's self-check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleLine<'a> {
    /// The pattern as it appears between the quotes (escaped).
    pub pattern: &'a str,
    pub perms: Perms,
}

impl<'a> RuleLine<'a> {
    /// Read one file rule: `"<pattern>" <perms>,` or `<pattern> <perms>,` (a bare pattern starts
    /// with `/`), optionally after `allow` and surrounded by whitespace. Anything else (`deny`,
    /// `owner`, network rules, includes, comments) is `None`.
    pub fn parse(line: &'a str) -> Option<RuleLine<'a>> {
        let mut l = line.trim();
        l = l.strip_prefix("allow ").map(str::trim_start).unwrap_or(l);
        let (pattern, rest) = if let Some(inner) = l.strip_prefix('"') {
            // The pattern is escaped: a `"` inside is always preceded by a backslash.
            let b = inner.as_bytes();
            let mut i = 0;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            if i >= b.len() {
                return None;
            }
            (&inner[..i], &inner[i + 1..])
        } else if l.starts_with('/') {
            l.split_once(char::is_whitespace)?
        } else {
            return None;
        };
        let perms = rest.trim().strip_suffix(',')?.trim();
        if perms.is_empty() || !perms.chars().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        Some(RuleLine {
            pattern,
            perms: Perms::parse(perms),
        })
    }
}

impl fmt::Display for RuleLine<'_> {
    /// `"<pattern>" <perms>,` (no indent).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" {},", self.pattern, self.perms)
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

/// Device labels are built from XML values (`<target dev>`, aliases, names): their control
/// characters are escaped by the log's one-line escaper (its one owner), so an error stays one
/// line and cannot forge lines in libvirt's error output.
pub use crate::log::one_line;

/// Ordered, deduplicated rules.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: PathMap<String, usize>,
    /// Comment lines (`# ...`) emitted before the rules; they explain fixed blocks.
    pub notes: Vec<String>,
    /// The host policy every grant is checked against (the configuration's).
    policy: std::sync::Arc<paths::HostPolicy>,
}

impl RuleSet {
    /// An empty set under the default configuration's host policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set whose grants are checked against `policy`.
    pub fn with_policy(policy: std::sync::Arc<paths::HostPolicy>) -> Self {
        RuleSet {
            policy,
            ..Self::default()
        }
    }

    /// [`with_policy`](Self::with_policy) with room for about `rules` rules without regrowing.
    pub fn with_policy_and_capacity(
        policy: std::sync::Arc<paths::HostPolicy>,
        rules: usize,
    ) -> Self {
        RuleSet {
            rules: Vec::with_capacity(rules),
            index: PathMap::with_capacity_and_hasher(rules, Default::default()),
            notes: Vec::new(),
            policy,
        }
    }

    /// Grant `perms` on a path taken from the domain XML (or derived from it). The path is
    /// validated, resolved (symlinks), checked against the host policy and escaped. `device`
    /// names the element for the error message, e.g. `disk 'vda'`.
    /// Returns the resolved path (the backing-chain prober starts from it). `resolver` is the
    /// derivation's own (see [`paths::Resolver`]).
    pub fn grant(
        &mut self,
        resolver: &mut paths::Resolver,
        device: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<PathBuf, GrantError> {
        let err = |cause| GrantError {
            device: one_line(device),
            cause,
        };
        let resolved = resolver.resolve(raw).map_err(err)?;
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
            Scope::File => self
                .policy
                .check(resolved, perms.writes(), &perms.to_string()),
            Scope::Tree | Scope::DirEntries => {
                self.policy
                    .check_tree(resolved, perms.writes(), &perms.to_string())
            }
        }
        .map_err(err)?;
        let esc = paths::escape(s);
        match scope {
            Scope::File => self.insert(esc, perms, Some(s), device),
            Scope::Tree | Scope::DirEntries => {
                // "/" + "/**" must not become "//**"; a file rule for "/" itself stays "/".
                let base = if s == "/" { "" } else { esc.as_str() };
                if let Scope::Tree = scope {
                    self.insert(format!("{base}/"), Perms::R, Some(&format!("{s}/")), device);
                    self.insert(format!("{base}/**"), perms, Some(s), device);
                } else {
                    self.insert(format!("{base}/{{,*}}"), perms, Some(s), device);
                }
            }
        }
        Ok(())
    }

    /// Add a rule whose pattern we wrote ourselves (never from input).
    pub fn fixed(&mut self, pattern: &str, perms: Perms) {
        self.insert(pattern.to_string(), perms, None, "");
    }

    /// Merge `perms` into the rule for `pattern`, or add it (its literal and device are only
    /// copied for a new rule: a thousand disks over one base image merge into one rule).
    fn insert(&mut self, pattern: String, perms: Perms, literal: Option<&str>, device: &str) {
        use std::collections::hash_map::Entry;
        match self.index.entry(pattern) {
            Entry::Occupied(e) => {
                let r = &mut self.rules[*e.get()];
                r.perms = r.perms.with(perms);
            }
            Entry::Vacant(v) => {
                let pattern = v.key().clone();
                v.insert(self.rules.len());
                self.rules.push(Rule {
                    pattern,
                    perms,
                    literal: literal.map(str::to_string),
                    device: literal.map(|_| one_line(device)),
                });
            }
        }
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

    /// Whether these rules already grant `perms` on the literal path `path` (the union of every
    /// rule whose pattern matches it, as AppArmor does). Conservative: a pattern with syntax we
    /// do not model (variables) matches nothing. The helper uses it to skip a recompile when
    /// libvirt names a file the profile already covers (the per-domain directories at start).
    pub fn covers(&self, path: &str, perms: Perms) -> bool {
        let mut have = Perms::default();
        for r in &self.rules {
            if glob_matches(&r.pattern, path) {
                have = have.with(r.perms);
                if have.contains(perms) {
                    return true;
                }
            }
        }
        false
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
            let line = RuleLine {
                pattern: &r.pattern,
                perms: r.perms,
            };
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// One element of an AppArmor file pattern (after brace expansion).
#[derive(Debug)]
enum Tok {
    Lit(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `**`: any run of characters.
    DStar,
    /// `?`: one character except `/`.
    Quest,
    /// `[...]`: one character (not `/`) in (or, negated, not in) the ranges.
    Class(Vec<(char, char)>, bool),
}

/// Does the AppArmor pattern `pat` (as we write them: escapes, `*`, `**`, `?`, `[...]`, `{a,b}`)
/// match the literal `s`? Patterns with `@{` variables match nothing.
pub fn glob_matches(pat: &str, s: &str) -> bool {
    let mut alts = Vec::new();
    if !expand_braces(pat, &mut alts) {
        return false;
    }
    let text: Vec<char> = s.chars().collect();
    alts.iter().any(|a| match tokenize(a) {
        Some(t) => match_toks(&t, &text),
        None => false,
    })
}

/// Expand the first unescaped `{...}` group (recursively); false when the pattern is malformed
/// or expands to too many alternatives.
fn expand_braces(pat: &str, out: &mut Vec<String>) -> bool {
    let b: Vec<char> = pat.chars().collect();
    let mut i = 0;
    let mut open = None;
    while i < b.len() {
        match b[i] {
            '\\' => i += 1,
            '{' => {
                open = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(o) = open else {
        out.push(pat.to_string());
        return out.len() <= 256;
    };
    // Find the matching '}' and the top-level commas.
    let (mut depth, mut j, mut parts, mut start) = (0, o + 1, Vec::new(), o + 1);
    while j < b.len() {
        match b[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(b[start..j].iter().collect::<String>());
                start = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    if j >= b.len() {
        return false;
    }
    parts.push(b[start..j].iter().collect::<String>());
    let head: String = b[..o].iter().collect();
    let tail: String = b[j + 1..].iter().collect();
    parts
        .iter()
        .all(|p| expand_braces(&format!("{head}{p}{tail}"), out))
}

fn tokenize(p: &str) -> Option<Vec<Tok>> {
    let c: Vec<char> = p.chars().collect();
    let mut t = Vec::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if c.get(i + 1) == Some(&'x') && i + 3 < c.len() + 1 => {
                let hex: String = c.get(i + 2..i + 4)?.iter().collect();
                t.push(Tok::Lit(char::from(u8::from_str_radix(&hex, 16).ok()?)));
                i += 4;
                continue;
            }
            '\\' => {
                t.push(Tok::Lit(*c.get(i + 1)?));
                i += 2;
                continue;
            }
            '*' if c.get(i + 1) == Some(&'*') => {
                t.push(Tok::DStar);
                i += 2;
                continue;
            }
            '*' => t.push(Tok::Star),
            '?' => t.push(Tok::Quest),
            '@' if c.get(i + 1) == Some(&'{') => return None,
            '[' => {
                let mut j = i + 1;
                let neg = matches!(c.get(j), Some('^'));
                if neg {
                    j += 1;
                }
                let mut ranges = Vec::new();
                while *c.get(j)? != ']' {
                    let lo = c[j];
                    if c.get(j + 1) == Some(&'-') && c.get(j + 2).is_some_and(|&x| x != ']') {
                        ranges.push((lo, c[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((lo, lo));
                        j += 1;
                    }
                }
                t.push(Tok::Class(ranges, neg));
                i = j + 1;
                continue;
            }
            ch => t.push(Tok::Lit(ch)),
        }
        i += 1;
    }
    Some(t)
}

fn match_toks(t: &[Tok], s: &[char]) -> bool {
    let Some((first, rest)) = t.split_first() else {
        return s.is_empty();
    };
    match first {
        Tok::Lit(c) => s.first() == Some(c) && match_toks(rest, &s[1..]),
        Tok::Quest => s.first().is_some_and(|&c| c != '/') && match_toks(rest, &s[1..]),
        Tok::Class(r, neg) => {
            s.first()
                .is_some_and(|&c| c != '/' && r.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
                && match_toks(rest, &s[1..])
        }
        Tok::Star => (0..=s.len())
            .take_while(|&k| k == 0 || s[k - 1] != '/')
            .any(|k| match_toks(rest, &s[k..])),
        Tok::DStar => (0..=s.len()).any(|k| match_toks(rest, &s[k..])),
    }
}

#[cfg(test)]
mod glob_tests {
    #[test]
    fn glob_matching_of_our_patterns() {
        use super::glob_matches as m;
        assert!(m("/a/domain-1-x/**", "/a/domain-1-x/master-key.aes"));
        assert!(m("/a/domain-1-x/**", "/a/domain-1-x/b/c"));
        assert!(!m("/a/domain-1-x/*", "/a/domain-1-x/b/c"));
        assert!(m("/a/{,*}", "/a/") && m("/a/{,*}", "/a/b") && !m("/a/{,*}", "/a/b/c"));
        assert!(m("/dev/vfio/[0-9]*", "/dev/vfio/12") && !m("/dev/vfio/[0-9]*", "/dev/vfio/x"));
        assert!(m("/img/we\\*ird\\,n.qcow2", "/img/we*ird,n.qcow2"));
        assert!(!m("/img/we\\*ird.qcow2", "/img/weXird.qcow2"));
        assert!(m("/b\\x5cs", "/b\\s"));
        assert!(!m("@{HOME}/x", "/root/x"));
        assert!(!m("/a/{b", "/a/{b"));
        let mut rs = super::RuleSet::new();
        rs.fixed("/a/d/", super::Perms::R);
        rs.fixed("/a/d/**", super::Perms::RWK);
        assert!(rs.covers("/a/d/k", super::Perms::RWK));
        assert!(!rs.covers("/a/e", super::Perms::R));
        rs.fixed("/a/e", super::Perms::R);
        assert!(!rs.covers("/a/e", super::Perms::RW));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_line_reads_back_as_written() {
        let pattern = paths::escape("/srv/a \"b\",c*.img");
        let line = RuleLine {
            pattern: &pattern,
            perms: Perms::RWK,
        };
        let text = format!("  {line}");
        assert_eq!(text, r#"  "/srv/a \"b\"\,c\*.img" rwk,"#);
        assert_eq!(RuleLine::parse(&text), Some(line));
        assert_eq!(
            RuleLine::parse("allow /srv/x mr,"),
            Some(RuleLine {
                pattern: "/srv/x",
                perms: Perms::R.with(Perms::M)
            })
        );
        for not_one in [
            "deny /x r,",
            "owner /x r,",
            "#include <x>",
            "\"/x r,",
            "/x r",
            "/x 1,",
        ] {
            assert_eq!(RuleLine::parse(not_one), None, "{not_one}");
        }
    }

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
        let r = &mut paths::Resolver::new();
        s.grant(
            r,
            "disk 'a'",
            "/var/lib/libvirt/images/base.img",
            Perms::RK,
            Scope::File,
        )
        .unwrap();
        s.grant(
            r,
            "disk 'b'",
            "/var/lib/libvirt/images/base.img",
            Perms::RK,
            Scope::File,
        )
        .unwrap();
        s.grant(
            r,
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
        let r = &mut paths::Resolver::new();
        s.grant(r, "disk 'vda'", "/srv/*/{a,b}\"x", Perms::RWK, Scope::File)
            .unwrap();
        assert_eq!(s.render(), "  \"/srv/\\*/\\{a\\,b\\}\\\"x\" rwk,\n");
        let e = s
            .grant(r, "disk 'vda'", "/etc/shadow", Perms::RWK, Scope::File)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk 'vda': /etc/shadow is a host system path and cannot be granted rwk"
        );
        assert!(
            s.grant(r, "disk 'vdb'", "/a\nb", Perms::R, Scope::File)
                .is_err()
        );
    }

    #[test]
    fn tree_scope_adds_dir_rule() {
        let mut s = RuleSet::new();
        let r = &mut paths::Resolver::new();
        s.grant(
            r,
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
