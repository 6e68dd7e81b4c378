//! libFuzzer target: `parse_header` on arbitrary bytes must never panic and must only return
//! bounded, NUL-free backing names (see `virt_aa_hook_fuzz::check_image_header`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_image_header(data);
});
