//! Helper mode: virt-aa-hook answers libvirt's AppArmor security driver in place of
//! `/usr/lib/libvirt/virt-aa-helper`, so every relabel (hotplug, snapshot, block job, backup,
//! save/restore) goes through our generator and no `deny` rule is ever written.
//!
//! # The contract (read from libvirt's source; Debian 12 ships 9.0)
//!
//! Caller, `src/security/security_apparmor.c` (9.x–12.0, unchanged in what follows):
//! - `load_profile`: `virt-aa-helper (-c|-r) -u libvirt-<uuid> [-F FILE | -f FILE]`, the live
//!   domain XML (`VIR_DOMAIN_DEF_FORMAT_SECURE | VOLUME_TRANSLATED`) on **stdin**, environment
//!   `LIBVIRT_LOG_OUTPUTS=<prio>:stderr`. `-c` exactly when `/etc/apparmor.d/libvirt/libvirt-<uuid>`
//!   does not exist (`profile_status_file`), else `-r`; `-f`/`-F` only with `-r`. libvirt ≤ 5.x
//!   also passed `-p 0|1` (disk format probing, later removed); we accept and ignore it.
//! - Who calls it: `AppArmorGenSecurityLabel` at every start (`-c`/`-r`, no file; the XML is the
//!   one *before* firmware, NVRAM and backing chains are resolved). Every `Set*Label` relabel
//!   (`reload_profile`, only if the profile is loaded and `relabel='yes'`) passes one file with
//!   **`-F`** (`append = true` at every call site; `-f` is never used by libvirt ≥ 1.x):
//!   `AppArmorSetSecurityImageLabel` once per element of a disk's backing chain (hotplug, snapshot
//!   overlay, blockcommit base, blockcopy/backup targets), `SetChardevLabel` (pipe: `.in`, `.out`,
//!   then the path), `SetMemoryLabel`, `SetInputLabel`, `SetNetdevLabel` (vhost-user socket),
//!   hostdev files (`/dev/vfio/N`, USB nodes, PCI sysfs files), `SetFDLabel` (the resolved
//!   `/proc/self/fd/N`) and `SetAllLabel` (the restore/incoming file). `AppArmorSetPathLabel`
//!   passes `<dir>/{,**}` when a whole subtree is meant (per-domain directories, hugepages);
//!   the same string can come from a definer's path, so we believe it only for libvirt's own
//!   directories ([`Subtrees`]).
//!   Every `Restore*Label` calls `-r` without a file (full regeneration).
//! - `remove_profile`: `virt-aa-helper -D -u libvirt-<uuid>` (no stdin) from
//!   `AppArmorRestoreSecurityAllLabel` at stop (dynamic labels only). Older libvirt used `-R`.
//! - Result: `virCommandRun(cmd, NULL)`: any non-zero exit is an error; libvirt captures our
//!   stderr and puts it in "Child process (…) unexpected exit status 1: <stderr>", then
//!   "cannot load AppArmor profile" (start fails) or "cannot update AppArmor profile" (the
//!   hotplug/job fails). stdout is only logged.
//!
//! Callee, `src/security/virt-aa-helper.c` (`vahParseArgv`, `main`, 9.0): options
//! `acdDhrRH:b:u:p:f:F:`; `-a` load, `-c` create from `TEMPLATE.qemu` then `apparmor_parser -a`,
//! `-r` regenerate `libvirt-<uuid>.files` (or, with `-F`, append one `"<FILE>" rwk,` to it) then
//! `apparmor_parser -r`, `-R` unload, `-D` unload and unlink `.files` (the main file stays),
//! `-d` dry run (prints to stderr), `-h` usage (exit 0). `-u` must be `libvirt-` + a UUID equal to
//! the XML's (`valid_uuid`, `get_files`). Errors print `virt-aa-helper: error: <msg>` and exit 1.
//! It loads the profile itself (`parserCommand`: `/sbin/apparmor_parser -a|-r|-R <file>`; exit
//! 234 on `-R` = not loaded, tolerated). Its `.files` marks backing and read-only images
//! `deny "<path>" w,` (`add_file_path`/`vah_add_path`), which beats every later `-F … rwk`:
//! `blockcommit` fails with EACCES and nothing is logged (deny rules are not audited).
//!
//! # What we do
//! - `-c`/`-r` [`-F|-f FILE`]: generate the main profile `libvirt-<uuid>` from the XML exactly
//!   as the hook does (same template, policy, escaping; [`crate::generate`]), and write
//!   `libvirt-<uuid>.files` with the files libvirt named, each granted `rwk` like libvirt's
//!   helper but through the same host policy as a disk (system paths refused, the call fails)
//!   and **never a `deny`**. Both files are written atomically and only if they changed; the
//!   profile is compiled and loaded once (`apparmor_parser -r`), and nothing is compiled when
//!   both are unchanged and loaded.
//! - The files libvirt names persist until the guest stops: **we own `libvirt-<uuid>.files` in
//!   helper mode** and keep the list in it (one `# extra: "<path>"` comment per file above its
//!   rule). Why there and not in our state directory: it is the file our profile already
//!   includes, the file libvirt deletes at `-D`, and the file `gc`/`status` already know, so
//!   the list and the loaded policy cannot disagree and no second copy can go stale. Why
//!   persist across a full regeneration (`Restore*Label`, which libvirt's helper answers by
//!   rewriting `.files` from the XML): that drops libvirt's own state-directory and hugepage
//!   grants (`SetPathLabel`) while the guest still uses them. The cost: a detached disk stays
//!   granted to its guest until the guest stops. `-c` (a start) begins a new list: a `.files`
//!   left by a run that stopped without `-D` is not inherited.
//! - `-D`/`-R`: unload; `-D` also removes `.files` and our main file (never a file we did not
//!   write). `-a`: load. `-d`: print what would be written to stderr, write nothing.
//! - Guests the hook skips (opted out, `<seclabel type='none'>`, other labels) and profiles that
//!   are not ours are handed to libvirt's own helper, diverted to
//!   `/usr/lib/libvirt/virt-aa-helper.distrib`, with the same arguments and stdin.
//! - One log line per call in the hook's log, e.g.
//!   `[web 1b4e…] helper -r -F /var/lib/libvirt/images/s1.qcow2 mode=libvirt: …, loaded (38 ms)`.

