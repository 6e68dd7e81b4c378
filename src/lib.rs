//! virt-aa-hook: per-guest AppArmor profiles for libvirt/QEMU guests.
//!
//! The library is split so each module owns one step: parse the domain XML ([`xml`], [`domain`]),
//! derive access rules ([`derive`], [`rules`], [`paths`], [`backing`]), render the profile
//! ([`profile`]). The binary's hook, wrapper and admin code sit on top.

pub mod backing;
pub mod paths;
pub mod rules;
pub mod xml;
