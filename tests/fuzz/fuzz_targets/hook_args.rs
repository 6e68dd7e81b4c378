//! libFuzzer target: up to 6 NUL-separated arguments → the hook's event mapping
//! (`hook::action_for`) and the wrapper's `-uuid` scan (`wrapper::find_uuid`); see
//! `virt_aa_hook_fuzz::check_hook_args`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_hook_args(data);
});
