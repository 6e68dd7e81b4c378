//! What the running kernel says about AppArmor: enabled or not, which profiles are loaded and
//! in which mode, and which profile a process runs under.
//!
//! Our development and CI machines run a kernel without AppArmor; every caller must treat
//! "no AppArmor" as a normal, clearly reported state, never as an error.

use std::path::PathBuf;

/// Where the kernel exposes AppArmor state, under a root prefix (tests use a fake tree).
#[derive(Clone, Debug)]
pub struct Kernel {
    pub root: PathBuf,
}

/// Whether AppArmor can be used on this kernel, and if not, why (for logs and `doctor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Enabled,
    Disabled(String),
}

/// A loaded profile's mode as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadedMode {
    Enforce,
    Complain,
    Other(String),
}

impl std::fmt::Display for LoadedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadedMode::Enforce => f.write_str("enforce"),
            LoadedMode::Complain => f.write_str("complain"),
            LoadedMode::Other(s) => f.write_str(s),
        }
    }
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel { root: "/".into() }
    }
}

impl Kernel {
    /// The kernel view under the configuration's root (`/` in production).
    pub fn from_config(cfg: &crate::config::Config) -> Kernel {
        Kernel {
            root: cfg.root.clone(),
        }
    }

    /// Unload a profile by name through `.remove` (for a profile whose file is gone, so the
    /// parser cannot be handed it). The error carries the interface's path.
    pub fn remove_by_name(&self, name: &str) -> Result<(), (PathBuf, std::io::Error)> {
        let rm = self.p("sys/kernel/security/apparmor/.remove");
        std::fs::write(&rm, name.as_bytes()).map_err(|e| (rm, e))
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Is AppArmor enabled and its policy interface reachable?
    pub fn status(&self) -> Status {
        let enabled = std::fs::read_to_string(self.p("sys/module/apparmor/parameters/enabled"));
        match enabled {
            Err(_) => {
                return Status::Disabled(
                    "kernel has no AppArmor (/sys/module/apparmor missing)".into(),
                );
            }
            Ok(s) if !s.trim().starts_with('Y') => {
                return Status::Disabled("AppArmor is disabled on the kernel command line".into());
            }
            _ => {}
        }
        if !self.p("sys/kernel/security/apparmor").is_dir() {
            return Status::Disabled(
                "securityfs is not mounted (/sys/kernel/security/apparmor missing)".into(),
            );
        }
        Status::Enabled
    }

    /// Whether profiles can be loaded here.
    pub fn enabled(&self) -> bool {
        self.status() == Status::Enabled
    }

    /// All loaded profiles: `(name, mode)`. Empty when AppArmor is off or unreadable.
    pub fn loaded(&self) -> Vec<(String, LoadedMode)> {
        let Ok(text) = std::fs::read_to_string(self.p("sys/kernel/security/apparmor/profiles"))
        else {
            return Vec::new();
        };
        text.lines().filter_map(parse_profiles_line).collect()
    }

    /// Mode of one loaded profile, `None` if not loaded.
    pub fn profile_mode(&self, name: &str) -> Option<LoadedMode> {
        self.loaded()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    /// The label a process runs under (`/proc/<pid>/attr/current`).
    pub fn process_label(&self, pid: u32) -> Option<String> {
        for rel in [
            format!("proc/{pid}/attr/apparmor/current"),
            format!("proc/{pid}/attr/current"),
        ] {
            if let Ok(s) = std::fs::read_to_string(self.p(&rel)) {
                return Some(s.trim_end_matches(['\n', '\0']).to_string());
            }
        }
        None
    }
}

/// Parse one line of `/sys/kernel/security/apparmor/profiles`: `name (mode)`. Names may
/// contain spaces and parentheses, so split at the *last* ` (`.
pub fn parse_profiles_line(line: &str) -> Option<(String, LoadedMode)> {
    let line = line.trim_end();
    let i = line.rfind(" (")?;
    let mode = line[i + 2..].strip_suffix(')')?;
    let mode = match mode {
        "enforce" => LoadedMode::Enforce,
        "complain" => LoadedMode::Complain,
        m => LoadedMode::Other(m.to_string()),
    };
    Some((line[..i].to_string(), mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_lines() {
        assert_eq!(
            parse_profiles_line("libvirt-1 (enforce)"),
            Some(("libvirt-1".into(), LoadedMode::Enforce))
        );
        assert_eq!(
            parse_profiles_line("odd (name) x (complain)"),
            Some(("odd (name) x".into(), LoadedMode::Complain))
        );
        assert_eq!(parse_profiles_line("garbage"), None);
    }

    #[test]
    fn status_on_fake_trees() {
        let d = tempfile::tempdir().unwrap();
        let k = Kernel {
            root: d.path().into(),
        };
        assert!(matches!(k.status(), Status::Disabled(_)));
        std::fs::create_dir_all(d.path().join("sys/module/apparmor/parameters")).unwrap();
        std::fs::write(
            d.path().join("sys/module/apparmor/parameters/enabled"),
            "Y\n",
        )
        .unwrap();
        assert!(matches!(k.status(), Status::Disabled(m) if m.contains("securityfs")));
        std::fs::create_dir_all(d.path().join("sys/kernel/security/apparmor")).unwrap();
        std::fs::write(
            d.path().join("sys/kernel/security/apparmor/profiles"),
            "libvirt-a (enforce)\nlibvirt-b (complain)\n",
        )
        .unwrap();
        assert_eq!(k.status(), Status::Enabled);
        assert_eq!(k.profile_mode("libvirt-b"), Some(LoadedMode::Complain));
        assert_eq!(k.profile_mode("libvirt-c"), None);
    }
}
