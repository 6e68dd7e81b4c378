//! `doctor`: one screen that says whether guests on this host get confined, and if not, why and
//! what to do. One line per check: `✓` passed, `✗` failed (with a fix), `!` warning, `-` not
//! checked (with the reason: a check we could not perform never passes silently).

use super::conn::{self, GuestInfo, Libvirt, LvError};
use anyhow::Result;
use std::path::{Path, PathBuf};
use virt::connect::Connect;
use virt_aa_hook::aaparser::Parser;
use virt_aa_hook::apparmorfs::{Kernel, Status as KStatus};
use virt_aa_hook::caps::Caps;
use virt_aa_hook::config::Config;
use virt_aa_hook::host::Host;
use virt_aa_hook::layout::{self, LIBEXEC_DIR};
use virt_aa_hook::profile::{self, Mode};

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pass,
    Fail,
    Warn,
    NotChecked,
}

impl State {
    fn symbol(self) -> &'static str {
        match self {
            State::Pass => "✓",
            State::Fail => "✗",
            State::Warn => "!",
            State::NotChecked => "-",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Passed, failed, warning, not checked.
    pub state: State,
    /// What was checked.
    pub title: String,
    /// What was found.
    pub detail: String,
    /// How to fix it (failures and warnings).
    pub hint: Option<String>,
}

fn check(state: State, title: &str, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        state,
        title: title.to_string(),
        detail: detail.into(),
        hint: hint.map(str::to_string),
    }
}

/// The report text.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!("{} {}: {}\n", c.state.symbol(), c.title, c.detail));
        if let Some(h) = &c.hint {
            if matches!(c.state, State::Fail | State::Warn) {
                s.push_str(&format!("    fix: {h}\n"));
            }
        }
    }
    let (f, w) = (
        checks.iter().filter(|c| c.state == State::Fail).count(),
        checks.iter().filter(|c| c.state == State::Warn).count(),
    );
    s.push_str(&format!("{f} failed, {w} warning(s)\n"));
    s
}

/// What libvirt said, gathered over one connection.
pub struct LibvirtFacts {
    /// `lib_version()` of the daemon.
    pub daemon_version: String,
    /// Live security models (decides libvirt vs standalone mode).
    pub secmodels: Vec<String>,
    /// Defined guests (for the enrollment check).
    pub guests: Vec<GuestInfo>,
}

fn gather(c: &Connect) -> anyhow::Result<LibvirtFacts> {
    let v = c.lib_version()?;
    let caps = c.capabilities()?;
    let host = super::caps::parse_capabilities(&caps)?;
    Ok(LibvirtFacts {
        daemon_version: conn::version_string(v),
        secmodels: host.secmodels,
        guests: conn::list_guests(c)?,
    })
}

/// How a hook entry in `/etc/libvirt/hooks` looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookEntry {
    /// Symlink resolving to our binary in `/usr/lib/libvirt/`: runs unconfined. Good.
    Good(PathBuf),
    /// Symlink to our binary elsewhere: libvirtd's profile does not let it leave the profile.
    Outside(PathBuf),
    /// Symlink whose target is missing.
    Dangling(PathBuf),
    /// A copy of the binary: runs inside libvirtd's profile, which denies apparmor_parser.
    PlainBinary,
    /// A script that mentions virt-aa-hook (a shim).
    Script,
    /// Not ours.
    Foreign,
}

/// Classify one hook entry. `root` maps the host view (`/usr/lib/libvirt`) to the files.
pub fn classify_hook(root: &Path, p: &Path) -> HookEntry {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return HookEntry::Foreign;
    };
    if meta.file_type().is_symlink() {
        let target = match std::fs::canonicalize(p) {
            Ok(t) => t,
            Err(_) => {
                return match std::fs::read_link(p) {
                    Ok(t) if is_our_name(&t) => HookEntry::Dangling(t),
                    _ => HookEntry::Foreign,
                };
            }
        };
        let host = match target.strip_prefix(root) {
            Ok(rel) if root != Path::new("/") => Path::new("/").join(rel),
            _ => target.clone(),
        };
        if !is_our_name(&host) {
            return HookEntry::Foreign;
        }
        return if host.parent() == Some(Path::new(LIBEXEC_DIR)) {
            HookEntry::Good(host)
        } else {
            HookEntry::Outside(host)
        };
    }
    if !meta.is_file() {
        return HookEntry::Foreign;
    }
    let head = read_head(p, 1 << 20);
    if !contains(&head, b"virt-aa-hook") {
        return HookEntry::Foreign;
    }
    if head.starts_with(b"\x7fELF") {
        HookEntry::PlainBinary
    } else {
        HookEntry::Script
    }
}

