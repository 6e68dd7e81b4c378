//! The one owner of a guest's profile file and its kernel state: install (write only if
//! changed, compile, load), verify, remove, and "is this file ours". The hook, libvirt's helper
//! in our place, `gc` and `status` all go through [`Profiles`], so a profile on disk is always
//! written, checked and removed the same way.
//!
//! Four verbs, after Incus's `internal/server/apparmor`: an unchanged profile is neither
//! rewritten nor recompiled (the start of a guest is dominated by `apparmor_parser`); a changed
//! one is staged beside the old one, compiled from the staged copy and only then renamed over it,
//! so the file on disk is the old profile or the new one, never half of each and never one that
//! does not compile. A file is ours when its first line is [`profile::MARKER`]: libvirt's helper
//! and the admin may put files of the same name there, and we never remove theirs.

use crate::aaparser::{Parser, ParserError};
use crate::apparmorfs::{Kernel, LoadedMode, Status};
use crate::config::Config;
use crate::derive;
use crate::domain::Domain;
use crate::generate::{self, GenerateError};
use crate::profile::{self, Mode};
use crate::store;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a lifecycle step failed. Each carries the profile and, where a file is involved, its path;
/// the text is one line (it ends up in libvirt's error message).
#[derive(Debug, Error)]
pub enum LifecycleError {
    /// The domain cannot be confined as defined (refused path, control character...).
    #[error("{source}")]
    Generate {
        profile: String,
        #[source]
        source: GenerateError,
    },
    #[error("cannot write profile: {source}")]
    Write {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot replace profile: {source}")]
    Commit {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source}")]
    Read {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `apparmor_parser` missing, failing or hung (compile, load or unload).
    #[error("{source}")]
    Parser {
        profile: String,
        path: PathBuf,
        #[source]
        source: ParserError,
    },
    /// A file beside the profile (`.files`), written in place: the profile includes it by its
    /// final name.
    #[error("cannot write {}: {source}", path.display())]
    WriteBeside {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The profile directory cannot be created.
    #[error("{}: {source}", path.display())]
    Dir {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("profile file of {profile} is missing")]
    Missing { profile: String, path: PathBuf },
    #[error("{profile} is not loaded")]
    NotLoaded { profile: String },
    #[error("{}: {source}", path.display())]
    Unload {
        profile: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who wrote a file in the profile directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Missing,
    Unreadable,
    /// First line is our marker.
    Ours,
    /// libvirt's helper or the admin.
    Other,
}

impl Owner {
    /// For tables (`status`).
    pub fn word(self) -> &'static str {
        match self {
            Owner::Missing => "missing",
            Owner::Unreadable => "unreadable",
            Owner::Ours => "ours",
            Owner::Other => "libvirt's",
        }
    }
}

/// Whether the file at `path` starts with `marker` (our `.files` in helper mode has its own).
pub fn starts_with_marker(path: &Path, marker: &str) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::new();
    f.take(marker.len() as u64).read_to_end(&mut head).is_ok() && head == marker.as_bytes()
}

/// Whose file is at `path` (reads only the first line's worth of bytes).
pub fn owner(path: &Path) -> Owner {
    match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Owner::Missing,
        Err(_) => Owner::Unreadable,
        Ok(f) => {
            let mut head = Vec::new();
            if f.take(profile::MARKER.len() as u64)
                .read_to_end(&mut head)
                .is_err()
            {
                return Owner::Unreadable;
            }
            if head == profile::MARKER.as_bytes() {
                Owner::Ours
            } else {
                Owner::Other
            }
        }
    }
}

/// Whether the file at `path` is a profile we wrote.
pub fn is_ours(path: &Path) -> bool {
    owner(path) == Owner::Ours
}

/// What an install asked for.
pub struct InstallRequest<'a> {
    pub domain: &'a Domain,
    pub mode: Mode,
    /// Load (or reload) into the kernel; otherwise only compile-check.
    pub load: bool,
    pub derive: &'a derive::Options,
}

