//! `virt-aa-hook generate` end to end: the corpus (every device kind), golden files, the real
//! `apparmor_parser`, the differential test against libvirt's own `virt-aa-helper`, hostile
//! input and backing chains built with the real `qemu-img`.

use crate::util::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use virt_aa_hook::rules::Perms;

fn corpus_files() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    v.sort();
    assert!(v.len() >= 7, "corpus is missing files");
    v
}

fn generate(args: &[&str], file: &Path) -> (String, String, i32) {
    let mut a = vec!["generate", "--no-probe"];
    a.extend_from_slice(args);
    let f = file.to_str().unwrap();
    a.push(f);
    let out = run(&a, b"", &[]);
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn every_corpus_profile_compiles_with_the_real_parser() {
    for f in corpus_files() {
        for mode in ["libvirt", "standalone"] {
            let (out, err, code) = generate(&["--profile", "--mode", mode], &f);
            assert_eq!(code, 0, "{}: {err}", f.display());
            assert!(out.contains("profile libvirt-11111111-1111-4111-8111-1111111111"));
            compile(&out, None)
                .unwrap_or_else(|e| panic!("{} ({mode}) does not compile: {e}", f.display()));
        }
    }
}

/// Every AppArmor profile the package ships (install/apparmor/, the hook's and the admin
/// binary's, with their children and our abstractions) compiles with the real parser, is in
/// the package's file list and is loaded by the postinst; and none of our programs runs a child
/// unconfined any more (issue 21: `apparmor_parser -o` writes any file).
#[test]
fn shipped_apparmor_profiles_compile_and_confine_their_children() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("install/apparmor");
    let mut profiles: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    profiles.sort();
    let names: Vec<String> = profiles
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "usr.lib.libvirt.virt-aa-hook",
            "usr.lib.libvirt.virt-aa-hook-libvirt"
        ]
    );
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    // postinst and prerm load and unload through the functions they source; postrm (purge)
    // keeps its own list.
    let functions =
        std::fs::read_to_string(root.join("install/debian/maint-functions.sh")).unwrap();
    let postrm = std::fs::read_to_string(root.join("install/debian/postrm")).unwrap();
    for (p, name) in profiles.iter().zip(&names) {
        compile_file(p, Some(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            cargo.contains(&format!("\"install/apparmor/{name}\", \"etc/apparmor.d/\"")),
            "{name} is not in Cargo.toml's assets"
        );
        for (script, text) in [("maint-functions.sh", &functions), ("postrm", &postrm)] {
            let line = text
                .lines()
                .find(|l| l.starts_with("PROFILES="))
                .unwrap_or_else(|| panic!("{script}: no PROFILES="));
            assert!(
                line.split(|c: char| c == '"' || c.is_whitespace())
                    .any(|w| w == name),
                "{script} does not load/unload {name}"
            );
        }
        let text = std::fs::read_to_string(p).unwrap();
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(
            !rules.iter().any(|l| l.contains(" Ux") || l.contains(" ux")),
            "{name}: a child runs unconfined"
        );
        assert!(
            rules.contains(&"/{usr/,}{s,}bin/apparmor_parser Cx -> parser,"),
            "{name}: apparmor_parser not in the parser child"
        );
        assert!(
            rules
                .iter()
                .any(|l| l.starts_with("profile parser ") && l.ends_with('{')),
            "{name}: no parser child profile"
        );
        assert!(
            !rules.contains(&"capability dac_override,"),
            "{name}: dac_override"
        );
        assert!(rules.contains(&"audit deny /etc/{shadow,gshadow}{,-} r,"));
    }
    let hook = std::fs::read_to_string(&profiles[0]).unwrap();
    assert!(hook.contains("\n  /usr/lib/libvirt/virt-aa-hook-libvirt Px,\n"));
    assert!(hook.contains("\n  /usr/lib/libvirt/virt-aa-helper.distrib PUx -> virt-aa-helper,\n"));
    assert!(hook.contains("\n  signal (send) set=(kill) peer=virt-aa-hook//parser,\n"));
    // The parser's rules: load with mac_admin and nothing stronger, write only our cache.
    let parser = std::fs::read_to_string(dir.join("abstractions/virt-aa-hook-parser")).unwrap();
    for l in parser
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
    {
        if l.starts_with("capability ") {
            assert_eq!(l, "capability mac_admin,", "parser: {l}");
        }
        let perms = l.trim_end_matches(',').rsplit(' ').next().unwrap_or("");
        if !l.starts_with("deny ") && l.starts_with('/') && perms.contains('w') {
            assert!(
                l.starts_with("/var/lib/virt-aa-hook/cache/")
                    || l.starts_with("/sys/kernel/security/apparmor/{.load,.replace,.remove}"),
                "parser writes outside our cache and the load interface: {l}"
            );
        }
    }
}

