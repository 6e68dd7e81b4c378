//! The capability cache: what libvirt told us about this host, kept in one JSON file.
//!
//! The hook must never call libvirt (the daemon is waiting on the hook: deadlock; and on this
//! kind of host a capabilities query takes seconds). `virt-aa-hook caps` (the libvirt-linked
//! admin binary) writes this file; the hook only reads it and, when it is missing or stale,
//! starts a refresh that is fully detached from libvirt's pipes.

use crate::store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Format version of the cache file.
pub const CACHE_VERSION: u32 = 1;

/// What the hook needs to know about the host's libvirt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub version: u32,
    /// Unix time the cache was written.
    pub generated_at: u64,
    pub uri: String,
    /// libvirt library and daemon versions (`9.0.0`).
    pub libvirt_version: String,
    pub daemon_version: String,
    /// Security models in the host capabilities (`apparmor`, `dac`, `none`, `selinux`).
    pub secmodels: Vec<String>,
    /// Emulator binaries libvirt knows (from `<guest><arch><emulator>`).
    pub emulators: Vec<String>,
    /// Firmware images libvirt may autoselect (domain capabilities `<loader><value>`).
    pub firmware: Vec<String>,
    /// NVRAM templates paired with them.
    pub nvram_templates: Vec<String>,
    /// The host facts this answer depends on (boot, kernel AppArmor, qemu.conf, daemon start):
    /// [`crate::mode::choose`] trusts `secmodels` only while they still hold. Missing in caches
    /// written before it existed, which are then never trusted for the mode.
    #[serde(default)]
    pub host_key: Option<crate::mode::HostKey>,
}

impl Caps {
    /// Whether libvirt's AppArmor security driver is active.
    pub fn apparmor_driver(&self) -> bool {
        self.secmodels.iter().any(|m| m == "apparmor")
    }

    /// Age of the data.
    pub fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Duration::from_secs(now.saturating_sub(self.generated_at))
    }

    /// Whether a refresh is due: older than `max_age`, or written under other host facts.
    pub fn needs_refresh(&self, max_age: Duration, now: &crate::mode::HostKey) -> bool {
        self.age() > max_age || self.host_key.as_ref() != Some(now)
    }

    /// Read the cache; `None` when missing, unreadable or of another format version.
    pub fn load(path: &Path) -> Option<Caps> {
        let bytes = store::read_capped(path).ok()??;
        let c: Caps = serde_json::from_slice(&bytes).ok()?;
        (c.version == CACHE_VERSION).then_some(c)
    }

    /// Write the cache atomically.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        store::write_atomic(path, &json)
    }
}

/// Start `<admin binary> caps --background` fully detached: new session, all standard
/// streams on /dev/null, not waited for. libvirt reads the hook's stdout/stderr until EOF, so a
/// child that kept them open would hang the API call that ran the hook.
pub fn spawn_detached_refresh(admin_binary: &Path, config: Option<&Path>) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut c = Command::new(admin_binary);
    c.args(["caps", "--background"]);
    if let Some(cfg) = config {
        c.env("VIRT_AA_HOOK_CONFIG", cfg);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // Not waited for: the hook exits within milliseconds and init adopts the refresher.
    c.spawn().map(|_| ())
}

/// The libvirt-linked admin binary next to the running executable.
pub fn admin_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(crate::layout::ADMIN_BINARY_NAME)))
        .unwrap_or_else(|| PathBuf::from(crate::layout::ADMIN_BINARY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_driver_detection() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("caps.json");
        assert_eq!(Caps::load(&p), None);
        let c = Caps {
            version: CACHE_VERSION,
            generated_at: 1,
            secmodels: vec!["apparmor".into(), "dac".into()],
            ..Default::default()
        };
        c.store(&p).unwrap();
        let back = Caps::load(&p).unwrap();
        assert!(back.apparmor_driver());
        assert!(back.age() > Duration::from_secs(1000));
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(Caps::load(&p), None);
    }
}
