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

use crate::config::Config;
use crate::domain::Domain;
use crate::host::{self, Host};
use crate::lifecycle::{InstallRequest, LifecycleError, Report};
use crate::log::{Level, elapsed_ms};
use crate::profile::Mode;
use crate::store::GuestLock;
use std::io::Read;
use std::time::Instant;

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

/// One event being answered: the host, what was asked, and when it started (for durations).
struct Event<'a> {
    host: &'a Host,
    /// `op/sub` (and the release reason) for logs and journald.
    event: String,
    action: Action,
    t0: Instant,
}

/// Run one event. `args` are the hook's arguments after the program name.
pub fn run(host: &Host, args: &[String], stdin: &mut dyn Read) -> Outcome {
    let ev = Event::new(host, args);
    host.maybe_refresh_caps();
    let dname = args.first().map(String::as_str).unwrap_or("-");
    let dom = match ev.read_domain(dname, stdin) {
        Ok(d) => d,
        Err(out) => return out,
    };
    let who = format!("[{} {}] {}", dom.name, dom.uuid.hyphenated(), ev.event);
    let (mode, _) = host.mode();
    if let Some(reason) = host.skip_reason(&dom) {
        return ev.skip(&dom, &who, &reason);
    }
    let _lock = match ev.lock(&dom, &who, mode) {
        Ok(l) => l,
        Err(out) => return out,
    };
    let result = ev.act(&dom, mode);
    ev.finish(&dom, &who, mode, result)
}

