//! `virt-aa-hook explain`: from an AppArmor record to what to do about it.
//!
//! A record's path is chosen by the guest (a compromised QEMU probes whatever it likes), so what
//! `explain` offers — and `--apply` writes — must never hand a guest what it should not have.
//! Each file access a guest's profile refused (or, in complain mode, would refuse) is decided
//! here by pure functions over the record, every guest's rules ([`crate::owner`]) and the host's
//! data places ([`crate::autogrant`]):
//! - **stale profile**: the guest's current rules (generated, `.files`, local) already grant it,
//!   matched with AppArmor's glob semantics: the loaded profile predates them; the reload command;
//! - **generator gap**: the guest's definition names the path (or a generated rule grants part of
//!   the access) but the generated profile does not grant it — a bug in virt-aa-hook; we print a
//!   ready bug report;
//! - **refused**: the host policy ([`crate::paths::HostPolicy`]) or the allow-list
//!   ([`crate::autogrant::check`]) forbids it, another guest's rules match it (its disk, or a file
//!   libvirt derives from its name or UUID: the guest is named), or it is a name any guest could
//!   take first (backup tools' defaults, with the option that avoids them);
//! - **grant only**: not refused, but not for a rule written automatically (a device node, a
//!   socket, outside the places guests' data lives): the `grant` command the admin may run;
//! - **site-specific**: none of the above — a rule for the guest's local file
//!   (`/etc/apparmor.d/local/libvirt/libvirt-<uuid>`), escaped by [`crate::paths::escape`], the
//!   one escaper every rule goes through. Only these are written by `--apply`.
//!
//! A rule offered is always one literal path, exactly the record's name, escaped: never a glob,
//! never a second rule (the fuzz target `denial` checks this on arbitrary records).

mod claims;
mod classify;
mod local;
mod report;
#[cfg(test)]
mod tests;

pub use claims::Claims;
pub use classify::{Site, classify, perms_of_mask};
pub use local::{APPLY_HEADER, merge_local, rule_line};
pub use report::{Finding, collapse, element_writing, render};

use crate::rules::Perms;

/// What to do about one access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a file access with a path (capability, signal, network, ...): no rule from us.
    NotFile(String),
    /// The record cannot become a rule (execute access, relative or odd path).
    Unusable(String),
    /// The current definition already grants it (`element`): the loaded profile predates it.
    Stale { element: String },
    /// The guest's definition names the path, the generated profile does not grant `perms`.
    GeneratorGap { element: String, perms: Perms },
    /// Not in any definition, in a place guests' data lives: this rule in the guest's local
    /// file grants exactly the path; `--apply` writes it.
    SiteSpecific { rule: String, perms: Perms },
    /// Not in any definition and not for `--apply` (a device node, a socket, outside the data
    /// places: [`crate::autogrant::Refusal::grant_may`]): why, and the admin may `grant` it.
    GrantOnly {
        why: String,
        device: bool,
        perms: Perms,
    },
    /// Stays denied: why.
    Refused(String),
}

impl Verdict {
    /// One word for summaries and JSON.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::NotFile(_) => "not-a-file",
            Verdict::Unusable(_) => "unusable",
            Verdict::Stale { .. } => "stale-profile",
            Verdict::GeneratorGap { .. } => "generator-gap",
            Verdict::SiteSpecific { .. } => "site-specific",
            Verdict::GrantOnly { .. } => "grant-only",
            Verdict::Refused(_) => "refused",
        }
    }
}
