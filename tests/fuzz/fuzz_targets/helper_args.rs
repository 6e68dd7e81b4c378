//! libFuzzer target: up to 8 NUL-separated arguments (`@P` = the guest's profile name, `@ROOT`
//! = a fixed host root with libvirt's per-domain directories) → helper mode's `plan` and
//! `render_extras`; see `virt_aa_hook_fuzz::check_helper_args`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_helper_args(data);
});
