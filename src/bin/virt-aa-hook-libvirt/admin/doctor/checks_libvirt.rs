//! Checks of libvirt: the library, the daemon and its security models, whether the daemon runs
//! confined, and our cache of its capabilities.

use super::facts::Facts;
use super::{Check, State, check};
use crate::admin::conn;
use virt_aa_hook::caps::Caps;

pub(super) fn library_check(_: &Facts, title: &str) -> Check {
    match virt::connect::Connect::version() {
        Ok(l) => check(State::Pass, title, conn::version_string(l), None),
        Err(e) => check(State::Fail, title, conn::msg(&e), None),
    }
}

pub(super) fn daemon_check(f: &Facts, title: &str) -> Check {
    match &f.libvirt {
        Ok(l) => check(
            State::Pass,
            title,
            format!("{} at {}", l.daemon_version, f.uri),
            None,
        ),
        Err(e) => {
            let hint = "start the daemon: systemctl start libvirtd (monolithic) or systemctl start \
                        virtqemud.socket (modular); check --connect";
            check(State::Fail, title, e.to_string(), Some(hint))
        }
    }
}

pub(super) fn secmodels_check(f: &Facts, title: &str) -> Check {
    match f.facts() {
        Some(l) => {
            let driver = virt_aa_hook::caps::apparmor_driver_in(&l.secmodels);
            let detail = format!(
                "{}; libvirt AppArmor driver: {}",
                l.secmodels.join(", "),
                if driver { "active" } else { "inactive" }
            );
            check(State::Pass, title, detail, None)
        }
        None => check(State::NotChecked, title, f.not_answered(), None),
    }
}

pub(super) fn daemon_confined_check(f: &Facts, title: &str) -> Check {
    if !f.kernel_on() {
        return check(
            State::NotChecked,
            title,
            "not checked (kernel has no AppArmor)",
            None,
        );
    }
    match virt_aa_hook::mode::daemon_profile(&f.kernel) {
        Some((n, m)) => check(
            State::Pass,
            title,
            format!("profile {n} loaded ({m})"),
            None,
        ),
        None => check(
            State::Warn,
            title,
            "no libvirtd/virtqemud profile loaded: the daemon runs unconfined",
            Some(
                "libvirt's AppArmor driver expects it (aa-enforce /etc/apparmor.d/usr.sbin.libvirtd); standalone mode works without",
            ),
        ),
    }
}

pub(super) fn cache_check(f: &Facts, title: &str) -> Check {
    let (cfg, live) = (f.cfg, f.live_models());
    let p = cfg.caps_path();
    match Caps::load(&p) {
        None => check(
            State::Warn,
            title,
            format!(
                "{} missing (or unreadable, or another format version)",
                p.display()
            ),
            Some("virt-aa-hook caps"),
        ),
        Some(c) => {
            let age = c.age().as_secs();
            let age_s = if age < 120 {
                format!("{age} s")
            } else if age < 7200 {
                format!("{} min", age / 60)
            } else {
                format!("{} h", age / 3600)
            };
            if let Some(l) = live {
                if l != c.secmodels.as_slice() {
                    return check(
                        State::Warn,
                        title,
                        format!(
                            "{age_s} old and out of date: cached security models [{}], libvirt now \
                             reports [{}]",
                            c.secmodels.join(", "),
                            l.join(", ")
                        ),
                        Some("virt-aa-hook caps"),
                    );
                }
            }
            if age > cfg.caps_max_age {
                check(
                    State::Warn,
                    title,
                    format!("{age_s} old (refreshed after {} s)", cfg.caps_max_age),
                    Some("virt-aa-hook caps"),
                )
            } else {
                check(
                    State::Pass,
                    title,
                    format!("{age_s} old, libvirt {} at {}", c.daemon_version, c.uri),
                    None,
                )
            }
        }
    }
}
