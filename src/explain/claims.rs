//! What a guest's definition claims: its rules and every path its XML names.

use crate::domain::Domain;
use crate::owner::{GuestRules, OwnedRule, Source};
use crate::paths;
use crate::rules::{Perms, RuleSet};
use crate::xml::Element;
use std::path::Path;

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
    pub(super) fn coverage(&self, path: &str) -> (Perms, Option<String>) {
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
    pub(super) fn first_rule(&self, path: &str) -> Option<String> {
        self.rules
            .matching(path)
            .find(|r| !matches!(r.source, Source::Identity(_)))
            .map(|r| match &r.source {
                Source::Element(e) => e.clone(),
                _ => r.describe(),
            })
    }

    /// The XML element that writes `path`.
    pub(super) fn written_by(&self, path: &str) -> Option<&str> {
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

/// Every attribute value or text that is an absolute path, with `<a><b attr=...>` naming it.
fn walk_paths(e: &Element, stack: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    let mut here = e.name.to_string();
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
