//! One libvirt qemu hook event: `qemu <domain> <op> <sub-op> <extra>`, domain XML on stdin.
//!
//! What each event does (see README "How it works"):
//! - `prepare begin`: generate, compile-check, write; load it ourselves in standalone mode
//!   (libvirt loads it in libvirt mode). Failure stops the start. In helper mode only generate
//!   (the host policy decides here, where libvirt shows our reason); the helper writes and
//!   loads right after.
//! - `migrate begin` (destination of an incoming migration), `restore begin`: generate and
//!   compile-check, write nothing. Failure stops the migration or restore before libvirt does
//!   anything else. Nothing is written because libvirt can still abort between this event and
//!   `prepare` (e.g. a `--copy-storage-all` whose destination image is missing), and then no
//!   `release` event follows on this host: a file written here would stay behind. `prepare`
//!   always follows before QEMU starts and writes the profile (measured: tests/e2e/migrate.sh).
//! - `start begin`: regenerate from the now complete XML; rewrite and reload only if changed.
//! - `started begin`: check the profile is in place (fatal only if configured: it kills the guest).
//! - `stopped end`: log.
//! - `release end`: unload, remove our file; keep the admin's local rules.
//! - `reconnect begin`: make sure the file exists and is loaded; always succeeds (a failure would
//!   make libvirt kill the running guest).
//!
//! The hook never writes to stdout (libvirt parses it as XML for migrate/restore) and never
//! calls libvirt.

use crate::apparmorfs::Kernel;
use crate::caps::{self, Caps};
use crate::config::Config;
use crate::derive;
use crate::domain::Domain;
use crate::lifecycle::{InstallRequest, LifecycleError, Profiles, Report};
use crate::log::{Level, Log};
use crate::mode::{self, HostKey};
use crate::profile::Mode;
use crate::store::GuestLock;
use std::io::Read;
use std::time::{Duration, Instant};

/// What the event asks of us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Generate and install (prepare, start).
    Install { load_in_libvirt_mode: bool },
    /// Generate and compile-check, write nothing (migrate, restore: `prepare` follows).
    Check,
    /// Check the profile is in place (started).
    Verify,
    /// Only log (stopped, unknown events).
    LogOnly,
    /// Unload and remove (release).
    Remove,
    /// Make sure it exists and is loaded, never fail (reconnect).
    Ensure,
}

impl Action {
    /// Events whose failure must not reach libvirt as an error: a failing `reconnect` makes
    /// libvirt kill the running guest, and `stopped`/`release` come too late to stop anything.
    /// The one rule for the exit status, also with a broken configuration.
    pub fn never_fails(self) -> bool {
        matches!(self, Action::Ensure | Action::Remove | Action::LogOnly)
    }

    /// One word for logs and journald's `VAH_ACTION`.
    pub fn word(self) -> &'static str {
        match self {
            Action::Install { .. } => "install",
            Action::Check => "check",
            Action::Verify => "verify",
            Action::LogOnly => "log",
            Action::Remove => "remove",
            Action::Ensure => "ensure",
        }
    }
}

/// Map `<op> <sub-op>` to an action.
pub fn action_for(op: &str, sub: &str) -> Action {
    match (op, sub) {
        ("prepare", "begin") => Action::Install {
            load_in_libvirt_mode: false,
        },
        ("migrate" | "restore", "begin") => Action::Check,
        ("start", "begin") => Action::Install {
            load_in_libvirt_mode: true,
        },
        ("started", "begin") => Action::Verify,
        ("release", "end") => Action::Remove,
        ("reconnect", "begin") => Action::Ensure,
        _ => Action::LogOnly,
    }
}

/// The hook's environment: configuration, kernel view, log, cached capabilities and the host
/// facts the cache is checked against.
pub struct Hook {
    pub cfg: Config,
    pub kernel: Kernel,
    pub log: Log,
    pub caps: Option<Caps>,
    pub host_key: HostKey,
}

/// Result of one event: exit status and, on failure, the one line for libvirt's error.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stderr: Option<String>,
}

impl Outcome {
    fn ok() -> Self {
        Outcome {
            code: 0,
            stderr: None,
        }
    }
    fn fail(msg: String) -> Self {
        Outcome {
            code: 1,
            stderr: Some(msg),
        }
    }
}

impl Hook {
    /// Set up from a configuration (reads the capability cache and the host key, nothing else).
    pub fn new(cfg: Config) -> Hook {
        let kernel = Kernel::from_config(&cfg);
        let log = Log::new(cfg.rooted(&cfg.log_file));
        let caps = Caps::load(&cfg.caps_path());
        let host_key = HostKey::current(&cfg.root);
        Hook {
            cfg,
            kernel,
            log,
            caps,
            host_key,
        }
    }

