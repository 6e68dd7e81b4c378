//! Checks of what happens to guests in the mode in force: the mode against libvirt's AppArmor
//! driver, which day-2 operations work, and (standalone mode) whether every guest is enrolled.

use super::facts::Facts;
use super::{Check, State, check};
use crate::admin::conn::GuestInfo;
use virt_aa_hook::profile::Mode;

pub(super) fn mode_check(f: &Facts, title: &str) -> Check {
    let (mode, why) = (f.mode, &f.mode_why);
    match (mode, f.driver_live()) {
        (Mode::Libvirt, Some(false)) => check(
            if f.kernel_on() {
                State::Fail
            } else {
                State::Warn
            },
            title,
            format!(
                "libvirt ({why}), but libvirt's AppArmor driver is inactive: nothing loads or \
                 applies the profiles"
            ),
            Some(
                "virt-aa-hook caps (auto mode then picks standalone), or set mode = \"standalone\" in the config",
            ),
        ),
        (Mode::Standalone, Some(true)) => check(
            State::Warn,
            title,
            format!("standalone ({why}), but libvirt's AppArmor driver is active too"),
            Some("virt-aa-hook caps, or set mode = \"auto\""),
        ),
        _ => check(State::Pass, title, format!("{mode} ({why})"), None),
    }
}

pub(super) fn enrolled_check(f: &Facts, title: &str) -> Check {
    let cfg = f.cfg;
    match (f.mode, f.facts()) {
        (Mode::Libvirt, _) => check(
            State::Pass,
            title,
            "not needed in libvirt mode (libvirt applies the profiles)",
            None,
        ),
        (Mode::Standalone, None) => check(State::NotChecked, title, f.not_answered(), None),
        (Mode::Standalone, Some(l)) => {
            let relevant: Vec<&GuestInfo> = l
                .guests
                .iter()
                .filter(|g| {
                    g.is_qemu()
                        && !g
                            .config
                            .as_ref()
                            .is_ok_and(|c| c.settings.opt_out && cfg.allow_opt_out)
                })
                .collect();
            let missing: Vec<&str> = relevant
                .iter()
                .filter(|g| g.enrolled() != Some(true))
                .map(|g| g.name.as_str())
                .collect();
            if missing.is_empty() {
                check(
                    State::Pass,
                    title,
                    format!("all {} QEMU guest(s) enrolled", relevant.len()),
                    None,
                )
            } else {
                check(
                    State::Warn,
                    title,
                    format!(
                        "{} of {} not enrolled (run unconfined): {}",
                        missing.len(),
                        relevant.len(),
                        missing.join(", ")
                    ),
                    Some("virt-aa-hook enroll NAME... (or --all)"),
                )
            }
        }
    }
}

/// Which day-2 operations (hotplug, snapshots, block jobs, backups) will work on this host, and
/// how to make the rest work. Pure: the mode, whether our helper is at libvirt's helper path
/// (`installed`), whether the config asks for it (`wanted`: `helper_mode`, which the package's
/// postinst applies), and whether libvirt's AppArmor driver is live (None: libvirt did not
/// answer).
pub(super) fn day2_check(
    title: &str,
    mode: Mode,
    installed: bool,
    wanted: bool,
    driver_live: Option<bool>,
) -> Check {
    const RELABELLED: &str = "helper mode: hotplug, snapshots, block jobs and backup files are relabelled through virt-aa-hook (no deny rules)";
    const OWN_HELPER: &str = "libvirt's own virt-aa-helper relabels: blockcommit into a backing file fails (it writes `deny w` for backing files)";
    match (mode, installed, wanted) {
        (Mode::Libvirt, true, true) => check(State::Pass, title, RELABELLED, None),
        (Mode::Libvirt, true, false) => check(
            State::Warn,
            title,
            format!("{RELABELLED}, but the config says `helper_mode = false`"),
            Some(
                "dpkg-reconfigure virt-aa-hook applies the config (libvirt's own virt-aa-helper relabels then), or remove `helper_mode = false`",
            ),
        ),
        (Mode::Libvirt, false, false) => check(
            State::Warn,
            title,
            OWN_HELPER,
            Some(
                "helper mode: remove `helper_mode = false` from the config, then dpkg-reconfigure virt-aa-hook",
            ),
        ),
        (Mode::Libvirt, false, true) => check(
            State::Warn,
            title,
            OWN_HELPER,
            Some(
                "helper mode is on in the config but not installed (an install with --no-helper-mode, or libvirt's virt-aa-helper was missing): dpkg-reconfigure virt-aa-hook",
            ),
        ),
        (Mode::Standalone, _, _) => check(
            State::Warn,
            title,
            "standalone mode: hotplug, snapshot overlays, blockcommit into a backing file and backups are denied (no event tells us about them)",
            Some(if driver_live == Some(false) {
                "virt-aa-hook grant GUEST PATH before each such operation, or switch libvirt's AppArmor driver on (security_driver = \"apparmor\" in qemu.conf) for helper mode"
            } else {
                "virt-aa-hook grant GUEST PATH before each such operation"
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day2_operations_by_mode() {
        const T: &str = "day-2 operations";
        assert_eq!(
            day2_check(T, Mode::Libvirt, true, true, Some(true)).state,
            State::Pass
        );
        let c = day2_check(T, Mode::Libvirt, false, false, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(c.detail.contains("deny w"), "{}", c.detail);
        assert!(
            c.hint
                .as_deref()
                .unwrap()
                .contains("remove `helper_mode = false`")
        );
        // Wanted by the config (the default) but not installed: no advice to remove a line
        // that is not there.
        let c = day2_check(T, Mode::Libvirt, false, true, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(!c.hint.as_deref().unwrap().contains("remove"));
        assert!(c.hint.as_deref().unwrap().contains("dpkg-reconfigure"));
        // Installed while the config says no: the postinst has not applied it yet.
        let c = day2_check(T, Mode::Libvirt, true, false, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(c.detail.contains("helper_mode = false"), "{}", c.detail);
        let c = day2_check(T, Mode::Standalone, false, true, Some(false));
        assert_eq!(c.state, State::Warn);
        assert!(c.hint.as_deref().unwrap().contains("security_driver"));
        assert!(c.hint.as_deref().unwrap().contains("grant"));
    }
}