/// What a step did, for the log line, and what it met on the way.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub warnings: Vec<String>,
    /// The profile file was (re)written.
    pub wrote: bool,
}

impl Report {
    pub fn text(s: impl Into<String>) -> Report {
        Report {
            text: s.into(),
            ..Default::default()
        }
    }
}

/// What [`Profiles::install_pair`] did: which files changed and the kernel's state after.
#[derive(Debug)]
pub struct PairReport {
    pub main_changed: bool,
    pub files_changed: bool,
    /// `loaded`, `already loaded`, `kernel has no AppArmor`...
    pub state: String,
}

/// The profile owner for one configuration.
pub struct Profiles<'a> {
    pub cfg: &'a Config,
    pub kernel: Kernel,
}

impl<'a> Profiles<'a> {
    pub fn new(cfg: &'a Config) -> Profiles<'a> {
        Profiles {
            cfg,
            kernel: Kernel::from_config(cfg),
        }
    }

    /// The guest's lock (`uuid`: hyphenated), held around every change to its profile so the
    /// hook, the helper and `explain --apply` never interleave; waits up to `lock_timeout`.
    pub fn lock(&self, uuid: &str) -> std::io::Result<store::GuestLock> {
        self.lock_for(uuid, std::time::Duration::from_secs(self.cfg.lock_timeout))
    }

    /// [`Profiles::lock`] with another wait (`gc` gives up sooner).
    pub fn lock_for(
        &self,
        uuid: &str,
        wait: std::time::Duration,
    ) -> std::io::Result<store::GuestLock> {
        store::GuestLock::acquire(&lock_dir(self.cfg), uuid, wait)
    }

    /// The main profile file of a profile name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.cfg.profile_path(name)
    }

    /// The template every guest's profile is rendered from: the configured file, else the
    /// built-in one with a warning (a missing or broken template must not stop every guest).
    pub fn template(&self, warnings: &mut Vec<String>) -> String {
        let p = self.cfg.rooted(&self.cfg.template);
        match store::read_capped(&p) {
            Ok(Some(b)) => match String::from_utf8(b) {
                Ok(s) => return s,
                Err(_) => warnings.push(format!(
                    "template {} is not UTF-8; using the built-in template",
                    p.display()
                )),
            },
            Ok(None) => warnings.push(format!(
                "template {} missing; using the built-in template",
                p.display()
            )),
            Err(e) => warnings.push(format!("template: {e}; using the built-in template")),
        }
        profile::DEFAULT_TEMPLATE.to_string()
    }

    /// Generate the profile text for a domain exactly as [`Profiles::install`] would write it.
    pub fn render(
        &self,
        dom: Domain,
        mode: Mode,
        opts: &derive::Options,
        warnings: &mut Vec<String>,
    ) -> Result<generate::Generated, GenerateError> {
        let template = self.template(warnings);
        let g = generate::from_domain(
            dom,
            &generate::Settings {
                mode,
                default_enforcement: self.cfg.enforcement,
                template: &template,
                derive: opts,
            },
        )?;
        warnings.extend(g.derived.warnings.iter().cloned());
        Ok(g)
    }

    /// The profile `req` asks for, its name and the generator's warnings.
    fn generated(
        &self,
        req: &InstallRequest<'_>,
    ) -> Result<(String, generate::Generated, Vec<String>), LifecycleError> {
        let name = req.domain.profile_name();
        let mut warnings = Vec::new();
        let g = self
            .render(req.domain.clone(), req.mode, req.derive, &mut warnings)
            .map_err(|source| LifecycleError::Generate {
                profile: name.clone(),
                source,
            })?;
        Ok((name, g, warnings))
    }

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
        let staged = store::Staged::write(&path, g.profile.as_bytes()).map_err(write_err)?;
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
        staged.commit().map_err(|source| LifecycleError::Commit {
            profile: name.to_string(),
            path: path.clone(),
            source,
        })?;
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

