//! Installing the profile generated from a domain (the hook's events): write only if changed,
//! compile from a staged copy, commit, load; and the checks that write nothing.

use super::{InstallRequest, LifecycleError, Profiles, Report, create_parent};
use crate::apparmorfs::Status;
use crate::generate;
use crate::profile::Mode;
use crate::store;
use std::path::Path;

impl Profiles<'_> {
    /// Generate, and write + compile (+ load) only if the text changed; an unchanged profile is
    /// loaded from the binary cache when asked to load and not loaded yet.
    pub fn install(&self, req: &InstallRequest<'_>) -> Result<Report, LifecycleError> {
        let (name, g, warnings) = self.generated(req)?;
        self.install_text(&name, &g, req.mode, req.load, warnings)
    }

    /// Generate the profile [`Profiles::install`] would write (every path through the host
    /// policy), and neither compile nor write it: the check for events where someone else
    /// writes and loads the profile (helper mode: libvirt's driver runs our helper right after
    /// `prepare`). A refused definition fails here, where libvirt shows our reason in the
    /// start's error; the helper's failure only reaches the admin as libvirt's generic "cannot
    /// load AppArmor profile".
    pub fn validate(&self, req: &InstallRequest<'_>) -> Result<Report, LifecycleError> {
        let (name, g, warnings) = self.generated(req)?;
        Ok(Report {
            text: format!(
                "checked {name}: {} rules, nothing refused",
                g.derived.rules.len()
            ),
            warnings,
            wrote: false,
        })
    }

    /// Generate and compile-check the profile [`Profiles::install`] would write, and write
    /// nothing: for the events after which libvirt may still give up without a `release`
    /// (`migrate`, `restore`; see [`crate::hook`]). The compile runs on a temporary file beside
    /// the profile, removed again whatever happens.
    pub fn check(&self, req: &InstallRequest<'_>) -> Result<Report, LifecycleError> {
        let (name, g, mut warnings) = self.generated(req)?;
        let path = self.path(&name);
        let write_err = |source| LifecycleError::Write {
            profile: name.clone(),
            path: path.clone(),
            source,
        };
        create_parent(&path).map_err(write_err)?;
        let nrules = g.derived.rules.len();
        let mode_word = format!("{:?}", g.enforcement).to_lowercase();
        let kernel_on = self.kernel.enabled();
        let compiled = match self.parser() {
            Ok(p) => {
                let staged =
                    store::Staged::write(&path, g.profile.as_bytes()).map_err(write_err)?;
                p.check(staged.path())
                    .map_err(|source| LifecycleError::Parser {
                        profile: name.clone(),
                        path: path.clone(),
                        source,
                    })?;
                "compile ok"
            }
            Err(e) if !kernel_on => {
                warnings.push(format!("{e}; not compile-checked"));
                "not compile-checked"
            }
            Err(source) => {
                return Err(LifecycleError::Parser {
                    profile: name.clone(),
                    path,
                    source,
                });
            }
        };
        Ok(Report {
            text: format!(
                "checked {name}: {nrules} rules, {mode_word}, {compiled}; written at prepare"
            ),
            warnings,
            wrote: false,
        })
    }

    /// The writing half of [`Profiles::install`], for callers that add to a generated profile.
    pub fn install_text(
        &self,
        name: &str,
        g: &generate::Generated,
        mode: Mode,
        load: bool,
        mut warnings: Vec<String>,
    ) -> Result<Report, LifecycleError> {
        let path = self.path(name);
        let write_err = |source| LifecycleError::Write {
            profile: name.to_string(),
            path: path.clone(),
            source,
        };
        create_parent(&path).map_err(write_err)?;
        let stale = store::remove_stale_temps(&path);
        if stale > 0 {
            warnings.push(format!(
                "removed {stale} temporary file(s) left by an interrupted run"
            ));
        }
        let old = store::read_capped(&path)
            .map_err(|source| LifecycleError::Read {
                profile: name.to_string(),
                path: path.clone(),
                source,
            })?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let kernel_on = self.kernel.enabled();
        let nrules = g.derived.rules.len();
        let mode_word = format!("{:?}", g.enforcement).to_lowercase();
        let parser_err = |p: &Path, source| LifecycleError::Parser {
            profile: name.to_string(),
            path: p.to_path_buf(),
            source,
        };
        let mut text = Vec::new();

        if old.as_deref() == Some(g.profile.as_str()) {
            text.push(format!("{name} unchanged ({nrules} rules, {mode_word})"));
            if kernel_on && load {
                if self.kernel.profile_mode(name).is_none() {
                    self.parser()
                        .and_then(|p| p.replace(&path, true))
                        .map_err(|e| parser_err(&path, e))?;
                    text.push("loaded from cache".into());
                } else {
                    text.push("already loaded".into());
                }
            } else {
                text.push(self.not_loaded_reason(kernel_on, mode));
            }
            return Ok(Report {
                text: text.join(", "),
                warnings,
                wrote: false,
            });
        }

        let (added, removed) = generate::rule_diff(old.as_deref().unwrap_or(""), &g.profile);
        let mut staged = store::Staged::write(&path, g.profile.as_bytes()).map_err(write_err)?;
        match self.parser() {
            Ok(p) => {
                if kernel_on && load {
                    p.replace(staged.path(), false)
                } else {
                    p.check(staged.path())
                }
                .map_err(|e| parser_err(&path, e))?;
            }
            Err(e) if !kernel_on => {
                warnings.push(format!("{e}; profile written without a compile check"))
            }
            Err(e) => return Err(parser_err(&path, e)),
        }
        if let Err(source) = staged.commit() {
            if kernel_on && load {
                self.roll_back_load(&path, staged.path(), old.is_some());
            }
            return Err(LifecycleError::Commit {
                profile: name.to_string(),
                path: path.clone(),
                source,
            });
        }
        text.push(format!(
            "{} {name}: {nrules} rules, {mode_word} (+{} -{}{})",
            if old.is_some() { "rewrote" } else { "wrote" },
            added.len(),
            removed.len(),
            if old.is_some() {
                summarize(&added, &removed)
            } else {
                String::new()
            }
        ));
        if kernel_on && load {
            text.push("loaded".into());
        } else {
            text.push("compile ok".into());
            text.push(self.not_loaded_reason(kernel_on, mode));
        }
        Ok(Report {
            text: text.join(", "),
            warnings,
            wrote: true,
        })
    }

    fn not_loaded_reason(&self, kernel_on: bool, mode: Mode) -> String {
        if !kernel_on {
            match self.kernel.status() {
                Status::Disabled(why) => format!("not loaded: {why}"),
                Status::Enabled => "not loaded".into(),
            }
        } else if mode == Mode::Libvirt {
            "libvirt loads it".into()
        } else {
            "not loaded".into()
        }
    }
}

/// A short `+rule -rule` summary of a rewrite for the log (empty for large changes).
fn summarize(added: &[String], removed: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for a in added.iter().take(3) {
        parts.push(format!("+{}", a.trim_end_matches(',')));
    }
    for r in removed.iter().take(3) {
        parts.push(format!("-{}", r.trim_end_matches(',')));
    }
    if added.len() + removed.len() > parts.len() {
        parts.push("...".into());
    }
    if parts.is_empty() || added.len() + removed.len() > 20 {
        String::new()
    } else {
        format!(": {}", parts.join(" "))
    }
}
