//! Helper mode's transaction: the main profile and the `.files` it includes, installed together.

use super::{LifecycleError, PairReport, Profiles};
use crate::store;
use std::path::Path;

impl Profiles<'_> {
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
