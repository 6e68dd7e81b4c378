//! Stable-toolchain stand-in for the fuzzers: for every target, replay each seed in
//! `corpus/<target>` (and any input saved later under `artifacts/<target>`), then a bounded,
//! deterministic mutation run, all through the same property check as the libFuzzer target.
//! The rendered profile of every `domain_xml` seed (and of a few mutants) is also compiled by
//! the real `apparmor_parser`.
//!
//! Mutation counts: `FUZZ_MUTATIONS` (image_header, default 1,000,000), `FUZZ_XML_MUTATIONS`
//! (default 20,000), `FUZZ_CONFIG_MUTATIONS` and `FUZZ_ARGS_MUTATIONS` (default 100,000 each),
//! `FUZZ_HELPER_MUTATIONS` (default 20,000), `FUZZ_PARSER_MUTANTS` (mutant profiles compiled by
//! apparmor_parser, default 12).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use virt_aa_hook_fuzz::{
    Rng, check_config, check_denial, check_domain_xml, check_generated, check_helper_args,
    check_hook_args, check_image_header, generate, mutate_xml,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files of a directory, sorted by name: `(name, bytes)`.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

fn seeds(target: &str, min: usize) -> Vec<Vec<u8>> {
    let s: Vec<Vec<u8>> = files(&root().join("corpus").join(target))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert!(s.len() >= min, "seed corpus of {target} missing");
    s
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `catch_unwind` without the panic hook's report (a mutation loop may catch thousands of
/// panics; it reports them itself). Other threads' panics are reported as usual.
fn quietly<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                prev(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    r
}

/// Replay `<dir>/<target>/*` through `check`; the names of the inputs that fail.
fn replay_dir(dir: &str, target: &str, check: fn(&[u8])) -> (usize, Vec<String>) {
    let mut failed = Vec::new();
    let inputs = files(&root().join(dir).join(target));
    for (name, data) in &inputs {
        if let Err(e) = quietly(|| check(data)) {
            failed.push(format!("{dir}/{target}/{name}: {}", panic_message(&*e)));
        }
    }
    (inputs.len(), failed)
}

/// Replay the seed corpus of `target`: every seed must satisfy the properties.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let (n, failed) = replay_dir("corpus", target, check);
    assert!(
        failed.is_empty(),
        "seeds violating a property:\n{}",
        failed.join("\n")
    );
    n
}

/// Inputs saved by the fuzzer (or by hand) under `artifacts/<target>/`: a crash or property
/// failure stays a failing test until the library is fixed (then move the input to the corpus).
/// `artifacts/` is git-ignored: `git add -f` the ones to keep.
#[test]
fn artifacts_replay() {
    let mut failed = Vec::new();
    for (target, check) in [
        ("image_header", check_image_header as fn(&[u8])),
        ("domain_xml", check_domain_xml),
        ("config", check_config),
        ("hook_args", check_hook_args),
        ("denial", check_denial),
        ("helper_args", check_helper_args_unit),
    ] {
        failed.extend(replay_dir("artifacts", target, check).1);
    }
    assert!(
        failed.is_empty(),
        "saved inputs still violating a property:\n{}",
        failed.join("\n")
    );
}

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// image_header

#[test]
fn image_header_replay() {
    assert!(replay("image_header", check_image_header) >= 5);
}

#[test]
fn image_header_mutations() {
    let seeds = seeds("image_header", 5);
    let iterations = env_count("FUZZ_MUTATIONS", 1_000_000);
    // Offsets of the header fields the parsers read (qcow/qcow2 BE, QED/VMDK LE).
    const FIELDS: &[usize] = &[4, 8, 12, 16, 20, 28, 36, 56, 60, 100, 104, 108, 112];
    const VALUES: &[u64] = &[
        0,
        1,
        2,
        3,
        7,
        8,
        9,
        15,
        16,
        72,
        104,
        511,
        512,
        1023,
        1024,
        4095,
        4096,
        65535,
        65536,
        1 << 21,
        u32::MAX as u64,
        u64::MAX,
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..iterations {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 if !b.is_empty() => {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                1 if !b.is_empty() => {
                    let at = rng.below(b.len().min(2048));
                    b[at] = [0u8, b'"', b'\n', 0xff, b'/', b':'][rng.below(6)];
                }
                2 => {
                    let len = rng.below(b.len() + 1);
                    b.truncate(len);
                }
                3 | 4 => {
                    let at = FIELDS[rng.below(FIELDS.len())];
                    let v = VALUES[rng.below(VALUES.len())];
                    let bytes = match (rng.below(4), rng.below(2)) {
                        (0, _) => (v as u32).to_be_bytes().to_vec(),
                        (1, _) => (v as u32).to_le_bytes().to_vec(),
                        (_, 0) => v.to_be_bytes().to_vec(),
                        _ => v.to_le_bytes().to_vec(),
                    };
                    if b.len() < at + bytes.len() {
                        b.resize(at + bytes.len(), 0);
                    }
                    b[at..at + bytes.len()].copy_from_slice(&bytes);
                }
                _ => {}
            }
        }
        check_image_header(&b);
    }
}