#[test]
fn golden_rules() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for f in corpus_files() {
        let (out, err, code) = generate(&[], &f);
        assert_eq!(code, 0, "{err}");
        let g = golden_dir
            .join(f.file_stem().unwrap())
            .with_extension("rules");
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&g, &out).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&g)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", g.display()));
        assert_eq!(out, want, "{} differs from {}", f.display(), g.display());
    }
}

/// Narrowings we keep on purpose: a helper rule whose pattern contains the first string may be
/// missing from our profile, or granted with fewer permissions, for the reason given. Every other
/// helper rule must be covered by one of ours (same pattern, or a glob of ours matching its
/// literal path) with the same or more permissions.
const EXCUSED_NARROWINGS: &[(&str, &str)] = &[
    (
        "/srv/corpus-fat",
        "a type='dir' disk is granted as a tree (\"<dir>/\" r + \"<dir>/**\"), which is what QEMU's vvfat opens; the helper's bare path without a slash matches no directory access",
    ),
    (
        "/dev/vfio/[0-9]*",
        "the helper grants every VFIO group on the host; we grant the guest's own device's group (or its IOMMUFD cdev)",
    ),
];

/// Paths the helper grants read-only and we grant writable, on purpose.
const EXCUSED_WIDENINGS: &[(&str, &str)] = &[];

/// A libvirt release whose own `virt-aa-helper` we compare with: where it comes from (`None`:
/// this host's; `Some(suite)`: chroot into a Debian root of that suite, built by
/// tests/lib/helperroot.sh) and the directory of libvirt's own test domains for it.
struct HelperUnderTest {
    libvirt: &'static str,
    suite: Option<&'static str>,
    corpus: &'static str,
    /// Our corpus files in XML this libvirt cannot produce: it drops the newer attributes
    /// (`<driver iommufd='yes'/>`, 12.2) when the domain is defined, so no hook ever sees them.
    newer: &'static [&'static str],
}

const HELPERS: &[HelperUnderTest] = &[
    HelperUnderTest {
        libvirt: "9.0 (Debian 12)",
        suite: None,
        corpus: "libvirt-9.0",
        newer: &["09-libvirt-12.xml"],
    },
    HelperUnderTest {
        libvirt: "11.3 (Debian 13)",
        suite: Some("trixie"),
        corpus: "libvirt-11.3",
        newer: &["09-libvirt-12.xml"],
    },
    // sid's source package could not be fetched here; its helper runs on the 11.3 test domains
    // plus our own 12.x cases (corpus 09-libvirt-12, 10-nvram-block).
    HelperUnderTest {
        libvirt: "12.x (Debian unstable)",
        suite: Some("sid"),
        corpus: "libvirt-11.3",
        newer: &[],
    },
];

/// The domain as the hook sees it at start: live XML carries `id=` (which decides the per-guest
/// directory names); libvirt's test domains are inactive definitions without one.
fn with_live_id(xml: &str, id: u32) -> String {
    match xml.find("<domain ") {
        Some(i) if !xml[i..].split('>').next().unwrap_or("").contains(" id=") => {
            format!("{}<domain id='{id}' {}", &xml[..i], &xml[i + 8..])
        }
        _ => xml.to_string(),
    }
}

