//! Properties that must hold for *any* input on each surface the product reads from outside,
//! checked by the libFuzzer targets (`fuzz_targets/`) and by the stable replay test
//! (`tests/replay.rs`). Each `check_*` function panics when a property is violated.
//!
//! - [`check_image_header`]: the first 64 KiB of a disk image (`backing::parse_header`);
//! - [`check_domain_xml`]: domain XML on the hook's stdin (`generate::from_xml`);
//! - [`check_config`]: the TOML configuration file (`Config::from_toml`);
//! - [`check_hook_args`]: the hook's event arguments (`hook::action_for`) and QEMU's argv as the
//!   emulator wrapper sees it (`wrapper::find_uuid`);
//! - [`check_denial`]: AppArmor audit records read by `explain` (`denial::parse_line` →
//!   `explain::classify` → `explain::merge_local`);
//! - [`check_helper_args`]: helper mode's argument vector (`helper::plan` →
//!   `helper::render_extras`, the `.files` of a `-F`/`-f` file).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use virt_aa_hook::backing::{HeaderError, ImageFormat, MAX_BACKING_NAME_BYTES, parse_header};
use virt_aa_hook::config::Config;
use virt_aa_hook::derive::Options;
use virt_aa_hook::domain::{Domain, Enforcement};
use virt_aa_hook::generate::{self, GenerateError, Generated, Settings};
use virt_aa_hook::hook::{Action, action_for};
use virt_aa_hook::paths;
use virt_aa_hook::profile::{self, Mode};
use virt_aa_hook::rules::{Perms, Rule};
use virt_aa_hook::wrapper::{WrapperError, find_uuid};

// ---------------------------------------------------------------------------------------------
// image_header

/// The longest backing-format name any parsed format can record (qcow2's 15-byte field).
const MAX_FORMAT_NAME: usize = 15;

/// Parse `data` and panic if a property is violated: no panic inside the parser, a backing name
/// is bounded, non-empty and has no NUL (it becomes a path in a profile), a backing format only
/// comes with a backing name, raw data names nothing, and errors are one line.
pub fn check_image_header(data: &[u8]) {
    match parse_header(data) {
        Ok(h) => {
            if let Some(b) = &h.backing {
                assert!(
                    b.len() <= MAX_BACKING_NAME_BYTES,
                    "backing name of {} bytes",
                    b.len()
                );
                assert!(!b.is_empty(), "empty backing name");
                assert!(!b.contains('\0'), "NUL in backing name {b:?}");
            }
            if let Some(f) = &h.backing_format {
                assert!(
                    h.backing.is_some(),
                    "backing format {f:?} without a backing name"
                );
                assert!(
                    !f.is_empty() && f.len() <= MAX_FORMAT_NAME,
                    "backing format {f:?}"
                );
                assert!(!f.contains('\0'), "NUL in backing format {f:?}");
            }
            if h.format == ImageFormat::Raw {
                assert!(h.backing.is_none(), "raw data names a backing file");
            }
            if h.format != ImageFormat::Vmdk {
                assert!(h.extents.is_empty(), "{:?} names extents", h.format);
            }
            for e in &h.extents {
                assert!(
                    !e.is_empty() && e.len() <= 511,
                    "extent name of {} bytes",
                    e.len()
                );
                assert!(
                    !e.contains(['"', '\r', '\n', '\0']),
                    "extent name {e:?} holds a quote, line break or NUL"
                );
            }
        }
        Err(e) => check_header_error(&e),
    }
    // Deterministic: the same bytes give the same answer.
    assert_eq!(parse_header(data), parse_header(data));
}

fn check_header_error(e: &HeaderError) {
    let m = e.to_string();
    assert!(!m.is_empty() && !m.contains('\n'), "error message {m:?}");
}

// ---------------------------------------------------------------------------------------------
// domain_xml

/// Generate a profile the way the hook does in libvirt mode, without probing image headers
/// (the fuzzer must not read arbitrary host files as images; `image_header` covers the parser).
pub fn generate(xml: &[u8]) -> Result<Generated, GenerateError> {
    let opts = Options {
        probe_backing: false,
        // No other guests: the host's libvirt files must not make a seed's outcome vary.
        libvirt_root: "/nonexistent/virt-aa-hook-fuzz".into(),
        ..Default::default()
    };
    generate::from_xml(
        xml,
        &Settings {
            mode: Mode::Libvirt,
            default_enforcement: Enforcement::Enforce,
            template: profile::DEFAULT_TEMPLATE,
            derive: &opts,
        },
    )
}

/// Tails `RuleSet::grant_resolved` appends to an escaped literal (by `Scope`).
const TAILS: &[&str] = &["", "/", "/**", "/{,*}"];