use crate::aaparser::Parser;
use crate::config::Config;
use crate::domain::Domain;
use crate::hook::Hook;
use crate::lifecycle;
use crate::log::Level;
use crate::paths;
use crate::profile::Mode;
use crate::rules::{Perms, RuleSet, Scope};
use crate::store::{self, GuestLock};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where libvirt runs its helper on Debian and Ubuntu (`LIBEXECDIR "/virt-aa-helper"`).
pub const HELPER_PATH: &str = crate::layout::LIBVIRT_HELPER;
/// Where `dpkg-divert --rename` moves the distribution's helper while ours is installed.
pub const DISTRIB_PATH: &str = crate::layout::LIBVIRT_HELPER_DIVERTED;
/// The name we answer to (argv[0]'s file name).
pub const HELPER_NAME: &str = "virt-aa-helper";
/// First line of a `.files` we wrote.
pub const FILES_MARKER: &str = "# virt-aa-hook helper mode: files libvirt named at relabel";
/// Most extra files kept per guest (libvirt's helper lets `.files` grow without bound).
pub const MAX_EXTRAS: usize = 4096;
const EXTRA_PREFIX: &str = "# extra: ";
const COVERED_PREFIX: &str = "# covered by the profile: ";
const SUBTREE_SUFFIX: &str = "/{,**}";

/// What libvirt asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `-a`: load the existing profile.
    Load,
    /// `-c`: create (the main file did not exist when libvirt looked).
    Create,
    /// `-r`: regenerate and reload.
    Replace,
    /// `-R`: unload.
    Unload,
    /// `-D`: unload and delete the generated rules.
    Delete,
}

/// A file named with `-f` (add to a profile generated from the XML) or `-F` (append to the
/// existing one). We treat both the same: the file joins the guest's extra files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraFile {
    pub path: String,
    pub append: bool,
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    /// `libvirt-<uuid>`, validated.
    pub profile: String,
    pub file: Option<ExtraFile>,
    pub dry_run: bool,
}

