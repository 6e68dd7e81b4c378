//! The files libvirt names with `-F`/`-f`, kept in `libvirt-<uuid>.files`: which strings are
//! libvirt's subtree form ([`Subtrees`]), their rules (never a `deny`), and the list read back.

use super::args::{Plan, plan};
use crate::config::Config;
use crate::domain::Domain;
use crate::paths;
use crate::rules::{GrantError, Perms, RuleLine, RuleSet, Scope};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First line of a `.files` we wrote.
pub const FILES_MARKER: &str = "# virt-aa-hook helper mode: files libvirt named at relabel";
const EXTRA_PREFIX: &str = "# extra: ";
const COVERED_PREFIX: &str = "# covered by the profile: ";
const SUBTREE_SUFFIX: &str = "/{,**}";

/// The directories whose `-F <dir>/{,**}` is libvirt's subtree form for one guest.
///
/// The string libvirt passes is the domain definer's as much as libvirt's: a `<serial
/// type='file'>` whose path is literally `/srv/h/{,**}` reaches us as the same `-F` string as a
/// real subtree label. So the suffix alone proves nothing; the subtree form is accepted only
/// for a directory libvirt itself labels with a subtree for this guest
/// ([`crate::derive::libvirt_subtree_dirs`], which lists libvirt's callers), spelled exactly as
/// libvirt spells it, that exists as a real directory (`lstat`: not a symlink a definer could
/// point elsewhere), and that is not under `/sys` or `/proc` (the tree policy refuses those
/// too). Every other string is one literal file, escaped like every path we write.
#[derive(Clone, Debug, Default)]
pub struct Subtrees {
    /// Host paths, rooted in the configured prefix.
    dirs: Vec<PathBuf>,
}

impl Subtrees {
    /// No subtree accepted: every string is a literal file.
    pub fn none() -> Subtrees {
        Subtrees::default()
    }

    /// libvirt's subtree directories for `dom` on the host at `cfg.root`.
    pub fn for_guest(cfg: &Config, dom: &Domain) -> Subtrees {
        let dirs = crate::derive::libvirt_subtree_dirs(dom, &cfg.root)
            .iter()
            .map(|d| cfg.rooted(Path::new(d)))
            .collect();
        Subtrees { dirs }
    }

    /// The path and scope one `-F` string names: `(<dir>, Tree)` for libvirt's subtree form of
    /// an allowed directory, else `(raw, File)`, the whole string as one literal file.
    pub fn split<'a>(&self, raw: &'a str) -> (&'a str, Scope) {
        if let Some(dir) = raw.strip_suffix(SUBTREE_SUFFIX) {
            if self.allows(dir) {
                return (dir, Scope::Tree);
            }
        }
        (raw, Scope::File)
    }

    /// `dir` is on the list (exact spelling), a real directory, and not in `/sys` or `/proc`
    /// once resolved.
    fn allows(&self, dir: &str) -> bool {
        if !self.dirs.iter().any(|d| d.as_os_str() == dir) {
            return false;
        }
        let real_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
        real_dir
            && paths::resolve(dir)
                .is_ok_and(|r| !paths::is_under(&r, "/sys") && !paths::is_under(&r, "/proc"))
    }
}

