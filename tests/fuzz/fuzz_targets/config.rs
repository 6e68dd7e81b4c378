//! libFuzzer target: the TOML configuration (`Config::from_toml`): no panic, path helpers work on
//! whatever parses, errors are one line (see `virt_aa_hook_fuzz::check_config`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_config(data);
});