/// What to do, decided from the command line alone (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `-h`: usage on stdout, exit 0.
    Usage,
    /// Read the XML on stdin, generate, write, load (unless dry run).
    Generate {
        profile: String,
        file: Option<ExtraFile>,
        dry_run: bool,
        create: bool,
    },
    /// Load the main file as it is.
    Load { profile: String },
    /// Unload; with `delete`, also remove `.files` and our main file.
    Unload { profile: String, delete: bool },
}

impl Plan {
    /// Whether libvirt sends the domain XML on stdin for this call.
    pub fn reads_stdin(&self) -> bool {
        matches!(self, Plan::Generate { .. })
    }
}

/// A command line libvirt would never send; printed as `virt-aa-helper: error: <msg>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unsupported option {0:?}")]
    Unsupported(String),
    #[error("option {0} needs an argument")]
    MissingValue(String),
    #[error("invalid UUID {0:?} (expected libvirt-<uuid>)")]
    BadUuid(String),
    #[error("no command (-c, -r, -a, -R or -D)")]
    NoCommand,
    #[error("invalid file name {0:?}")]
    BadFile(String),
}

/// Parse libvirt's arguments (getopt style: `-u X`, `-uX`, `--uuid X`, `--uuid=X`; the last
/// command wins, as in `vahParseArgv`).
pub fn parse_args(args: &[String]) -> Result<Option<Args>, ArgError> {
    let mut command = None;
    let mut uuid: Option<String> = None;
    let mut file = None;
    let mut dry_run = false;
    let mut help = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            break;
        }
        // Split into (option letter, inline value).
        let (opt, inline): (char, Option<String>) = if let Some(long) = a.strip_prefix("--") {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let c = match name {
                "add" => 'a',
                "create" => 'c',
                "dryrun" => 'd',
                "delete" => 'D',
                "help" => 'h',
                "replace" => 'r',
                "remove" => 'R',
                "uuid" => 'u',
                "add-file" => 'f',
                "append-file" => 'F',
                "probing" => 'p',
                _ => return Err(ArgError::Unsupported(a.to_string())),
            };
            (c, val)
        } else if let Some(short) = a.strip_prefix('-') {
            let mut chars = short.chars();
            let Some(c) = chars.next() else {
                return Err(ArgError::Unsupported(a.to_string()));
            };
            let rest: String = chars.collect();
            if rest.is_empty() {
                (c, None)
            } else if "ufFpHb".contains(c) {
                (c, Some(rest))
            } else {
                // Clustered flags (`-dr`): expand and re-parse.
                let mut expanded: Vec<String> = short.chars().map(|c| format!("-{c}")).collect();
                expanded.extend_from_slice(&args[i..]);
                let mut head = args[..i - 1].to_vec();
                head.append(&mut expanded);
                return parse_args(&head);
            }
        } else {
            return Err(ArgError::Unsupported(a.to_string()));
        };
        let mut value = || -> Result<String, ArgError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| ArgError::MissingValue(format!("-{opt}")))?;
            i += 1;
            Ok(v)
        };
        match opt {
            'a' => command = Some(Command::Load),
            'c' => command = Some(Command::Create),
            'r' => command = Some(Command::Replace),
            'R' => command = Some(Command::Unload),
            'D' => command = Some(Command::Delete),
            'd' => dry_run = true,
            'h' => help = true,
            'u' => uuid = Some(value()?),
            // Old libvirt: `-p 0|1` (allow disk format probing). Accepted, ignored.
            'p' => {
                value()?;
            }
            'f' | 'F' => {
                let path = value()?;
                file = Some(ExtraFile {
                    path,
                    append: opt == 'F',
                })
            }
            _ => return Err(ArgError::Unsupported(a.to_string())),
        }
    }
    if help {
        return Ok(None);
    }
    let command = command.ok_or(ArgError::NoCommand)?;
    let profile = uuid.ok_or_else(|| ArgError::BadUuid(String::new()))?;
    if !valid_profile_name(&profile) {
        return Err(ArgError::BadUuid(profile));
    }
    if let Some(f) = &file {
        if paths::validate(&f.path).is_err() {
            return Err(ArgError::BadFile(f.path.clone()));
        }
    }
    Ok(Some(Args {
        command,
        profile,
        file,
        dry_run,
    }))
}

