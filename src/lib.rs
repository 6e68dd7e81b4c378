//! virt-aa-hook: per-guest AppArmor profiles (sVirt) for libvirt/QEMU guests.
//!
//! # Code map
//! Each module owns one thing, so a newcomer finds their room from the file list, and each fact
//! has one owner that everyone asks:
//! - **parse:** [`xml`] (element tree, hostile-input limits, the one XML escaper), [`domain`]
//!   (identity, profile name, labels, our metadata);
//! - **derive:** [`derive`](mod@derive) (device → grants, one file per device family, host lookups in
//!   `derive/host.rs`), [`rules`] (dedup/merge; `RuleLine`, the one writer and reader of a rule
//!   line), [`paths`] (`resolve.rs`: one `Resolver` per derivation; `escape.rs`: a path as an
//!   AppArmor pattern; `policy.rs`: the host policy `HostPolicy` built from the config in
//!   force), [`backing`] (image headers: `header`, `vmdk`, over `field`'s bounds-checked reads;
//!   the chain walk: `chain`, one `probe_chain`), [`reach`] (which header-named backing files a
//!   guest may be granted; whose writable disk a file is), [`distrust`] (its verdicts, which
//!   `paths`'s errors carry);
//! - **render:** [`profile`] (template, our marker line), [`generate`] (the pure pipeline);
//! - **own a guest's profile:** [`lifecycle`], the only code that stages, compiles, commits,
//!   loads, unloads and removes (`install.rs`: a domain's profile, write if changed + compile +
//!   load, and the checks that write nothing; `pair.rs`: helper mode's main profile + `.files`
//!   in one transaction; `kernel.rs`: load, reload, verify, unload, remove; "is this file ours";
//!   the guest's lock) — the hook, the helper, `gc`, `status`, `complain`/`enforce` and
//!   `explain --apply`/`grant` go through it;
//! - **the environment:** [`host`] (`Host`: configuration, kernel view, log, capability cache
//!   and host key; the mode, derivation options (with the host policy in force), guests we
//!   skip, whether helper mode is installed, QEMU's pid and label, the capped XML read) — below
//!   both entry points and the admin commands;
//! - **host facts:** [`layout`] (every installed path, and the host paths of libvirt, AppArmor,
//!   auditd and journald we read by name), [`mode`] (libvirt vs standalone mode, daemon
//!   confinement), [`caps`] (the cache, its host key and whether it still holds, whether
//!   libvirt's AppArmor driver is active), [`config`] (the TOML file), [`apparmorfs`] (kernel
//!   state), [`pools`] (libvirt's directory-backed storage pools: a volume's file, the pools'
//!   directories);
//! - **act:** [`store`] (atomic files, locks, libvirt's definition directories listed), [`aaparser`] (apparmor_parser with timeouts),
//!   [`links`] (the emulator wrapper links the package makes),
//!   [`log`] (the admin's log);
//! - **explain:** [`denial`] (one AppArmor audit record, hostile input), [`explain`] (a denial
//!   to its fix: `claims` what a definition names, `classify` the verdict, `local` the offered
//!   rule and the merge into the local file, `report` collapse and render), [`owner`] (whose
//!   file is this: every guest's rules, glob-aware),
//!   [`autogrant`] (may a rule we write on someone's behalf reach this path: the allow-list),
//!   [`localrules`] (merge it into the local file; the reload is the lifecycle's), [`hostlog`]
//!   (read the host's logs), [`guests`] (guests from libvirt's files), [`journal`]
//!   (structured records for journald);
//! - **entry points** (thin adapters: an event or a call → lifecycle operations on a `Host`):
//!   [`hook`] (libvirt events; `Event`'s small steps), [`helper`] (libvirt's AppArmor driver, in
//!   place of virt-aa-helper: `args.rs` the command line, `extras.rs` the files libvirt names and
//!   their `.files` rules, `delegate.rs` guests handed to libvirt's own helper), [`wrapper`]
//!   (emulator wrapper); the binaries in `src/main.rs` (no libvirt linked) and
//!   `src/bin/virt-aa-hook-libvirt/` (`main.rs` + `admin/`) (commands that talk to libvirt;
//!   `admin/doctor/`: the facts gathered once, the checks by subject, the table and report).
//!
//! No import cycles: no entry point imports another, nothing below the entry points imports
//! one, and `host` is imported by the entry points and the binaries only.

pub mod aaparser;
pub mod apparmorfs;
pub mod autogrant;
pub mod backing;
pub mod caps;
pub mod config;
pub mod denial;
pub mod derive;
pub mod distrust;
pub mod domain;
pub mod explain;
pub mod generate;
pub mod guests;
pub mod helper;
pub mod hook;
pub mod host;
pub mod hostlog;
pub mod journal;
pub mod layout;
pub mod lifecycle;
pub mod links;
pub mod localrules;
pub mod log;
pub mod mode;
pub mod owner;
pub mod paths;
pub mod pools;
pub mod profile;
pub mod reach;
pub mod rules;
pub mod store;
pub mod wrapper;
pub mod xml;
