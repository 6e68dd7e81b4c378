//! Which mode applies on this host — libvirt's AppArmor driver loads and applies the profiles
//! (`libvirt`), or we do (`standalone`) — and the facts it rests on. The hook, the helper,
//! `doctor`, `generate` and `enroll` all ask [`choose`]; nobody else decides it.
//!
//! The capability cache (`caps.json`) says what libvirt reported, but libvirt's answer depends on
//! things that change under it: the boot (AppArmor on or off in the kernel), `qemu.conf`'s
//! `security_driver`, and the daemon that read them at its start. A cache written before such a
//! change once made every event run in the wrong mode for up to a day (`caps_max_age`): the hook
//! loaded profiles itself and libvirt loaded them again. So the cache carries a [`HostKey`] of
//! those facts, and its answer about the mode is only trusted while the key still matches the
//! host; otherwise the mode is decided from the host itself ([`guess`]) and a refresh is started.

use crate::apparmorfs::Kernel;
use crate::caps::Caps;
use crate::config::{Config, ModeSetting};
use crate::layout;
use crate::profile::Mode;
use std::path::Path;

pub use crate::caps::{DAEMONS, HostKey};

/// Whether a loaded AppArmor profile name is a libvirt daemon's (`libvirtd`,
/// `/usr/sbin/libvirtd`, `virtqemud`, ...).
pub fn is_daemon_profile(name: &str) -> bool {
    DAEMONS
        .iter()
        .any(|d| name == *d || name.strip_suffix(d).is_some_and(|p| p.ends_with('/')))
}

/// The loaded daemon profile and its mode, if a libvirt daemon's profile is loaded.
pub fn daemon_profile(kernel: &Kernel) -> Option<(String, crate::apparmorfs::LoadedMode)> {
    kernel
        .loaded()
        .into_iter()
        .find(|(n, _)| is_daemon_profile(n))
}

/// The mode and why, and whether the capability cache was trusted for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub mode: Mode,
    pub why: String,
    /// The cache exists but describes another boot/configuration/daemon: refresh it.
    pub cache_outdated: bool,
}

/// Decide the mode: the configuration wins; in `auto`, libvirt's cached answer while its key
/// matches `now`, else [`guess`].
pub fn choose(cfg: &Config, caps: Option<&Caps>, now: &HostKey) -> Choice {
    let fixed = |mode| Choice {
        mode,
        why: "configured".into(),
        cache_outdated: false,
    };
    match cfg.mode {
        ModeSetting::Libvirt => return fixed(Mode::Libvirt),
        ModeSetting::Standalone => return fixed(Mode::Standalone),
        ModeSetting::Auto => {}
    }
    let kernel = Kernel {
        root: cfg.root.clone(),
    };
    let Some(c) = caps else {
        let (mode, why) = guess(cfg, &kernel);
        return Choice {
            mode,
            why: format!("no capability cache; {why}"),
            cache_outdated: false,
        };
    };
    match c.outdated(now) {
        None if c.apparmor_driver() => Choice {
            mode: Mode::Libvirt,
            why: "libvirt reports secmodel apparmor".into(),
            cache_outdated: false,
        },
        None => Choice {
            mode: Mode::Standalone,
            why: "libvirt reports no apparmor secmodel".into(),
            cache_outdated: false,
        },
        Some(what) => {
            let (mode, why) = guess(cfg, &kernel);
            Choice {
                mode,
                why: format!("capability cache outdated ({what}); {why}"),
                cache_outdated: true,
            }
        }
    }
}

/// Without a trusted cache: libvirt's AppArmor driver is active when `qemu.conf` does not turn
/// it off, the kernel has AppArmor and the daemon's own profile is loaded (libvirt's driver
/// probes exactly that: `security_apparmor.c` `AppArmorSecurityManagerProbe` checks the
/// daemon's profile).
pub fn guess(cfg: &Config, kernel: &Kernel) -> (Mode, String) {
    let qemu_conf =
        std::fs::read_to_string(cfg.rooted(Path::new(layout::QEMU_CONF))).unwrap_or_default();
    if let Some(driver) = security_driver(&qemu_conf) {
        if !driver.contains("apparmor") {
            return (
                Mode::Standalone,
                format!("qemu.conf sets security_driver = {driver}"),
            );
        }
    }
    if !kernel.enabled() {
        // libvirt's AppArmor driver cannot be active without AppArmor in the kernel.
        return (Mode::Standalone, "kernel has no AppArmor".into());
    }
    match daemon_profile(kernel) {
        Some((n, _)) => (Mode::Libvirt, format!("daemon profile {n} loaded")),
        None => (Mode::Standalone, "libvirt daemon runs unconfined".into()),
    }
}