impl<'a> Event<'a> {
    fn new(host: &'a Host, args: &[String]) -> Event<'a> {
        let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("-");
        let (op, sub) = (get(1), get(2));
        // libvirt ≥ 10.5 passes the shut-off reason as the release hook's 4th argument (one
        // argv element that may hold spaces: "from snapshot"); logged quoted, so it stays one
        // token and a control character cannot split the log line. Otherwise it is "-".
        let event = match args.get(3).map(String::as_str) {
            Some(reason) if op == "release" && reason != "-" => {
                format!("{op}/{sub} reason={reason:?}")
            }
            _ => format!("{op}/{sub}"),
        };
        Event {
            host,
            event,
            action: action_for(op, sub),
            t0: Instant::now(),
        }
    }

    /// The domain XML on stdin; on failure, the outcome to return.
    fn read_domain(&self, dname: &str, stdin: &mut dyn Read) -> Result<Domain, Outcome> {
        let dom = match host::read_xml(stdin) {
            Err(e) => Err(format!("cannot read domain XML on stdin: {e}")),
            Ok(xml) => Domain::parse(&xml).map_err(|e| e.to_string()),
        };
        dom.map_err(|e| {
            let msg = format!("[{dname}] {}: invalid domain XML: {e}", self.event);
            self.journal(None, "failed", Level::Error, &msg);
            self.host.log.line(Level::Error, &msg);
            self.failed(format!("virt-aa-hook: {e}"), !self.action.never_fails())
        })
    }

    /// A guest we leave alone. A stale file of ours would make libvirt reload it instead of
    /// generating its own, so it goes.
    fn skip(&self, dom: &Domain, who: &str, reason: &str) -> Outcome {
        let mut note = String::new();
        if matches!(self.action, Action::Install { .. } | Action::Remove) {
            if let Ok(true) = self.host.profiles().remove_if_ours(&dom.profile_name()) {
                note = "; removed our old profile file".into();
            }
        }
        let msg = format!("{who}: skipped: {reason}{note} ({})", elapsed_ms(self.t0));
        self.host.log.line(Level::Info, &msg);
        self.journal(Some(dom), "skipped", Level::Info, &msg);
        Outcome::ok()
    }

    /// The guest's lock; on failure, the outcome to return.
    fn lock(&self, dom: &Domain, who: &str, mode: Mode) -> Result<GuestLock, Outcome> {
        let uuid = dom.uuid.hyphenated().to_string();
        self.host.profiles().lock(&uuid).map_err(|e| {
            let msg = format!("{who} mode={mode}: {e}");
            self.host.log.line(Level::Error, &msg);
            self.journal(Some(dom), "failed", Level::Error, &msg);
            self.failed(format!("virt-aa-hook: {e}"), !self.action.never_fails())
        })
    }

    /// The lifecycle operation the event asks for.
    fn act(&self, dom: &Domain, mode: Mode) -> Result<Report, LifecycleError> {
        let opts = self.host.derive_options();
        let req = |load| InstallRequest {
            domain: dom,
            mode,
            load,
            derive: &opts,
        };
        let profiles = self.host.profiles();
        match self.action {
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
                if mode == Mode::Libvirt && self.host.helper_installed() =>
            {
                profiles.validate(&req(false)).map(|mut r| {
                    r.text.push_str(
                        "; helper mode: libvirt's AppArmor driver has our helper write and load it",
                    );
                    r
                })
            }
            Action::Check => profiles.check(&req(false)),
            Action::Install {
                load_in_libvirt_mode,
            } => profiles.install(&req(mode == Mode::Standalone || load_in_libvirt_mode)),
            Action::Ensure => profiles.install(&req(true)),
            Action::Verify => self.verify(dom),
            Action::Remove => profiles.remove(&dom.profile_name(), mode == Mode::Standalone),
            Action::LogOnly => Ok(Report::text("nothing to do")),
        }
    }

    /// `started`: the profile is in place and loaded, and QEMU runs under it.
    fn verify(&self, dom: &Domain) -> Result<Report, LifecycleError> {
        let name = dom.profile_name();
        let text = match self.host.profiles().verify(&name)? {
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

    /// What QEMU really runs under ([`host::qemu_process`]): a profile that is loaded
    /// does not prove QEMU is in it (standalone mode needs the wrapper).
    fn qemu_label(&self, dom: &Domain) -> String {
        let Some((pid, label)) = host::qemu_process(&self.host.cfg, &self.host.kernel, &dom.name)
        else {
            return "; QEMU's pid unknown".into();
        };
        match label {
            Some(l) if l.starts_with(&dom.profile_name()) => {
                format!("; QEMU (pid {pid}) runs confined: {l}")
            }
            Some(l) => format!("; QEMU (pid {pid}) is NOT in its profile: runs {l}"),
            None => format!("; QEMU (pid {pid}) label unreadable"),
        }
    }

    /// Log the result and turn it into the exit status.
    fn finish(
        &self,
        dom: &Domain,
        who: &str,
        mode: Mode,
        result: Result<Report, LifecycleError>,
    ) -> Outcome {
        let log = &self.host.log;
        match result {
            Ok(r) => {
                for w in &r.warnings {
                    log.line(Level::Warn, &format!("{who}: {w}"));
                }
                if self.foreign_emulator(dom) {
                    let emu = dom.emulator.as_deref().unwrap_or_default();
                    log.line(
                        Level::Warn,
                        &format!("{who}: emulator {emu} is not one libvirt reports"),
                    );
                }
                let msg = format!("{who} mode={mode}: {} ({})", r.text, elapsed_ms(self.t0));
                log.line(Level::Info, &msg);
                self.journal(Some(dom), "ok", Level::Info, &msg);
                Outcome::ok()
            }
            Err(e) => {
                let msg = format!("{who} mode={mode}: FAILED: {e} ({})", elapsed_ms(self.t0));
                log.line(Level::Error, &msg);
                self.journal(Some(dom), "failed", Level::Error, &msg);
                let fatal = match self.action {
                    Action::Verify => self.host.cfg.fail_on_started,
                    _ => !self.action.never_fails(),
                };
                if !fatal && self.action == Action::Ensure {
                    eprintln!("virt-aa-hook: {e} (guest left running)");
                }
                self.failed(format!("virt-aa-hook: {e}"), fatal)
            }
        }
    }

    /// An install for an emulator the capability cache does not list (and not our wrapper).
    fn foreign_emulator(&self, dom: &Domain) -> bool {
        let (Some(emu), Some(c)) = (&dom.emulator, &self.host.caps) else {
            return false;
        };
        !c.emulators.is_empty()
            && !c.emulators.contains(emu)
            && !crate::layout::is_wrapper_path(emu)
            && matches!(self.action, Action::Install { .. })
    }

    /// The outcome of a failure: reported to libvirt when `fatal`, else exit 0.
    fn failed(&self, line: String, fatal: bool) -> Outcome {
        if fatal {
            Outcome::fail(line)
        } else {
            Outcome::ok()
        }
    }

    /// The structured twin of a log line, for journald (see [`crate::journal`]): guest name
    /// and UUID, event, action, result and duration as fields. Off with `journal = false`.
    fn journal(&self, dom: Option<&Domain>, result: &str, level: Level, msg: &str) {
        if !self.host.cfg.journal {
            return;
        }
        let socket = self
            .host
            .cfg
            .rooted(std::path::Path::new(crate::layout::JOURNAL_SOCKET));
        let dur = format!("{:.1}", self.t0.elapsed().as_secs_f64() * 1000.0);
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
                ("VAH_EVENT", &self.event),
                ("VAH_ACTION", self.action.word()),
                ("VAH_RESULT", result),
                ("VAH_DURATION_MS", &dur),
            ],
        );
    }
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
    let out = run(&Host::new(cfg), args, &mut std::io::stdin().lock());
    if let Some(e) = &out.stderr {
        eprintln!("{}", crate::log::one_line(e));
    }
    out.code
}