/// Render the extra files as rules. Files that can no longer be granted (a symlink now points
/// into `/etc`, say) are left out with a warning, except `must_grant` (the file of this call),
/// whose refusal fails the call. A file the main profile's rules (`main`) already grant `rwk`
/// is listed as covered, without a rule: the policy does not change, so nothing is recompiled
/// (at every start libvirt names the per-domain directories our profile already grants).
/// Only the directories in `subtrees` are granted as a subtree; every other string is one
/// literal file.
///
/// These files are libvirt's own choice (snapshot overlays, copy destinations, blockcommit
/// targets), not read from an image header, so [`crate::reach`]'s backing-file policy does not
/// apply to them; the host policy does. The chain in the XML of the same call is judged as at
/// start (see `crate::reach`, "Block jobs"). `policy` is the host policy in force (the hook's
/// derivation options'), so a moved `state_dir` is refused here as in the main profile.
pub fn render_extras(
    policy: &Arc<paths::HostPolicy>,
    extras: &[String],
    must_grant: Option<&str>,
    main: Option<&RuleSet>,
    subtrees: &Subtrees,
) -> Result<(String, Vec<String>), GrantError> {
    let mut out = String::from(FILES_MARKER);
    out.push_str(" (-F), kept until the guest stops.\n");
    out.push_str("# Written by virt-aa-hook in place of libvirt's virt-aa-helper; do not edit.\n");
    let mut warnings = Vec::new();
    let mut resolver = paths::Resolver::new();
    for raw in extras {
        let (base, scope) = subtrees.split(raw);
        let mut rs = RuleSet::with_policy(policy.clone());
        match rs.grant(
            &mut resolver,
            "file named by libvirt",
            base,
            Perms::RWK,
            scope,
        ) {
            Ok(resolved) => {
                let json = serde_json::to_string(raw).unwrap_or_default();
                if main.is_some_and(|m| covered(m, &resolved, scope)) {
                    out.push_str(COVERED_PREFIX);
                    out.push_str(&json);
                    out.push('\n');
                } else {
                    out.push_str(EXTRA_PREFIX);
                    out.push_str(&json);
                    out.push('\n');
                    out.push_str(&rs.render());
                }
            }
            Err(e) if Some(raw.as_str()) == must_grant => return Err(e),
            Err(e) => warnings.push(format!("dropped an earlier extra file: {e}")),
        }
    }
    Ok((out, warnings))
}

/// What [`check_extras_argv`] found for one argument vector.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgvRules {
    /// No file to grant: the command line is refused, names no `-F`/`-f` file, or the file is
    /// refused by the host policy (no rule is written for it).
    Refused,
    /// The `.files` text for `path` (the `-F`/`-f` string), with `literal` rules of its escaped
    /// resolved path and `tree` rules of an allowed subtree.
    Granted {
        path: String,
        text: String,
        literal: usize,
        tree: usize,
    },
}

/// Issue 20's property for one helper argument vector; test support shared by the unit
/// property test and the `helper_args` fuzz target (tests/fuzz), not an API. `argv` goes
/// through [`plan`] and, when it names a file, through [`render_extras`] with `subtrees` (under
/// the default configuration's host policy), once as the file of this call and once as an earlier extra. Then every line of the `.files` is a
/// comment or a rule, and every rule's pattern is either the escaped resolved path of the whole
/// string (one literal) or `<dir>/`, `<dir>/**` for a `dir` in `allowed` (escaped resolved
/// directories); a file refused as the file of this call is dropped without a rule as an
/// earlier one. `Err` says how the property fails.
#[doc(hidden)]
pub fn check_extras_argv(
    argv: &[String],
    subtrees: &Subtrees,
    allowed: &[String],
) -> Result<ArgvRules, String> {
    let Ok(Plan::Generate { file: Some(f), .. }) = plan(argv) else {
        return Ok(ArgvRules::Refused);
    };
    let raw = f.path;
    let extras = [raw.clone()];
    let policy = Arc::new(paths::HostPolicy::default());
    let (earlier, _) = render_extras(&policy, &extras, None, None, subtrees)
        .map_err(|e| format!("{raw:?}: an earlier extra file fails the call: {e}"))?;
    let Ok((text, _)) = render_extras(&policy, &extras, Some(&raw), None, subtrees) else {
        return match earlier.lines().find(|l| !l.starts_with('#')) {
            Some(l) => Err(format!("{raw:?} is refused, yet dropped it gives {l:?}")),
            None => Ok(ArgvRules::Refused),
        };
    };
    if text != earlier {
        return Err(format!(
            "{raw:?} renders differently as an earlier extra file"
        ));
    }
    let lit = paths::resolve(&raw).ok().map(|p| paths::escape_path(&p));
    let (mut literal, mut tree) = (0, 0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(RuleLine { pattern, .. }) = RuleLine::parse(line) else {
            return Err(format!("{raw:?}: not a rule: {line:?}\n{text}"));
        };
        if lit.as_deref() == Some(pattern) {
            literal += 1;
        } else if allowed
            .iter()
            .any(|a| pattern == format!("{a}/") || pattern == format!("{a}/**"))
        {
            tree += 1;
        } else {
            return Err(format!(
                "{raw:?}: {pattern:?} is neither {lit:?} nor an allowed subtree\n{text}"
            ));
        }
    }
    Ok(ArgvRules::Granted {
        path: raw,
        text,
        literal,
        tree,
    })
}

