//! The configuration file (`/etc/libvirt/virt-aa-hook.conf`, TOML).
//!
//! Every path we own is rooted in `root`, so the whole product runs against a temporary
//! directory in tests (`VIRT_AA_HOOK_ROOT=/tmp/x` or `root = "/tmp/x"`). Paths taken from domain
//! XML are host paths and are never rooted.

use crate::domain::Enforcement;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Directories trusted for images on every host (libvirt's default storage pool), besides the
/// directories of each guest's own disks ([`crate::reach`]). `image_dirs` replaces this list.
pub const DEFAULT_IMAGE_DIRS: &[&str] = &["/var/lib/libvirt/images"];

/// Where the configuration is read from unless `VIRT_AA_HOOK_CONFIG` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/libvirt/virt-aa-hook.conf";
/// Config files larger than this are refused (it is a handful of lines).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Why the configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("config {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
}

/// Which mode the hook runs in; `auto` decides from the capability cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    #[default]
    Auto,
    Libvirt,
    Standalone,
}

/// The settings. Field docs are the reference for `install/virt-aa-hook.conf`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Prefix for every path below (tests); `/` in production.
    pub root: PathBuf,
    /// Where generated profiles go (`libvirt-<uuid>`), shared with libvirt's helper.
    pub profile_dir: PathBuf,
    /// AppArmor's policy directory: the include search base for `apparmor_parser -I`.
    pub apparmor_dir: PathBuf,
    /// Admin-owned per-guest rule files (`<local_dir>/libvirt-<uuid>`), included, never written.
    pub local_dir: PathBuf,
    /// The profile template.
    pub template: PathBuf,
    /// The log file admins read.
    pub log_file: PathBuf,
    /// Locks, the capability cache and apparmor_parser's binary cache.
    pub state_dir: PathBuf,
    /// `apparmor_parser` binary; found at its usual places when unset.
    pub apparmor_parser: Option<PathBuf>,
    /// `auto`, `libvirt` or `standalone`.
    pub mode: ModeSetting,
    /// Default enforcement for guests that do not choose in their metadata.
    pub enforcement: Enforcement,
    /// Seconds an `apparmor_parser` run may take before it is killed.
    pub parser_timeout: u64,
    /// Seconds to wait for another event of the same guest to finish.
    pub lock_timeout: u64,
    /// Fail the `started` event (which kills the guest) when the profile is not in place.
    pub fail_on_started: bool,
    /// Refresh the capability cache when it is older than this many seconds.
    pub caps_max_age: u64,
    /// Read image headers to find backing chains when the XML has none.
    pub probe_backing: bool,
    /// Directories (and everything below them) where a backing file named by an image header
    /// may live, besides the directory of each of the guest's own disks. A guest can rewrite its
    /// image's header, so a backing file elsewhere, another guest's writable disk or a device
    /// node stops the guest from starting (README "Security model"). Host paths, not rooted.
    pub image_dirs: Vec<PathBuf>,
    /// Honour `<vah:guest manage="no"/>` in a domain's metadata.
    pub allow_opt_out: bool,
    /// libvirt connection URI for the admin commands and the capability refresh.
    pub connect: String,
    /// Directory of the real emulators the wrapper execs (`/usr/bin/<wrapper suffix>`).
    pub emulator_dir: PathBuf,
    /// Answer libvirt's AppArmor driver in place of `virt-aa-helper` (README "Helper mode").
    /// The package's postinst applies it (its grep reads the same `helper_mode = false` line):
    /// after changing it run `dpkg-reconfigure virt-aa-hook`. Whether helper mode is in force
    /// is whether the link is there ([`crate::host::helper_installed`]); `doctor` reports a config
    /// that disagrees with it.
    pub helper_mode: bool,
    /// Also send each event to journald as a structured record (`journalctl -t virt-aa-hook`)
    /// when its socket exists; never waits for it.
    pub journal: bool,
    /// Directories where guests' data lives on this host, besides `/srv`,
    /// `/var/lib/libvirt/images`, `/var/lib/libvirt/boot` and libvirt's directory pools:
    /// `explain --apply` writes rules only for files there ([`crate::autogrant`]). Host paths.
    pub data_dirs: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/"),
            profile_dir: "/etc/apparmor.d/libvirt".into(),
            apparmor_dir: crate::layout::APPARMOR_DIR.into(),
            local_dir: "/etc/apparmor.d/local/libvirt".into(),
            template: "/etc/libvirt/virt-aa-hook.template".into(),
            log_file: "/var/log/libvirt/virt-aa-hook.log".into(),
            state_dir: "/var/lib/virt-aa-hook".into(),
            apparmor_parser: None,
            mode: ModeSetting::Auto,
            enforcement: Enforcement::Enforce,
            parser_timeout: 60,
            lock_timeout: 90,
            fail_on_started: false,
            caps_max_age: 24 * 3600,
            probe_backing: true,
            image_dirs: DEFAULT_IMAGE_DIRS.iter().map(PathBuf::from).collect(),
            allow_opt_out: true,
            connect: "qemu:///system".into(),
            emulator_dir: crate::layout::EMULATOR_DIR.into(),
            helper_mode: true,
            journal: true,
            data_dirs: Vec::new(),
        }
    }
}

