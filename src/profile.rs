//! Rendering a guest's complete profile from the admin's template and the derived rules.
//!
//! The template has three placeholders, each of which must appear exactly once: `@@NAME@@`
//! (the profile name), `@@FLAGS@@` (profile flags) and `@@RULES@@` (a line of its own; replaced
//! by the generated rules and our includes). Replacement is structural — unlike libvirt's
//! helper, a template with a child profile or hat is not corrupted.

use crate::domain::Enforcement;
use thiserror::Error;

/// The template shipped with the product (`hooks/template.qemu`), used when the configured
/// template file is missing.
pub const DEFAULT_TEMPLATE: &str = include_str!("../hooks/template.qemu");

/// First line of every profile we write; `gc` and `status` recognise our files by it.
pub const MARKER: &str = "# virt-aa-hook generated profile";

/// Why a template cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template must contain {0} exactly once (found {1})")]
    Placeholder(&'static str, usize),
    #[error("template line with @@RULES@@ must contain nothing else")]
    RulesLine,
}

/// Who loads the profile, which decides whether libvirt's `.files` include belongs in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// libvirt's AppArmor driver is active: it loads our file and keeps `.files` up to date
    /// for hotplug, so we include it.
    Libvirt,
    /// libvirt's driver is off: we load and unload, the emulator wrapper applies the profile.
    Standalone,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Libvirt => "libvirt",
            Mode::Standalone => "standalone",
        })
    }
}

/// Everything that varies per guest in the rendered text.
pub struct ProfileInput<'a> {
    pub profile_name: &'a str,
    pub domain_name: &'a str,
    pub mode: Mode,
    pub enforcement: Enforcement,
    /// The rendered rules (`RuleSet::render`).
    pub rules: &'a str,
}

/// Check a template before use: every placeholder exactly once, `@@RULES@@` on its own line.
pub fn check_template(t: &str) -> Result<(), TemplateError> {
    for p in ["@@NAME@@", "@@FLAGS@@", "@@RULES@@"] {
        let n: usize = t
            .lines()
            .filter(|l| !is_comment(l))
            .map(|l| l.matches(p).count())
            .sum();
        if n != 1 {
            return Err(TemplateError::Placeholder(p, n));
        }
    }
    if !t.lines().any(|l| l.trim() == "@@RULES@@") {
        return Err(TemplateError::RulesLine);
    }
    Ok(())
}

/// AppArmor comment lines (`#` but not the old `#include` syntax): placeholders there are left
/// alone.
fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('#') && !t.starts_with("#include")
}

/// Render the full profile text.
pub fn render(template: &str, p: &ProfileInput<'_>) -> Result<String, TemplateError> {
    check_template(template)?;
    let flags = match p.enforcement {
        Enforcement::Enforce => "attach_disconnected",
        Enforcement::Complain => "attach_disconnected,complain",
    };
    let mut body = String::with_capacity(p.rules.len() + 512);
    body.push_str("  # Rules generated from the domain definition.\n");
    body.push_str(p.rules);
    body.push('\n');
    if p.mode == Mode::Libvirt {
        body.push_str("  # Rules libvirt adds at run time (hotplug, snapshots): written by libvirt's helper.\n");
        body.push_str(&format!(
            "  include if exists <libvirt/{}.files>\n",
            p.profile_name
        ));
    }
    body.push_str("  # Site-specific additions for this guest (never written by virt-aa-hook).\n");
    body.push_str(&format!(
        "  include if exists <local/libvirt/{}>\n",
        p.profile_name
    ));
    let mut out = String::with_capacity(template.len() + body.len() + 256);
    out.push_str(MARKER);
    out.push_str(&format!(
        " for domain '{}'; edit the template or local/libvirt/{} instead of this file\n",
        p.domain_name, p.profile_name
    ));
    for line in template.lines() {
        if line.trim() == "@@RULES@@" {
            out.push_str(&body);
        } else if is_comment(line) {
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(
                &line
                    .replace("@@NAME@@", p.profile_name)
                    .replace("@@FLAGS@@", flags),
            );
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_is_valid() {
        check_template(DEFAULT_TEMPLATE).unwrap();
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            check_template("profile @@NAME@@ flags=(@@FLAGS@@) {\n}\n"),
            Err(TemplateError::Placeholder("@@RULES@@", 0))
        );
        assert_eq!(
            check_template("@@NAME@@ @@NAME@@ @@FLAGS@@\n@@RULES@@\n"),
            Err(TemplateError::Placeholder("@@NAME@@", 2))
        );
        assert_eq!(
            check_template("@@NAME@@ @@FLAGS@@ x @@RULES@@\n"),
            Err(TemplateError::RulesLine)
        );
    }

    #[test]
    fn render_places_rules_and_includes() {
        let out = render(
            DEFAULT_TEMPLATE,
            &ProfileInput {
                profile_name: "libvirt-00000000-0000-0000-0000-000000000001",
                domain_name: "vm",
                mode: Mode::Libvirt,
                enforcement: Enforcement::Complain,
                rules: "  \"/x\" r,\n",
            },
        )
        .unwrap();
        assert!(out.starts_with(MARKER));
        assert!(out.contains(
            "profile libvirt-00000000-0000-0000-0000-000000000001 flags=(attach_disconnected,complain) {"
        ));
        assert!(out.contains("  \"/x\" r,\n"));
        assert!(out.contains(
            "include if exists <libvirt/libvirt-00000000-0000-0000-0000-000000000001.files>"
        ));
        assert!(out.trim_end().ends_with('}'));
    }
}
