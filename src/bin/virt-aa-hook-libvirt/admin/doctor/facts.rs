//! What the checks share, found once before the first check runs: the kernel's AppArmor
//! state, what libvirt said over one read-only connection, and the mode in force.

use crate::admin::conn::{self, GuestInfo, Libvirt, LvError};
use virt::connect::Connect;
use virt_aa_hook::apparmorfs::{Kernel, Status as KStatus};
use virt_aa_hook::config::Config;
use virt_aa_hook::host::Host;
use virt_aa_hook::profile::Mode;

/// What libvirt said, gathered over one connection.
pub struct LibvirtFacts {
    /// `lib_version()` of the daemon.
    pub daemon_version: String,
    /// Live security models (decides libvirt vs standalone mode).
    pub secmodels: Vec<String>,
    /// Defined guests (for the enrollment check).
    pub guests: Vec<GuestInfo>,
}

fn gather(c: &Connect) -> anyhow::Result<LibvirtFacts> {
    let v = c.lib_version()?;
    let caps = c.capabilities()?;
    let host = crate::admin::caps::parse_capabilities(&caps)?;
    Ok(LibvirtFacts {
        daemon_version: conn::version_string(v),
        secmodels: host.secmodels,
        guests: conn::list_guests(c)?,
    })
}

/// What the checks share, found once before the first check runs.
pub(super) struct Facts<'a> {
    pub(super) cfg: &'a Config,
    pub(super) kernel: Kernel,
    pub(super) kstatus: KStatus,
    /// The libvirt URI asked.
    pub(super) uri: &'a str,
    /// What libvirt said over one read-only connection, or why it said nothing.
    pub(super) libvirt: Result<LibvirtFacts, LvError>,
    /// The mode that applies and why ([`Host::mode`]).
    pub(super) mode: Mode,
    pub(super) mode_why: String,
}

impl<'a> Facts<'a> {
    pub(super) fn gather(cfg: &'a Config, lv: &'a Libvirt) -> Facts<'a> {
        let kernel = Kernel::from_config(cfg);
        let kstatus = kernel.status();
        let (mode, mode_why) = Host::new(cfg.clone()).mode();
        Facts {
            cfg,
            kernel,
            kstatus,
            uri: &lv.uri,
            libvirt: lv.read_only().run(gather),
            mode,
            mode_why,
        }
    }

    pub(super) fn kernel_on(&self) -> bool {
        self.kstatus == KStatus::Enabled
    }

    pub(super) fn facts(&self) -> Option<&LibvirtFacts> {
        self.libvirt.as_ref().ok()
    }

    /// Why libvirt did not answer (for "not checked" lines).
    fn unreachable_why(&self) -> Option<String> {
        match &self.libvirt {
            Ok(_) => None,
            Err(LvError::Unreachable(_)) => Some("daemon unreachable".to_string()),
            Err(LvError::Failed(_)) => Some("libvirt query failed".to_string()),
        }
    }

    /// libvirt's live security models, when it answered.
    pub(super) fn live_models(&self) -> Option<&[String]> {
        self.facts().map(|f| f.secmodels.as_slice())
    }

    /// Whether libvirt's AppArmor driver is live (None: libvirt did not answer).
    pub(super) fn driver_live(&self) -> Option<bool> {
        self.live_models()
            .map(virt_aa_hook::caps::apparmor_driver_in)
    }

    /// `not checked (<why libvirt did not answer>)`.
    pub(super) fn not_answered(&self) -> String {
        format!(
            "not checked ({})",
            self.unreachable_why().as_deref().unwrap_or("no answer")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[serial_test::serial]
    fn test_driver_facts() {
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let f = lv.run(gather).unwrap();
        assert_eq!(f.secmodels, vec!["testSecurity"]);
        assert!(f.guests.iter().any(|g| g.name == "test"));
    }
}