impl Config {
    /// Parse TOML text.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            msg: e.message().replace('\n', " "),
        })
    }

    /// Load from `VIRT_AA_HOOK_CONFIG` or the default path; a missing file means defaults.
    /// `VIRT_AA_HOOK_ROOT` overrides `root` (tests).
    pub fn load() -> Result<Config, ConfigError> {
        let path = std::env::var_os("VIRT_AA_HOOK_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_CONFIG.into());
        let mut cfg = Self::load_from(&path)?;
        if let Some(r) = std::env::var_os("VIRT_AA_HOOK_ROOT") {
            cfg.root = r.into();
        }
        Ok(cfg)
    }

    /// Load one file; missing → defaults.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    err: source,
                });
            }
        };
        let mut text = String::new();
        f.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|err| ConfigError::Read {
                path: path.into(),
                err,
            })?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: path.into() });
        }
        Self::from_toml(&text, path)
    }

    /// The default configuration with every path under `root`: test support shared by the
    /// library's tests and the admin binary's (which cannot see the library's `cfg(test)`
    /// items), not an API.
    #[doc(hidden)]
    pub fn rooted_at(root: &Path) -> Config {
        Config {
            root: root.into(),
            ..Config::default()
        }
    }

    /// A configured path under `root`.
    pub fn rooted(&self, p: &Path) -> PathBuf {
        match p.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(p),
        }
    }

    /// The main profile file of a guest.
    pub fn profile_path(&self, profile_name: &str) -> PathBuf {
        self.rooted(&self.profile_dir).join(profile_name)
    }

    /// libvirt's helper's include file for a guest.
    pub fn files_path(&self, profile_name: &str) -> PathBuf {
        self.rooted(&self.profile_dir)
            .join(format!("{profile_name}.files"))
    }

    /// The admin's per-guest rule file.
    pub fn local_path(&self, profile_name: &str) -> PathBuf {
        self.rooted(&self.local_dir).join(profile_name)
    }

    /// `apparmor_parser -I` directories: our policy dir (under root), then the host's, so the
    /// distribution's tunables and abstractions are found in tests too.
    pub fn include_dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.rooted(&self.apparmor_dir)];
        let host = PathBuf::from(crate::layout::APPARMOR_DIR);
        if !v.contains(&host) {
            v.push(host);
        }
        v
    }

    /// Timeout for one parser run.
    pub fn parser_timeout(&self) -> Duration {
        Duration::from_secs(self.parser_timeout.max(1))
    }

    /// The capability cache file.
    pub fn caps_path(&self) -> PathBuf {
        self.rooted(&self.state_dir).join("caps.json")
    }
}

/// Tests: a fresh temporary directory and the default configuration rooted in it (keep the
/// directory alive as long as the configuration is used).
#[cfg(test)]
pub(crate) fn test_root() -> (tempfile::TempDir, Config) {
    let d = tempfile::tempdir().unwrap();
    let cfg = Config::rooted_at(d.path());
    (d, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_rooting() {
        let mut c = Config::default();
        assert_eq!(
            c.profile_path("libvirt-x"),
            PathBuf::from("/etc/apparmor.d/libvirt/libvirt-x")
        );
        c.root = "/tmp/r".into();
        assert_eq!(
            c.files_path("libvirt-x"),
            PathBuf::from("/tmp/r/etc/apparmor.d/libvirt/libvirt-x.files")
        );
        assert_eq!(
            c.include_dirs(),
            vec![
                PathBuf::from("/tmp/r/etc/apparmor.d"),
                PathBuf::from("/etc/apparmor.d")
            ]
        );
    }

    #[test]
    fn toml_parses_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "mode = \"standalone\"\nparser_timeout = 5\nenforcement = \"complain\"\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(c.mode, ModeSetting::Standalone);
        assert_eq!(c.parser_timeout, 5);
        assert_eq!(c.enforcement, Enforcement::Complain);
        assert!(Config::default().helper_mode);
        // The line install/debian/postinst greps for is the one `Config` reads.
        let c = Config::from_toml("  helper_mode = false\n", Path::new("t")).unwrap();
        assert!(!c.helper_mode);
        let e = Config::from_toml("bogus = 1\n", Path::new("t")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = Config::from_toml("mode = \"x\"\n", Path::new("t")).unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }
}