fn is_our_name(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "virt-aa-hook")
}

fn read_head(p: &Path, max: u64) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(max).read_to_end(&mut v);
    }
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hook_check(cfg: &Config, title: &str) -> Check {
    let hooks = cfg.rooted(Path::new(layout::HOOKS_DIR));
    let mut entries = vec![hooks.join("qemu")];
    if let Ok(rd) = std::fs::read_dir(hooks.join("qemu.d")) {
        let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        entries.extend(v);
    }
    let link_hint = format!(
        "ln -sf {} {} (the package does this; or {} when you have no qemu hook of your \
         own), then reload libvirtd/virtqemud: hooks are found at daemon start and on SIGHUP",
        layout::HOOK_BINARY,
        cfg.rooted(Path::new(layout::HOOK_LINK_D)).display(),
        cfg.rooted(Path::new(layout::HOOK_LINK)).display(),
    );
    let mut good = Vec::new();
    let mut problems: Vec<(State, String)> = Vec::new();
    for e in &entries {
        match classify_hook(&cfg.root, e) {
            HookEntry::Good(t) => good.push(format!("{} -> {}", e.display(), t.display())),
            HookEntry::Outside(t) => problems.push((
                State::Fail,
                format!(
                    "{} -> {}: outside {}, so it runs inside libvirtd's AppArmor profile (denied \
                     apparmor_parser)",
                    e.display(),
                    t.display(),
                    LIBEXEC_DIR
                ),
            )),
            HookEntry::Dangling(t) => problems.push((
                State::Fail,
                format!("{} -> {}: target missing", e.display(), t.display()),
            )),
            HookEntry::PlainBinary => problems.push((
                State::Fail,
                format!(
                    "{} is a plain copy of the binary: it runs inside libvirtd's AppArmor profile, \
                     which denies apparmor_parser and writes to /etc/apparmor.d/libvirt",
                    e.display()
                ),
            )),
            HookEntry::Script => problems.push((
                State::Warn,
                format!(
                    "{} is a script mentioning virt-aa-hook: it works only if it execs {}/virt-aa-hook",
                    e.display(),
                    LIBEXEC_DIR
                ),
            )),
            HookEntry::Foreign => {}
        }
    }
    if let Some((state, what)) = problems
        .iter()
        .find(|(s, _)| *s == State::Fail)
        .or(problems.first())
    {
        return check(*state, title, what.clone(), Some(&link_hint));
    }
    match good.len() {
        0 => check(
            State::Fail,
            title,
            format!(
                "no hook of ours in {}/qemu or {}/qemu.d/",
                hooks.display(),
                hooks.display()
            ),
            Some(&link_hint),
        ),
        1 => check(State::Pass, title, good[0].clone(), None),
        _ => check(
            State::Warn,
            title,
            format!(
                "installed {} times ({}): every event runs it twice",
                good.len(),
                good.join(", ")
            ),
            Some("keep only the entry in qemu.d/"),
        ),
    }
}

fn writable_dir(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".virt-aa-hook-doctor.{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The nearest existing ancestor (the hook creates missing directories).
fn existing_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| a.is_dir())
}

