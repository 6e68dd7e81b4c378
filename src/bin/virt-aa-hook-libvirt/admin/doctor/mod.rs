//! `doctor`: one screen that says whether guests on this host get confined, and if not, why and
//! what to do. One line per check: `✓` passed, `✗` failed (with a fix), `!` warning, `-` not
//! checked (with the reason: a check we could not perform never passes silently).
//!
//! The report's lines and how they are written are here, with the table of checks in report
//! order; `facts.rs` gathers what the checks share (kernel, libvirt's answers, the mode) once;
//! the checks live by subject: `checks_apparmor.rs` (the kernel, apparmor_parser),
//! `checks_libvirt.rs` (library, daemon, security models, the daemon's confinement, the
//! capability cache), `checks_install.rs` (our hook, template, abstraction, profile directory,
//! log), `checks_mode.rs` (the mode, day-2 operations, enrolment).

mod checks_apparmor;
mod checks_install;
mod checks_libvirt;
mod checks_mode;
mod facts;

use self::checks_apparmor::{kernel_check, parser_check};
use self::checks_install::{
    abstraction_check, hook_check, log_check, profile_dir_check, template_check,
};
use self::checks_libvirt::{
    cache_check, daemon_check, daemon_confined_check, library_check, secmodels_check,
};
use self::checks_mode::{day2_check, enrolled_check, mode_check};
use self::facts::Facts;
use super::conn::Libvirt;
use anyhow::Result;
use virt_aa_hook::config::Config;

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pass,
    Fail,
    Warn,
    NotChecked,
}

impl State {
    fn symbol(self) -> &'static str {
        match self {
            State::Pass => "✓",
            State::Fail => "✗",
            State::Warn => "!",
            State::NotChecked => "-",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Passed, failed, warning, not checked.
    pub state: State,
    /// What was checked.
    pub title: String,
    /// What was found.
    pub detail: String,
    /// How to fix it (failures and warnings).
    pub hint: Option<String>,
}

fn check(state: State, title: &str, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        state,
        title: title.to_string(),
        detail: detail.into(),
        hint: hint.map(str::to_string),
    }
}

/// The report text.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!("{} {}: {}\n", c.state.symbol(), c.title, c.detail));
        if let Some(h) = &c.hint {
            if matches!(c.state, State::Fail | State::Warn) {
                s.push_str(&format!("    fix: {h}\n"));
            }
        }
    }
    let (f, w) = (
        checks.iter().filter(|c| c.state == State::Fail).count(),
        checks.iter().filter(|c| c.state == State::Warn).count(),
    );
    s.push_str(&format!("{f} failed, {w} warning(s)\n"));
    s
}

/// One check: its title (the report line's name) and how it is made.
type CheckFn = fn(&Facts, &str) -> Check;

/// Every check, in report order.
const CHECKS: &[(&str, CheckFn)] = &[
    ("kernel AppArmor", kernel_check),
    ("apparmor_parser", parser_check),
    ("libvirt library", library_check),
    ("libvirt daemon", daemon_check),
    ("security models", secmodels_check),
    ("libvirt daemon confined", daemon_confined_check),
    ("hook installed", |f, title| hook_check(f.cfg, title)),
    ("template", template_check),
    ("QEMU abstraction", abstraction_check),
    ("profile directory writable", profile_dir_check),
    ("log file writable", log_check),
    ("capability cache", cache_check),
    ("mode", mode_check),
    ("day-2 operations", |f, title| {
        day2_check(
            title,
            f.mode,
            virt_aa_hook::host::helper_installed(f.cfg),
            f.cfg.helper_mode,
            f.driver_live(),
        )
    }),
    ("guests enrolled", enrolled_check),
];

/// Run all checks. Pure with respect to output: returns the lines; `run` prints them.
pub fn checks(cfg: &Config, lv: &Libvirt) -> Vec<Check> {
    let f = Facts::gather(cfg, lv);
    CHECKS.iter().map(|(title, c)| c(&f, title)).collect()
}

/// Run `doctor`: print the report; exit 1 when a check failed.
pub fn run(cfg: &Config, lv: &Libvirt) -> Result<i32> {
    let c = checks(cfg, lv);
    print!("{}", render(&c));
    Ok(i32::from(c.iter().any(|c| c.state == State::Fail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn report_on_a_host_without_apparmor_and_without_daemon() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::rooted_at(d.path());
        let lv = Libvirt::new(
            "qemu+unix:///system?socket=/nonexistent/vah.sock",
            Duration::from_secs(20),
        );
        let c = checks(&cfg, &lv);
        let by = |t: &str| c.iter().find(|c| c.title == t).unwrap().clone();
        let k = by("kernel AppArmor");
        assert_eq!(k.state, State::Fail);
        assert!(k.hint.unwrap().contains("apparmor=1 security=apparmor"));
        assert_eq!(by("libvirt daemon").state, State::Fail);
        assert_eq!(by("security models").state, State::NotChecked);
        assert!(by("security models").detail.contains("not checked"));
        assert_eq!(by("capability cache").state, State::Warn);
        assert_eq!(by("hook installed").state, State::Fail);
        let out = render(&c);
        assert!(out.contains("✗ kernel AppArmor: "), "{out}");
        assert!(out.contains("    fix: boot with apparmor=1"), "{out}");
    }
}
