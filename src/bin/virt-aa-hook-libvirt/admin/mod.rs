//! The admin commands that talk to libvirt (`caps`, `doctor`, `status`, `gc`, `enroll`,
//! `unenroll`, `complain`, `enforce`, `explain`, `grant`). They live in the libvirt-linked binary `virt-aa-hook-libvirt` only, so the hook
//! and the emulator wrapper never pay for loading libvirt.
//!
//! Each command module keeps its decisions in pure functions (tested on fixed strings) and its
//! libvirt calls behind [`conn::Libvirt`], which bounds every call with a deadline.

/// `caps`: the capability cache writer.
pub mod caps;
/// Bounded libvirt calls and shared guest facts.
pub mod conn;
/// `doctor`: is this host set up to confine guests?
pub mod doctor;
/// `enroll` / `unenroll`: the emulator wrapper switch.
pub mod enroll;
/// `explain`: AppArmor denials of guests → what to do.
pub mod explain;
/// `gc`: stale profile removal.
pub mod gc;
/// `grant`: one path outside a guest's definition, into its local rules.
pub mod grant;
/// `complain` / `enforce`: a guest's profile mode in our metadata.
pub mod mode;
/// `status`: per-guest overview.
pub mod status;

// Installed paths (libexec directory, wrapper prefix) are owned by `virt_aa_hook::layout`.