/// The value of the last uncommented `security_driver` line (`"none"`, `[ "apparmor" ]`).
fn security_driver(qemu_conf: &str) -> Option<String> {
    // Only the lines that mention it are looked at (a substring search), last one wins: going
    // through Debian's 36 KB qemu.conf line by line (from the back, as this did) was a third of
    // the instructions of a one-disk `generate` (callgrind).
    let mut last = None;
    for (at, _) in qemu_conf.match_indices("security_driver") {
        let start = qemu_conf[..at].rfind('\n').map_or(0, |n| n + 1);
        let end = qemu_conf[at..]
            .find('\n')
            .map_or(qemu_conf.len(), |n| at + n);
        let line = qemu_conf[start..end].trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(v) = line
            .strip_prefix("security_driver")
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        {
            last = Some(v);
        }
    }
    last.map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::CACHE_VERSION;

    fn host(dir: &Path, apparmor: bool, daemon: Option<(u32, &str)>) {
        let _ = std::fs::remove_dir_all(dir.join("sys"));
        std::fs::create_dir_all(dir.join("proc/sys/kernel/random")).unwrap();
        std::fs::write(dir.join("proc/sys/kernel/random/boot_id"), "boot-1\n").unwrap();
        if apparmor {
            std::fs::create_dir_all(dir.join("sys/module/apparmor/parameters")).unwrap();
            std::fs::write(dir.join("sys/module/apparmor/parameters/enabled"), "Y\n").unwrap();
            std::fs::create_dir_all(dir.join("sys/kernel/security/apparmor")).unwrap();
            std::fs::write(
                dir.join("sys/kernel/security/apparmor/profiles"),
                "libvirtd (enforce)\n",
            )
            .unwrap();
        }
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let _ = std::fs::remove_file(dir.join("run/libvirtd.pid"));
        if let Some((pid, start)) = daemon {
            std::fs::write(dir.join("run/libvirtd.pid"), format!("{pid}\n")).unwrap();
            std::fs::create_dir_all(dir.join(format!("proc/{pid}"))).unwrap();
            let stat = format!(
                "{pid} (libvirtd (x)) S 1 1 1 0 -1 4 0 0 0 0 0 0 0 0 20 0 17 0 {start} 0 0"
            );
            std::fs::write(dir.join(format!("proc/{pid}/stat")), stat).unwrap();
        }
    }

    fn caps_with(key: Option<HostKey>, secmodels: &[&str]) -> Caps {
        Caps {
            version: CACHE_VERSION,
            secmodels: secmodels.iter().map(|s| s.to_string()).collect(),
            host_key: key,
            ..Default::default()
        }
    }

    #[test]
    fn daemon_profile_names() {
        for n in [
            "libvirtd",
            "virtqemud",
            "/usr/sbin/libvirtd",
            "/usr/sbin/virtqemud",
        ] {
            assert!(is_daemon_profile(n), "{n}");
        }
        for n in [
            "libvirtd-x",
            "mylibvirtd",
            "/usr/sbin/xlibvirtd",
            "libvirt-1234",
        ] {
            assert!(!is_daemon_profile(n), "{n}");
        }
    }

    #[test]
    fn qemu_conf_driver_line() {
        assert_eq!(security_driver(""), None);
        assert_eq!(
            security_driver("#security_driver = \"none\"\nsecurity_driver = \"none\"\n"),
            Some("\"none\"".into())
        );
        assert_eq!(
            security_driver("security_driver = [ \"apparmor\" ]\n# security_driver = \"none\""),
            Some("[ \"apparmor\" ]".into())
        );
        // CRLF line ends, the name twice on one line, indented, a mention that is no setting,
        // the last setting of several, no newline at the end.
        assert_eq!(
            security_driver(
                "security_driver = \"selinux\"\r\n  security_driver = \"none\" # security_driver\r\nmy_security_driver_note\n\tsecurity_driver=\"apparmor\""
            ),
            Some("\"apparmor\"".into())
        );
        assert_eq!(
            security_driver("x\nsecurity_driver = \"none\"\r\n# security_driver = \"apparmor\"\n"),
            Some("\"none\"".into())
        );
    }

    /// The measured bug: a cache written while the kernel had no AppArmor (`none, dac`) must not
    /// pick standalone after a boot with AppArmor and the driver on. Every key field, changed
    /// alone, makes the cache untrusted.
    #[test]
    fn cache_is_trusted_only_while_its_key_holds() {
        let (d, cfg) = crate::config::test_root();
        host(d.path(), false, Some((4242, "100")));
        let key_then = HostKey::current(d.path());
        assert_eq!(key_then.boot_id, "boot-1");
        assert!(!key_then.apparmor);
        assert_eq!(key_then.daemons, vec!["libvirtd:4242:100".to_string()]);
        let stale = caps_with(Some(key_then.clone()), &["none", "dac"]);

        // Same host: the cache decides.
        let c = choose(&cfg, Some(&stale), &HostKey::current(d.path()));
        assert_eq!(
            (c.mode, c.cache_outdated),
            (Mode::Standalone, false),
            "{c:?}"
        );

        // Reboot with AppArmor: boot id and kernel state change.
        std::fs::write(d.path().join("proc/sys/kernel/random/boot_id"), "boot-2\n").unwrap();
        host_apparmor_on(d.path());
        let c = choose(&cfg, Some(&stale), &HostKey::current(d.path()));
        assert_eq!(c.mode, Mode::Libvirt, "{c:?}");
        assert!(c.cache_outdated);
        assert!(c.why.contains("rebooted") && c.why.contains("AppArmor is now enabled"));

        // Each field alone.
        let now = HostKey::current(d.path());
        let mut k = now.clone();
        k.qemu_conf = "1:2:3".into();
        assert!(k.changed_since(&now).unwrap().contains("qemu.conf"));
        let mut k = now.clone();
        k.daemons = vec!["libvirtd:4242:99".into()];
        assert!(k.changed_since(&now).unwrap().contains("restarted"));
        let mut k = now.clone();
        k.apparmor = !k.apparmor;
        assert!(k.changed_since(&now).unwrap().contains("AppArmor"));
        assert_eq!(now.changed_since(&now), None);

        // qemu.conf edited: the key changes and the guess reads it.
        std::fs::create_dir_all(d.path().join("etc/libvirt")).unwrap();
        std::fs::write(
            d.path().join("etc/libvirt/qemu.conf"),
            "security_driver = \"none\"\n",
        )
        .unwrap();
        let fresh = caps_with(Some(now.clone()), &["apparmor", "dac"]);
        let c = choose(&cfg, Some(&fresh), &HostKey::current(d.path()));
        assert_eq!(c.mode, Mode::Standalone, "{c:?}");
        assert!(c.why.contains("qemu.conf"), "{c:?}");

        // Daemon restarted (same pid file, another start time).
        host(d.path(), true, Some((4242, "555")));
        let k2 = HostKey::current(d.path());
        assert!(k2.changed_since(&now).unwrap().contains("restarted"));

        // A cache from before host keys is never trusted for the mode.
        let old = caps_with(None, &["none"]);
        let c = choose(&cfg, Some(&old), &k2);
        assert!(c.cache_outdated && c.why.contains("predates"), "{c:?}");

        // The configuration wins over everything.
        let fixed = Config {
            mode: ModeSetting::Standalone,
            ..cfg.clone()
        };
        assert_eq!(choose(&fixed, Some(&fresh), &k2).mode, Mode::Standalone);
    }

    fn host_apparmor_on(dir: &Path) {
        std::fs::create_dir_all(dir.join("sys/module/apparmor/parameters")).unwrap();
        std::fs::write(dir.join("sys/module/apparmor/parameters/enabled"), "Y\n").unwrap();
        std::fs::create_dir_all(dir.join("sys/kernel/security/apparmor")).unwrap();
        std::fs::write(
            dir.join("sys/kernel/security/apparmor/profiles"),
            "libvirtd (enforce)\n",
        )
        .unwrap();
    }

    #[test]
    fn guess_without_cache() {
        let (d, cfg) = crate::config::test_root();
        let k = Kernel {
            root: d.path().into(),
        };
        assert_eq!(guess(&cfg, &k).0, Mode::Standalone);
        host(d.path(), true, None);
        assert_eq!(guess(&cfg, &k).0, Mode::Libvirt);
        std::fs::write(
            d.path().join("sys/kernel/security/apparmor/profiles"),
            "other (enforce)\n",
        )
        .unwrap();
        assert_eq!(guess(&cfg, &k).0, Mode::Standalone);
    }
}