fn dir_check(title: &str, dir: &Path) -> Check {
    if dir.is_dir() {
        return match writable_dir(dir) {
            Ok(()) => check(
                State::Pass,
                title,
                format!("{} writable", dir.display()),
                None,
            ),
            Err(e) => check(
                State::Fail,
                title,
                format!("{}: {e}", dir.display()),
                Some("run as root; check the file system is mounted read-write"),
            ),
        };
    }
    match existing_ancestor(dir).map(|a| (a, writable_dir(a))) {
        Some((_, Ok(()))) => check(
            State::Pass,
            title,
            format!("{} missing; will be created", dir.display()),
            None,
        ),
        Some((a, Err(e))) => check(
            State::Fail,
            title,
            format!(
                "{} missing and {} not writable: {e}",
                dir.display(),
                a.display()
            ),
            Some("run as root, or create the directory"),
        ),
        None => check(
            State::Fail,
            title,
            format!("{} unreachable", dir.display()),
            None,
        ),
    }
}

fn log_check(f: &Facts, title: &str) -> Check {
    let cfg = f.cfg;
    let p = cfg.rooted(&cfg.log_file);
    if p.exists() {
        return match std::fs::OpenOptions::new().append(true).open(&p) {
            Ok(_) => check(State::Pass, title, p.display().to_string(), None),
            Err(e) => check(
                State::Fail,
                title,
                format!("{}: {e}", p.display()),
                Some("the hook runs as root; fix the file's permissions"),
            ),
        };
    }
    let mut c = dir_check(title, p.parent().unwrap_or(Path::new("/")));
    if c.state == State::Pass {
        c.detail = format!("{} (created at first event)", p.display());
    }
    c
}

fn template_check(f: &Facts, title: &str) -> Check {
    let cfg = f.cfg;
    let p = cfg.rooted(&cfg.template);
    match std::fs::read_to_string(&p) {
        Ok(t) => match profile::check_template(&t) {
            Ok(()) => check(State::Pass, title, format!("{} valid", p.display()), None),
            Err(e) => check(
                State::Fail,
                title,
                format!("{}: {e}", p.display()),
                Some(
                    "fix the template (compare with hooks/template.qemu); every guest start fails until then",
                ),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => check(
            State::Warn,
            title,
            format!("{} missing: the built-in template is used", p.display()),
            Some("the virt-aa-hook package installs it there (a conffile)"),
        ),
        Err(e) => check(
            State::Fail,
            title,
            format!("{}: {e}", p.display()),
            Some("the template must be readable UTF-8 text"),
        ),
    }
}

/// The template includes libvirt's `abstractions/libvirt-qemu` and our own
/// `abstractions/virt-aa-hook-qemu`, both "if exists": without either, QEMU gets almost nothing.
fn abstraction_check(f: &Facts, title: &str) -> Check {
    let cfg = f.cfg;
    let find = |name: &str| {
        cfg.include_dirs()
            .into_iter()
            .map(|d| d.join("abstractions").join(name))
            .find(|p| p.is_file())
    };
    let found: Vec<String> = ["libvirt-qemu", "virt-aa-hook-qemu"]
        .iter()
        .filter_map(|n| find(n))
        .map(|p| p.display().to_string())
        .collect();
    if found.is_empty() {
        check(
            State::Fail,
            title,
            "neither abstractions/libvirt-qemu nor abstractions/virt-aa-hook-qemu found; every profile includes them",
            Some(
                "reinstall the virt-aa-hook package (it ships /etc/apparmor.d/abstractions/virt-aa-hook-qemu)",
            ),
        )
    } else {
        check(
            State::Pass,
            title,
            format!("{} present", found.join(", ")),
            None,
        )
    }
}

fn cache_check(f: &Facts, title: &str) -> Check {
    let (cfg, live) = (f.cfg, f.live_models());
    let p = cfg.caps_path();
    match Caps::load(&p) {
        None => check(
            State::Warn,
            title,
            format!(
                "{} missing (or unreadable, or another format version)",
                p.display()
            ),
            Some("virt-aa-hook caps"),
        ),
        Some(c) => {
            let age = c.age().as_secs();
            let age_s = if age < 120 {
                format!("{age} s")
            } else if age < 7200 {
                format!("{} min", age / 60)
            } else {
                format!("{} h", age / 3600)
            };
            if let Some(l) = live {
                if l != c.secmodels.as_slice() {
                    return check(
                        State::Warn,
                        title,
                        format!(
                            "{age_s} old and out of date: cached security models [{}], libvirt now \
                             reports [{}]",
                            c.secmodels.join(", "),
                            l.join(", ")
                        ),
                        Some("virt-aa-hook caps"),
                    );
                }
            }
            if age > cfg.caps_max_age {
                check(
                    State::Warn,
                    title,
                    format!("{age_s} old (refreshed after {} s)", cfg.caps_max_age),
                    Some("virt-aa-hook caps"),
                )
            } else {
                check(
                    State::Pass,
                    title,
                    format!("{age_s} old, libvirt {} at {}", c.daemon_version, c.uri),
                    None,
                )
            }
        }
    }
}

/// What the checks share, found once before the first check runs.
struct Facts<'a> {
    cfg: &'a Config,
    kernel: Kernel,
    kstatus: KStatus,
    /// The libvirt URI asked.
    uri: &'a str,
    /// What libvirt said over one read-only connection, or why it said nothing.
    libvirt: Result<LibvirtFacts, LvError>,
    /// The mode that applies and why ([`Host::mode`]).
    mode: Mode,
    mode_why: String,
}

impl<'a> Facts<'a> {
    fn gather(cfg: &'a Config, lv: &'a Libvirt) -> Facts<'a> {
        let kernel = Kernel::from_config(cfg);
        let kstatus = kernel.status();
        let (mode, mode_why) = Host::new(cfg.clone()).mode();
        Facts {
            cfg,
            kernel,
            kstatus,
            uri: &lv.uri,
            libvirt: lv.read_only().run(gather),
            mode,
            mode_why,
        }
    }

    fn kernel_on(&self) -> bool {
        self.kstatus == KStatus::Enabled
    }

    fn facts(&self) -> Option<&LibvirtFacts> {
        self.libvirt.as_ref().ok()
    }

    /// Why libvirt did not answer (for "not checked" lines).
    fn unreachable_why(&self) -> Option<String> {
        match &self.libvirt {
            Ok(_) => None,
            Err(LvError::Unreachable(_)) => Some("daemon unreachable".to_string()),
            Err(LvError::Failed(_)) => Some("libvirt query failed".to_string()),
        }
    }

    /// libvirt's live security models, when it answered.
    fn live_models(&self) -> Option<&[String]> {
        self.facts().map(|f| f.secmodels.as_slice())
    }

    /// Whether libvirt's AppArmor driver is live (None: libvirt did not answer).
    fn driver_live(&self) -> Option<bool> {
        self.live_models()
            .map(virt_aa_hook::caps::apparmor_driver_in)
    }

    /// `not checked (<why libvirt did not answer>)`.
    fn not_answered(&self) -> String {
        format!(
            "not checked ({})",
            self.unreachable_why().as_deref().unwrap_or("no answer")
        )
    }
}