/// Run one virt-aa-helper (`-d -c`: dry run, rules on stderr) on a domain: `Ok(rules)` when it
/// accepts the domain, `Err(its message)` when it refuses it.
fn helper_rules(
    root: Option<&Path>,
    uuid: &str,
    xml: &str,
) -> Result<Vec<(String, String)>, String> {
    use std::io::Write;
    let helper = "/usr/lib/libvirt/virt-aa-helper";
    let label = format!("libvirt-{uuid}");
    let mut cmd = match root {
        None => Command::new(helper),
        Some(r) => {
            // the host's /proc, /sys and /dev (hostdev lookups), mounted in a private namespace
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                .arg(
                    r#"r=$1; shift; mount -t proc proc "$r/proc" && mount --rbind /sys "$r/sys" &&
                       mount --rbind /dev "$r/dev" && exec chroot "$r" "$@""#,
                )
                .arg("sh")
                .arg(r)
                .arg(helper);
            c
        }
    };
    let mut child = cmd
        .args(["-d", "-c", "-u", &label])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run virt-aa-helper");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(rule_lines(&err))
    } else {
        Err(err
            .lines()
            .filter(|l| l.contains("error"))
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Whether an AppArmor glob of ours matches a literal path: `**`, `*`, `?`, `[...]`, `{a,b}`
/// and `\`-escapes, which is all we emit.
fn glob_matches(pat: &str, path: &str) -> bool {
    if let Some(open) = find_unescaped(pat, '{') {
        let close = open + pat[open..].find('}').expect("closed brace");
        return pat[open + 1..close]
            .split(',')
            .any(|alt| glob_matches(&format!("{}{alt}{}", &pat[..open], &pat[close + 1..]), path));
    }
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=s.len()).any(|i| m(&p[2..], &s[i..])),
            Some(b'*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| m(&p[1..], &s[i..])),
            Some(b'?') => s.first().is_some_and(|&c| c != b'/') && m(&p[1..], &s[1..]),
            Some(b'[') => {
                let end = p.iter().position(|&c| c == b']').expect("closed class");
                let class = &p[1..end];
                let Some(&c) = s.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit && m(&p[end + 1..], &s[1..])
            }
            Some(b'\\') => p.len() > 1 && s.first() == Some(&p[1]) && m(&p[2..], &s[1..]),
            Some(&c) => s.first() == Some(&c) && m(&p[1..], &s[1..]),
        }
    }
    m(pat.as_bytes(), path.as_bytes())
}

fn find_unescaped(s: &str, ch: char) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == ch as u8 => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Figures of one helper's run, printed by the test.
#[derive(Default, Debug)]
struct DiffFigures {
    domains: usize,
    accepted: usize,
    compared: usize,
    rules: usize,
    excused: std::collections::BTreeMap<&'static str, usize>,
    refused_by_helper: Vec<String>,
}