/// `libvirt-` + a canonical (lowercase, hyphenated) UUID: the only names libvirt generates, and
/// the only ones that are safe as a file name under the profile directory.
pub fn valid_profile_name(s: &str) -> bool {
    let Some(u) = s.strip_prefix("libvirt-") else {
        return false;
    };
    u.len() == 36 && uuid::Uuid::parse_str(u).is_ok_and(|p| p.hyphenated().to_string() == u)
}

/// argv (after the program name) → plan.
pub fn plan(args: &[String]) -> Result<Plan, ArgError> {
    let Some(a) = parse_args(args)? else {
        return Ok(Plan::Usage);
    };
    Ok(match a.command {
        Command::Create | Command::Replace => Plan::Generate {
            profile: a.profile,
            file: a.file,
            dry_run: a.dry_run,
            create: a.command == Command::Create,
        },
        Command::Load => Plan::Load { profile: a.profile },
        Command::Unload => Plan::Unload {
            profile: a.profile,
            delete: false,
        },
        Command::Delete => Plan::Unload {
            profile: a.profile,
            delete: true,
        },
    })
}

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
/// start (see `crate::reach`, "Block jobs").
pub fn render_extras(
    extras: &[String],
    must_grant: Option<&str>,
    main: Option<&RuleSet>,
    subtrees: &Subtrees,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::from(FILES_MARKER);
    out.push_str(" (-F), kept until the guest stops.\n");
    out.push_str("# Written by virt-aa-hook in place of libvirt's virt-aa-helper; do not edit.\n");
    let mut warnings = Vec::new();
    let mut resolver = paths::Resolver::new();
    for raw in extras {
        let (base, scope) = subtrees.split(raw);
        let mut rs = RuleSet::new();
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
            Err(e) if Some(raw.as_str()) == must_grant => return Err(e.to_string()),
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
/// through [`plan`] and, when it names a file, through [`render_extras`] with `subtrees`, once
/// as the file of this call and once as an earlier extra. Then every line of the `.files` is a
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
    let (earlier, _) = render_extras(&extras, None, None, subtrees)
        .map_err(|e| format!("{raw:?}: an earlier extra file fails the call: {e}"))?;
    let Ok((text, _)) = render_extras(&extras, Some(&raw), None, subtrees) else {
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
        let Some(crate::rules::RuleLine { pattern, .. }) = crate::rules::RuleLine::parse(line)
        else {
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

/// The part of a profile file that is policy: everything but comment lines.
fn policy_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') || t.starts_with("#include")
        })
        .collect()
}

/// Is helper mode installed under `cfg.root`: libvirt's helper path is a symlink to our binary?
/// The hook asks this to leave compiling and loading to the helper.
pub fn installed(cfg: &Config) -> bool {
    let p = cfg.rooted(Path::new(HELPER_PATH));
    match std::fs::read_link(&p) {
        Ok(target) => target.file_name().is_some_and(|n| n == "virt-aa-hook"),
        Err(_) => false,
    }
}

/// Result of one call.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stderr: Vec<String>,
}

/// The helper's environment: the hook's (same config, log, parser, generator settings).
pub struct Helper {
    pub hook: Hook,
}

impl Helper {
    pub fn new(cfg: Config) -> Helper {
        Helper {
            hook: Hook::new(cfg),
        }
    }

    fn cfg(&self) -> &Config {
        &self.hook.cfg
    }