    /// Which mode applies on this host, and why (see [`crate::mode`]).
    pub fn mode(&self) -> (Mode, String) {
        let c = mode::choose(&self.cfg, self.caps.as_ref(), &self.host_key);
        (c.mode, c.why)
    }

    /// The profile owner for this configuration.
    pub fn profiles(&self) -> Profiles<'_> {
        Profiles::new(&self.cfg)
    }

    /// Run one event. `args` are the hook's arguments after the program name.
    pub fn run(&self, args: &[String], stdin: &mut dyn Read) -> Outcome {
        let t0 = Instant::now();
        let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("-");
        let (dname, op, sub) = (get(0), get(1), get(2));
        // libvirt ≥ 10.5 passes the shut-off reason as the release hook's 4th argument (one
        // argv element that may hold spaces: "from snapshot"); logged quoted, so it stays one
        // token and a control character cannot split the log line. Otherwise it is "-".
        let event = match args.get(3).map(String::as_str) {
            Some(reason) if op == "release" && reason != "-" => {
                format!("{op}/{sub} reason={reason:?}")
            }
            _ => format!("{op}/{sub}"),
        };
        let action = action_for(op, sub);
        let never_fail = action.never_fails();
        self.maybe_refresh_caps();

        let mut xml = Vec::new();
        let read = stdin
            .take(crate::xml::MAX_XML_BYTES as u64 + 1)
            .read_to_end(&mut xml);
        let dom = match read {
            Err(e) => Err(format!("cannot read domain XML on stdin: {e}")),
            Ok(_) => Domain::parse(&xml).map_err(|e| e.to_string()),
        };
        let dom = match dom {
            Ok(d) => d,
            Err(e) => {
                let msg = format!("[{dname}] {event}: invalid domain XML: {e}");
                self.journal(None, &event, action, "failed", Level::Error, &msg, t0);
                if never_fail {
                    self.log.line(Level::Error, &msg);
                    return Outcome::ok();
                }
                self.log.line(Level::Error, &msg);
                return Outcome::fail(format!("virt-aa-hook: {e}"));
            }
        };
        let who = format!("[{} {}] {event}", dom.name, dom.uuid.hyphenated());
        let (mode, _) = self.mode();

        if let Some(reason) = self.skip_reason(&dom) {
            // A stale file of ours would make libvirt reload it instead of generating its own.
            let mut note = String::new();
            if matches!(action, Action::Install { .. } | Action::Remove) {
                if let Ok(true) = self.profiles().remove_if_ours(&dom.profile_name()) {
                    note = "; removed our old profile file".into();
                }
            }
            let msg = format!("{who}: skipped: {reason}{note} ({})", ms(t0));
            self.log.line(Level::Info, &msg);
            self.journal(Some(&dom), &event, action, "skipped", Level::Info, &msg, t0);
            return Outcome::ok();
        }

        let lock = GuestLock::acquire(
            &self.cfg.rooted(&self.cfg.state_dir).join("locks"),
            &dom.uuid.hyphenated().to_string(),
            Duration::from_secs(self.cfg.lock_timeout),
        );
        let _lock = match lock {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("{who} mode={mode}: {e}");
                self.log.line(Level::Error, &msg);
                self.journal(Some(&dom), &event, action, "failed", Level::Error, &msg, t0);
                return if never_fail {
                    Outcome::ok()
                } else {
                    Outcome::fail(format!("virt-aa-hook: {e}"))
                };
            }
        };

        let result = match action {
            // Helper mode: libvirt's AppArmor driver runs our helper (GenSecurityLabel, right
            // after this event) which writes and loads the profile; compiling here too would
            // double the cost of a start for nothing. But the definition is generated and
            // policed here all the same: libvirt shows a failing hook's stderr in `virsh
            // start`'s error, while a failing helper only shows as "cannot load AppArmor
            // profile", so a refusal must happen here to reach the admin.
            Action::Install {
                load_in_libvirt_mode: false,
            }
            | Action::Check
                if mode == Mode::Libvirt && crate::helper::installed(&self.cfg) =>
            {
                self.validate(&dom, mode).map(|mut r| {
                    r.text.push_str(
                        "; helper mode: libvirt's AppArmor driver has our helper write and load it",
                    );
                    r
                })
            }
            Action::Check => self.check(&dom, mode),
            Action::Install {
                load_in_libvirt_mode,
            } => {
                let load = mode == Mode::Standalone || load_in_libvirt_mode;
                self.install(&dom, mode, load)
            }
            Action::Ensure => self.install(&dom, mode, true),
            Action::Verify => self.verify(&dom),
            Action::Remove => self.remove(&dom, mode),
            Action::LogOnly => Ok(Report::text("nothing to do")),
        };
        match result {
            Ok(r) => {
                for w in &r.warnings {
                    self.log.line(Level::Warn, &format!("{who}: {w}"));
                }
                if let Some(emu) = &dom.emulator {
                    if let Some(c) = &self.caps {
                        if !c.emulators.is_empty()
                            && !c.emulators.contains(emu)
                            && !crate::layout::is_wrapper_path(emu)
                            && matches!(action, Action::Install { .. })
                        {
                            self.log.line(
                                Level::Warn,
                                &format!("{who}: emulator {emu} is not one libvirt reports"),
                            );
                        }
                    }
                }
                let msg = format!("{who} mode={mode}: {} ({})", r.text, ms(t0));
                self.log.line(Level::Info, &msg);
                self.journal(Some(&dom), &event, action, "ok", Level::Info, &msg, t0);
                Outcome::ok()
            }
            Err(e) => {
                let level = Level::Error;
                let msg = format!("{who} mode={mode}: FAILED: {e} ({})", ms(t0));
                self.log.line(level, &msg);
                self.journal(Some(&dom), &event, action, "failed", level, &msg, t0);
                let fatal = match action {
                    Action::Verify => self.cfg.fail_on_started,
                    _ => !never_fail,
                };
                if fatal {
                    Outcome::fail(format!("virt-aa-hook: {e}"))
                } else {
                    if action == Action::Ensure {
                        eprintln!("virt-aa-hook: {e} (guest left running)");
                    }
                    Outcome::ok()
                }
            }
        }
    }

    /// The structured twin of a log line, for journald (see [`crate::journal`]): guest name
    /// and UUID, event, action, result and duration as fields. Off with `journal = false`.
    #[allow(clippy::too_many_arguments)]
    fn journal(
        &self,
        dom: Option<&Domain>,
        event: &str,
        action: Action,
        result: &str,
        level: Level,
        msg: &str,
        t0: Instant,
    ) {
        if !self.cfg.journal {
            return;
        }
        let socket = self
            .cfg
            .rooted(std::path::Path::new(crate::layout::JOURNAL_SOCKET));
        let dur = format!("{:.1}", t0.elapsed().as_secs_f64() * 1000.0);
        let (name, uuid) = dom
            .map(|d| (d.name.clone(), d.uuid.hyphenated().to_string()))
            .unwrap_or_default();
        crate::journal::send(
            &socket,
            &[
                ("MESSAGE", &crate::log::one_line(msg)),
                ("PRIORITY", crate::journal::priority(level)),
                ("SYSLOG_IDENTIFIER", crate::journal::IDENTIFIER),
                ("VAH_GUEST_NAME", &name),
                ("VAH_GUEST_UUID", &uuid),
                ("VAH_EVENT", event),
                ("VAH_ACTION", action.word()),
                ("VAH_RESULT", result),
                ("VAH_DURATION_MS", &dur),
            ],
        );
    }

    /// Start a detached refresh of the capability cache when it is missing, old, or written
    /// under other host facts (a reboot, a qemu.conf edit, a daemon restart).
    fn maybe_refresh_caps(&self) {
        let stale = match &self.caps {
            None => true,
            Some(c) => c.needs_refresh(Duration::from_secs(self.cfg.caps_max_age), &self.host_key),
        };
        if !stale {
            return;
        }
        let admin = caps::admin_binary();
        if admin.exists() {
            let cfg = std::env::var_os("VIRT_AA_HOOK_CONFIG").map(std::path::PathBuf::from);
            let _ = caps::spawn_detached_refresh(&admin, cfg.as_deref());
        }
    }

    /// Guests we must not touch.
    pub fn skip_reason(&self, dom: &Domain) -> Option<String> {
        if !dom.is_qemu() {
            return Some(format!("not a QEMU guest (type='{}')", dom.virt_type));
        }
        if self.cfg.allow_opt_out && dom.settings.opt_out {
            return Some("opted out in its metadata (manage=\"no\")".into());
        }
        for s in &dom.seclabels {
            let aa_or_all = s.model.is_none() || s.model.as_deref() == Some("apparmor");
            if s.kind.as_deref() == Some("none") && aa_or_all {
                return Some("<seclabel type='none'>".into());
            }
            if s.model.as_deref() == Some("apparmor") && s.kind.as_deref() == Some("static") {
                let ours = s.label.as_deref() == Some(dom.profile_name().as_str());
                if !ours {
                    return Some(format!(
                        "static AppArmor label {:?} is not ours",
                        s.label.as_deref().unwrap_or("")
                    ));
                }
            }
        }
        None
    }

    /// Derivation options from config and capability cache.
    pub fn derive_options(&self) -> derive::Options {
        derive::Options {
            probe_backing: self.cfg.probe_backing,
            firmware: self
                .caps
                .as_ref()
                .map(|c| c.firmware.clone())
                .unwrap_or_default(),
            image_dirs: self.cfg.image_dirs.clone(),
            libvirt_root: self.cfg.root.clone(),
            emulator_dir: self.cfg.emulator_dir.clone(),
            policy: std::sync::Arc::new(crate::paths::HostPolicy::new(&self.cfg)),
            ..Default::default()
        }
    }

    fn install(&self, dom: &Domain, mode: Mode, load: bool) -> Result<Report, LifecycleError> {
        let opts = self.derive_options();
        self.profiles().install(&InstallRequest {
            domain: dom,
            mode,
            load,
            derive: &opts,
        })
    }

    fn validate(&self, dom: &Domain, mode: Mode) -> Result<Report, LifecycleError> {
        let opts = self.derive_options();
        self.profiles().validate(&InstallRequest {
            domain: dom,
            mode,
            load: false,
            derive: &opts,
        })
    }

    fn check(&self, dom: &Domain, mode: Mode) -> Result<Report, LifecycleError> {
        let opts = self.derive_options();
        self.profiles().check(&InstallRequest {
            domain: dom,
            mode,
            load: false,
            derive: &opts,
        })
    }

    fn verify(&self, dom: &Domain) -> Result<Report, LifecycleError> {
        let name = dom.profile_name();
        let text = match self.profiles().verify(&name)? {
            Some(m) => {
                let q = self.qemu_label(dom);
                if q.contains("NOT in its profile") {
                    let mut r = Report::text(format!("{name} loaded ({m}){q}"));
                    r.warnings
                        .push(format!("QEMU is not confined by {name}{q}"));
                    return Ok(r);
                }
                format!("{name} loaded ({m}){q}")
            }
            None => format!("{name} in place (kernel has no AppArmor)"),
        };
        Ok(Report::text(text))
    }

    /// What QEMU really runs under (`/proc/<pid>/attr/current`; the pid from libvirt's pid file
    /// `/run/libvirt/qemu/<name>.pid`, which QEMU has written by `started`): a profile that is
    /// loaded does not prove QEMU is in it (standalone mode needs the wrapper).
    fn qemu_label(&self, dom: &Domain) -> String {
        let pidfile = self
            .cfg
            .rooted(std::path::Path::new(crate::layout::QEMU_STATUS_DIR))
            .join(format!("{}.pid", dom.name));
        let pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let Some(pid) = pid else {
            return "; QEMU's pid unknown".into();
        };
        match self.kernel.process_label(pid) {
            Some(l) if l.starts_with(&dom.profile_name()) => {
                format!("; QEMU (pid {pid}) runs confined: {l}")
            }
            Some(l) => format!("; QEMU (pid {pid}) is NOT in its profile: runs {l}"),
            None => format!("; QEMU (pid {pid}) label unreadable"),
        }
    }

    fn remove(&self, dom: &Domain, mode: Mode) -> Result<Report, LifecycleError> {
        self.profiles()
            .remove(&dom.profile_name(), mode == Mode::Standalone)
    }
}

fn ms(t0: Instant) -> String {
    format!("{:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
}

/// Entry point for the binary: read stdin, run, print the failure line, return the exit code.
pub fn main(args: &[String]) -> i32 {
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // The same exit-status rule as every other failure: a broken config must not kill a
            // running guest (`reconnect`) nor fail an event that only logs (`started` is
            // fatal only when configured so, which a broken config cannot say).
            eprintln!("virt-aa-hook: {e}");
            let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
            let action = action_for(get(1), get(2));
            return if action.never_fails() || action == Action::Verify {
                0
            } else {
                1
            };
        }
    };
    let hook = Hook::new(cfg);
    let out = hook.run(args, &mut std::io::stdin().lock());
    if let Some(e) = &out.stderr {
        eprintln!("{}", crate::log::one_line(e));
    }
    out.code
}
