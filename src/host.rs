//! The program's environment on this host, below both entry points (the hook, the helper) and
//! the admin commands: configuration, kernel view, the admin's log, the capability cache and
//! the host facts it is checked against, and what follows from them (the mode, derivation
//! options, which guests we leave alone, the profile owner). Nothing here writes a profile:
//! that is [`crate::lifecycle`]'s.

use crate::apparmorfs::Kernel;
use crate::caps::{self, Caps, HostKey};
use crate::config::Config;
use crate::derive;
use crate::domain::Domain;
use crate::lifecycle::Profiles;
use crate::log::Log;
use crate::mode;
use crate::profile::Mode;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Configuration, kernel view, log, cached capabilities and the host facts the cache is
/// checked against.
pub struct Host {
    pub cfg: Config,
    pub kernel: Kernel,
    pub log: Log,
    pub caps: Option<Caps>,
    pub host_key: HostKey,
}

impl Host {
    /// Set up from a configuration (reads the capability cache and the host key, nothing else).
    pub fn new(cfg: Config) -> Host {
        let kernel = Kernel::from_config(&cfg);
        let log = Log::new(cfg.rooted(&cfg.log_file));
        let caps = Caps::load(&cfg.caps_path());
        let host_key = HostKey::current(&cfg.root);
        Host {
            cfg,
            kernel,
            log,
            caps,
            host_key,
        }
    }

    /// Which mode applies on this host, and why (see [`crate::mode`]).
    pub fn mode(&self) -> (Mode, String) {
        let c = mode::choose(&self.cfg, self.caps.as_ref(), &self.host_key);
        (c.mode, c.why)
    }

    /// The profile owner for this configuration.
    pub fn profiles(&self) -> Profiles<'_> {
        Profiles::new(&self.cfg)
    }

    /// Is helper mode installed: libvirt's helper path is a symlink to our binary? The hook
    /// asks this to leave compiling and loading to the helper.
    pub fn helper_installed(&self) -> bool {
        helper_installed(&self.cfg)
    }

    /// Start a detached refresh of the capability cache when it is missing, old, or written
    /// under other host facts (a reboot, a qemu.conf edit, a daemon restart).
    pub fn maybe_refresh_caps(&self) {
        let stale = match &self.caps {
            None => true,
            Some(c) => c.needs_refresh(Duration::from_secs(self.cfg.caps_max_age), &self.host_key),
        };
        if !stale {
            return;
        }
        let admin = caps::admin_binary();
        if admin.exists() {
            let cfg = std::env::var_os("VIRT_AA_HOOK_CONFIG").map(std::path::PathBuf::from);
            let _ = caps::spawn_detached_refresh(&admin, cfg.as_deref());
        }
    }

    /// Guests we must not touch.
    pub fn skip_reason(&self, dom: &Domain) -> Option<String> {
        if !dom.is_qemu() {
            return Some(format!("not a QEMU guest (type='{}')", dom.virt_type));
        }
        if self.cfg.allow_opt_out && dom.settings.opt_out {
            return Some("opted out in its metadata (manage=\"no\")".into());
        }
        for s in &dom.seclabels {
            let aa_or_all = s.model.is_none() || s.model.as_deref() == Some("apparmor");
            if s.kind.as_deref() == Some("none") && aa_or_all {
                return Some("<seclabel type='none'>".into());
            }
            if s.model.as_deref() == Some("apparmor") && s.kind.as_deref() == Some("static") {
                let ours = s.label.as_deref() == Some(dom.profile_name().as_str());
                if !ours {
                    return Some(format!(
                        "static AppArmor label {:?} is not ours",
                        s.label.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        None
    }

    /// Derivation options from config and capability cache.
    pub fn derive_options(&self) -> derive::Options {
        derive::Options {
            probe_backing: self.cfg.probe_backing,
            firmware: self
                .caps
                .as_ref()
                .map(|c| c.firmware.clone())
                .unwrap_or_default(),
            image_dirs: self.cfg.image_dirs.clone(),
            libvirt_root: self.cfg.root.clone(),
            emulator_dir: self.cfg.emulator_dir.clone(),
            policy: std::sync::Arc::new(crate::paths::HostPolicy::new(&self.cfg)),
            ..Default::default()
        }
    }
}

/// Is helper mode installed under `cfg.root`: libvirt's helper path is a symlink to our binary?
pub fn helper_installed(cfg: &Config) -> bool {
    let p = cfg.rooted(Path::new(crate::layout::LIBVIRT_HELPER));
    match std::fs::read_link(&p) {
        Ok(target) => target.file_name().is_some_and(|n| n == "virt-aa-hook"),
        Err(_) => false,
    }
}

/// QEMU's pid for a running guest (libvirt's pid file `/run/libvirt/qemu/<name>.pid`, which
/// QEMU has written by `started`) and the AppArmor label it runs under (`None`: unreadable).
/// `None` when there is no pid file.
pub fn qemu_process(cfg: &Config, kernel: &Kernel, name: &str) -> Option<(u32, Option<String>)> {
    let pidfile = cfg
        .rooted(Path::new(crate::layout::QEMU_STATUS_DIR))
        .join(format!("{name}.pid"));
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())?;
    Some((pid, kernel.process_label(pid)))
}

/// Read a domain XML from `input`, at most one byte more than [`crate::xml::MAX_XML_BYTES`]
/// (the parser refuses what is longer, with its own message): the one capped read of the hook,
/// the helper and `generate`.
pub fn read_xml(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut xml = Vec::new();
    input
        .take(crate::xml::MAX_XML_BYTES as u64 + 1)
        .read_to_end(&mut xml)?;
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_installed_only_when_the_helper_path_links_to_us() {
        let (d, cfg) = crate::config::test_root();
        assert!(!helper_installed(&cfg));
        let dir = d.path().join("usr/lib/libvirt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("virt-aa-helper"), b"elf").unwrap();
        assert!(!helper_installed(&cfg));
        std::fs::remove_file(dir.join("virt-aa-helper")).unwrap();
        std::os::unix::fs::symlink("virt-aa-hook", dir.join("virt-aa-helper")).unwrap();
        assert!(helper_installed(&cfg));
    }
}