    /// Run one call. `args` are the arguments after the program name.
    pub fn run(&self, args: &[String], stdin: &mut dyn Read) -> Outcome {
        let t0 = Instant::now();
        let argline = args.join(" ");
        let plan = match plan(args) {
            Ok(p) => p,
            Err(e) => {
                self.log(Level::Error, &format!("helper {argline}: {e}"));
                return fail(e.to_string());
            }
        };
        let mut xml = Vec::new();
        if plan.reads_stdin() {
            if let Err(e) = stdin
                .take(crate::xml::MAX_XML_BYTES as u64 + 1)
                .read_to_end(&mut xml)
            {
                return fail(format!("could not read xml file: {e}"));
            }
        }
        let r = match &plan {
            Plan::Usage => {
                println!("{}", usage());
                return Outcome {
                    code: 0,
                    stderr: vec![],
                };
            }
            Plan::Generate {
                profile,
                file,
                dry_run,
                create,
            } => self.generate(args, profile, file.as_ref(), *dry_run, *create, &xml),
            Plan::Load { profile } => self.load(profile),
            Plan::Unload { profile, delete } => self.unload(args, profile, *delete),
        };
        match r {
            Ok(Done::Delegated(o)) => o,
            Ok(Done::Text(who, text, warnings)) => {
                for w in warnings {
                    self.log(Level::Warn, &format!("{who} helper: {w}"));
                }
                self.log(
                    Level::Info,
                    &format!("{who} helper {argline} mode=libvirt: {text} ({})", ms(t0)),
                );
                Outcome {
                    code: 0,
                    stderr: vec![],
                }
            }
            Err((who, e)) => {
                self.log(
                    Level::Error,
                    &format!("{who} helper {argline}: FAILED: {e} ({})", ms(t0)),
                );
                fail(e)
            }
        }
    }

    fn log(&self, level: Level, msg: &str) {
        self.hook.log.line(level, msg);
    }

    fn lock(&self, profile: &str) -> Result<GuestLock, String> {
        let uuid = profile.trim_start_matches("libvirt-");
        GuestLock::acquire(
            &self.cfg().rooted(&self.cfg().state_dir).join("locks"),
            uuid,
            Duration::from_secs(self.cfg().lock_timeout),
        )
        .map_err(|e| e.to_string())
    }

    fn parser(&self) -> Result<Parser, String> {
        self.hook.profiles().parser().map_err(|e| e.to_string())
    }

