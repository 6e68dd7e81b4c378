//! virt-aa-hook: per-guest AppArmor profiles (sVirt) for libvirt/QEMU guests.
//!
//! Each module owns one step, so a newcomer finds their room from the file list:
//! - parse: [`xml`] (element tree), [`domain`] (identity, labels, our metadata);
//! - derive: [`derive`] (device → grants), [`rules`] (dedup/merge), [`paths`] (resolve, escape,
//!   host policy), [`backing`] (image headers);
//! - render: [`profile`] (template), [`generate`] (the pure pipeline);
//! - act: [`store`] (atomic files, locks), [`aaparser`] (apparmor_parser with timeouts),
//!   [`apparmorfs`] (kernel state), [`log`] (the admin's log), [`caps`] (capability cache),
//!   [`config`] (the TOML file);
//! - explain: [`denial`] (one AppArmor audit record, hostile input), [`explain`] (classify a
//!   denial, render the fix, merge it into the local file), [`hostlog`] (read the host's logs),
//!   [`journal`] (structured records for journald);
//! - entry points: [`hook`] (libvirt events), [`wrapper`] (emulator wrapper).

pub mod aaparser;
pub mod apparmorfs;
pub mod backing;
pub mod caps;
pub mod config;
pub mod denial;
pub mod derive;
pub mod domain;
pub mod explain;
pub mod generate;
pub mod guests;
pub mod hook;
pub mod hostlog;
pub mod journal;
pub mod localrules;
pub mod log;
pub mod paths;
pub mod profile;
pub mod rules;
pub mod store;
pub mod wrapper;
pub mod xml;