    /// Install a main profile and the `.files` it includes as one transaction (helper mode,
    /// where we own both): the new `.files` is put in place (the staged main profile includes it
    /// by its final name) and the main profile staged beside its old copy; one compile and load
    /// (`apparmor_parser -r`, or a compile check without AppArmor in the kernel); then the main
    /// profile is committed, or on failure the old `.files` is put back and the staged main
    /// profile dropped: both old, or both new. Nothing is compiled when neither file's policy
    /// changed and the profile is loaded (a `.files` whose comments alone changed is rewritten
    /// without a compile).
    pub fn install_pair(
        &self,
        name: &str,
        main_text: &str,
        files_text: &str,
    ) -> Result<PairReport, LifecycleError> {
        let main_path = self.path(name);
        let files_path = self.cfg.files_path(name);
        let old_main = self.read_text(name, &main_path)?;
        let old_files = self.read_text(name, &files_path)?;
        let main_changed = old_main.as_deref() != Some(main_text);
        let files_changed = old_files.as_deref() != Some(files_text);
        // Only comments changed (a file the profile already covers): write, do not recompile.
        let policy_changed = main_changed
            || old_files.as_deref().map(policy_lines) != Some(policy_lines(files_text));
        let kernel_on = self.kernel.enabled();
        let loaded = kernel_on && self.kernel.profile_mode(name).is_some();
        let report = |state: &str| PairReport {
            main_changed,
            files_changed,
            state: state.to_string(),
        };
        let write_files = |text: &str| {
            store::write_atomic(&files_path, text.as_bytes()).map_err(|source| {
                LifecycleError::WriteBeside {
                    profile: name.to_string(),
                    path: files_path.clone(),
                    source,
                }
            })
        };
        if !policy_changed && (loaded || !kernel_on) {
            if files_changed {
                write_files(files_text)?;
            }
            return Ok(report(if !kernel_on {
                "kernel has no AppArmor"
            } else if files_changed {
                "already covered by the loaded profile, not recompiled"
            } else {
                "already loaded"
            }));
        }
        if let Some(dir) = main_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LifecycleError::Dir {
                profile: name.to_string(),
                path: dir.to_path_buf(),
                source,
            })?;
        }
        if files_changed {
            write_files(files_text)?;
        }
        let restore_files = || {
            if files_changed {
                let _ = match &old_files {
                    Some(t) => store::write_atomic(&files_path, t.as_bytes()),
                    None => store::remove_if_exists(&files_path).map(|_| ()),
                };
            }
        };
        let staged = if main_changed {
            match store::Staged::write(&main_path, main_text.as_bytes()) {
                Ok(s) => Some(s),
                Err(source) => {
                    restore_files();
                    return Err(LifecycleError::Write {
                        profile: name.to_string(),
                        path: main_path,
                        source,
                    });
                }
            }
        } else {
            None
        };
        let file_to_load = staged.as_ref().map(|s| s.path()).unwrap_or(&main_path);
        let compiled = self.parser().and_then(|p| {
            if kernel_on {
                p.replace(file_to_load, staged.is_none())
            } else {
                p.check(file_to_load)
            }
        });
        if let Err(source) = compiled {
            restore_files();
            return Err(LifecycleError::Parser {
                profile: name.to_string(),
                path: main_path,
                source,
            });
        }
        if let Some(s) = staged {
            s.commit().map_err(|source| LifecycleError::Commit {
                profile: name.to_string(),
                path: main_path.clone(),
                source,
            })?;
        }
        Ok(report(if kernel_on {
            "loaded"
        } else {
            "compile ok, not loaded (kernel has no AppArmor)"
        }))
    }

    /// A profile file's text (lossy UTF-8), `None` when missing.
    pub fn read_text(&self, name: &str, path: &Path) -> Result<Option<String>, LifecycleError> {
        store::read_capped(path)
            .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|source| LifecycleError::Read {
                profile: name.to_string(),
                path: path.to_path_buf(),
                source,
            })
    }

    /// Load (or replace) the profile from its file as it is, through the binary cache.
    pub fn load(&self, name: &str) -> Result<(), LifecycleError> {
        let path = self.path(name);
        self.parser()
            .and_then(|p| p.replace(&path, true))
            .map(|_| ())
            .map_err(|source| LifecycleError::Parser {
                profile: name.to_string(),
                path,
                source,
            })
    }

    /// Reload a profile whose included files changed (the admin's local rules): replace it
    /// when loaded, else compile-check it. `Ok(true)`: reloaded.
    pub fn reload(&self, name: &str) -> Result<bool, LifecycleError> {
        let path = self.path(name);
        let loaded = self.kernel.enabled() && self.kernel.profile_mode(name).is_some();
        self.parser()
            .and_then(|p| {
                if loaded {
                    p.replace(&path, false)
                } else {
                    p.check(&path)
                }
            })
            .map(|_| loaded)
            .map_err(|source| LifecycleError::Parser {
                profile: name.to_string(),
                path,
                source,
            })
    }

    /// Helper mode's `-R`/`-D`: unload if loaded; with `delete`, also remove `.files` (whoever
    /// wrote it, like libvirt's helper: it is per-run state) and the main file if it is ours.
    pub fn unload_helper(&self, name: &str, delete: bool) -> Result<Report, LifecycleError> {
        let main_path = self.path(name);
        let main_ours = is_ours(&main_path);
        let mut text = Vec::new();
        if self.kernel.enabled() && self.kernel.profile_mode(name).is_some() {
            self.unload(name, &main_path)?;
            text.push("unloaded".to_string());
        } else {
            text.push("was not loaded".to_string());
        }
        if delete {
            if self.remove_companion(name).unwrap_or(false) {
                text.push("removed .files".into());
            }
            if main_ours && store::remove_if_exists(&main_path).unwrap_or(false) {
                text.push(format!("removed {}", main_path.display()));
            }
        }
        Ok(Report::text(text.join(", ")))
    }

    /// `gc`'s removal of a stale profile: if the file is ours, unload it (if loaded) and remove
    /// it. `Ok(None)`: not ours (nothing done); `Ok(Some(unloaded))` otherwise.
    pub fn remove_stale(&self, name: &str) -> Result<Option<bool>, LifecycleError> {
        let path = self.path(name);
        if !is_ours(&path) {
            return Ok(None);
        }
        let loaded = self.kernel.enabled() && self.kernel.profile_mode(name).is_some();
        if loaded {
            self.unload(name, &path)?;
        }
        self.remove_if_ours(name)?;
        Ok(Some(loaded))
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

    /// The profile file exists and, on a kernel with AppArmor, is loaded: its mode.
    pub fn verify(&self, name: &str) -> Result<Option<LoadedMode>, LifecycleError> {
        let path = self.path(name);
        if !path.exists() {
            return Err(LifecycleError::Missing {
                profile: name.to_string(),
                path,
            });
        }
        if !self.kernel.enabled() {
            return Ok(None);
        }
        match self.kernel.profile_mode(name) {
            Some(m) => Ok(Some(m)),
            None => Err(LifecycleError::NotLoaded {
                profile: name.to_string(),
            }),
        }
    }

    /// Unload (if loaded) and remove our file; never a file libvirt or the admin wrote, never
    /// the admin's local rules. `companions`: also remove `libvirt-<uuid>.files` (standalone
    /// mode, where nobody else maintains it).
    pub fn remove(&self, name: &str, companions: bool) -> Result<Report, LifecycleError> {
        let path = self.path(name);
        let mut text = Vec::new();
        if self.kernel.enabled() {
            if self.kernel.profile_mode(name).is_some() {
                self.unload(name, &path)?;
                text.push(format!("unloaded {name}"));
            } else {
                text.push(format!("{name} was not loaded"));
            }
        }
        if self.remove_if_ours(name)? {
            text.push(format!("removed {}", path.display()));
        } else {
            text.push("no profile file of ours to remove".into());
        }
        if companions {
            let _ = self.remove_companion(name);
        }
        text.push("kept local rules".into());
        Ok(Report::text(text.join(", ")))
    }

    /// Remove `libvirt-<uuid>.files` (whoever wrote it: it is per-run state). `Ok(false)`:
    /// there was none.
    pub fn remove_companion(&self, name: &str) -> std::io::Result<bool> {
        store::remove_if_exists(&self.cfg.files_path(name))
    }

    /// Remove the main profile file if it is ours. `Ok(false)`: nothing of ours there.
    pub fn remove_if_ours(&self, name: &str) -> Result<bool, LifecycleError> {
        let path = self.path(name);
        match owner(&path) {
            Owner::Ours => {
                store::remove_if_exists(&path).map_err(|source| LifecycleError::Unload {
                    profile: name.to_string(),
                    path: path.clone(),
                    source,
                })
            }
            Owner::Missing | Owner::Other => Ok(false),
            Owner::Unreadable => Err(LifecycleError::Read {
                profile: name.to_string(),
                path: path.clone(),
                source: std::io::Error::other(format!("{}: unreadable", path.display())),
            }),
        }
    }

    /// Unload a profile from the kernel: through the parser while its file exists, else by
    /// name through the kernel interface.
    pub fn unload(&self, name: &str, path: &Path) -> Result<(), LifecycleError> {
        if path.exists() {
            self.parser()
                .and_then(|p| p.remove(path))
                .map(|_| ())
                .map_err(|source| LifecycleError::Parser {
                    profile: name.to_string(),
                    path: path.to_path_buf(),
                    source,
                })
        } else {
            self.kernel
                .remove_by_name(name)
                .map_err(|(rm, source)| LifecycleError::Unload {
                    profile: name.to_string(),
                    path: rm,
                    source,
                })
        }
    }

    pub fn parser(&self) -> Result<Parser, ParserError> {
        Parser::from_config(self.cfg)
    }
}

