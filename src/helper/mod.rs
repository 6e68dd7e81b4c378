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
//!   stderr and puts it in `"Child process (…) unexpected exit status 1: <stderr>"`, then
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

mod args;
mod delegate;
mod extras;

pub use args::{ArgError, Args, Command, ExtraFile, Plan, parse_args, plan, valid_profile_name};
pub use extras::{
    ArgvRules, EXTRAS_PATH_PIECES, FILES_MARKER, Subtrees, check_extras_argv, parse_extras,
    render_extras,
};

use crate::config::Config;
use crate::domain::{Domain, DomainError};
use crate::generate::GenerateError;
use crate::host::{self, Host};
use crate::lifecycle::{self, LifecycleError};
use crate::log::{Level, elapsed_ms};
use crate::profile::Mode;
use crate::rules::GrantError;
use crate::store::GuestLock;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

/// Where libvirt runs its helper on Debian and Ubuntu (`LIBEXECDIR "/virt-aa-helper"`).
pub const HELPER_PATH: &str = crate::layout::LIBVIRT_HELPER;
/// Where `dpkg-divert --rename` moves the distribution's helper while ours is installed.
pub const DISTRIB_PATH: &str = crate::layout::LIBVIRT_HELPER_DIVERTED;
/// The name we answer to (`argv[0]`'s file name).
pub const HELPER_NAME: &str = "virt-aa-helper";
/// Most extra files kept per guest (libvirt's helper lets `.files` grow without bound).
pub const MAX_EXTRAS: usize = 4096;

/// Why a call failed; printed as `virt-aa-helper: error: <msg>` (libvirt puts it in its
/// error), and logged after the guest's name.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// A command line libvirt would never send.
    #[error("{0}")]
    Args(#[from] ArgError),
    #[error("could not read xml file: {0}")]
    ReadXml(#[source] std::io::Error),
    #[error("invalid VM definition: {source}")]
    InvalidXml {
        profile: String,
        #[source]
        source: Box<DomainError>,
    },
    #[error("given uuid does not match XML uuid")]
    UuidMismatch { profile: String },
    #[error("{source}")]
    Lock {
        profile: String,
        #[source]
        source: std::io::Error,
    },
    #[error("more than {MAX_EXTRAS} files named for this guest; not adding {path}")]
    TooManyFiles { profile: String, path: String },
    /// The domain cannot be confined as defined.
    #[error("{source}")]
    Generate {
        profile: String,
        #[source]
        source: Box<GenerateError>,
    },
    /// The file of this call is refused by the host policy.
    #[error("{source}")]
    Refused {
        profile: String,
        path: String,
        #[source]
        source: Box<GrantError>,
    },
    #[error("{0}")]
    Lifecycle(Box<LifecycleError>),
    #[error("profile does not exist")]
    Missing { profile: String, path: PathBuf },
    /// A guest we do not manage, and no distribution helper to hand it to.
    #[error("{reason}, and libvirt's own helper {} is not there", path.display())]
    NoDistrib { reason: String, path: PathBuf },
}

impl From<LifecycleError> for HelperError {
    fn from(e: LifecycleError) -> Self {
        HelperError::Lifecycle(Box::new(e))
    }
}

/// Result of one call.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stderr: Vec<String>,
}

/// What a call did: a line for the log (and its warnings), or the distribution's helper's exit.
enum Done {
    Text(String, Vec<String>),
    Delegated(Outcome),
}

/// A failed call: who (for the log line) and why.
type Failed = (String, HelperError);

/// The helper: libvirt's call turned into lifecycle operations on the [`Host`].
pub struct Helper {
    pub host: Host,
}