/// The seeds are what their names say (so the fuzzer starts from every parser's happy path).
#[test]
fn image_header_seeds_parse_as_named() {
    use virt_aa_hook::backing::{ImageFormat::*, parse_header};
    let dir = root().join("corpus/image_header");
    let json = r#"json:{"file":{"driver":"file","filename":"/x"}}"#;
    let expect = [
        ("qcow-v1-backing", Qcow, Some("base.raw"), None),
        ("qcow2-json-backing", Qcow2, Some(json), Some("raw")),
        ("qcow2-no-backing-format", Qcow2, Some("base.raw"), None),
        (
            "qcow2-v2-backing-qcow2",
            Qcow2,
            Some("mid.qcow2"),
            Some("qcow2"),
        ),
        ("qcow2-v3-backing-raw", Qcow2, Some("base.raw"), Some("raw")),
        ("qed-backing-probe", Qed, Some("mid.qcow2"), None),
        (
            "qed-backing-raw-noprobe",
            Qed,
            Some("base.raw"),
            Some("raw"),
        ),
        ("vmdk-descriptor-parent", Vmdk, Some("c.vmdk"), Some("vmdk")),
        ("vmdk-sparse-parent", Vmdk, Some("p.vmdk"), Some("vmdk")),
    ];
    for (name, format, backing, backing_format) in expect {
        let h = parse_header(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        assert_eq!(h.format, format, "{name}");
        assert_eq!(h.backing.as_deref(), backing, "{name}");
        assert_eq!(h.backing_format.as_deref(), backing_format, "{name}");
    }
    assert!(parse_header(&std::fs::read(dir.join("qcow2-truncated")).unwrap()).is_err());
}

// ---------------------------------------------------------------------------------------------
// domain_xml

fn apparmor_parser() -> PathBuf {
    for p in ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("apparmor_parser not found: install the `apparmor` package");
}

/// Compile a profile with the real parser (no kernel load, no cache); the parser's complaint on
/// failure.
fn compile(profile: &str, tag: &str) -> Result<(), String> {
    let f = std::env::temp_dir().join(format!(
        "virt-aa-hook-fuzz-{}-{tag}.profile",
        std::process::id()
    ));
    std::fs::write(&f, profile).unwrap();
    let out = Command::new(apparmor_parser())
        .args(["-Q", "-K", "-I", "/etc/apparmor.d"])
        .arg(&f)
        .output()
        .expect("run apparmor_parser");
    let _ = std::fs::remove_file(&f);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn domain_xml_replay() {
    assert!(replay("domain_xml", check_domain_xml) >= 10);
}

/// Every seed that generates gives a profile the real apparmor_parser compiles; most seeds do
/// generate (so the properties are not checked on errors only).
#[test]
fn domain_xml_seeds_compile_with_apparmor_parser() {
    let mut ok = 0;
    for (name, xml) in files(&root().join("corpus/domain_xml")) {
        let Ok(g) = generate(&xml) else { continue };
        if let Err(e) = compile(&g.profile, "seed") {
            panic!("corpus/domain_xml/{name}: apparmor_parser refuses the profile:\n{e}");
        }
        ok += 1;
    }
    assert!(ok >= 12, "only {ok} domain_xml seeds generate a profile");
}

/// The message of a caught panic.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn domain_xml_mutations() {
    let seeds = seeds("domain_xml", 10);
    let iterations = env_count("FUZZ_XML_MUTATIONS", 20_000);
    let mut to_compile = env_count("FUZZ_PARSER_MUTANTS", 12);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut ok, mut seen) = (0usize, HashSet::new());
    // Distinct violations (message up to its first quoted value) with the shortest input.
    let mut violations: std::collections::BTreeMap<String, (usize, String, Vec<u8>)> =
        Default::default();
    for i in 0..iterations {
        let mut b = seeds[i % seeds.len()].clone();
        let other = &seeds[rng.below(seeds.len())];
        mutate_xml(&mut b, other, &mut rng);
        let mut record = |msg: String| {
            let kind = msg.split('"').next().unwrap_or("").to_string();
            let v = violations
                .entry(kind)
                .or_insert_with(|| (0, msg.clone(), b.clone()));
            v.0 += 1;
            if b.len() < v.2.len() {
                (v.1, v.2) = (msg, b.clone());
            }
        };
        let g = match quietly(|| generate(&b)) {
            Ok(Ok(g)) => g,
            Ok(Err(_)) => {
                if let Err(e) = quietly(|| check_domain_xml(&b)) {
                    record(panic_message(&*e));
                }
                continue;
            }
            Err(e) => {
                record(format!("generate panicked: {}", panic_message(&*e)));
                continue;
            }
        };
        ok += 1;
        if let Err(e) = quietly(|| check_generated(&g)) {
            record(panic_message(&*e));
            continue;
        }
        // A few distinct rule sets with escaped metacharacters go through the real parser.
        if to_compile > 0 && g.rules_text.contains('\\') && seen.insert(g.rules_text.clone()) {
            to_compile -= 1;
            if let Err(e) = compile(&g.profile, "mutant") {
                panic!(
                    "mutant #{i}: apparmor_parser refuses the profile:\n{e}\ninput:\n{}",
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }
    let mut report = String::new();
    for (n, msg, input) in violations.values() {
        report += &format!(
            "\n{n} mutants: {msg}\n  shortest input:\n{}\n",
            String::from_utf8_lossy(input)
        );
    }
    assert!(report.is_empty(), "properties violated:{report}");
    assert!(
        iterations < 100 || ok * 10 >= iterations,
        "only {ok} of {iterations} mutants generate: the mutator is too destructive"
    );
}

// ---------------------------------------------------------------------------------------------
// config

#[test]
fn config_replay() {
    assert!(replay("config", check_config) >= 5);
}

#[test]
fn config_mutations() {
    const TOKENS: &[&str] = &[
        "root = ",
        "profile_dir = ",
        "apparmor_parser = ",
        "mode = ",
        "enforcement = ",
        "parser_timeout = ",
        "lock_timeout = ",
        "fail_on_started = ",
        "connect = ",
        "\"",
        "'",
        "'''",
        "\"\"\"",
        "\\u0000",
        "\\n",
        "\n",
        "\r",
        "[a]\n",
        "[[a]]\n",
        "{",
        "}",
        "[",
        "]",
        "=",
        ",",
        "#",
        "0",
        "-1",
        "18446744073709551616",
        "1e999",
        "nan",
        "true",
        "1979-05-27T07:32:00Z",
        "\"/tmp/x\"",
        "\"relative\"",
        "\"\"",
        "\"complain\"",
        "\"standalone\"",
        "\u{feff}",
        "\u{0}",
        "é",
    ];
    let seeds = seeds("config", 5);
    let iterations = env_count("FUZZ_CONFIG_MUTATIONS", 100_000);
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    for i in 0..iterations {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 | 1 => {
                    let at = rng.below(b.len() + 1);
                    let t = rng.pick(TOKENS).as_bytes().to_vec();
                    b.splice(at..at, t);
                }
                2 if !b.is_empty() => {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                _ => {
                    let at = rng.below(b.len() + 1);
                    let end = (at + rng.below(16)).min(b.len());
                    b.drain(at..end);
                }
            }
        }
        check_config(&b);
    }
}

// ---------------------------------------------------------------------------------------------
// hook_args

#[test]
fn hook_args_replay() {
    assert!(replay("hook_args", check_hook_args) >= 5);
}

#[test]
fn hook_args_mutations() {
    const U: &str = "92c4f559-3323-44d7-abd5-34c49aef304a";
    const ARGS: &[&str] = &[
        "-uuid",
        "--uuid",
        "-uuid=",
        "--uuid=",
        "-uuid-ish",
        "-UUID",
        U,
        "92C4F559-3323-44D7-ABD5-34C49AEF304A",
        "{92c4f559-3323-44d7-abd5-34c49aef304a}",
        "urn:uuid:92c4f559-3323-44d7-abd5-34c49aef304a",
        "92c4f559332344d7abd534c49aef304a",
        "00000000-0000-0000-0000-000000000000",
        "92c4f559-3323-44d7-abd5-34c49aef304",
        "92c4f559-3323-44d7-abd5-34c49aef304a\n",
        "../../x",
        "",
        "\u{fffd}",
        "prepare",
        "start",
        "started",
        "release",
        "reconnect",
        "migrate",
        "restore",
        "stopped",
        "begin",
        "end",
        "-",
        "vm",
    ];
    let seeds = seeds("hook_args", 5);
    let iterations = env_count("FUZZ_ARGS_MUTATIONS", 100_000);
    let mut rng = Rng(0xBF58_476D_1CE4_E5B9);
    for i in 0..iterations {
        let b: Vec<u8> = if i % 4 == 0 {
            let mut b = seeds[i % seeds.len()].clone();
            if !b.is_empty() {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            b
        } else {
            let n = rng.below(7);
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for _ in 0..n {
                let mut a = rng.pick(ARGS).as_bytes().to_vec();
                match rng.below(6) {
                    0 => a.extend_from_slice(rng.pick(ARGS).as_bytes()),
                    1 if !a.is_empty() => {
                        let at = rng.below(a.len());
                        a[at] = [0xffu8, b'-', b'=', b'0', b'g'][rng.below(5)];
                    }
                    _ => {}
                }
                parts.push(a);
            }
            parts.join(&0u8)
        };
        check_hook_args(&b);
    }
}

// ---------------------------------------------------------------------------------------------
// denial

#[test]
fn denial_replay() {
    assert!(replay("denial", check_denial) >= 6);
}

/// Hex of a string, as the kernel writes an untrusted name.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn denial_mutations() {
    let tokens: Vec<String> = vec![
        "\"".into(),
        " ".into(),
        "\n".into(),
        "\\".into(),
        "=".into(),
        "name=".into(),
        "name=\"/etc/shadow\" ".into(),
        " name=\"/srv/x\"".into(),
        "requested_mask=\"rwx\" ".into(),
        "requested_mask=\"c\" ".into(),
        "profile=\"libvirt-92c4f559-3323-44d7-abd5-34c49aef304b\" ".into(),
        "//passt".into(),
        "apparmor=\"ALLOWED\" ".into(),
        "class=\"net\" ".into(),
        "operation=\"capable\" ".into(),
        "*".into(),
        "{a,b}".into(),
        "[x]".into(),
        "@{HOME}".into(),
        "^".into(),
        "#".into(),
        ",".into(),
        "..".into(),
        "//".into(),
        "\u{1d}".into(),
        "é".into(),
        "\\\"".into(),
        format!("name={} ", hex("/srv/a\" rwk, /etc/shadow r, \"b")),
        format!("name={} ", hex("/srv/x\\")),
        format!("name={} ", hex("/srv/*/{a,b}/[x]")),
        format!("name={} ", hex("/srv/other.img")),
        format!("name={} ", hex("/srv/a\nb")),
        "name=2F".into(),
        "name=2FFF".into(),
        "0A".into(),
        "{\"MESSAGE\":".into(),
        "[47,115,114,118]".into(),
    ];
    let seeds = seeds("denial", 6);
    let iterations = env_count("FUZZ_DENIAL_MUTATIONS", 100_000);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for i in 0..iterations {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 | 1 => {
                    let at = rng.below(b.len() + 1);
                    let t = tokens[rng.below(tokens.len())].as_bytes().to_vec();
                    b.splice(at..at, t);
                }
                2 if !b.is_empty() => {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
                _ => {
                    let at = rng.below(b.len() + 1);
                    let end = (at + rng.below(16)).min(b.len());
                    b.drain(at..end);
                }
            }
        }
        if let Err(e) = quietly(|| check_denial(&b)) {
            panic!(
                "denial mutant {i} violates a property: {}\ninput: {:?}",
                panic_message(&*e),
                String::from_utf8_lossy(&b)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helper_args

fn check_helper_args_unit(d: &[u8]) {
    check_helper_args(d);
}

#[test]
fn helper_args_replay() {
    assert!(replay("helper_args", check_helper_args_unit) >= 12);
}

/// The seeds reach what their names say, so the fixed host root is in place: the allowed
/// directories' subtree form gives a subtree, every other string one literal or nothing.
#[test]
fn helper_args_seeds_give_what_they_name() {
    use virt_aa_hook::helper::ArgvRules::{self, *};
    let dir = root().join("corpus/helper_args");
    let outcome = |name: &str| check_helper_args(&std::fs::read(dir.join(name)).unwrap());
    let counts = |r: ArgvRules| match r {
        Granted { literal, tree, .. } => Some((literal, tree)),
        Refused => None,
    };
    for (name, want) in [
        ("domain-dir-subtree", Some((0, 2))),
        ("channel-dir-subtree-long-form", Some((0, 2))),
        ("definer-subtree-string", Some((1, 0))),
        ("ram-symlink-subtree", Some((1, 0))),
        ("symlink-to-domain-dir", Some((1, 0))),
        ("dotdot-out-of-domain-dir", Some((1, 0))),
        ("glob-chars", Some((1, 0))),
        ("quote-backslash", Some((1, 0))),
        ("plain-file", Some((1, 0))),
        ("root-subtree-string", Some((1, 0))),
        ("sysfs-subtree", Some((1, 0))),
        ("invalid-utf8", Some((1, 0))),
        ("quotes-injection", None),
        ("newline", None),
        ("dotdot-to-etc", None),
        ("symlink-to-etc-shadow", None),
        ("delete-no-file", None),
    ] {
        assert_eq!(counts(outcome(name)), want, "corpus/helper_args/{name}");
    }
}

/// Argument vectors built from helper options and `-F` strings made of the pieces issue 20 is
/// about (glob characters, `{,**}` tails, quotes, newlines, `..`, symlinks, libvirt's own
/// directories under the fixed root), plus byte flips of the seeds.
#[test]
fn helper_args_mutations() {
    use virt_aa_hook::helper::ArgvRules::*;
    const OPTS: &[&str] = &[
        "-r",
        "-c",
        "-a",
        "-R",
        "-D",
        "-d",
        "-h",
        "-dr",
        "-u",
        "-u@P",
        "--uuid=@P",
        "@P",
        "-p",
        "0",
        "-F",
        "-f",
        "--append-file",
        "--add-file=",
        "--",
        "-x",
        "",
    ];
    const HEADS: &[&str] = &[
        "@ROOT",
        "@ROOT/var/lib/libvirt/qemu/domain-3-hp",
        "@ROOT/run/libvirt/qemu/channel/3-hp",
        "@ROOT/var/lib/libvirt/qemu/channel/target/domain-3-hp",
        "@ROOT/var/lib/libvirt/qemu/ram/3-hp",
        "@ROOT/srv/h",
        "@ROOT/srv/h/a.img",
        "@ROOT/link",
        "@ROOT/shadow",
        "/srv/h",
        "/sys/devices/pci0000:00",
        "/proc/self",
        "/var/lib/libvirt/qemu/domain-3-hp",
        "/etc",
        "/",
        "",
    ];
    const PIECES: &[&str] = virt_aa_hook::helper::EXTRAS_PATH_PIECES;
    let seeds = seeds("helper_args", 12);
    let iterations = env_count("FUZZ_HELPER_MUTATIONS", 20_000);
    let mut rng = Rng(0x6A09_E667_F3BC_C909);
    let (mut literal, mut tree, mut refused) = (0usize, 0usize, 0usize);
    for i in 0..iterations {
        let b: Vec<u8> = if i % 5 == 0 {
            let mut b = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.below(3) {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    b[at] ^= 1 << rng.below(8);
                }
            }
            b
        } else {
            let mut raw = rng.pick(HEADS).to_string();
            // A quarter are exactly libvirt's subtree form of the head.
            let plain_subtree = rng.below(4) == 0;
            for _ in 0..if plain_subtree { 0 } else { rng.below(5) } {
                raw.push_str(rng.pick(PIECES));
            }
            if plain_subtree || rng.below(3) == 0 {
                raw.push_str("/{,**}");
            }
            let mut args: Vec<String> = vec!["-r".into(), "-u".into(), "@P".into()];
            match rng.below(4) {
                0 => args.push(format!("-F{raw}")),
                1 => args.push(format!("--append-file={raw}")),
                _ => {
                    args.push(rng.pick(&["-F", "-f"]).to_string());
                    args.push(raw);
                }
            }
            // Now and then another option anywhere (a second file, a command, a stray word).
            for _ in 0..rng.below(3) / 2 {
                let at = rng.below(args.len() + 1);
                args.insert(at, rng.pick(OPTS).to_string());
            }
            args.join("\0").into_bytes()
        };
        match quietly(|| check_helper_args(&b)) {
            Ok(Granted {
                literal: l,
                tree: t,
                ..
            }) => {
                literal += l;
                tree += t;
            }
            Ok(Refused) => refused += 1,
            Err(e) => panic!(
                "helper_args mutant {i} violates a property: {}\ninput: {:?}",
                panic_message(&*e),
                String::from_utf8_lossy(&b)
            ),
        }
    }
    eprintln!(
        "helper_args: {iterations} argument vectors: {literal} literal rules, {tree} subtree rules, {refused} refused"
    );
    // Every outcome is reached, subtrees included (the fixed root is in place).
    assert!(
        iterations < 1000
            || (literal * 5 > iterations && tree * 20 > iterations && refused * 10 > iterations),
        "{literal} literal rules, {tree} subtree rules, {refused} refused"
    );
}