    /// `-c`/`-r` [`-F FILE`]. `create` (`-c`) starts from no extra files: libvirt sends it
    /// when the main profile does not exist, i.e. at a start, so a `.files` still there is
    /// left from a run that did not stop cleanly (no `-D`) and names nothing this run labelled.
    fn generate(
        &self,
        args: &[String],
        profile: &str,
        file: Option<&ExtraFile>,
        dry_run: bool,
        create: bool,
        xml: &[u8],
    ) -> Result<Done, (String, String)> {
        let anon = format!("[{profile}]");
        let dom = Domain::parse(xml)
            .map_err(|e| (anon.clone(), format!("invalid VM definition: {e}")))?;
        let who = format!("[{} {}]", dom.name, dom.uuid.hyphenated());
        if dom.profile_name() != profile {
            return Err((who, "given uuid does not match XML uuid".into()));
        }
        if let Some(reason) = self.hook.skip_reason(&dom) {
            return self.delegate(args, Some(xml), &who, &reason);
        }
        let _lock = self.lock(profile).map_err(|e| (who.clone(), e))?;
        let e = |m: String| (who.clone(), m);

        let cfg = self.cfg();
        let main_path = cfg.profile_path(profile);
        let files_path = cfg.files_path(profile);
        let old_main = read_text(&main_path).map_err(e)?;
        let old_files = read_text(&files_path).map_err(e)?;
        let mut extras = if create {
            Vec::new()
        } else {
            parse_extras(old_files.as_deref().unwrap_or(""))
        };
        if let Some(f) = file {
            if !extras.contains(&f.path) {
                if extras.len() >= MAX_EXTRAS {
                    return Err(e(format!(
                        "more than {MAX_EXTRAS} files named for this guest; not adding {}",
                        f.path
                    )));
                }
                extras.push(f.path.clone());
            }
        }
        let mut warnings = Vec::new();
        let opts = self.hook.derive_options();
        let g = self
            .hook
            .profiles()
            .render(dom.clone(), Mode::Libvirt, &opts, &mut warnings)
            .map_err(|x| e(x.to_string()))?;
        let (files_text, w) = render_extras(
            &extras,
            file.map(|f| f.path.as_str()),
            Some(&g.derived.rules),
            &Subtrees::for_guest(cfg, &dom),
        )
        .map_err(e)?;
        warnings.extend(w);
        let nrules = g.derived.rules.len();

        if dry_run {
            eprintln!("virt-aa-helper:\n{}\n{}", main_path.display(), g.profile);
            eprintln!("virt-aa-helper:\n{}\n{}", files_path.display(), files_text);
            return Ok(Done::Text(who, "dry run, nothing written".into(), warnings));
        }
        let main_changed = old_main.as_deref() != Some(g.profile.as_str());
        let files_changed = old_files.as_deref() != Some(files_text.as_str());
        // Only comments changed (a file the profile already covers): write, do not recompile.
        let policy_changed = main_changed
            || old_files.as_deref().map(policy_lines) != Some(policy_lines(&files_text));
        let kernel_on = self.hook.kernel.enabled();
        let loaded = kernel_on && self.hook.kernel.profile_mode(profile).is_some();
        let what = format!(
            "{nrules} rules + {} extra file(s){}",
            extras.len(),
            match (main_changed, files_changed) {
                (false, false) => ", unchanged",
                (true, false) => ", rewrote profile",
                (false, true) => ", rewrote .files",
                (true, true) => ", rewrote profile and .files",
            }
        );
        if !policy_changed && (loaded || !kernel_on) {
            if files_changed {
                store::write_atomic(&files_path, files_text.as_bytes())
                    .map_err(|x| e(format!("cannot write {}: {x}", files_path.display())))?;
            }
            let state = if !kernel_on {
                "kernel has no AppArmor"
            } else if files_changed {
                "already covered by the loaded profile, not recompiled"
            } else {
                "already loaded"
            };
            return Ok(Done::Text(who, format!("{what}, {state}"), warnings));
        }
        if let Some(dir) = main_path.parent() {
            std::fs::create_dir_all(dir).map_err(|x| e(format!("{}: {x}", dir.display())))?;
        }
        // `.files` first: the staged main profile includes it by its final name.
        if files_changed {
            store::write_atomic(&files_path, files_text.as_bytes())
                .map_err(|x| e(format!("cannot write {}: {x}", files_path.display())))?;
        }
        let restore_files = || {
            if files_changed {
                let _ = match &old_files {
                    Some(t) => store::write_atomic(&files_path, t.as_bytes()),
                    None => store::remove_if_exists(&files_path).map(|_| ()),
                };
            }
        };
        let staged = if main_changed {
            match store::Staged::write(&main_path, g.profile.as_bytes()) {
                Ok(s) => Some(s),
                Err(x) => {
                    restore_files();
                    return Err(e(format!("cannot write profile: {x}")));
                }
            }
        } else {
            None
        };
        let file_to_load = staged.as_ref().map(|s| s.path()).unwrap_or(&main_path);
        let compiled = self.parser().and_then(|p| {
            if kernel_on {
                p.replace(file_to_load, staged.is_none())
            } else {
                p.check(file_to_load)
            }
            .map_err(|x| x.to_string())
        });
        if let Err(x) = compiled {
            restore_files();
            return Err(e(x));
        }
        if let Some(s) = staged {
            s.commit()
                .map_err(|x| e(format!("cannot replace profile: {x}")))?;
        }
        let state = if kernel_on {
            "loaded"
        } else {
            "compile ok, not loaded (kernel has no AppArmor)"
        };
        Ok(Done::Text(who, format!("{what}, {state}"), warnings))
    }

    /// `-a`.
    fn load(&self, profile: &str) -> Result<Done, (String, String)> {
        let who = format!("[{profile}]");
        let path = self.cfg().profile_path(profile);
        if !path.exists() {
            return Err((who, "profile does not exist".into()));
        }
        let _lock = self.lock(profile).map_err(|e| (who.clone(), e))?;
        self.parser()
            .and_then(|p| p.replace(&path, true).map_err(|e| e.to_string()))
            .map_err(|e| (who.clone(), e))?;
        Ok(Done::Text(who, "loaded".into(), vec![]))
    }