/// Fixed patterns built as `prefix + escape(name) + suffix`; `short` says whether the name is
/// libvirt's short name (`<id>-<first 20 chars>`) rather than the full domain name.
const NAMED: &[(&str, &[&str], bool)] = &[
    ("/var/log/libvirt/**/", &[".log"], false),
    ("/var/lib/libvirt/qemu/domain-", &["/monitor.sock"], false),
    ("/var/lib/libvirt/qemu/domain-", &["/*", "/", "/**"], true),
    (
        "/var/lib/libvirt/qemu/channel/target/domain-",
        &["/{,*}"],
        true,
    ),
    ("/run/libvirt/qemu/channel/", &["/{,*}"], true),
    ("/run/libvirt/qemu/passt/", &["-*.socket"], true),
    ("/run/libvirt/**/", &[".pid"], false),
    ("/var/lib/libvirt/qemu/save/", &[".save"], false),
    ("/run/libvirt/**/*.tunnelmigrate.dest.", &[""], false),
    (
        "/run/libvirt/qemu/swtpm/",
        &["-swtpm.sock", "-swtpm.pid"],
        true,
    ),
    ("/var/log/swtpm/libvirt/qemu/", &["-swtpm.log"], false),
    ("/var/lib/libvirt/qemu/nvram/", &["_VARS.fd"], false),
];

/// Fixed patterns that never contain input (vhost-net, VFIO container, NSS db, the GL block).
const CONSTANT: &[&str] = &[
    "/dev/vhost-net",
    "/dev/vfio/vfio",
    "/dev/userfaultfd",
    "/dev/sgx_vepc",
    "/dev/sgx_provision",
    "/dev/iommu",
    "/etc/pki/nssdb/{,*}",
    "/usr/lib{,32,64}/dri/*.so*",
    "/usr/lib/@{multiarch}/dri/*.so*",
    "/usr/lib/fglrx/dri/*.so*",
    "/etc/drirc",
    // swtpm's OpenSSL configuration (TPM emulator, read-only)
    "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/openssl.cnf",
    "/usr/share/ssl/openssl.cnf",
    "/proc/sys/crypto/fips_enabled",
    "/usr/share/drirc.d/{,*.conf}",
    "/etc/glvnd/egl_vendor.d/{,*}",
    "/usr/share/glvnd/egl_vendor.d/{,*}",
    "/usr/share/egl/egl_external_platform.d/",
    "/usr/share/egl/egl_external_platform.d/*",
    "/proc/modules",
    "/proc/driver/nvidia/params",
    "/dev/nvidiactl",
    "/dev/dri/",
    "/sys/devices/**/{uevent,vendor,device,subsystem_vendor,subsystem_device,config,revision}",
];

/// Undo `paths::escape`: `\xHH` is the character with that code (a backslash is written
/// `\x5c`), `\c` is `c`; `None` for a dangling backslash or a bad hex escape.
pub fn unescape(p: &str) -> Option<String> {
    let mut out = String::with_capacity(p.len());
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            'x' => {
                let hex: String = it.by_ref().take(2).collect();
                let code = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)?;
                out.push(char::from(code));
            }
            e => out.push(e),
        }
    }
    Some(out)
}

/// `s` is exactly the escaped form of some literal: no bare metacharacter, no stray backslash.
fn escape_closed(s: &str) -> bool {
    unescape(s).is_some_and(|u| paths::escape(&u) == s)
}

/// Parse one rendered rule line `  "<pattern>" <perms>,` back into (pattern, perms).
pub fn parse_rule_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("  \"")?;
    let mut pattern = String::new();
    let mut it = rest.char_indices();
    let end = loop {
        let (i, c) = it.next()?;
        match c {
            '\\' => {
                pattern.push(c);
                pattern.push(it.next()?.1);
            }
            '"' => break i,
            '\n' | '\r' => return None,
            _ => pattern.push(c),
        }
    };
    let perms = rest[end + 1..].strip_prefix(' ')?.strip_suffix(',')?;
    if perms.is_empty() || !perms.chars().all(|c| "mrwlkix".contains(c)) {
        return None;
    }
    Some((pattern, perms.to_string()))
}

/// Where AppArmor's lexer (apparmor_parser 3.x, `parser_lex.l`) ends the quoted string opened at
/// byte `open` of `text`: `QUOTED_ID \"([^\0"]|\\\")*\"`, longest match. Inside, `\"` never
/// closes, and a backslash does *not* pair with the next backslash, so `"a\\"` followed later by
/// another `"` is read as one string running across lines. `None` when no quote closes it.
pub fn aa_quoted_end(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    assert_eq!(b.get(open), Some(&b'"'));
    let mut last = None;
    for i in open + 1..b.len() {
        match b[i] {
            0 => return last,
            b'"' if b[i - 1] == b'\\' && i - 1 > open => last = Some(i),
            b'"' => return Some(i),
            _ => {}
        }
    }
    last
}

