//! One libvirt qemu hook event: `qemu <domain> <op> <sub-op> <extra>`, domain XML on stdin.
//!
//! What each event does (see README "How it works"):
//! - `prepare begin`, `migrate begin`, `restore begin`: generate, compile-check, write; load it
//!   ourselves in standalone mode (libvirt loads it in libvirt mode). Failure stops the start.
//! - `start begin`: regenerate from the now complete XML; rewrite and reload only if changed.
//! - `started begin`: check the profile is in place (fatal only if configured: it kills the guest).
//! - `stopped end`: log.
//! - `release end`: unload, remove our file; keep the admin's local rules.
//! - `reconnect begin`: make sure the file exists and is loaded; always succeeds (a failure would
//!   make libvirt kill the running guest).
//!
//! The hook never writes to stdout (libvirt parses it as XML for migrate/restore) and never
//! calls libvirt.

use crate::aaparser::{Parser, ParserError};
use crate::apparmorfs::Kernel;
use crate::caps::{self, Caps};
use crate::config::{Config, ModeSetting};
use crate::derive;
use crate::domain::Domain;
use crate::generate::{self, GenerateError};
use crate::log::{Level, Log};
use crate::profile::{self, Mode};
use crate::store::{self, GuestLock};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the event asks of us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Generate and install (prepare, migrate, restore, start).
    Install { load_in_libvirt_mode: bool },
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
    /// One word for logs and journald's `VAH_ACTION`.
    pub fn word(self) -> &'static str {
        match self {
            Action::Install { .. } => "install",
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
        ("prepare" | "migrate" | "restore", "begin") => Action::Install {
            load_in_libvirt_mode: false,
        },
        ("start", "begin") => Action::Install {
            load_in_libvirt_mode: true,
        },
        ("started", "begin") => Action::Verify,
        ("release", "end") => Action::Remove,
        ("reconnect", "begin") => Action::Ensure,
        _ => Action::LogOnly,
    }
}

/// The hook's environment: configuration, kernel view, log, parser, cached capabilities.
pub struct Hook {
    pub cfg: Config,
    pub kernel: Kernel,
    pub log: Log,
    pub caps: Option<Caps>,
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
    /// Set up from a configuration (reads the capability cache, nothing else).
    pub fn new(cfg: Config) -> Hook {
        let kernel = Kernel {
            root: cfg.root.clone(),
        };
        let log = Log::new(cfg.rooted(&cfg.log_file));
        let caps = Caps::load(&cfg.caps_path());
        Hook {
            cfg,
            kernel,
            log,
            caps,
        }
    }

    /// Which mode applies on this host, and why.
    pub fn mode(&self) -> (Mode, String) {
        match self.cfg.mode {
            ModeSetting::Libvirt => (Mode::Libvirt, "configured".into()),
            ModeSetting::Standalone => (Mode::Standalone, "configured".into()),
            ModeSetting::Auto => match &self.caps {
                Some(c) if c.apparmor_driver() => {
                    (Mode::Libvirt, "libvirt reports secmodel apparmor".into())
                }
                Some(_) => (
                    Mode::Standalone,
                    "libvirt reports no apparmor secmodel".into(),
                ),
                None => guess_mode(&self.cfg, &self.kernel),
            },
        }
    }

    /// The configured `apparmor_parser` (include dirs, binary cache, timeout).
    pub fn parser(&self) -> Result<Parser, ParserError> {
        Ok(Parser {
            binary: Parser::locate(self.cfg.apparmor_parser.as_deref())?,
            include_dirs: self.cfg.include_dirs(),
            cache_dir: Some(self.cfg.rooted(&self.cfg.state_dir).join("cache")),
            timeout: self.cfg.parser_timeout(),
        })
    }