    /// `-R` / `-D`.
    fn unload(
        &self,
        args: &[String],
        profile: &str,
        delete: bool,
    ) -> Result<Done, (String, String)> {
        let who = format!("[{profile}]");
        let cfg = self.cfg();
        let main_path = cfg.profile_path(profile);
        let files_path = cfg.files_path(profile);
        let main_ours = lifecycle::is_ours(&main_path);
        let files_ours = is_ours(&files_path, FILES_MARKER);
        if !main_ours && !files_ours && main_path.exists() {
            return self.delegate(args, None, &who, "profile was not written by virt-aa-hook");
        }
        let _lock = self.lock(profile).map_err(|e| (who.clone(), e))?;
        let mut text = Vec::new();
        if self.hook.kernel.enabled() && self.hook.kernel.profile_mode(profile).is_some() {
            let r = self
                .hook
                .profiles()
                .unload(profile, &main_path)
                .map_err(|e| e.to_string());
            r.map_err(|e| (who.clone(), e))?;
            text.push("unloaded".to_string());
        } else {
            text.push("was not loaded".to_string());
        }
        if delete {
            // Like libvirt's helper, `.files` goes whoever wrote it (it is per-run state).
            if store::remove_if_exists(&files_path).unwrap_or(false) {
                text.push("removed .files".into());
            }
            if main_ours && store::remove_if_exists(&main_path).unwrap_or(false) {
                text.push(format!("removed {}", main_path.display()));
            }
        }
        Ok(Done::Text(who, text.join(", "), vec![]))
    }

    /// Hand the call to the distribution's helper (guests we do not manage).
    fn delegate(
        &self,
        args: &[String],
        xml: Option<&[u8]>,
        who: &str,
        reason: &str,
    ) -> Result<Done, (String, String)> {
        let distrib = self.cfg().rooted(Path::new(DISTRIB_PATH));
        if !distrib.exists() {
            return Err((
                who.to_string(),
                format!(
                    "{reason}, and libvirt's own helper {} is not there",
                    distrib.display()
                ),
            ));
        }
        let code = run_distrib(&distrib, args, xml);
        self.log(
            Level::Info,
            &format!(
                "{who} helper {}: {reason}: handed to {} (exit {code})",
                args.join(" "),
                distrib.display()
            ),
        );
        Ok(Done::Delegated(Outcome {
            code,
            stderr: vec![],
        }))
    }
}

enum Done {
    Text(String, String, Vec<String>),
    Delegated(Outcome),
}

fn run_distrib(distrib: &PathBuf, args: &[String], xml: Option<&[u8]>) -> i32 {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new(distrib)
        .args(args)
        .stdin(if xml.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "virt-aa-helper: error: cannot run {}: {e}",
                distrib.display()
            );
            return 1;
        }
    };
    if let (Some(x), Some(mut si)) = (xml, child.stdin.take()) {
        let _ = si.write_all(x);
    }
    match child.wait() {
        Ok(s) => s.code().unwrap_or(1),
        Err(_) => 1,
    }
}

fn is_ours(path: &Path, marker: &str) -> bool {
    lifecycle::starts_with_marker(path, marker)
}

fn read_text(p: &Path) -> Result<Option<String>, String> {
    store::read_capped(p)
        .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| e.to_string())
}

fn fail(msg: String) -> Outcome {
    Outcome {
        code: 1,
        stderr: vec![msg],
    }
}

fn ms(t0: Instant) -> String {
    format!("{:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
}

/// `virt-aa-helper -h`.
pub fn usage() -> &'static str {
    "virt-aa-helper (virt-aa-hook helper mode) mode [options] [extra file] [< def.xml]\n\
     \n  Modes: -a|--add  load profile\n         -c|--create  create profile\n\
     \x20        -D|--delete  unload profile and delete generated rules\n\
     \x20        -r|--replace  reload profile\n         -R|--remove  unload profile\n\
     \x20 Options: -d|--dryrun, -u|--uuid libvirt-<uuid>, -h|--help\n\
     \x20 Extra file: -f|--add-file FILE, -F|--append-file FILE\n\
     \nThis command is intended to be used by libvirtd and not used directly."
}