/// One check: its title (the report line's name) and how it is made.
type CheckFn = fn(&Facts, &str) -> Check;

/// Every check, in report order.
const CHECKS: &[(&str, CheckFn)] = &[
    ("kernel AppArmor", kernel_check),
    ("apparmor_parser", parser_check),
    ("libvirt library", library_check),
    ("libvirt daemon", daemon_check),
    ("security models", secmodels_check),
    ("libvirt daemon confined", daemon_confined_check),
    ("hook installed", |f, title| hook_check(f.cfg, title)),
    ("template", template_check),
    ("QEMU abstraction", abstraction_check),
    ("profile directory writable", profile_dir_check),
    ("log file writable", log_check),
    ("capability cache", cache_check),
    ("mode", mode_check),
    ("day-2 operations", |f, title| {
        day2_check(
            title,
            f.mode,
            virt_aa_hook::host::helper_installed(f.cfg),
            f.cfg.helper_mode,
            f.driver_live(),
        )
    }),
    ("guests enrolled", enrolled_check),
];

/// Run all checks. Pure with respect to output: returns the lines; `run` prints them.
pub fn checks(cfg: &Config, lv: &Libvirt) -> Vec<Check> {
    let f = Facts::gather(cfg, lv);
    CHECKS.iter().map(|(title, c)| c(&f, title)).collect()
}