/// The emulator rule the generator should write for this domain (an escaped resolved path), as
/// `derive::Cx::emulator` computes it.
fn expected_emulator(dom: &Domain) -> Option<String> {
    let emu = dom.emulator.clone()?;
    let prefix = Options::default().wrapper_prefix;
    let real = match emu.strip_prefix(&prefix) {
        Some(tail) => dom
            .settings
            .original_emulator
            .clone()
            .unwrap_or_else(|| format!("/usr/bin/{tail}")),
        None => emu,
    };
    let r = paths::resolve(&real).ok()?;
    Some(paths::escape(&r.to_string_lossy()))
}

/// How a fixed rule (no literal) is accounted for, or `None` when it is not one of ours.
fn classify_fixed(r: &Rule, dom: &Domain) -> Option<&'static str> {
    let p = r.pattern.as_str();
    if CONSTANT.contains(&p) {
        return Some("constant");
    }
    let uuid = dom.uuid.hyphenated().to_string();
    for dir in ["tpm1.2", "tpm2"] {
        let base = format!("/var/lib/libvirt/swtpm/{uuid}/{dir}/");
        if p == base || p == format!("{base}**") {
            return Some("swtpm state");
        }
    }
    let shorts = dom.short_names();
    for (prefix, suffixes, short) in NAMED {
        let Some(rest) = p.strip_prefix(prefix) else {
            continue;
        };
        for suffix in *suffixes {
            let Some(mid) = rest.strip_suffix(suffix) else {
                continue;
            };
            // The part from the input carries no glob of its own ...
            if !escape_closed(mid) {
                continue;
            }
            // ... and is exactly the name it claims to be.
            let name = unescape(mid)?;
            let ok = if *short {
                shorts.contains(&name)
            } else {
                name == dom.name
            };
            if ok {
                return Some("name-derived");
            }
        }
    }
    if r.perms.contains(Perms::R.with(Perms::M).with(Perms::IX))
        && expected_emulator(dom).as_deref() == Some(p)
    {
        return Some("emulator");
    }
    if p.starts_with("/sys/devices/") && escape_closed(p) && !p.contains("/../") {
        return Some("tpm cancel");
    }
    None
}

/// A host location the policy refuses (for `writes`, or for reading) that lies strictly below
/// `dir`, so that a recursive grant on `dir` covers it.
fn refused_below(dir: &str, writes: bool) -> Option<&'static str> {
    let d = Path::new(dir);
    if paths::RW_OVERRIDE.iter().any(|p| paths::is_under(d, p)) {
        return None;
    }
    paths::REFUSED.iter().copied().find(|p| {
        *p != dir
            && paths::is_under(Path::new(p), dir)
            && paths::HostPolicy::defaults().check(Path::new(p), writes, "").is_err()
    })
}

/// Generate from `xml` and panic if a property is violated. On success:
/// (a) every rendered rule line is one well-formed rule that parses back to its `Rule`;
/// (b) every pattern is either `escape(literal)` plus one of our scope tails, or one of our
///     fixed patterns (constants, name- and UUID-derived paths whose input part is escaped and
///     equal to the domain's name, the emulator, a TPM cancel file);
/// (c) no write grant names a refused host location, and no recursive grant covers one (for a
///     read-only grant: one outside the read-only exceptions);
/// (d) the profile is named `libvirt-<uuid>` on its `profile` line, contains the rules verbatim
///     and ends with `}\n`.
///
/// On error the message is one line.
pub fn check_domain_xml(xml: &[u8]) {
    let g = match generate(xml) {
        Ok(g) => g,
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.contains('\n'), "error message {m:?}");
            return;
        }
    };
    check_generated(&g);
}