/// Entry point for the binary when run as `virt-aa-helper` (or `virt-aa-hook helper -- ARGS`).
pub fn main(args: &[String]) -> i32 {
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virt-aa-helper: error: {e}");
            return 1;
        }
    };
    let h = Helper::new(cfg);
    let out = h.run(args, &mut std::io::stdin().lock());
    for e in &out.stderr {
        eprintln!("virt-aa-helper: error: {}", crate::log::one_line(e));
    }
    out.code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }
    const P: &str = "libvirt-1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    #[test]
    fn libvirt_argv_forms() {
        // load_profile at start: -c when the main file is missing, else -r.
        assert_eq!(
            plan(&a(&format!("-c -u {P}"))).unwrap(),
            Plan::Generate {
                profile: P.into(),
                file: None,
                dry_run: false,
                create: true
            }
        );
        // reload_profile at relabel: -r -F FILE.
        let p = plan(&a(&format!("-r -u {P} -F /var/lib/libvirt/images/a.qcow2"))).unwrap();
        assert_eq!(
            p,
            Plan::Generate {
                profile: P.into(),
                file: Some(ExtraFile {
                    path: "/var/lib/libvirt/images/a.qcow2".into(),
                    append: true
                }),
                dry_run: false,
                create: false
            }
        );
        assert!(p.reads_stdin());
        // remove_profile at stop.
        let d = plan(&a(&format!("-D -u {P}"))).unwrap();
        assert_eq!(
            d,
            Plan::Unload {
                profile: P.into(),
                delete: true
            }
        );
        assert!(!d.reads_stdin());
        // Old libvirt: -p 0|1 first; -R at stop.
        assert!(matches!(
            plan(&a(&format!("-p 0 -r -u {P} -f /x/y.img"))).unwrap(),
            Plan::Generate {
                file: Some(ExtraFile { append: false, .. }),
                ..
            }
        ));
        assert_eq!(
            plan(&a(&format!("-R -u {P}"))).unwrap(),
            Plan::Unload {
                profile: P.into(),
                delete: false
            }
        );
        assert_eq!(
            plan(&a(&format!("-a -u {P}"))).unwrap(),
            Plan::Load { profile: P.into() }
        );
        // Inline values, long forms, clustered flags, help.
        assert!(matches!(
            plan(&a(&format!("-dr -u{P} --append-file=/a/b"))).unwrap(),
            Plan::Generate {
                dry_run: true,
                file: Some(_),
                ..
            }
        ));
        assert_eq!(plan(&a("-h")).unwrap(), Plan::Usage);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for bad in [
            "-r".to_string(),
            format!("-u {P}"),
            "-r -u libvirt-1B4E28BA-2FA1-11D2-883F-0016D3CCA427".into(),
            "-r -u libvirt-../../etc/passwd".into(),
            "-r -u 1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            format!("-r -u {P} -F relative/path"),
            format!("-r -u {P} -F"),
            format!("-x -u {P}"),
            format!("-r -u {P} extra"),
        ] {
            assert!(plan(&a(&bad)).is_err(), "{bad}");
        }
    }

    /// A guest with id 3 named `hp`, and a root whose per-domain directory exists.
    fn subtree_guest() -> (tempfile::TempDir, Config, Domain, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: d.path().to_path_buf(),
            ..Config::default()
        };
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
        let pieces = [
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
            "\\",
            "^",
            " ",
            "x",
            "domain-3-hp",
            "\u{1b}",
            "\t",
            "é",
            "rwk,",
            "\" rwk,\n  /etc/** rw,",
        ];
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

    #[test]
    fn installed_only_when_the_helper_path_links_to_us() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: d.path().to_path_buf(),
            ..Config::default()
        };
        assert!(!installed(&cfg));
        let dir = d.path().join("usr/lib/libvirt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("virt-aa-helper"), b"elf").unwrap();
        assert!(!installed(&cfg));
        std::fs::remove_file(dir.join("virt-aa-helper")).unwrap();
        std::os::unix::fs::symlink("virt-aa-hook", dir.join("virt-aa-helper")).unwrap();
        assert!(installed(&cfg));
    }
}
