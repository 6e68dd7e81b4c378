//! The kernel side and removal: load, reload, verify, unload, and removing our files (never
//! a file libvirt or the admin wrote, never the admin's local rules).

use super::{LifecycleError, Owner, Profiles, Report, is_ours, owner};
use crate::apparmorfs::LoadedMode;
use crate::store;
use std::path::Path;

impl Profiles<'_> {
    /// The kernel has AppArmor and this profile loaded.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.kernel.enabled() && self.kernel.profile_mode(name).is_some()
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
        let loaded = self.is_loaded(name);
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

    /// A profile was loaded from its staged file, and then the file could not take its final
    /// name: put the kernel back to what the disk says — the old file reloaded (its `.files`
    /// already restored by the caller), or on a first install the staged profile unloaded — so
    /// that a failed install never leaves a policy in force that no file shows (a hotplug that
    /// failed must not leave its disk granted). Best effort: the commit error is what the caller
    /// reports.
    pub(super) fn roll_back_load(&self, path: &Path, staged: &Path, reload_old: bool) {
        if let Ok(p) = self.parser() {
            let _ = if reload_old {
                p.replace(path, false)
            } else {
                p.remove(staged).map(|_| ())
            };
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

    /// Helper mode's `-R`/`-D`: unload if loaded; with `delete`, also remove `.files` (whoever
    /// wrote it, like libvirt's helper: it is per-run state) and the main file if it is ours.
    pub fn unload_helper(&self, name: &str, delete: bool) -> Result<Report, LifecycleError> {
        let main_path = self.path(name);
        let main_ours = is_ours(&main_path);
        let mut text = Vec::new();
        if self.is_loaded(name) {
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
        let loaded = self.is_loaded(name);
        if loaded {
            self.unload(name, &path)?;
        }
        self.remove_if_ours(name)?;
        Ok(Some(loaded))
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
}