fn kernel_check(f: &Facts, title: &str) -> Check {
    match &f.kstatus {
        KStatus::Enabled => check(State::Pass, title, "enabled", None),
        KStatus::Disabled(why) => check(
            State::Fail,
            title,
            why.clone(),
            Some("boot with apparmor=1 security=apparmor / install a kernel with AppArmor"),
        ),
    }
}

fn parser_check(f: &Facts, title: &str) -> Check {
    match Parser::from_config(f.cfg) {
        Ok(p) => {
            let ver = p.version().unwrap_or_else(|| "version unknown".into());
            let bin = &p.binary;
            check(
                State::Pass,
                title,
                format!("{} ({ver})", bin.display()),
                None,
            )
        }
        Err(e) => check(
            State::Fail,
            title,
            e.to_string(),
            Some("apt install apparmor"),
        ),
    }
}

fn library_check(_: &Facts, title: &str) -> Check {
    match virt::connect::Connect::version() {
        Ok(l) => check(State::Pass, title, conn::version_string(l), None),
        Err(e) => check(State::Fail, title, conn::msg(&e), None),
    }
}

fn daemon_check(f: &Facts, title: &str) -> Check {
    match &f.libvirt {
        Ok(l) => check(
            State::Pass,
            title,
            format!("{} at {}", l.daemon_version, f.uri),
            None,
        ),
        Err(e) => {
            let hint = "start the daemon: systemctl start libvirtd (monolithic) or systemctl start \
                        virtqemud.socket (modular); check --connect";
            check(State::Fail, title, e.to_string(), Some(hint))
        }
    }
}

fn secmodels_check(f: &Facts, title: &str) -> Check {
    match f.facts() {
        Some(l) => {
            let driver = virt_aa_hook::caps::apparmor_driver_in(&l.secmodels);
            let detail = format!(
                "{}; libvirt AppArmor driver: {}",
                l.secmodels.join(", "),
                if driver { "active" } else { "inactive" }
            );
            check(State::Pass, title, detail, None)
        }
        None => check(State::NotChecked, title, f.not_answered(), None),
    }
}

fn daemon_confined_check(f: &Facts, title: &str) -> Check {
    if !f.kernel_on() {
        return check(
            State::NotChecked,
            title,
            "not checked (kernel has no AppArmor)",
            None,
        );
    }
    match virt_aa_hook::mode::daemon_profile(&f.kernel) {
        Some((n, m)) => check(
            State::Pass,
            title,
            format!("profile {n} loaded ({m})"),
            None,
        ),
        None => check(
            State::Warn,
            title,
            "no libvirtd/virtqemud profile loaded: the daemon runs unconfined",
            Some(
                "libvirt's AppArmor driver expects it (aa-enforce /etc/apparmor.d/usr.sbin.libvirtd); standalone mode works without",
            ),
        ),
    }
}

fn profile_dir_check(f: &Facts, title: &str) -> Check {
    dir_check(title, &f.cfg.rooted(&f.cfg.profile_dir))
}

fn mode_check(f: &Facts, title: &str) -> Check {
    let (mode, why) = (f.mode, &f.mode_why);
    match (mode, f.driver_live()) {
        (Mode::Libvirt, Some(false)) => check(
            if f.kernel_on() {
                State::Fail
            } else {
                State::Warn
            },
            title,
            format!(
                "libvirt ({why}), but libvirt's AppArmor driver is inactive: nothing loads or \
                 applies the profiles"
            ),
            Some(
                "virt-aa-hook caps (auto mode then picks standalone), or set mode = \"standalone\" in the config",
            ),
        ),
        (Mode::Standalone, Some(true)) => check(
            State::Warn,
            title,
            format!("standalone ({why}), but libvirt's AppArmor driver is active too"),
            Some("virt-aa-hook caps, or set mode = \"auto\""),
        ),
        _ => check(State::Pass, title, format!("{mode} ({why})"), None),
    }
}