/// Our generator against one libvirt's own virt-aa-helper: every domain it accepts we accept,
/// every rule it writes is covered by ours (same or more permissions) except the excused
/// narrowings. Returns the figures, or the list of violations.
fn differential(root: Option<&Path>, h: &HelperUnderTest) -> (DiffFigures, Vec<String>) {
    let corpus_dir = h.corpus;
    let mut files = corpus_files();
    let mut theirs: Vec<_> = std::fs::read_dir(corpus().join(corpus_dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    theirs.sort();
    assert!(
        theirs.len() >= 10,
        "{corpus_dir}: fewer than 10 libvirt test domains"
    );
    files.extend(theirs);
    let mut fig = DiffFigures::default();
    let mut bad = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        if text.contains("<name>[") {
            continue; // hostile names: the helper refuses them, we escape them
        }
        let name = f.file_name().unwrap().to_string_lossy();
        if h.newer.contains(&name.as_ref()) {
            continue;
        }
        let xml = with_live_id(&text, 100 + i as u32);
        let uuid = xml
            .split("<uuid>")
            .nth(1)
            .and_then(|r| r.split("</uuid>").next())
            .unwrap_or("00000000-0000-0000-0000-000000000000")
            .trim()
            .to_string();
        fig.domains += 1;
        let helper = match helper_rules(root, &uuid, &xml) {
            Ok(r) => r,
            Err(e) => {
                fig.refused_by_helper.push(format!("{name}: {e}"));
                continue;
            }
        };
        fig.accepted += 1;
        // libvirt's own test domains keep backing files in /tmp; its helper grants a backing
        // file anywhere, ours only in trusted image directories (README "Security model"),
        // so the comparison trusts /tmp too.
        let (out, err, code) = gen_stdin_conf(&xml, &["--no-probe"], DIFFERENTIAL_CONF);
        if code != 0 {
            bad.push(format!(
                "{name}: virt-aa-helper accepts it, we refuse: {err}"
            ));
            continue;
        }
        fig.compared += 1;
        let ours: Vec<(String, Perms)> = rule_lines(&out)
            .into_iter()
            .map(|(p, perms)| (p, Perms::parse(&perms)))
            .collect();
        for (pat, perms) in helper {
            let want = Perms::parse(&perms);
            fig.rules += 1;
            let literal = !pat.contains(['*', '?', '[', '{']);
            let covered = ours.iter().any(|(p, have)| {
                have.contains(want) && (*p == pat || (literal && glob_matches(p, &pat)))
            });
            // the other direction, for the very same path: where the helper grants read-only we
            // must not grant write (a cdrom without <readonly/> once got rwk here)
            if !want.writes() {
                if let Some((_, have)) = ours.iter().find(|(p, _)| *p == pat) {
                    if have.writes() && !EXCUSED_WIDENINGS.iter().any(|(k, _)| pat.contains(k)) {
                        bad.push(format!(
                            "{name}: virt-aa-helper grants \"{pat}\" {perms} only, we grant {have}"
                        ));
                    }
                }
            }
            if covered {
                continue;
            }
            match EXCUSED_NARROWINGS.iter().find(|(k, _)| pat.contains(k)) {
                Some((k, _)) => *fig.excused.entry(k).or_default() += 1,
                None => {
                    let mine: Vec<String> = ours
                        .iter()
                        .filter(|(p, _)| *p == pat || (literal && glob_matches(p, &pat)))
                        .map(|(p, h)| format!("\"{p}\" {h}"))
                        .collect();
                    bad.push(format!(
                        "{name}: virt-aa-helper grants \"{pat}\" {perms}; ours: {mine:?}"
                    ))
                }
            }
        }
    }
    // what libxml2 refuses, we refuse: a raw '<' in an attribute value (quick-xml took it)
    let lt = "<domain type='kvm' id='9'><name>lt</name><uuid>99999999-9999-4999-8999-99999999999a</uuid>\
        <devices><disk type='file' device='disk'><source file='/srv/a<b.img'/><target dev='vda'/></disk></devices></domain>";
    let theirs = helper_rules(root, "99999999-9999-4999-8999-99999999999a", lt);
    let (_, err, code) = gen_stdin(lt, &["--no-probe"]);
    if theirs.is_err() && code == 0 {
        bad.push(format!(
            "'<' in an attribute: virt-aa-helper refuses, we accept ({err})"
        ));
    }
    (fig, bad)
}

#[test]
fn glob_matcher_reads_our_patterns() {
    assert!(glob_matches(
        "/run/libvirt/qemu/channel/7-x/{,*}",
        "/run/libvirt/qemu/channel/7-x/a"
    ));
    assert!(glob_matches(
        "/run/libvirt/qemu/channel/7-x/{,*}",
        "/run/libvirt/qemu/channel/7-x/"
    ));
    assert!(!glob_matches("/a/*", "/a/b/c"));
    assert!(glob_matches("/a/**", "/a/b/c"));
    assert!(glob_matches("/dev/vfio/[0-9]*", "/dev/vfio/12"));
    assert!(glob_matches("/srv/a\\[1\\]", "/srv/a[1]"));
    assert!(!glob_matches("/srv/ab", "/srv/abc"));
}

/// Each Debian release's own virt-aa-helper against that libvirt's own test domains and our
/// corpus: 9.0 on this host, 11.3 (trixie) and 12.x (sid) by chroot into a root of that suite.
#[test]
fn differential_against_virt_aa_helper() {
    let mut failures = Vec::new();
    for h in HELPERS {
        let root = match h.suite {
            None => {
                if !Path::new("/usr/lib/libvirt/virt-aa-helper").exists() {
                    skip_or_fail(
                        "virt-aa-helper missing on this host: the test command installs libvirt-daemon-system",
                    );
                    continue;
                }
                None
            }
            Some(suite) => {
                if !is_root() {
                    skip_or_fail(&format!(
                        "libvirt {}: building and entering a {suite} root needs root",
                        h.libvirt
                    ));
                    continue;
                }
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lib/helperroot.sh");
                let out = Command::new(&script).arg(suite).output().unwrap();
                let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || path.is_empty() {
                    skip_or_fail(&format!(
                        "libvirt {}: no {suite} root with virt-aa-helper ({})",
                        h.libvirt,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                    continue;
                }
                Some(std::path::PathBuf::from(path))
            }
        };
        let (fig, bad) = differential(root.as_deref(), h);
        eprintln!(
            "libvirt {}: {} domains, {} accepted by its virt-aa-helper, {} compared, {} helper rules, excused narrowings {:?}",
            h.libvirt, fig.domains, fig.accepted, fig.compared, fig.rules, fig.excused
        );
        for r in &fig.refused_by_helper {
            eprintln!("  refused by virt-aa-helper {}: {r}", h.libvirt);
        }
        assert!(
            fig.compared >= 10,
            "libvirt {}: only {} domains compared",
            h.libvirt,
            fig.compared
        );
        assert!(
            fig.rules > 100,
            "libvirt {}: only {} helper rules",
            h.libvirt,
            fig.rules
        );
        failures.extend(
            bad.into_iter()
                .map(|b| format!("libvirt {}: {b}", h.libvirt)),
        );
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_names_and_paths_compile_and_stay_literal() {
    let f = corpus().join("07-hostile.xml");
    let (out, err, code) = generate(&["--profile"], &f);
    assert_eq!(code, 0, "{err}");
    compile(&out, None).unwrap();
    // every rule is a single, well-formed quoted pattern; the injected "/etc/shadow r," and
    // "/** rwk," live inside quotes, escaped, and so grant nothing.
    let rules = rule_lines(&out);
    let quoted: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
        .collect();
    assert_eq!(quoted.len(), rules.len());
    for ((p, perms), line) in rules.iter().zip(quoted) {
        assert_eq!(
            format!("  \"{p}\" {perms},"),
            line,
            "rule line is not one pattern"
        );
    }
    assert!(rules.iter().all(|(p, _)| p != "/etc/shadow" && p != "/**"));
    assert!(
        rules
            .iter()
            .any(|(p, _)| p.contains("\\\" rwk\\, /etc/shadow r\\, \\\"x"))
    );
    // `..` and `//` normalised, `&amp;` decoded whole
    assert!(rules.iter().any(|(p, _)| p == "/srv/hostile/c/d.img"));
}

fn disk_xml(path: &str, extra: &str) -> String {
    format!(
        "<domain type='kvm' id='1'><name>t</name><uuid>22222222-2222-4222-8222-222222222222</uuid>\
         <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
         <source file='{path}'/><target dev='vda'/>{extra}</disk></devices></domain>"
    )
}

/// The configuration the differential runs with: libvirt's test domains name backing files in
/// `/tmp`, which a real host would list in `image_dirs`.
const DIFFERENTIAL_CONF: &str = "image_dirs = [\"/var/lib/libvirt/images\", \"/tmp\"]\n";

fn gen_stdin(xml: &str, args: &[&str]) -> (String, String, i32) {
    gen_stdin_env(xml, args, &[])
}

/// [`gen_stdin`] with a configuration file holding `conf` (root stays `/`).
fn gen_stdin_conf(xml: &str, args: &[&str], conf: &str) -> (String, String, i32) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("virt-aa-hook.conf");
    std::fs::write(&f, conf).unwrap();
    gen_stdin_env(xml, args, &[("VIRT_AA_HOOK_CONFIG", f.to_str().unwrap())])
}

fn gen_stdin_env(xml: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String, i32) {
    let mut a = vec!["generate"];
    a.extend_from_slice(args);
    let out = run(&a, xml.as_bytes(), env);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn refused_host_paths_fail_with_one_line_naming_the_device() {
    let (out, err, code) = gen_stdin(&disk_xml("/etc/shadow", ""), &[]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(
        err,
        "error: disk 'vda': /etc/shadow is a host system path and cannot be granted rwk\n"
    );
    let (_, err, code) = gen_stdin(&disk_xml("/var/lib/libvirt/../../../etc/passwd", ""), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("/etc/passwd is a host system path"), "{err}");
    // a symlink into /etc is resolved before the policy applies
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", d.path().join("etc-link")).unwrap();
    let p = format!("{}/etc-link/passwd", d.path().display());
    let (_, err, code) = gen_stdin(&disk_xml(&p, "<readonly/>"), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/etc/passwd is a host system path and cannot be granted rk"),
        "{err}"
    );
    // component-wise: /library is not /lib
    let (out, _, code) = gen_stdin(&disk_xml("/library/vm.qcow2", ""), &["--no-probe"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"/library/vm.qcow2\" rwk,"));
}

#[test]
fn bad_input_gets_one_clear_line() {
    for (xml, want) in [
        (
            &b"<domain type='kvm'><name>x</name></domain>"[..],
            "error: domain has no <uuid>\n",
        ),
        (b"<domain><name>x</", "error: domain XML is malformed"),
        (
            b"<domain>\xff\xfe</domain>",
            "error: domain XML is not valid UTF-8",
        ),
        (b"", "error: domain XML has no root element\n"),
    ] {
        let out = run(&["generate"], xml, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with(want),
            "{err:?} does not start with {want:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // a newline smuggled into a device label cannot forge a second line of libvirt's error
    let out = run(
        &["generate"],
        b"<domain type='kvm'><name>n</name><uuid>99999999-9999-4999-8999-999999999990</uuid><devices>\
          <disk type='file'><source file='/etc/shadow'/><target dev='vda&#10;virt-aa-hook: forged'/></disk></devices></domain>",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("disk 'vda\\nvirt-aa-hook: forged'"), "{err}");
    let big = vec![b' '; 10 * 1024 * 1024 + 10];
    let out = run(&["generate"], &big, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than"));
}

/// `qemu-img create -f qcow2 [-F fmt -b backing] path 1M`.
fn qcow2(path: &Path, backing: Option<(&Path, &str)>) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if let Some((b, fmt)) = backing {
        args.extend(["-F", fmt, "-b", b.to_str().unwrap()]);
    }
    args.extend([path.to_str().unwrap(), "1M"]);
    qemu_img(&args);
}

fn qemu_img(args: &[&str]) {
    let st = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        st.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// Files under `dir` that QEMU's block layer really opens for `image` (`qemu-img info
/// --backing-chain` under strace), or `None` where strace cannot run.
fn files_qemu_opens(image: &Path, dir: &Path) -> Option<Vec<String>> {
    let log = dir.join("strace.log");
    // strace missing, or ptrace not permitted (some containers): no comparison possible
    let probe = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let st = Command::new("strace")
        .args(["-f", "-e", "trace=openat", "-o"])
        .arg(&log)
        .args(["qemu-img", "info", "--backing-chain"])
        .arg(image)
        .output()
        .ok()?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let prefix = format!("\"{}/", dir.display());
    let mut files: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, r)| r))
        .filter_map(|r| {
            r.split_once('"')
                .map(|(name, _)| format!("{}/{name}", dir.display()))
        })
        .filter(|f| !f.ends_with("strace.log"))
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

#[test]
fn vmdk_extents_are_granted_like_their_image() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().canonicalize().unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for sub in [
        "monolithicFlat",
        "twoGbMaxExtentFlat",
        "twoGbMaxExtentSparse",
    ] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            &format!("subformat={sub}"),
            &p(&format!("{sub}.vmdk")),
            "5G",
        ]);
    }
    qcow2(
        &dir.join("top.qcow2"),
        Some((&dir.join("twoGbMaxExtentSparse.vmdk"), "vmdk")),
    );
    let vmdk =
        |path: &str, extra: &str| disk_xml(path, extra).replace("type='qcow2'", "type='vmdk'");
    // a writable split disk: every extent read-write, like the descriptor
    let (out, err, code) = gen_stdin(&vmdk(&p("twoGbMaxExtentFlat.vmdk"), ""), &[]);
    assert_eq!(code, 0, "{err}");
    let perms: HashMap<_, _> = rule_lines(&out).into_iter().collect();
    for f in [
        "twoGbMaxExtentFlat.vmdk",
        "twoGbMaxExtentFlat-f001.vmdk",
        "twoGbMaxExtentFlat-f003.vmdk",
    ] {
        assert_eq!(
            perms.get(&p(f)).map(String::as_str),
            Some("rwk"),
            "{f}: {out}"
        );
    }
    // a read-only one: read-only extents
    let (out, err, code) = gen_stdin(&vmdk(&p("monolithicFlat.vmdk"), "<readonly/>"), &[]);
    assert_eq!(code, 0, "{err}");
    let perms: HashMap<_, _> = rule_lines(&out).into_iter().collect();
    assert_eq!(
        perms[&p("monolithicFlat-flat.vmdk")],
        perms[&p("monolithicFlat.vmdk")]
    );
    assert!(!perms[&p("monolithicFlat-flat.vmdk")].contains('w'));
    // a split VMDK as a qcow2's backing file: descriptor and extents read-only
    let (out, err, code) = gen_stdin(&disk_xml(&p("top.qcow2"), ""), &["--profile"]);
    assert_eq!(code, 0, "{err}");
    compile(&out, None).unwrap();
    let perms: HashMap<_, _> = rule_lines(&out).into_iter().collect();
    let granted: Vec<String> = perms
        .keys()
        .filter(|k| k.starts_with(dir.to_str().unwrap()))
        .cloned()
        .collect();
    for f in [
        "twoGbMaxExtentSparse.vmdk",
        "twoGbMaxExtentSparse-s001.vmdk",
        "twoGbMaxExtentSparse-s003.vmdk",
    ] {
        assert_eq!(perms[&p(f)], "rk", "{f}");
    }
    // every file QEMU's block layer opens is granted (here, with qemu-img 7.2, the two lists are
    // identical; the test only requires coverage, so another QEMU may open fewer)
    for (image, xml) in [
        (p("top.qcow2"), disk_xml(&p("top.qcow2"), "")),
        (
            p("twoGbMaxExtentFlat.vmdk"),
            vmdk(&p("twoGbMaxExtentFlat.vmdk"), ""),
        ),
    ] {
        let Some(opened) = files_qemu_opens(Path::new(&image), &dir) else {
            eprintln!("strace cannot run here: skipping the comparison with what QEMU opens");
            break;
        };
        let (out, _, _) = gen_stdin(&xml, &[]);
        let mut ours: Vec<String> = rule_lines(&out)
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| r.starts_with(dir.to_str().unwrap()))
            .collect();
        ours.sort();
        let missing: Vec<&String> = opened.iter().filter(|f| !ours.contains(f)).collect();
        assert!(
            missing.is_empty(),
            "{image}: QEMU opens {missing:?}, not granted"
        );
        if ours != opened {
            eprintln!("{image}: granted {ours:?}, QEMU opened {opened:?}");
        }
    }
    assert!(granted.len() >= 5);
    // an extent that is a symlink to a host file is refused, naming the disk
    std::fs::write(
        dir.join("evil.vmdk"),
        "version=1\nCID=1\nparentCID=ffffffff\nRW 8 FLAT \"evil-flat.vmdk\" 0\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", dir.join("evil-flat.vmdk")).unwrap();
    let (out, err, code) = gen_stdin(&vmdk(&p("evil.vmdk"), ""), &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with("error: disk 'vda'") && err.contains("/etc/shadow"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn backing_chain_is_probed_read_only_and_deduplicated() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().canonicalize().unwrap();
    let base = dir.join("base.raw");
    let mid = dir.join("mid.qcow2");
    qemu_img(&["create", "-q", "-f", "raw", base.to_str().unwrap(), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        "base.raw",
        mid.to_str().unwrap(),
    ]);
    let mut disks = String::new();
    for i in 0..1000 {
        let top = dir.join(format!("top{i}.qcow2"));
        if i < 3 {
            qcow2(&top, Some((&mid, "qcow2")));
        } else {
            std::fs::copy(dir.join("top0.qcow2"), &top).unwrap();
        }
        disks.push_str(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vd{i}'/></disk>",
            top.display()
        ));
    }
    let xml = format!(
        "<domain type='kvm' id='1'><name>many</name><uuid>33333333-3333-4333-8333-333333333333</uuid><devices>{disks}</devices></domain>"
    );
    let (out, err, code) = gen_stdin(&xml, &[]);
    assert_eq!(code, 0, "{err}");
    let rules = rule_lines(&out);
    let count = |p: &Path| {
        rules
            .iter()
            .filter(|(r, _)| r == p.to_str().unwrap())
            .count()
    };
    assert_eq!(count(&mid), 1);
    assert_eq!(count(&base), 1);
    let perms: HashMap<_, _> = rules.iter().cloned().collect();
    assert_eq!(perms[mid.to_str().unwrap()], "rk");
    assert_eq!(perms[base.to_str().unwrap()], "rk");
    assert_eq!(perms[dir.join("top7.qcow2").to_str().unwrap()], "rwk");
    assert!(!out.contains("deny"));
    // a loop and an unreadable image give warnings, not failures
    let a = dir.join("a.qcow2");
    let b = dir.join("b.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", a.to_str().unwrap(), "1M"]);
    qcow2(&b, Some((&a, "qcow2")));
    qemu_img(&[
        "rebase",
        "-q",
        "-u",
        "-F",
        "qcow2",
        "-b",
        b.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    let (out, err, code) = gen_stdin(&disk_xml(b.to_str().unwrap(), ""), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning:") && err.contains("loop"), "{err}");
    assert!(out.contains(&format!("\"{}\" rk,", a.display())));
    // a qcow2 whose backing file is /etc/shadow: refused, the guest must not start
    let evil = dir.join("evil.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-F",
        "raw",
        "-b",
        "/etc/shadow",
        evil.to_str().unwrap(),
        "1M",
    ]);
    let (_, err, code) = gen_stdin(&disk_xml(evil.to_str().unwrap(), ""), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/etc/shadow is a host system path and cannot be granted rk"),
        "{err}"
    );
    // the XML's own <backingStore> wins over the headers (a file beside the image: trusted)
    let declared = dir.join("declared.raw");
    let (out, err, _) = gen_stdin(
        &disk_xml(
            evil.to_str().unwrap(),
            &format!(
                "<backingStore type='file'><format type='raw'/><source file='{}'/><backingStore/></backingStore>",
                declared.display()
            ),
        ),
        &[],
    );
    assert!(
        out.contains(&format!("\"{}\" rk,", declared.display())),
        "{out}{err}"
    );
    // ... but it is libvirt's reading of a header the guest wrote: outside the trusted
    // directories it stops the guest (README "Security model")
    let (out, err, code) = gen_stdin(
        &disk_xml(
            evil.to_str().unwrap(),
            "<backingStore type='file'><format type='raw'/><source file='/srv/declared.raw'/><backingStore/></backingStore>",
        ),
        &[],
    );
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("backing file /srv/declared.raw (named by the image header of")
            && err.contains("is outside the directories trusted for images"),
        "{err}"
    );
}

#[test]
fn firmware_locations_are_read_only() {
    let xml = "<domain type='kvm'><name>fw</name><uuid>44444444-4444-4444-8444-444444444444</uuid>\
        <os><type>hvm</type><loader type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>\
        <kernel>/usr/lib/modules/6.1.0-1-amd64/vmlinuz</kernel><initrd>/boot/initrd.img-6.1</initrd></os></domain>";
    let (out, err, code) = gen_stdin(xml, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("granting read-only"), "{err}");
    let rules: HashMap<_, _> = rule_lines(&out).into_iter().collect();
    assert_eq!(rules["/usr/lib/modules/6.1.0-1-amd64/vmlinuz"], "r");
    assert_eq!(rules["/boot/initrd.img-6.1"], "r");
    assert!(
        rules
            .iter()
            .any(|(p, perm)| p.contains("/OVMF") && perm == "rk")
    );
}

/// Inputs the fuzzer found (tests/fuzz/artifacts/domain_xml): a trailing backslash used to end
/// apparmor_parser's quoted string early; `/` as a file gave an empty pattern; a 9p share of `/`
/// was granted recursively.
#[test]
fn fuzzer_findings_stay_fixed() {
    let xml = "<domain type='kvm' id='1'><name>b\\</name><uuid>99999999-9999-4999-8999-999999999999</uuid>\
        <devices><disk type='file' device='disk'><source file='/srv/x\\'/><target dev='vda'/></disk>\
        <disk type='file' device='disk'><source file='/'/><target dev='vdb'/></disk></devices></domain>";
    let (out, err, code) = gen_stdin(xml, &["--profile", "--no-probe"]);
    assert_eq!(code, 0, "{err}");
    compile(&out, None).unwrap();
    assert!(out.contains("\"/srv/x\\x5c\" rwk,"), "{out}");
    assert!(out.contains("\n  \"/\" rwk,\n"), "{out}");
    let share = "<domain type='kvm'><name>s</name><uuid>99999999-9999-4999-8999-999999999998</uuid>\
        <devices><filesystem type='mount'><source dir='/'/><target dir='root'/><readonly/></filesystem></devices></domain>";
    let (_, err, code) = gen_stdin(share, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("contains the host system path /bin and cannot be granted r recursively"),
        "{err}"
    );
}
