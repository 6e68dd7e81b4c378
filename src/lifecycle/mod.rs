//! The one owner of a guest's profile files and their kernel state: the only code that stages,
//! compiles, commits, loads, unloads and removes them. The hook, libvirt's helper in our place,
//! `gc`, `status`, `complain`/`enforce` and `explain --apply`/`grant` (reload after the admin's
//! local rules changed) all go through [`Profiles`], so a profile on disk is always written,
//! checked and removed the same way, under the guest's lock ([`Profiles::lock`]).
//!
//! Four verbs, after Incus's `internal/server/apparmor`: an unchanged profile is neither
//! rewritten nor recompiled (the start of a guest is dominated by `apparmor_parser`); a changed
//! one is staged beside the old one, compiled from the staged copy and only then renamed over it,
//! so the file on disk is the old profile or the new one, never half of each and never one that
//! does not compile. In helper mode the main profile and its `.files` are one transaction
//! ([`Profiles::install_pair`]). A file is ours when its first line is [`profile::MARKER`]:
//! libvirt's helper and the admin may put files of the same name there, and we never remove
//! theirs.
//!
//! Files: `install.rs` (a domain's profile: install, check, validate), `pair.rs` (helper mode's
//! two files), `kernel.rs` (load, reload, verify, unload, remove).

use crate::aaparser::{Parser, ParserError};
use crate::apparmorfs::Kernel;
use crate::config::Config;
use crate::derive;
use crate::domain::Domain;
use crate::generate::{self, GenerateError};
use crate::profile::{self, Mode};
use crate::store;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

mod install;
mod kernel;
mod pair;

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
    pub(super) fn generated(
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

    pub fn parser(&self) -> Result<Parser, ParserError> {
        Parser::from_config(self.cfg)
    }
}

/// The directory of the guests' lock files: the one place it is spelled.
pub fn lock_dir(cfg: &Config) -> PathBuf {
    cfg.rooted(&cfg.state_dir).join("locks")
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
        let (_d, cfg) = crate::config::test_root();
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