/// The part of a profile file that is policy: everything but comment lines.
fn policy_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') || t.starts_with("#include")
        })
        .collect()
}

/// The directory of the guests' lock files: the one place it is spelled.
pub fn lock_dir(cfg: &Config) -> PathBuf {
    cfg.rooted(&cfg.state_dir).join("locks")
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

/// Create the directory a profile goes in; the error names that directory.
fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_of_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("libvirt-x");
        assert_eq!(owner(&p), Owner::Missing);
        std::fs::write(&p, format!("{} for domain 'x'\n", profile::MARKER)).unwrap();
        assert_eq!(owner(&p), Owner::Ours);
        assert!(is_ours(&p));
        std::fs::write(&p, "profile libvirt-x {}\n").unwrap();
        assert_eq!(owner(&p), Owner::Other);
        std::fs::write(&p, "#").unwrap();
        assert_eq!(owner(&p), Owner::Other);
    }

    #[test]
    fn remove_keeps_files_that_are_not_ours() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: d.path().into(),
            ..Default::default()
        };
        let pr = Profiles::new(&cfg);
        let p = pr.path("libvirt-x");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "profile libvirt-x {}\n").unwrap();
        assert!(!pr.remove_if_ours("libvirt-x").unwrap());
        assert!(p.exists());
        std::fs::write(&p, format!("{}\n", profile::MARKER)).unwrap();
        std::fs::write(cfg.files_path("libvirt-x"), "x\n").unwrap();
        let r = pr.remove("libvirt-x", true).unwrap();
        assert!(r.text.contains("removed"), "{}", r.text);
        assert!(!p.exists() && !cfg.files_path("libvirt-x").exists());
    }
}