/// The properties of a successful generation (see [`check_domain_xml`]).
pub fn check_generated(g: &Generated) {
    let rules = g.derived.rules.rules();
    let dom = &g.domain;

    // (a) rendered lines: notes first, then one line per rule, each parsing back.
    let mut lines = g.rules_text.lines();
    for n in &g.derived.rules.notes {
        assert_eq!(lines.next(), Some(format!("  # {n}").as_str()), "note line");
        assert!(!n.contains('\n'), "note {n:?}");
    }
    for r in rules {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("no line for rule {r:?}"));
        let (pattern, perms) =
            parse_rule_line(line).unwrap_or_else(|| panic!("malformed rule line {line:?}"));
        assert_eq!(
            pattern, r.pattern,
            "rule line {line:?} parses to another pattern"
        );
        assert_eq!(perms, r.perms.to_string(), "perms of {line:?}");
        assert_eq!(Perms::parse(&perms), r.perms, "perms of {line:?}");
        assert!(
            pattern.starts_with('/'),
            "pattern {pattern:?} is not an absolute path (rule {r:?})"
        );
    }
    assert_eq!(lines.next(), None, "extra lines in rules text");
    // ... and AppArmor's own lexer ends each quoted pattern where we do.
    let body = g
        .profile
        .find(&g.rules_text)
        .expect("rules text not in the profile");
    let mut at = body;
    for line in g.rules_text.split_inclusive('\n') {
        if line.starts_with("  \"") {
            let open = at + 2;
            let end = aa_quoted_end(&g.profile, open);
            let want = at + line.rfind("\" ").expect("closing quote");
            assert_eq!(
                end,
                Some(want),
                "apparmor_parser's lexer does not end the string of {:?} at its closing quote",
                line.trim_end()
            );
        }
        at += line.len();
    }

    for r in rules {
        match &r.literal {
            // (b) derived: the escaped literal plus one of our tails.
            Some(lit) => {
                assert!(lit.starts_with('/'), "literal {lit:?} of {r:?}");
                assert!(
                    !lit.chars().any(char::is_control),
                    "control character in literal {lit:?}"
                );
                let esc = paths::escape(lit);
                // Grants on `/` itself drop the root's slash before the tail.
                let root = lit == "/" || lit == "//";
                let tail = TAILS
                    .iter()
                    .find(|t| r.pattern == format!("{esc}{t}"))
                    .or_else(|| {
                        TAILS
                            .iter()
                            .find(|t| root && !t.is_empty() && r.pattern == **t)
                    })
                    .unwrap_or_else(|| {
                        panic!("pattern {:?} is not escape({lit:?}) + a tail", r.pattern)
                    });
                let target = match lit.trim_end_matches('/') {
                    "" => "/",
                    t => t,
                };
                // (c) no write on a refused host location ...
                if r.perms.writes()
                    && let Err(e) = paths::HostPolicy::defaults().check(Path::new(target), true, "w")
                {
                    panic!(
                        "write grant {:?} {} on a refused path: {e}",
                        r.pattern, r.perms
                    );
                }
                // ... nor a recursive grant that covers one (for reads: one that is not in a
                // read-only-allowed place).
                if *tail == "/**"
                    && let Some(p) = refused_below(target, r.perms.writes())
                {
                    panic!(
                        "recursive grant {:?} {} covers refused {p}",
                        r.pattern, r.perms
                    );
                }
            }
            // (b) fixed: one of ours.
            None => {
                let kind = classify_fixed(r, dom);
                assert!(kind.is_some(), "unaccounted fixed rule {r:?}");
            }
        }
    }

    // (d) the profile.
    let name = dom.profile_name();
    assert_eq!(name, format!("libvirt-{}", dom.uuid.hyphenated()));
    assert_eq!(name.len(), 44);
    let flags = match g.enforcement {
        Enforcement::Enforce => "attach_disconnected",
        Enforcement::Complain => "attach_disconnected,complain",
    };
    let profile_lines: Vec<&str> = g
        .profile
        .lines()
        .filter(|l| l.trim_start().starts_with("profile"))
        .collect();
    assert_eq!(
        profile_lines,
        vec![format!("profile {name} flags=({flags}) {{").as_str()],
        "profile line"
    );
    assert!(
        g.profile.starts_with(profile::MARKER),
        "profile does not start with the marker"
    );
    assert!(
        g.profile.contains(&g.rules_text),
        "rules not in the profile"
    );
    assert!(
        g.profile.ends_with("}\n"),
        "profile does not end with }}\\n"
    );
    // The domain name only appears in the first (comment) line and in escaped patterns.
    let first = g.profile.lines().next().unwrap_or("");
    assert!(first.starts_with("# "), "first line {first:?}");
    assert!(!g.profile.contains('\r') && !g.profile.contains('\0'));
}

// ---------------------------------------------------------------------------------------------
// structure-aware mutation of domain XML

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T: ?Sized>(&mut self, v: &[&'a T]) -> &'a T {
        v[self.below(v.len())]
    }
}

/// Values substituted for attribute values and element texts: the paths the policy and the
/// escaping care about.
pub const HOSTILE: &[&str] = &[
    "/",
    "//",
    "/.",
    "/srv/..",
    "/srv/../..",
    "/etc",
    "/etc/",
    "/etc/shadow",
    "/etc/apparmor.d/x",
    "/usr/bin/qemu",
    "/usr/share/OVMF/OVMF_VARS.fd",
    "/boot/x",
    "/dev",
    "/dev/mem",
    "/dev/sda",
    "/sys",
    "/sys/devices/pci0000:00/0000:00:02.0/config",
    "/sys/kernel/config/target/vhost/x",
    "/proc/self/root/etc/passwd",
    "/proc/self/cwd",
    "/var",
    "/var/lib",
    "/var/lib/dpkg",
    "/var/log/libvirt",
    "/root",
    "/root/.ssh/authorized_keys",
    "/tmp",
    "/lib/modules",
    "/srv/*",
    "/srv/**",
    "/srv/{a,b}",
    "/srv/[ab]",
    "/srv/a?b",
    "/srv/^x",
    "/srv/x\\",
    "/srv/@{HOME}",
    "/srv/#x",
    "/srv/\" rwk, /** rwk, \"",
    "/srv/x\ny",
    "/srv/x\ty",
    "/srv/\u{2028}",
    "/srv/\u{85}",
    "/srv/é",
    "/srv/a b",
    "rel/x",
    "",
    " ",
    "unix:path=/run/x.sock",
    "file=/srv/f,path=/",
    "..",
    "a,b",
    "yes",
    "kvm",
    "7",
    "0x1f",
];

/// Byte spans of attribute values (`='…'`/`="…"`) and of non-blank element texts.
pub fn value_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'=' && (b[i + 1] == b'\'' || b[i + 1] == b'"') {
            let q = b[i + 1];
            if let Some(len) = b[i + 2..].iter().position(|c| *c == q) {
                v.push((i + 2, i + 2 + len));
                i += 2 + len;
            }
        } else if b[i] == b'>'
            && let Some(len) = b[i + 1..].iter().position(|c| *c == b'<')
            && b[i + 1..i + 1 + len]
                .iter()
                .any(|c| !c.is_ascii_whitespace())
        {
            v.push((i + 1, i + 1 + len));
        }
        i += 1;
    }
    v
}