    /// Run one event. `args` are the hook's arguments after the program name.
    pub fn run(&self, args: &[String], stdin: &mut dyn Read) -> Outcome {
        let t0 = Instant::now();
        let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("-");
        let (dname, op, sub) = (get(0), get(1), get(2));
        let event = format!("{op}/{sub}");
        let action = action_for(op, sub);
        let never_fail = matches!(action, Action::Ensure | Action::Remove | Action::LogOnly);
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
                if let Ok(true) = self.remove_our_file(&dom.profile_name()) {
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
                            && !emu.starts_with(crate::wrapper::WRAPPER_PATH_PREFIX)
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
        let socket = self.cfg.rooted(Path::new(crate::journal::SOCKET));
        let dur = format!("{:.1}", t0.elapsed().as_secs_f64() * 1000.0);
        let (name, uuid) = dom
            .map(|d| (d.name.clone(), d.uuid.hyphenated().to_string()))
            .unwrap_or_default();
        crate::journal::send(
            &socket,
            &[
                ("MESSAGE", msg),
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

    fn maybe_refresh_caps(&self) {
        let stale = match &self.caps {
            None => true,
            Some(c) => c.age() > Duration::from_secs(self.cfg.caps_max_age),
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

    fn template(&self, warnings: &mut Vec<String>) -> String {
        let p = self.cfg.rooted(&self.cfg.template);
        match store::read_capped(&p) {
            Ok(Some(b)) => match String::from_utf8(b) {
                Ok(s) => return s,
                Err(_) => warnings.push(format!(
                    "template {} is not UTF-8; using the built-in template",
                    p.display()
                )),
            },
            Ok(None) => warnings.push(format!(
                "template {} missing; using the built-in template",
                p.display()
            )),
            Err(e) => warnings.push(format!("template: {e}; using the built-in template")),
        }
        profile::DEFAULT_TEMPLATE.to_string()
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
            ..Default::default()
        }
    }

    fn install(&self, dom: &Domain, mode: Mode, load: bool) -> Result<Report, String> {
        let mut warnings = Vec::new();
        let template = self.template(&mut warnings);
        let opts = self.derive_options();
        let g = generate::from_domain(
            dom.clone(),
            &generate::Settings {
                mode,
                default_enforcement: self.cfg.enforcement,
                template: &template,
                derive: &opts,
            },
        )
        .map_err(|e: GenerateError| e.to_string())?;
        warnings.extend(g.derived.warnings.iter().cloned());
        let name = dom.profile_name();
        let path = self.cfg.profile_path(&name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let stale = store::remove_stale_temps(&path);
        if stale > 0 {
            warnings.push(format!(
                "removed {stale} temporary file(s) left by an interrupted run"
            ));
        }
        let old = store::read_capped(&path)
            .map_err(|e| e.to_string())?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let kernel_on = self.kernel.enabled();
        let nrules = g.derived.rules.len();
        let mode_word = format!("{:?}", g.enforcement).to_lowercase();
        let mut text = Vec::new();

        if old.as_deref() == Some(g.profile.as_str()) {
            text.push(format!("{name} unchanged ({nrules} rules, {mode_word})"));
            if kernel_on && load {
                if self.kernel.profile_mode(&name).is_none() {
                    self.parser()
                        .and_then(|p| p.replace(&path, true))
                        .map_err(|e| e.to_string())?;
                    text.push("loaded from cache".into());
                } else {
                    text.push("already loaded".into());
                }
            } else {
                text.push(self.not_loaded_reason(kernel_on, mode));
            }
            return Ok(Report {
                text: text.join(", "),
                warnings,
            });
        }

        let (added, removed) = generate::rule_diff(old.as_deref().unwrap_or(""), &g.profile);
        let staged = store::Staged::write(&path, g.profile.as_bytes())
            .map_err(|e| format!("cannot write profile: {e}"))?;
        match self.parser() {
            Ok(p) => {
                if kernel_on && load {
                    p.replace(staged.path(), false).map_err(|e| e.to_string())?;
                } else {
                    p.check(staged.path()).map_err(|e| e.to_string())?;
                }
            }
            Err(e) if !kernel_on => {
                warnings.push(format!("{e}; profile written without a compile check"))
            }
            Err(e) => return Err(e.to_string()),
        }
        staged
            .commit()
            .map_err(|e| format!("cannot replace profile: {e}"))?;
        text.push(format!(
            "{} {name}: {nrules} rules, {mode_word} (+{} -{}{})",
            if old.is_some() { "rewrote" } else { "wrote" },
            added.len(),
            removed.len(),
            if old.is_some() {
                summarize(&added, &removed)
            } else {
                String::new()
            }
        ));
        if kernel_on && load {
            text.push("loaded".into());
        } else {
            text.push("compile ok".into());
            text.push(self.not_loaded_reason(kernel_on, mode));
        }
        Ok(Report {
            text: text.join(", "),
            warnings,
        })
    }

    fn not_loaded_reason(&self, kernel_on: bool, mode: Mode) -> String {
        if !kernel_on {
            match self.kernel.status() {
                crate::apparmorfs::Status::Disabled(why) => format!("not loaded: {why}"),
                crate::apparmorfs::Status::Enabled => "not loaded".into(),
            }
        } else if mode == Mode::Libvirt {
            "libvirt loads it".into()
        } else {
            "not loaded".into()
        }
    }

    fn verify(&self, dom: &Domain) -> Result<Report, String> {
        let name = dom.profile_name();
        if !self.cfg.profile_path(&name).exists() {
            return Err(format!("profile file of {name} is missing"));
        }
        if self.kernel.enabled() {
            match self.kernel.profile_mode(&name) {
                Some(m) => Ok(Report::text(&format!("{name} loaded ({m})"))),
                None => Err(format!("{name} is not loaded")),
            }
        } else {
            Ok(Report::text(&format!(
                "{name} in place (kernel has no AppArmor)"
            )))
        }
    }

    fn remove(&self, dom: &Domain, mode: Mode) -> Result<Report, String> {
        let name = dom.profile_name();
        let path = self.cfg.profile_path(&name);
        let mut text = Vec::new();
        if self.kernel.enabled() {
            if self.kernel.profile_mode(&name).is_some() {
                self.unload(&name, &path)?;
                text.push(format!("unloaded {name}"));
            } else {
                text.push(format!("{name} was not loaded"));
            }
        }
        match self.remove_our_file(&name) {
            Ok(true) => text.push(format!("removed {}", path.display())),
            Ok(false) => text.push("no profile file of ours to remove".into()),
            Err(e) => return Err(e),
        }
        if mode == Mode::Standalone {
            let _ = store::remove_if_exists(&self.cfg.files_path(&name));
        }
        text.push("kept local rules".into());
        Ok(Report::text(&text.join(", ")))
    }

    fn unload(&self, name: &str, path: &Path) -> Result<(), String> {
        if path.exists() {
            self.parser()
                .and_then(|p| p.remove(path))
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            // No file to hand the parser: use the kernel interface directly.
            let rm = self.cfg.root.join("sys/kernel/security/apparmor/.remove");
            std::fs::write(&rm, name.as_bytes()).map_err(|e| format!("{}: {e}", rm.display()))
        }
    }

    /// Remove the main profile file if we wrote it (never a file libvirt or the admin made).
    fn remove_our_file(&self, name: &str) -> Result<bool, String> {
        let path = self.cfg.profile_path(name);
        match store::read_capped(&path) {
            Ok(Some(b)) if b.starts_with(profile::MARKER.as_bytes()) => {
                store::remove_if_exists(&path).map_err(|e| e.to_string())
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What an action did, for the log line.
struct Report {
    text: String,
    warnings: Vec<String>,
}

impl Report {
    fn text(s: &str) -> Report {
        Report {
            text: s.to_string(),
            warnings: Vec::new(),
        }
    }
}

fn ms(t0: Instant) -> String {
    format!("{:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
}

fn summarize(added: &[String], removed: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for a in added.iter().take(3) {
        parts.push(format!("+{}", a.trim_end_matches(',')));
    }
    for r in removed.iter().take(3) {
        parts.push(format!("-{}", r.trim_end_matches(',')));
    }
    if added.len() + removed.len() > parts.len() {
        parts.push("...".into());
    }
    if parts.is_empty() || added.len() + removed.len() > 20 {
        String::new()
    } else {
        format!(": {}", parts.join(" "))
    }
}

/// Without a capability cache: libvirt's AppArmor driver is active when the kernel has AppArmor,
/// the daemon's profile is loaded and qemu.conf does not turn the driver off.
pub fn guess_mode(cfg: &Config, kernel: &Kernel) -> (Mode, String) {
    let qemu_conf = std::fs::read_to_string(cfg.rooted(Path::new("/etc/libvirt/qemu.conf")))
        .unwrap_or_default();
    let driver_line = qemu_conf
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("security_driver"))
        .unwrap_or("");
    if driver_line.contains("\"none\"")
        || (!driver_line.is_empty() && !driver_line.contains("apparmor"))
    {
        return (
            Mode::Standalone,
            "qemu.conf sets another security_driver (no cache)".into(),
        );
    }
    if !kernel.enabled() {
        // libvirt's AppArmor driver cannot be active without AppArmor in the kernel.
        return (
            Mode::Standalone,
            "no capability cache; kernel has no AppArmor".into(),
        );
    }
    let daemon_confined = kernel
        .loaded()
        .iter()
        .any(|(n, _)| n == "libvirtd" || n == "virtqemud" || n == "/usr/sbin/libvirtd");
    if daemon_confined {
        (
            Mode::Libvirt,
            "no capability cache; libvirtd profile loaded".into(),
        )
    } else {
        (
            Mode::Standalone,
            "no capability cache; libvirtd runs unconfined".into(),
        )
    }
}

/// Entry point for the binary: read stdin, run, print the failure line, return the exit code.
pub fn main(args: &[String]) -> i32 {
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // Still honour the reconnect/release contract with a broken config.
            eprintln!("virt-aa-hook: {e}");
            let op = args.get(1).map(String::as_str).unwrap_or("");
            return if matches!(op, "reconnect" | "release" | "stopped") {
                0
            } else {
                1
            };
        }
    };
    let hook = Hook::new(cfg);
    let out = hook.run(args, &mut std::io::stdin().lock());
    if let Some(e) = &out.stderr {
        eprintln!("{e}");
    }
    out.code
}
