//! The pure pipeline shared by `virt-aa-hook generate` and the hook: domain XML → rules →
//! profile text. No files are written and nothing is loaded here.

use crate::derive::{self, Derived};
use crate::domain::{Domain, DomainError, Enforcement};
use crate::profile::{self, Mode, ProfileInput, TemplateError};
use crate::rules::GrantError;
use thiserror::Error;

/// Why no profile could be generated. Renders as one line naming the element and value.
#[derive(Debug, Error)]
pub enum GenerateError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// A generated profile and what went into it.
#[derive(Debug)]
pub struct Generated {
    pub domain: Domain,
    pub derived: Derived,
    pub enforcement: Enforcement,
    /// The rules body (one rule per line).
    pub rules_text: String,
    /// The complete profile as it would be installed.
    pub profile: String,
}

/// Inputs other than the XML.
pub struct Settings<'a> {
    pub mode: Mode,
    /// Enforcement for guests whose metadata does not choose.
    pub default_enforcement: Enforcement,
    pub template: &'a str,
    pub derive: &'a derive::Options,
}

/// Generate from XML bytes.
pub fn from_xml(xml: &[u8], s: &Settings<'_>) -> Result<Generated, GenerateError> {
    from_domain(Domain::parse(xml)?, s)
}

/// Generate from a parsed domain.
pub fn from_domain(domain: Domain, s: &Settings<'_>) -> Result<Generated, GenerateError> {
    let derived = derive::derive(&domain, s.derive)?;
    let rules_text = derived.rules.render();
    let enforcement = domain.settings.enforcement.unwrap_or(s.default_enforcement);
    let name = domain.profile_name();
    let profile = profile::render(
        s.template,
        &ProfileInput {
            profile_name: &name,
            domain_name: &domain.name,
            mode: s.mode,
            enforcement,
            rules: &rules_text,
        },
    )?;
    Ok(Generated {
        domain,
        derived,
        enforcement,
        rules_text,
        profile,
    })
}

/// Rule lines that differ between two profile texts: `(added, removed)`, for the log.
pub fn rule_diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
    let rules = |t: &str| -> std::collections::BTreeSet<String> {
        t.lines()
            .map(str::trim)
            .filter(|l| l.starts_with('"') || l.starts_with("/dev/"))
            .map(str::to_string)
            .collect()
    };
    let (o, n) = (rules(old), rules(new));
    (
        n.difference(&o).cloned().collect(),
        o.difference(&n).cloned().collect(),
    )
}