/// XML-escape a substituted value so it survives parsing (most of the time).
fn xml_escape(s: &str, rng: &mut Rng) -> String {
    if rng.below(4) == 0 {
        return s.to_string();
    }
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
        .replace('\t', "&#9;")
}

/// Mutate domain XML in place, structure-aware: 1–3 of substituting a hostile value for an
/// attribute value or element text, inserting a device snippet or token, a bit flip, splicing
/// with `other`, deleting a run of bytes. Used by the replay test's mutation loop and, for half
/// of its mutations, by the libFuzzer target (`fuzz_mutator!`).
pub fn mutate_xml(b: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    const TOKENS: &[&str] = &[
        "<disk type='file'><source file='/srv/x'/></disk>",
        "<filesystem type='mount'><source dir='/srv/d'/><target dir='t'/></filesystem>",
        "<filesystem type='mount'><driver type='virtiofs'/><source dir='/srv/d'/></filesystem>",
        "<serial type='pipe'><source path='/srv/p'/></serial>",
        "<tpm><backend type='emulator'/></tpm>",
        "<tpm><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>",
        "<graphics type='spice'><gl enable='yes'/></graphics>",
        "<smartcard mode='host-certificates'><database>/srv/db</database></smartcard>",
        "<shmem name='x'><model type='ivshmem-plain'/></shmem>",
        "<rng><backend model='random'>/dev/urandom</backend></rng>",
        "<memoryBacking><source type='file'/></memoryBacking>",
        "<os firmware='efi'><loader type='pflash'>/srv/l.fd</loader></os>",
        "<readonly/>",
        "<backingStore type='file'><source file='/srv/b'/></backingStore>",
        "<emulator>/bin/true</emulator>",
        "<name>x*y</name>",
        " id='12'",
        "&amp;",
        "]]>",
        "<![CDATA[",
        "/..",
        "/",
        "*",
        "{,*}",
        "\"",
        "\\",
        "\n",
    ];
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            0..=3 => {
                let spans = value_spans(b);
                if spans.is_empty() {
                    continue;
                }
                let (s, e) = spans[rng.below(spans.len())];
                let mut v = xml_escape(rng.pick(HOSTILE), rng);
                if rng.below(3) == 0 {
                    // Keep the original as a suffix or prefix: `/var/lib/x` → `/var/lib/x/..`.
                    let orig = String::from_utf8_lossy(&b[s..e]).into_owned();
                    v = if rng.below(2) == 0 {
                        format!("{orig}{v}")
                    } else {
                        format!("{v}{orig}")
                    };
                }
                b.splice(s..e, v.into_bytes());
            }
            4 => {
                let at = rng.below(b.len() + 1);
                let t = rng.pick(TOKENS).as_bytes().to_vec();
                b.splice(at..at, t);
            }
            5 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            6 => {
                // Splice: head of this input, tail of the other one.
                let cut = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(b.len() + 1);
                let len = rng.below(64);
                let end = (at + len).min(b.len());
                b.drain(at..end);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config

/// Parse TOML (lossily decoded when not UTF-8) as the configuration: no panic; on success the
/// path helpers work; on failure the message is one line.
pub fn check_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml(&text, Path::new("fuzz")) {
        Ok(cfg) => {
            for p in [
                &cfg.profile_dir,
                &cfg.apparmor_dir,
                &cfg.local_dir,
                &cfg.template,
                &cfg.log_file,
                &cfg.state_dir,
                &cfg.emulator_dir,
                &cfg.root,
            ] {
                let r = cfg.rooted(p);
                // Absolute configured paths stay below the root.
                if p.is_absolute() {
                    assert!(r.starts_with(&cfg.root), "{} not under root", r.display());
                }
            }
            let name = "libvirt-00000000-0000-0000-0000-000000000000";
            assert!(cfg.profile_path(name).ends_with(name));
            assert!(cfg.files_path(name).ends_with(format!("{name}.files")));
            assert!(cfg.local_path(name).ends_with(name));
            let inc = cfg.include_dirs();
            assert!(!inc.is_empty() && inc.contains(&"/etc/apparmor.d".into()));
            assert!(cfg.parser_timeout().as_secs() >= 1);
            let _ = cfg.caps_path();
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.contains('\n'), "error message {m:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hook_args

/// Split fuzz bytes into at most 6 arguments on NUL (what an argv can carry).
pub fn split_args(data: &[u8]) -> Vec<OsString> {
    data.splitn(6, |b| *b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

/// The hook's `<op> <sub-op>` mapping and the wrapper's `-uuid` scan on arbitrary arguments:
/// - `action_for` never panics and only the documented events do anything but log;
/// - `find_uuid` never panics; `Ok(Some(u))` only when an argument is `-uuid`/`--uuid` followed
///   by a value, or `-uuid=`/`--uuid=`, that parses to `u`, and every such option agrees;
///   `Ok(None)` only when no argument is such an option; errors are one line.
pub fn check_hook_args(data: &[u8]) {
    let args = split_args(data);
    let s = |i: usize| {
        args.get(i)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into())
    };
    let (op, sub) = (s(1), s(2));
    let action = action_for(&op, &sub);
    let documented = matches!(
        (op.as_str(), sub.as_str()),
        ("prepare" | "migrate" | "restore" | "start", "begin")
            | ("started", "begin")
            | ("release", "end")
            | ("reconnect", "begin")
    );
    assert_eq!(
        action == Action::LogOnly,
        !documented,
        "{op:?} {sub:?} -> {action:?}"
    );

    let parse = |v: &OsString| uuid::Uuid::parse_str(&v.to_string_lossy()).ok();
    let bare = |a: &OsString| a.as_encoded_bytes() == b"-uuid" || a.as_encoded_bytes() == b"--uuid";
    let joined = |a: &OsString| {
        let b = a.as_encoded_bytes();
        b.strip_prefix(b"-uuid=")
            .or_else(|| b.strip_prefix(b"--uuid="))
            .map(|v| OsString::from_vec(v.to_vec()))
    };
    match find_uuid(&args) {
        Ok(Some(u)) => {
            let p = virt_aa_hook::domain::profile_name(&u);
            assert!(p.len() == 44 && p.is_ascii() && !p.contains(char::is_whitespace));
            let mut witness = false;
            for (i, a) in args.iter().enumerate() {
                if bare(a) {
                    let v = args.get(i + 1).expect("-uuid without value accepted");
                    assert_eq!(parse(v), Some(u), "-uuid {v:?} vs {u}");
                    witness = true;
                } else if let Some(v) = joined(a) {
                    assert_eq!(parse(&v), Some(u), "{a:?} vs {u}");
                    witness = true;
                }
            }
            assert!(witness, "uuid {u} from no -uuid argument in {args:?}");
        }
        Ok(None) => {
            assert!(
                !args.iter().any(|a| bare(a) || joined(a).is_some()),
                "a -uuid option in {args:?} was ignored"
            );
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.is_empty() && !m.contains('\n'), "error message {m:?}");
            if let WrapperError::ConflictingUuid(a, b) = &e {
                assert_ne!(
                    uuid::Uuid::parse_str(a).ok(),
                    uuid::Uuid::parse_str(b).ok(),
                    "conflict between equal UUIDs"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helper_args

/// The guest of `helper_args`: `hp`, running with id 3 (per-domain directories `3-hp`).
const HELPER_GUEST: &str = "<domain type='kvm' id='3'><name>hp</name>\
    <uuid>66666666-6666-4666-8666-666666666666</uuid></domain>";
/// Its profile name, what `@P` in an argument stands for.
pub const HELPER_PROFILE: &str = "libvirt-66666666-6666-4666-8666-666666666666";

/// The host `helper_args` renders against (see [`helper_host`]).
pub struct HelperHost {
    /// The root directory, what `@ROOT` in an argument stands for.
    pub root: String,
    /// The guest's subtree directories under `root`, as helper mode computes them.
    pub subtrees: virt_aa_hook::helper::Subtrees,
    /// The directories whose subtree may be granted: the ones created as real directories,
    /// resolved and escaped (independent of `subtrees`).
    pub allowed: Vec<String>,
}

/// A fixed host root, `<tmp>/virt-aa-hook-fuzz-helper-<uid>`, built once per process (the same
/// path every run, so a saved input means the same thing; building it again is harmless):
/// libvirt's per-domain directory `var/lib/libvirt/qemu/domain-3-hp` and both channel
/// directories exist (the allowed subtrees), `var/lib/libvirt/qemu/ram/3-hp` is a symlink to
/// `srv/h` (on libvirt's list, but not a real directory), `srv/h` is a plain directory with a
/// file `a.img`, `link` is a symlink to the per-domain directory and `shadow` one to
/// `/etc/shadow`. No `proc/mounts`, so no hugepage directory.
pub fn helper_host() -> &'static HelperHost {
    use std::os::unix::fs::MetadataExt;
    static HOST: std::sync::OnceLock<HelperHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        let root = std::env::temp_dir().join(format!("virt-aa-hook-fuzz-helper-{uid}"));
        let made = |p: &Path| std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        made(&root);
        let m = std::fs::symlink_metadata(&root).unwrap();
        assert!(
            m.is_dir() && m.uid() == uid,
            "{root:?} is not a directory of this user"
        );
        let at = |p: &str| root.join(p);
        let lib = at("var/lib/libvirt/qemu/domain-3-hp");
        let chan = at("run/libvirt/qemu/channel/3-hp");
        let chan_old = at("var/lib/libvirt/qemu/channel/target/domain-3-hp");
        for d in [&lib, &chan, &chan_old, &at("srv/h")] {
            made(d);
        }
        std::fs::write(at("srv/h/a.img"), b"x").unwrap();
        made(&at("var/lib/libvirt/qemu/ram"));
        let link = |target: &Path, name: &str| {
            if std::fs::symlink_metadata(at(name)).is_err() {
                // Another process may win the race; its link is the same.
                let _ = std::os::unix::fs::symlink(target, at(name));
            }
            let l = std::fs::read_link(at(name)).unwrap_or_default();
            assert_eq!(l, target, "{:?} is not a symlink to {target:?}", at(name));
        };
        link(&at("srv/h"), "var/lib/libvirt/qemu/ram/3-hp");
        link(&lib, "link");
        link(Path::new("/etc/shadow"), "shadow");
        let cfg = Config {
            root: root.clone(),
            ..Config::default()
        };
        let dom = Domain::parse(HELPER_GUEST.as_bytes()).expect("helper guest");
        let allowed = [&lib, &chan, &chan_old]
            .iter()
            .map(|d| paths::escape_path(&paths::resolve(d.to_str().unwrap()).unwrap()))
            .collect();
        HelperHost {
            root: root.to_str().expect("UTF-8 temp dir").to_string(),
            subtrees: virt_aa_hook::helper::Subtrees::for_guest(&cfg, &dom),
            allowed,
        }
    })
}

/// Fuzz bytes → helper argv: up to 8 arguments split on NUL (an argv cannot carry one), each
/// converted as helper mode's `main` does (lossy UTF-8), with `@P` standing for the guest's
/// profile name and `@ROOT` for [`helper_host`]'s root (so `-r -u @P -F @ROOT/...` reaches the
/// directories that exist there).
pub fn helper_argv(data: &[u8]) -> Vec<String> {
    let root = &helper_host().root;
    data.split(|b| *b == 0)
        .take(8)
        .map(|a| {
            String::from_utf8_lossy(a)
                .replace("@ROOT", root)
                .replace("@P", HELPER_PROFILE)
        })
        .collect()
}

/// Helper mode's argument vector against a fixed guest and host root ([`helper_host`]):
/// `virt_aa_hook::helper::check_extras_argv` (the main crate's property, shared with its unit
/// test: refused inputs give no rule; every rule of the `.files` is the one escaped literal of
/// the resolved `-F`/`-f` string, or `<dir>/`, `<dir>/**` of a directory on the allowed list),
/// and on the rendered text:
/// - every line is a `# ` comment (never `#include`) or one well-formed rule that AppArmor's
///   lexer ends at its closing quote, `"<pattern>" rwk,` (`"<dir>/" r,` for the directory);
/// - a pattern that is not an allowed subtree is closed under our escaping (no unescaped glob,
///   no stray backslash) and unescapes to the resolved path;
/// - the `.files` records the string so the next call reads back exactly it.
pub fn check_helper_args(data: &[u8]) -> virt_aa_hook::helper::ArgvRules {
    use virt_aa_hook::helper::{ArgvRules, check_extras_argv, parse_extras};
    let host = helper_host();
    let argv = helper_argv(data);
    let out = check_extras_argv(&argv, &host.subtrees, &host.allowed)
        .unwrap_or_else(|e| panic!("argv {argv:?}: {e}"));
    let ArgvRules::Granted { path, text, .. } = &out else {
        return out;
    };
    let is_tree = |p: &str| {
        host.allowed
            .iter()
            .any(|a| p == format!("{a}/") || p == format!("{a}/**"))
    };
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if l.starts_with('#') {
            assert!(l.starts_with("# "), "argv {argv:?}: comment line {l:?}");
        } else {
            let (pattern, perms) = parse_rule_line(l)
                .unwrap_or_else(|| panic!("argv {argv:?}: malformed rule line {l:?}"));
            // The file, or below the directory: `rwk`; the directory itself: `r`.
            let want_perms = if is_tree(&pattern) && !pattern.ends_with("/**") {
                "r"
            } else {
                "rwk"
            };
            assert_eq!(perms, want_perms, "argv {argv:?}: {l:?}");
            let want = at + l.rfind("\" ").unwrap();
            assert_eq!(
                aa_quoted_end(text, at + 2),
                Some(want),
                "argv {argv:?}: apparmor_parser's lexer does not end {l:?} at its quote"
            );
            if !is_tree(&pattern) {
                assert!(
                    escape_closed(&pattern),
                    "argv {argv:?}: {pattern:?} is not one escaped literal"
                );
                let resolved = paths::resolve(path).expect("granted path resolves");
                assert_eq!(
                    unescape(&pattern).as_deref(),
                    resolved.to_str(),
                    "argv {argv:?}: {pattern:?}"
                );
            }
        }
        at += line.len();
    }
    assert_eq!(
        parse_extras(text),
        std::slice::from_ref(path),
        "argv {argv:?}: .files does not record the string"
    );
    out
}

// ---------------------------------------------------------------------------------------------
// denial

/// One log line (any shape `explain` reads) through the parser, the classifier and the local-file
/// merge, against a fixed guest with one disk. Properties:
/// - no panic; errors are one line;
/// - a parsed record's name and profile contain no control character;
/// - a rule is offered only for a file record of a libvirt guest profile, and it is exactly one
///   line `"<pattern>" <perms>,` whose pattern is the escaped form of the record's name (so
///   unescaping gives the name back, apparmor_parser's lexer ends the string where we do, and the
///   pattern has no unescaped glob) with only permissions the record asked for, never `x`;
/// - a host system path, a location [`virt_aa_hook::autogrant`] refuses for `--apply`, or any
///   file the neighbour's rules match (its disk, its name-derived files) never gets a rule;
/// - merging the rule into a local file twice changes it once.
pub fn check_denial(data: &[u8]) {
    use virt_aa_hook::denial;
    use virt_aa_hook::explain::{self, Claims, Verdict};
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let rec = match denial::parse_line(line) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    for s in [Some(&rec.profile), rec.name.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!(!s.chars().any(char::is_control), "control char in {s:?}");
    }
    let me = Domain::parse(
        b"<domain type='qemu'><name>me</name><uuid>92c4f559-3323-44d7-abd5-34c49aef304a</uuid>\
          <devices><disk type='file' device='disk'><source file='/srv/me.img'/><target dev='vda'/></disk></devices></domain>",
    )
    .expect("fixed guest");
    let other = Domain::parse(
        b"<domain type='qemu'><name>other</name><uuid>92c4f559-3323-44d7-abd5-34c49aef304b</uuid>\
          <devices><disk type='file' device='disk'><source file='/srv/other.img'/><target dev='vda'/></disk></devices></domain>",
    )
    .expect("fixed guest");
    let opts = Options {
        probe_backing: false,
        ..Options::default()
    };
    let claims = |d: &Domain| {
        let derived = virt_aa_hook::derive::derive(d, &opts).ok();
        Claims::of(d, derived.as_ref().map(|x| &x.rules))
    };
    let other_claims = claims(&other);
    let dirs = virt_aa_hook::autogrant::data_dirs([]);
    let v = explain::classify(
        &rec,
        &claims(&me),
        &[("other".into(), other_claims.clone())],
        &explain::Site::fixed(&dirs),
    );
    let Verdict::SiteSpecific { rule, perms } = v else {
        return;
    };
    assert!(rec.is_file(), "rule for a non-file record: {rec:?}");
    let name = rec.name.clone().expect("file record has a name");
    assert!(!rule.contains('\n'), "rule spans lines: {rule:?}");
    let (pattern, p) = parse_rule_line(&format!("  {rule}")).expect("rule line parses");
    assert_eq!(
        unescape(&pattern).as_deref(),
        Some(name.as_str()),
        "rule names another path"
    );
    assert!(
        escape_closed(&pattern),
        "pattern not fully escaped: {pattern:?}"
    );
    assert_eq!(
        aa_quoted_end(&rule, 0),
        Some(pattern.len() + 1),
        "lexer ends elsewhere: {rule}"
    );
    assert!(
        !p.contains('x') && !p.contains('i'),
        "exec permission offered: {rule}"
    );
    let asked = explain::perms_of_mask(rec.requested.as_deref().unwrap_or("")).expect("asked");
    assert!(
        asked.contains(perms) && perms.contains(asked),
        "perms {p} not those asked"
    );
    assert!(
        paths::HostPolicy::defaults().check(Path::new(&name), perms.writes(), "x").is_ok(),
        "rule for a refused host path: {rule}"
    );
    assert!(
        name != "/srv/other.img" && name != "/srv/me.img",
        "rule for a definition's disk"
    );
    assert!(
        other_claims.rules.matching(&name).next().is_none(),
        "rule for a file the other guest's rules grant: {rule}"
    );
    assert_eq!(
        virt_aa_hook::autogrant::check(
            paths::HostPolicy::defaults(),
            &name,
            perms,
            virt_aa_hook::autogrant::FileKind::Missing,
            virt_aa_hook::autogrant::Asker::Apply { data_dirs: &dirs },
        ),
        Ok(()),
        "rule for a place --apply must not write: {rule}"
    );
    let once = explain::merge_local("", std::slice::from_ref(&rule)).expect("first merge changes");
    assert_eq!(
        explain::merge_local(&once, &[rule]),
        None,
        "merge not idempotent"
    );
}