impl Helper {
    pub fn new(cfg: Config) -> Helper {
        Helper {
            host: Host::new(cfg),
        }
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
        let xml = if plan.reads_stdin() {
            match host::read_xml(stdin) {
                Ok(x) => x,
                Err(e) => return fail(HelperError::ReadXml(e).to_string()),
            }
        } else {
            Vec::new()
        };
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
            Ok((_, Done::Delegated(o))) => o,
            Ok((who, Done::Text(text, warnings))) => {
                for w in warnings {
                    self.log(Level::Warn, &format!("{who} helper: {w}"));
                }
                self.log(
                    Level::Info,
                    &format!(
                        "{who} helper {argline} mode=libvirt: {text} ({})",
                        elapsed_ms(t0)
                    ),
                );
                Outcome {
                    code: 0,
                    stderr: vec![],
                }
            }
            Err((who, e)) => {
                self.log(
                    Level::Error,
                    &format!("{who} helper {argline}: FAILED: {e} ({})", elapsed_ms(t0)),
                );
                fail(e.to_string())
            }
        }
    }

    fn log(&self, level: Level, msg: &str) {
        self.host.log.line(level, msg);
    }

    fn lock(&self, profile: &str) -> Result<GuestLock, HelperError> {
        let uuid = profile.trim_start_matches("libvirt-");
        self.host
            .profiles()
            .lock(uuid)
            .map_err(|source| HelperError::Lock {
                profile: profile.to_string(),
                source,
            })
    }

    /// `-c`/`-r` [`-F FILE`]: generate both files and install them in one transaction
    /// ([`lifecycle::Profiles::install_pair`]). `create` (`-c`) starts from no extra files:
    /// libvirt sends it when the main profile does not exist, i.e. at a start, so a `.files`
    /// still there is left from a run that did not stop cleanly (no `-D`) and names nothing
    /// this run labelled.
    fn generate(
        &self,
        args: &[String],
        profile: &str,
        file: Option<&ExtraFile>,
        dry_run: bool,
        create: bool,
        xml: &[u8],
    ) -> Result<(String, Done), Failed> {
        let dom = Domain::parse(xml).map_err(|source| {
            let profile = profile.to_string();
            (
                format!("[{profile}]"),
                HelperError::InvalidXml {
                    profile,
                    source: Box::new(source),
                },
            )
        })?;
        let who = format!("[{} {}]", dom.name, dom.uuid.hyphenated());
        let e = |x: HelperError| (who.clone(), x);
        if dom.profile_name() != profile {
            return Err(e(HelperError::UuidMismatch {
                profile: profile.to_string(),
            }));
        }
        if let Some(reason) = self.host.skip_reason(&dom) {
            return self.delegate(args, Some(xml), who, &reason);
        }
        let _lock = self.lock(profile).map_err(e)?;
        let (main, files, extras, warnings) =
            self.render(&dom, profile, file, create).map_err(e)?;
        let nrules = main.derived.rules.len();
        let profiles = self.host.profiles();
        if dry_run {
            let (main_path, files_path) =
                (profiles.path(profile), self.host.cfg.files_path(profile));
            eprintln!("virt-aa-helper:\n{}\n{}", main_path.display(), main.profile);
            eprintln!("virt-aa-helper:\n{}\n{}", files_path.display(), files);
            let text = "dry run, nothing written".to_string();
            return Ok((who, Done::Text(text, warnings)));
        }
        let r = profiles
            .install_pair(profile, &main.profile, &files)
            .map_err(|x| e(x.into()))?;
        let what = format!(
            "{nrules} rules + {extras} extra file(s){}",
            match (r.main_changed, r.files_changed) {
                (false, false) => ", unchanged",
                (true, false) => ", rewrote profile",
                (false, true) => ", rewrote .files",
                (true, true) => ", rewrote profile and .files",
            }
        );
        Ok((who, Done::Text(format!("{what}, {}", r.state), warnings)))
    }

    /// The main profile and the `.files` text for this call (with the number of extra files
    /// and the warnings met).
    fn render(
        &self,
        dom: &Domain,
        profile: &str,
        file: Option<&ExtraFile>,
        create: bool,
    ) -> Result<(crate::generate::Generated, String, usize, Vec<String>), HelperError> {
        let cfg = &self.host.cfg;
        let profiles = self.host.profiles();
        let old_files = profiles.read_text(profile, &cfg.files_path(profile))?;
        let mut extras = if create {
            Vec::new()
        } else {
            parse_extras(old_files.as_deref().unwrap_or(""))
        };
        if let Some(f) = file {
            if !extras.contains(&f.path) {
                if extras.len() >= MAX_EXTRAS {
                    return Err(HelperError::TooManyFiles {
                        profile: profile.to_string(),
                        path: f.path.clone(),
                    });
                }
                extras.push(f.path.clone());
            }
        }
        let mut warnings = Vec::new();
        let opts = self.host.derive_options();
        let g = profiles
            .render(dom.clone(), Mode::Libvirt, &opts, &mut warnings)
            .map_err(|source| HelperError::Generate {
                profile: profile.to_string(),
                source: Box::new(source),
            })?;
        let (files_text, w) = render_extras(
            &opts.policy,
            &extras,
            file.map(|f| f.path.as_str()),
            Some(&g.derived.rules),
            &Subtrees::for_guest(cfg, dom),
        )
        .map_err(|source| HelperError::Refused {
            profile: profile.to_string(),
            path: file.map(|f| f.path.clone()).unwrap_or_default(),
            source: Box::new(source),
        })?;
        warnings.extend(w);
        Ok((g, files_text, extras.len(), warnings))
    }

    /// `-a`.
    fn load(&self, profile: &str) -> Result<(String, Done), Failed> {
        let who = format!("[{profile}]");
        let e = |x: HelperError| (who.clone(), x);
        let path = self.host.profiles().path(profile);
        if !path.exists() {
            return Err(e(HelperError::Missing {
                profile: profile.to_string(),
                path,
            }));
        }
        let _lock = self.lock(profile).map_err(e)?;
        self.host
            .profiles()
            .load(profile)
            .map_err(|x| e(x.into()))?;
        Ok((who, Done::Text("loaded".into(), vec![])))
    }

    /// `-R` / `-D`.
    fn unload(
        &self,
        args: &[String],
        profile: &str,
        delete: bool,
    ) -> Result<(String, Done), Failed> {
        let who = format!("[{profile}]");
        let main_path = self.host.profiles().path(profile);
        let main_ours = lifecycle::is_ours(&main_path);
        let files_ours =
            lifecycle::starts_with_marker(&self.host.cfg.files_path(profile), FILES_MARKER);
        if !main_ours && !files_ours && main_path.exists() {
            return self.delegate(args, None, who, "profile was not written by virt-aa-hook");
        }
        let _lock = self.lock(profile).map_err(|x| (who.clone(), x))?;
        let r = self
            .host
            .profiles()
            .unload_helper(profile, delete)
            .map_err(|x| (who.clone(), x.into()))?;
        Ok((who, Done::Text(r.text, vec![])))
    }

    /// Hand the call to the distribution's helper (guests we do not manage).
    fn delegate(
        &self,
        args: &[String],
        xml: Option<&[u8]>,
        who: String,
        reason: &str,
    ) -> Result<(String, Done), Failed> {
        match delegate::run(&self.host, args, xml, &who, reason) {
            Ok(o) => Ok((who, Done::Delegated(o))),
            Err(x) => Err((who, x)),
        }
    }
}

fn fail(msg: String) -> Outcome {
    Outcome {
        code: 1,
        stderr: vec![msg],
    }
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