fn enrolled_check(f: &Facts, title: &str) -> Check {
    let cfg = f.cfg;
    match (f.mode, f.facts()) {
        (Mode::Libvirt, _) => check(
            State::Pass,
            title,
            "not needed in libvirt mode (libvirt applies the profiles)",
            None,
        ),
        (Mode::Standalone, None) => check(State::NotChecked, title, f.not_answered(), None),
        (Mode::Standalone, Some(l)) => {
            let relevant: Vec<&GuestInfo> = l
                .guests
                .iter()
                .filter(|g| {
                    g.is_qemu()
                        && !g
                            .config
                            .as_ref()
                            .is_ok_and(|c| c.settings.opt_out && cfg.allow_opt_out)
                })
                .collect();
            let missing: Vec<&str> = relevant
                .iter()
                .filter(|g| g.enrolled() != Some(true))
                .map(|g| g.name.as_str())
                .collect();
            if missing.is_empty() {
                check(
                    State::Pass,
                    title,
                    format!("all {} QEMU guest(s) enrolled", relevant.len()),
                    None,
                )
            } else {
                check(
                    State::Warn,
                    title,
                    format!(
                        "{} of {} not enrolled (run unconfined): {}",
                        missing.len(),
                        relevant.len(),
                        missing.join(", ")
                    ),
                    Some("virt-aa-hook enroll NAME... (or --all)"),
                )
            }
        }
    }
}

/// Which day-2 operations (hotplug, snapshots, block jobs, backups) will work on this host, and
/// how to make the rest work. Pure: the mode, whether our helper is at libvirt's helper path
/// (`installed`), whether the config asks for it (`wanted`: `helper_mode`, which the package's
/// postinst applies), and whether libvirt's AppArmor driver is live (None: libvirt did not
/// answer).
fn day2_check(
    title: &str,
    mode: Mode,
    installed: bool,
    wanted: bool,
    driver_live: Option<bool>,
) -> Check {
    const RELABELLED: &str = "helper mode: hotplug, snapshots, block jobs and backup files are relabelled through virt-aa-hook (no deny rules)";
    const OWN_HELPER: &str = "libvirt's own virt-aa-helper relabels: blockcommit into a backing file fails (it writes `deny w` for backing files)";
    match (mode, installed, wanted) {
        (Mode::Libvirt, true, true) => check(State::Pass, title, RELABELLED, None),
        (Mode::Libvirt, true, false) => check(
            State::Warn,
            title,
            format!("{RELABELLED}, but the config says `helper_mode = false`"),
            Some(
                "dpkg-reconfigure virt-aa-hook applies the config (libvirt's own virt-aa-helper relabels then), or remove `helper_mode = false`",
            ),
        ),
        (Mode::Libvirt, false, false) => check(
            State::Warn,
            title,
            OWN_HELPER,
            Some(
                "helper mode: remove `helper_mode = false` from the config, then dpkg-reconfigure virt-aa-hook",
            ),
        ),
        (Mode::Libvirt, false, true) => check(
            State::Warn,
            title,
            OWN_HELPER,
            Some(
                "helper mode is on in the config but not installed (an install with --no-helper-mode, or libvirt's virt-aa-helper was missing): dpkg-reconfigure virt-aa-hook",
            ),
        ),
        (Mode::Standalone, _, _) => check(
            State::Warn,
            title,
            "standalone mode: hotplug, snapshot overlays, blockcommit into a backing file and backups are denied (no event tells us about them)",
            Some(if driver_live == Some(false) {
                "virt-aa-hook grant GUEST PATH before each such operation, or switch libvirt's AppArmor driver on (security_driver = \"apparmor\" in qemu.conf) for helper mode"
            } else {
                "virt-aa-hook grant GUEST PATH before each such operation"
            }),
        ),
    }
}

