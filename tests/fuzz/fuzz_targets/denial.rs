//! libFuzzer target: one AppArmor log line (kernel, audit.log or journal JSON) → `explain`'s
//! parser, classifier and local-file merge; any rule offered is one escaped literal path the
//! record named (see `virt_aa_hook_fuzz::check_denial`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_denial(data);
});
