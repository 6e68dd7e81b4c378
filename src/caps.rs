//! The capability cache: what libvirt told us about this host, kept in one JSON file.
//!
//! The hook must never call libvirt (the daemon is waiting on the hook: deadlock; and on this
//! kind of host a capabilities query takes seconds). `virt-aa-hook caps` (the libvirt-linked
//! admin binary) writes this file; the hook only reads it and, when it is missing or stale,
//! starts a refresh that is fully detached from libvirt's pipes.

use crate::apparmorfs::Kernel;
use crate::layout;
use crate::store;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
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
    pub host_key: Option<HostKey>,
}

impl Caps {
    /// Whether libvirt's AppArmor security driver is active.
    pub fn apparmor_driver(&self) -> bool {
        apparmor_driver_in(&self.secmodels)
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
    pub fn needs_refresh(&self, max_age: Duration, now: &HostKey) -> bool {
        self.age() > max_age || self.outdated(now).is_some()
    }

    /// Whether the cache still describes this host (`None`), else what changed since it was
    /// written: the one test of "is the capability cache still valid" ([`crate::mode::choose`]
    /// trusts its answer only then; [`Caps::needs_refresh`] refreshes it otherwise).
    pub fn outdated(&self, now: &HostKey) -> Option<String> {
        match &self.host_key {
            None => Some("the cache predates host keys".to_string()),
            Some(k) => k.changed_since(now),
        }
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

/// Whether libvirt's AppArmor security driver is active, from the security models libvirt
/// reports (`<host><secmodel><model>`): the one test, for the cache and for a live answer.
pub fn apparmor_driver_in(secmodels: &[String]) -> bool {
    secmodels.iter().any(|m| m == "apparmor")
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

/// The libvirt daemons that run QEMU guests: monolithic `libvirtd`, modular `virtqemud`.
/// Their AppArmor profiles are named after them (or after their path, in old policies) and their
/// pid files are `/run/<name>.pid`.
pub const DAEMONS: &[&str] = &["libvirtd", "virtqemud"];

/// The host facts libvirt's answer about its security drivers depends on. Equal keys: the
/// cached answer still holds. Each field is cheap to read (a handful of system calls per event).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// `/proc/sys/kernel/random/boot_id`: a reboot may switch AppArmor on or off.
    pub boot_id: String,
    /// Whether the kernel's AppArmor is enabled and reachable now.
    pub apparmor: bool,
    /// `qemu.conf`'s identity (`size:mtime_ns:inode`, empty when absent): an edit of
    /// `security_driver` only takes effect at the daemon's next start, but that start is then
    /// seen by `daemons`; an edit alone makes us re-ask too, which is cheap.
    pub qemu_conf: String,
    /// Running daemons as `name:pid:starttime` (from `/run/<name>.pid` and `/proc/<pid>/stat`):
    /// a restarted daemon may have read another configuration.
    pub daemons: Vec<String>,
}

impl HostKey {
    /// Read the facts now, under `root` (`/` in production).
    pub fn current(root: &Path) -> HostKey {
        let kernel = Kernel {
            root: root.to_path_buf(),
        };
        HostKey {
            boot_id: std::fs::read_to_string(root.join("proc/sys/kernel/random/boot_id"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            apparmor: kernel.enabled(),
            qemu_conf: file_identity(&root.join(layout::QEMU_CONF.trim_start_matches('/'))),
            daemons: DAEMONS
                .iter()
                .filter_map(|d| daemon_instance(root, d))
                .collect(),
        }
    }

    /// What differs from `now`, for the log (`None` when nothing does).
    pub fn changed_since(&self, now: &HostKey) -> Option<String> {
        let mut what = Vec::new();
        if self.boot_id != now.boot_id {
            what.push("the host rebooted");
        }
        if self.apparmor != now.apparmor {
            what.push(if now.apparmor {
                "the kernel's AppArmor is now enabled"
            } else {
                "the kernel's AppArmor is now off"
            });
        }
        if self.qemu_conf != now.qemu_conf {
            what.push("qemu.conf changed");
        }
        if self.daemons != now.daemons {
            what.push("the libvirt daemon restarted");
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// `size:mtime_ns:inode` of a file, empty when it does not exist.
fn file_identity(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!(
            "{}:{}:{}",
            m.len(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            m.ino()
        ),
        Err(_) => String::new(),
    }
}

/// `name:pid:starttime` of a running daemon, from its pid file; `None` when it is not running.
fn daemon_instance(root: &Path, name: &str) -> Option<String> {
    let pid = std::fs::read_to_string(root.join(format!("run/{name}.pid"))).ok()?;
    let pid: u32 = pid.trim().parse().ok()?;
    let stat = std::fs::read_to_string(root.join(format!("proc/{pid}/stat"))).ok()?;
    // Field 22 (starttime) counts from after the command name, which may contain spaces and
    // parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{name}:{pid}:{start}"))
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
