//! libFuzzer target: domain XML → profile (`generate::from_xml`, libvirt mode, no image probing).
//! Beyond "no panic": every rule line is well-formed (also for apparmor_parser's lexer), every
//! pattern is an escaped literal or one of our fixed patterns, no write lands on a refused host
//! path, the profile is named by the UUID (see `virt_aa_hook_fuzz::check_domain_xml`).
//!
//! Half of the mutations are structure-aware (`virt_aa_hook_fuzz::mutate_xml`: hostile paths
//! substituted for attribute values and element texts, device snippets inserted), which byte-level
//! mutation alone rarely produces; the other half are libFuzzer's own.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| {
    virt_aa_hook_fuzz::check_domain_xml(data);
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = virt_aa_hook_fuzz::Rng(u64::from(seed) | 1 << 40);
    if rng.below(2) == 0 {
        return fuzzer_mutate(data, size, max_size);
    }
    let mut b = data[..size].to_vec();
    let other = b.clone();
    virt_aa_hook_fuzz::mutate_xml(&mut b, &other, &mut rng);
    if b.len() > max_size {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..b.len()].copy_from_slice(&b);
    b.len()
});
