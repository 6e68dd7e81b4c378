//! The integration tests, one binary (as ripgrep does): one link step instead of one per file,
//! and one place for what they share (`util`: the temporary-root fixture, running the real
//! binary, compiling with the real apparmor_parser).
//!
//! Under VIRT_AA_HOOK_TESTS_STRICT=1 (tests/run.sh) a missing tool fails a test instead of
//! skipping it.

mod util;

mod backing;
mod faults;
mod generate;
mod helper;
mod hook;
mod reach;