/// Pieces the property tests append to a path to build hostile `-f`/`-F` arguments: pattern
/// metacharacters, `..` and `//`, quotes, control characters, variables and a rule injection.
/// Test support shared by the unit property test and the fuzz crate's replay test, not an API.
#[doc(hidden)]
pub const EXTRAS_PATH_PIECES: &[&str] = &[
    "/",
    "/{,**}",
    "{,**}",
    "/**",
    "*",
    "?",
    "[a-z]",
    "{a,b}",
    ",",
    "\"",
    "'",
    "\n",
    "\r",
    "..",
    "/..",
    "/.",
    "//",
    "@{HOME}",
    "#x",
    "#include",
    "\\",
    "\\\"",
    "^",
    " ",
    "x",
    "domain-3-hp",
    "3-hp",
    "\u{1b}",
    "\t",
    "\u{0}",
    "é",
    "\u{2028}",
    "rwk,",
    "\" rwk,\n  /etc/** rw,",
];

/// Do `main`'s rules already grant what an extra file would (`rwk`, and for a subtree the
/// directory `r` and everything below `rwk`)?
fn covered(main: &RuleSet, resolved: &Path, scope: Scope) -> bool {
    let Some(p) = resolved.to_str() else {
        return false;
    };
    match scope {
        Scope::File => main.covers(p, Perms::RWK),
        Scope::Tree | Scope::DirEntries => {
            let d = p.trim_end_matches('/');
            // A probe name no rule of ours spells out: only `*`/`**` rules match it.
            main.covers(&format!("{d}/"), Perms::R)
                && main.covers(&format!("{d}/\u{1}"), Perms::RWK)
                && main.covers(&format!("{d}/\u{1}/\u{1}/\u{1}"), Perms::RWK)
        }
    }
}

