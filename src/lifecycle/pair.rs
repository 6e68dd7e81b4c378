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
        if let Some(mut s) = staged {
            if let Err(source) = s.commit() {
                // Both old again, on disk and (when it was loaded) in the kernel.
                restore_files();
                if kernel_on {
                    self.roll_back_load(&main_path, s.path(), old_main.is_some() && loaded);
                }
                return Err(LifecycleError::Commit {
                    profile: name.to_string(),
                    path: main_path.clone(),
                    source,
                });
            }
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::lifecycle::{LifecycleError, Profiles};
    use std::path::Path;

    /// An `apparmor_parser` that runs `script`.
    fn parser(dir: &Path, script: &str) -> std::path::PathBuf {
        let p = dir.join(format!("parser-{}", script.len()));
        crate::aaparser::write_script(&p, script);
        p
    }

    #[test]
    fn both_files_new_or_both_old() {
        let d = tempfile::tempdir().unwrap();
        let name = "libvirt-1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let failing = Config {
            apparmor_parser: Some(parser(d.path(), "echo 'syntax error' >&2; exit 1")),
            ..Config::rooted_at(&d.path().join("root"))
        };
        let pr = Profiles::new(&failing);
        let (main, files) = (pr.path(name), failing.files_path(name));
        std::fs::create_dir_all(main.parent().unwrap()).unwrap();
        std::fs::write(&main, "old main\n").unwrap();
        std::fs::write(&files, "old files\n").unwrap();
        // A compile failure: neither file changes (the staged main profile is dropped, the old
        // `.files` put back).
        let e = pr
            .install_pair(name, "new main\n", "new files\n")
            .unwrap_err();
        assert!(matches!(e, LifecycleError::Parser { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&main).unwrap(), "old main\n");
        assert_eq!(std::fs::read_to_string(&files).unwrap(), "old files\n");
        // A `.files` that did not exist is removed again.
        std::fs::remove_file(&files).unwrap();
        pr.install_pair(name, "new main\n", "new files\n")
            .unwrap_err();
        assert!(!files.exists());
        // It compiles: both new, one compile.
        let ok = Config {
            apparmor_parser: Some(parser(d.path(), "exit 0")),
            ..failing.clone()
        };
        let r = Profiles::new(&ok)
            .install_pair(name, "new main\n", "new files\n")
            .unwrap();
        assert!(r.main_changed && r.files_changed, "{r:?}");
        assert_eq!(r.state, "compile ok, not loaded (kernel has no AppArmor)");
        assert_eq!(std::fs::read_to_string(&main).unwrap(), "new main\n");
        assert_eq!(std::fs::read_to_string(&files).unwrap(), "new files\n");
        // Unchanged and no AppArmor in the kernel: nothing compiled, nothing written.
        let again = Profiles::new(&failing)
            .install_pair(name, "new main\n", "new files\n")
            .unwrap();
        assert!(!again.main_changed && !again.files_changed);
    }
}