/// Run `doctor`: print the report; exit 1 when a check failed.
pub fn run(cfg: &Config, lv: &Libvirt) -> Result<i32> {
    let c = checks(cfg, lv);
    print!("{}", render(&c));
    Ok(i32::from(c.iter().any(|c| c.state == State::Fail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn day2_operations_by_mode() {
        const T: &str = "day-2 operations";
        assert_eq!(
            day2_check(T, Mode::Libvirt, true, true, Some(true)).state,
            State::Pass
        );
        let c = day2_check(T, Mode::Libvirt, false, false, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(c.detail.contains("deny w"), "{}", c.detail);
        assert!(
            c.hint
                .as_deref()
                .unwrap()
                .contains("remove `helper_mode = false`")
        );
        // Wanted by the config (the default) but not installed: no advice to remove a line
        // that is not there.
        let c = day2_check(T, Mode::Libvirt, false, true, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(!c.hint.as_deref().unwrap().contains("remove"));
        assert!(c.hint.as_deref().unwrap().contains("dpkg-reconfigure"));
        // Installed while the config says no: the postinst has not applied it yet.
        let c = day2_check(T, Mode::Libvirt, true, false, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(c.detail.contains("helper_mode = false"), "{}", c.detail);
        let c = day2_check(T, Mode::Standalone, false, true, Some(false));
        assert_eq!(c.state, State::Warn);
        assert!(c.hint.as_deref().unwrap().contains("security_driver"));
        assert!(c.hint.as_deref().unwrap().contains("grant"));
    }

    #[test]
    fn hook_entries_are_classified() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let lib = root.join("usr/lib/libvirt");
        let hooks = root.join("etc/libvirt/hooks/qemu.d");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&hooks).unwrap();
        std::fs::write(lib.join("virt-aa-hook"), b"\x7fELF...virt-aa-hook").unwrap();
        std::os::unix::fs::symlink(lib.join("virt-aa-hook"), hooks.join("a")).unwrap();
        assert_eq!(
            classify_hook(root, &hooks.join("a")),
            HookEntry::Good("/usr/lib/libvirt/virt-aa-hook".into())
        );
        std::fs::copy(lib.join("virt-aa-hook"), hooks.join("b")).unwrap();
        assert_eq!(
            classify_hook(root, &hooks.join("b")),
            HookEntry::PlainBinary
        );
        std::fs::write(
            hooks.join("c"),
            "#!/bin/sh\nexec /usr/lib/libvirt/virt-aa-hook \"$@\"\n",
        )
        .unwrap();
        assert_eq!(classify_hook(root, &hooks.join("c")), HookEntry::Script);
        std::fs::write(hooks.join("d"), "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(classify_hook(root, &hooks.join("d")), HookEntry::Foreign);
        std::os::unix::fs::symlink(root.join("nowhere/virt-aa-hook"), hooks.join("e")).unwrap();
        assert!(matches!(
            classify_hook(root, &hooks.join("e")),
            HookEntry::Dangling(_)
        ));
        let cfg = Config {
            root: root.into(),
            ..Default::default()
        };
        let c = hook_check(&cfg, "hook installed");
        assert_eq!(c.state, State::Fail, "{c:?}");
        assert!(c.detail.contains("plain copy"), "{c:?}");
    }

    #[test]
    fn report_on_a_host_without_apparmor_and_without_daemon() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            root: d.path().into(),
            ..Default::default()
        };
        let lv = Libvirt::new(
            "qemu+unix:///system?socket=/nonexistent/vah.sock",
            Duration::from_secs(20),
        );
        let c = checks(&cfg, &lv);
        let by = |t: &str| c.iter().find(|c| c.title == t).unwrap().clone();
        let k = by("kernel AppArmor");
        assert_eq!(k.state, State::Fail);
        assert!(k.hint.unwrap().contains("apparmor=1 security=apparmor"));
        assert_eq!(by("libvirt daemon").state, State::Fail);
        assert_eq!(by("security models").state, State::NotChecked);
        assert!(by("security models").detail.contains("not checked"));
        assert_eq!(by("capability cache").state, State::Warn);
        assert_eq!(by("hook installed").state, State::Fail);
        let out = render(&c);
        assert!(out.contains("✗ kernel AppArmor: "), "{out}");
        assert!(out.contains("    fix: boot with apparmor=1"), "{out}");
    }

    #[test]
    #[serial_test::serial]
    fn test_driver_facts() {
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let f = lv.run(gather).unwrap();
        assert_eq!(f.secmodels, vec!["testSecurity"]);
        assert!(f.guests.iter().any(|g| g.name == "test"));
    }
}
