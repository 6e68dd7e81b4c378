//! Checks of AppArmor itself: the kernel has it on, and apparmor_parser is there.

use super::facts::Facts;
use super::{Check, State, check};
use virt_aa_hook::aaparser::Parser;
use virt_aa_hook::apparmorfs::Status as KStatus;

pub(super) fn kernel_check(f: &Facts, title: &str) -> Check {
    match &f.kstatus {
        KStatus::Enabled => check(State::Pass, title, "enabled", None),
        KStatus::Disabled(why) => check(
            State::Fail,
            title,
            why.clone(),
            Some("boot with apparmor=1 security=apparmor / install a kernel with AppArmor"),
        ),
    }
}

pub(super) fn parser_check(f: &Facts, title: &str) -> Check {
    match Parser::from_config(f.cfg) {
        Ok(p) => {
            let ver = p.version().unwrap_or_else(|| "version unknown".into());
            let bin = &p.binary;
            check(
                State::Pass,
                title,
                format!("{} ({ver})", bin.display()),
                None,
            )
        }
        Err(e) => check(
            State::Fail,
            title,
            e.to_string(),
            Some("apt install apparmor"),
        ),
    }
}