/// The extra files recorded in a `.files` we wrote (empty for libvirt's own or a missing file).
pub fn parse_extras(text: &str) -> Vec<String> {
    if !text.starts_with(FILES_MARKER) {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(EXTRA_PREFIX)
                .or_else(|| l.strip_prefix(COVERED_PREFIX))
        })
        .filter_map(|j| serde_json::from_str::<String>(j).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Config;
    use crate::domain::Domain;
    use std::path::Path;

    const P: &str = "libvirt-1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    /// [`super::render_extras`] under the default configuration's host policy.
    fn render_extras(
        e: &[String],
        must: Option<&str>,
        main: Option<&RuleSet>,
        st: &Subtrees,
    ) -> Result<(String, Vec<String>), GrantError> {
        super::render_extras(&Arc::new(paths::HostPolicy::default()), e, must, main, st)
    }

    /// A guest with id 3 named `hp`, and a root whose per-domain directory exists.
    fn subtree_guest() -> (tempfile::TempDir, Config, Domain, PathBuf) {
        let (d, cfg) = crate::config::test_root();
        let xml = "<domain type='kvm' id='3'><name>hp</name>\
                   <uuid>66666666-6666-4666-8666-666666666666</uuid></domain>";
        let dom = Domain::parse(xml.as_bytes()).unwrap();
        let libdir = cfg.rooted(Path::new("/var/lib/libvirt/qemu/domain-3-hp"));
        std::fs::create_dir_all(&libdir).unwrap();
        (d, cfg, dom, libdir)
    }

    #[test]
    fn subtree_only_for_libvirts_own_real_directories() {
        let (d, cfg, dom, libdir) = subtree_guest();
        let st = Subtrees::for_guest(&cfg, &dom);
        let lib = libdir.to_str().unwrap();
        assert_eq!(st.split(&format!("{lib}/{{,**}}")), (lib, Scope::Tree));
        assert_eq!(st.split("/a/b.qcow2"), ("/a/b.qcow2", Scope::File));
        // Any other directory, existing or not, stays one literal string.
        let other = d.path().join("srv/h");
        std::fs::create_dir_all(&other).unwrap();
        for raw in [
            format!("{}/{{,**}}", other.display()),
            "/{,**}".to_string(),
            "/srv/h/{,**}".to_string(),
            // Not libvirt's spelling of the directory.
            format!("{lib}//{{,**}}"),
            format!("{lib}/./{{,**}}"),
            format!("{lib}/../domain-3-hp/{{,**}}"),
            // Another guest's directory.
            format!("{}/{{,**}}", lib.replace("3-hp", "4-db")),
        ] {
            assert_eq!(st.split(&raw), (raw.as_str(), Scope::File), "{raw}");
        }
        assert_eq!(
            Subtrees::none().split(&format!("{lib}/{{,**}}")).1,
            Scope::File
        );
        // A symlink in place of the directory: literal.
        let ram = cfg.rooted(Path::new("/var/lib/libvirt/qemu/ram/3-hp"));
        std::fs::create_dir_all(ram.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&other, &ram).unwrap();
        let raw = format!("{}/{{,**}}", ram.display());
        assert_eq!(st.split(&raw).1, Scope::File);
        // Missing: literal.
        let chan = cfg.rooted(Path::new("/run/libvirt/qemu/channel/3-hp"));
        assert_eq!(
            st.split(&format!("{}/{{,**}}", chan.display())).1,
            Scope::File
        );
        std::fs::create_dir_all(&chan).unwrap();
        assert_eq!(
            st.split(&format!("{}/{{,**}}", chan.display())).1,
            Scope::Tree
        );
        // A stopped guest (no id) has no per-domain directories.
        let mut stopped = dom.clone();
        stopped.id = None;
        let raw = format!("{lib}/{{,**}}");
        assert_eq!(
            Subtrees::for_guest(&cfg, &stopped).split(&raw).1,
            Scope::File
        );
    }

    #[test]
    fn hugepage_directories_come_from_the_hosts_mounts() {
        let (_d, cfg, dom, _) = subtree_guest();
        let hp = cfg.rooted(Path::new("/dev/hugepages1G/libvirt/qemu/3-hp"));
        std::fs::create_dir_all(&hp).unwrap();
        let raw = format!("{}/{{,**}}", hp.display());
        assert_eq!(Subtrees::for_guest(&cfg, &dom).split(&raw).1, Scope::File);
        let mounts = cfg.rooted(Path::new("/proc/mounts"));
        std::fs::create_dir_all(mounts.parent().unwrap()).unwrap();
        std::fs::write(
            &mounts,
            "none /dev/hugepages1G hugetlbfs rw,pagesize=1G 0 0\n",
        )
        .unwrap();
        assert_eq!(Subtrees::for_guest(&cfg, &dom).split(&raw).1, Scope::Tree);
    }

    #[test]
    fn a_subtree_string_of_a_definer_is_one_escaped_file() {
        // The issue's case: `<serial type='file'><source path='/srv/h/{,**}'/>`.
        let (text, _) = render_extras(
            &["/srv/h/{,**}".to_string()],
            Some("/srv/h/{,**}"),
            None,
            &Subtrees::none(),
        )
        .unwrap();
        assert!(text.contains("\"/srv/h/\\{\\,\\*\\*\\}\" rwk,"), "{text}");
        assert!(!text.contains("/srv/h/**"), "{text}");
        // libvirt's PCI sysfs exemption is for files: no subtree of it, ever.
        let (_d, cfg, dom, _) = subtree_guest();
        let st = Subtrees::for_guest(&cfg, &dom);
        let raw = "/sys/devices/pci0000:00/{,**}";
        assert_eq!(st.split(raw).1, Scope::File);
        let (text, _) = render_extras(&[raw.to_string()], Some(raw), None, &st).unwrap();
        assert!(!text.contains("/**\" "), "{text}");
    }

    #[test]
    fn extras_render_without_deny_and_round_trip() {
        let (d, cfg, dom, libdir) = subtree_guest();
        let img = d.path().join("we*ird,name.qcow2");
        std::fs::write(&img, b"x").unwrap();
        let extras = vec![
            img.to_string_lossy().into_owned(),
            format!("{}/{{,**}}", libdir.display()),
        ];
        let st = Subtrees::for_guest(&cfg, &dom);
        let (text, warnings) = render_extras(&extras, None, None, &st).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(!text.contains("deny"), "{text}");
        assert!(text.contains("we\\*ird\\,name.qcow2\" rwk,"), "{text}");
        assert!(text.contains("/domain-3-hp/**\" rwk,"), "{text}");
        assert_eq!(parse_extras(&text), extras);
        // libvirt's own .files contributes nothing.
        assert!(
            parse_extras("# DO NOT EDIT THIS FILE DIRECTLY. IT IS MANAGED BY LIBVIRT.\n")
                .is_empty()
        );
    }

    #[test]
    fn host_paths_are_refused_for_the_new_file_and_dropped_for_old_ones() {
        let none = Subtrees::none();
        let bad = vec![
            "/etc/shadow".to_string(),
            "/var/lib/libvirt/images/a.img".to_string(),
        ];
        assert!(render_extras(&bad, Some("/etc/shadow"), None, &none).is_err());
        let (text, warnings) = render_extras(&bad, None, None, &none).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(!text.contains("shadow"));
        // "/{,**}" names no directory: it stays one literal (escaped) file, never the root tree.
        let (root, _) =
            render_extras(&["/{,**}".to_string()], Some("/{,**}"), None, &none).unwrap();
        assert!(root.contains("\"/\\{\\,\\*\\*\\}\" rwk,"), "{root}");
    }

    #[test]
    fn the_configured_host_policy_applies_to_extra_files() {
        // A moved state_dir is refused under the configuration that moved it, not by default.
        let cfg = Config {
            state_dir: "/srv/vah-state".into(),
            ..Config::default()
        };
        let raw = "/srv/vah-state/x.img";
        let extras = [raw.to_string()];
        let none = Subtrees::none();
        let moved = Arc::new(paths::HostPolicy::new(&cfg));
        assert!(super::render_extras(&moved, &extras, Some(raw), None, &none).is_err());
        assert!(render_extras(&extras, Some(raw), None, &none).is_ok());
    }

    /// Property over generated `-F`/`-f` strings (glob characters, `{,**}` tails, quotes,
    /// newlines, `..`, symlinks, libvirt's own directories): the argument vector either is
    /// refused, or every rule in the rendered `.files` is the one escaped literal of the
    /// resolved path, or the subtree (`<dir>/`, `<dir>/**`) of a directory on the allowed list;
    /// and every line is a comment or a rule (nothing the string could inject). The check is
    /// [`check_extras_argv`], which the `helper_args` fuzz target shares.
    #[test]
    fn generated_argument_vectors_give_literals_or_allowed_subtrees() {
        let (d, cfg, dom, libdir) = subtree_guest();
        let st = Subtrees::for_guest(&cfg, &dom);
        let chan = cfg.rooted(Path::new("/run/libvirt/qemu/channel/3-hp"));
        std::fs::create_dir_all(&chan).unwrap();
        std::fs::create_dir_all(d.path().join("srv/h")).unwrap();
        std::os::unix::fs::symlink(&libdir, d.path().join("link")).unwrap();
        let allowed: Vec<String> = [&libdir, &chan]
            .iter()
            .map(|p| paths::resolve(p.to_str().unwrap()).unwrap())
            .map(|p| paths::escape_path(&p))
            .collect();
        let root = d.path().to_str().unwrap().to_string();
        let lib = libdir.to_str().unwrap().to_string();
        let heads = [
            root.clone(),
            lib.clone(),
            chan.to_str().unwrap().to_string(),
            format!("{root}/srv/h"),
            format!("{root}/link"),
            "/srv/h".into(),
            "/sys/devices/pci0000:00".into(),
            "/proc/self".into(),
            "/var/lib/libvirt/qemu/domain-3-hp".into(),
            "/".into(),
            String::new(),
        ];
        let pieces = EXTRAS_PATH_PIECES;
        // xorshift64*: deterministic, no dependency.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        let (mut literal, mut tree, mut refused) = (0, 0, 0);
        for i in 0..3000 {
            let mut raw = heads[next(heads.len())].clone();
            for _ in 0..next(5) {
                raw.push_str(pieces[next(pieces.len())]);
            }
            if i % 4 == 0 {
                raw.push_str("/{,**}");
            }
            let flag = if i % 2 == 0 { "-F" } else { "-f" };
            let argv: Vec<String> = ["-r", "-u", P, flag, &raw]
                .iter()
                .map(|s| s.to_string())
                .collect();
            match check_extras_argv(&argv, &st, &allowed) {
                Ok(ArgvRules::Refused) => refused += 1,
                Ok(ArgvRules::Granted {
                    path,
                    literal: l,
                    tree: t,
                    ..
                }) => {
                    assert_eq!(path, raw);
                    literal += l;
                    tree += t;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The generator reaches every outcome.
        assert!(
            literal > 500 && tree > 20 && refused > 100,
            "{literal} {tree} {refused}"
        );
    }
}
