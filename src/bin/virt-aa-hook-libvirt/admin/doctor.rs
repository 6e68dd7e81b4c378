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

fn hook_check(cfg: &Config) -> Check {
    const T: &str = "hook installed";
    let hooks = cfg.rooted(Path::new("/etc/libvirt/hooks"));
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
        return check(*state, T, what.clone(), Some(&link_hint));
    }
    match good.len() {
        0 => check(
            State::Fail,
            T,
            format!(
                "no hook of ours in {}/qemu or {}/qemu.d/",
                hooks.display(),
                hooks.display()
            ),
            Some(&link_hint),
        ),
        1 => check(State::Pass, T, good[0].clone(), None),
        _ => check(
            State::Warn,
            T,
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

fn log_check(cfg: &Config) -> Check {
    const T: &str = "log file writable";
    let p = cfg.rooted(&cfg.log_file);
    if p.exists() {
        return match std::fs::OpenOptions::new().append(true).open(&p) {
            Ok(_) => check(State::Pass, T, p.display().to_string(), None),
            Err(e) => check(
                State::Fail,
                T,
                format!("{}: {e}", p.display()),
                Some("the hook runs as root; fix the file's permissions"),
            ),
        };
    }
    let mut c = dir_check(T, p.parent().unwrap_or(Path::new("/")));
    if c.state == State::Pass {
        c.detail = format!("{} (created at first event)", p.display());
    }
    c
}

fn template_check(cfg: &Config) -> Check {
    const T: &str = "template";
    let p = cfg.rooted(&cfg.template);
    match std::fs::read_to_string(&p) {
        Ok(t) => match profile::check_template(&t) {
            Ok(()) => check(State::Pass, T, format!("{} valid", p.display()), None),
            Err(e) => check(
                State::Fail,
                T,
                format!("{}: {e}", p.display()),
                Some(
                    "fix the template (compare with hooks/template.qemu); every guest start fails until then",
                ),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => check(
            State::Warn,
            T,
            format!("{} missing: the built-in template is used", p.display()),
            Some("the virt-aa-hook package installs it there (a conffile)"),
        ),
        Err(e) => check(
            State::Fail,
            T,
            format!("{}: {e}", p.display()),
            Some("the template must be readable UTF-8 text"),
        ),
    }
}

/// The template includes libvirt's `abstractions/libvirt-qemu` and our own
/// `abstractions/virt-aa-hook-qemu`, both "if exists": without either, QEMU gets almost nothing.
fn abstraction_check(cfg: &Config) -> Check {
    const T: &str = "QEMU abstraction";
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
            T,
            "neither abstractions/libvirt-qemu nor abstractions/virt-aa-hook-qemu found; every profile includes them",
            Some(
                "reinstall the virt-aa-hook package (it ships /etc/apparmor.d/abstractions/virt-aa-hook-qemu)",
            ),
        )
    } else {
        check(
            State::Pass,
            T,
            format!("{} present", found.join(", ")),
            None,
        )
    }
}

fn cache_check(cfg: &Config, live: Option<&[String]>) -> Check {
    const T: &str = "capability cache";
    let p = cfg.caps_path();
    match Caps::load(&p) {
        None => check(
            State::Warn,
            T,
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
                        T,
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
                    T,
                    format!("{age_s} old (refreshed after {} s)", cfg.caps_max_age),
                    Some("virt-aa-hook caps"),
                )
            } else {
                check(
                    State::Pass,
                    T,
                    format!("{age_s} old, libvirt {} at {}", c.daemon_version, c.uri),
                    None,
                )
            }
        }
    }
}

/// Run all checks. Pure with respect to output: returns the lines; `run` prints them.
pub fn checks(cfg: &Config, lv: &Libvirt) -> Vec<Check> {
    let mut v = Vec::new();
    let kernel = Kernel::from_config(cfg);
    let kstatus = kernel.status();
    let kernel_on = kstatus == KStatus::Enabled;
    v.push(match &kstatus {
        KStatus::Enabled => check(State::Pass, "kernel AppArmor", "enabled", None),
        KStatus::Disabled(why) => check(
            State::Fail,
            "kernel AppArmor",
            why.clone(),
            Some("boot with apparmor=1 security=apparmor / install a kernel with AppArmor"),
        ),
    });

    v.push(match Parser::from_config(cfg) {
        Ok(p) => {
            let ver = p.version().unwrap_or_else(|| "version unknown".into());
            let bin = &p.binary;
            check(
                State::Pass,
                "apparmor_parser",
                format!("{} ({ver})", bin.display()),
                None,
            )
        }
        Err(e) => check(
            State::Fail,
            "apparmor_parser",
            e.to_string(),
            Some("apt install apparmor"),
        ),
    });

    match virt::connect::Connect::version() {
        Ok(l) => v.push(check(
            State::Pass,
            "libvirt library",
            conn::version_string(l),
            None,
        )),
        Err(e) => v.push(check(State::Fail, "libvirt library", conn::msg(&e), None)),
    }

    let facts = lv.read_only().run(gather);
    let unreachable_why = match &facts {
        Ok(f) => {
            v.push(check(
                State::Pass,
                "libvirt daemon",
                format!("{} at {}", f.daemon_version, lv.uri),
                None,
            ));
            None
        }
        Err(e) => {
            let hint = "start the daemon: systemctl start libvirtd (monolithic) or systemctl start \
                        virtqemud.socket (modular); check --connect";
            v.push(check(
                State::Fail,
                "libvirt daemon",
                e.to_string(),
                Some(hint),
            ));
            Some(match e {
                LvError::Unreachable(_) => "daemon unreachable".to_string(),
                LvError::Failed(_) => "libvirt query failed".to_string(),
            })
        }
    };
    let facts = facts.ok();
    let live_models = facts.as_ref().map(|f| f.secmodels.clone());

    match (&facts, &unreachable_why) {
        (Some(f), _) => {
            let driver = virt_aa_hook::caps::apparmor_driver_in(&f.secmodels);
            let detail = format!(
                "{}; libvirt AppArmor driver: {}",
                f.secmodels.join(", "),
                if driver { "active" } else { "inactive" }
            );
            v.push(check(State::Pass, "security models", detail, None));
        }
        (None, why) => v.push(check(
            State::NotChecked,
            "security models",
            format!("not checked ({})", why.as_deref().unwrap_or("no answer")),
            None,
        )),
    }

    v.push(if !kernel_on {
        check(
            State::NotChecked,
            "libvirt daemon confined",
            "not checked (kernel has no AppArmor)",
            None,
        )
    } else {
        match virt_aa_hook::mode::daemon_profile(&kernel) {
            Some((n, m)) => check(
                State::Pass,
                "libvirt daemon confined",
                format!("profile {n} loaded ({m})"),
                None,
            ),
            None => check(
                State::Warn,
                "libvirt daemon confined",
                "no libvirtd/virtqemud profile loaded: the daemon runs unconfined",
                Some("libvirt's AppArmor driver expects it (aa-enforce /etc/apparmor.d/usr.sbin.libvirtd); standalone mode works without"),
            ),
        }
    });

    v.push(hook_check(cfg));
    v.push(template_check(cfg));
    v.push(abstraction_check(cfg));
    v.push(dir_check(
        "profile directory writable",
        &cfg.rooted(&cfg.profile_dir),
    ));
    v.push(log_check(cfg));
    v.push(cache_check(cfg, live_models.as_deref()));

    let (mode, why) = Host::new(cfg.clone()).mode();
    let mode_title = "mode";
    let driver_live = live_models
        .as_deref()
        .map(virt_aa_hook::caps::apparmor_driver_in);
    v.push(match (mode, driver_live) {
        (Mode::Libvirt, Some(false)) => check(
            if kernel_on { State::Fail } else { State::Warn },
            mode_title,
            format!(
                "libvirt ({why}), but libvirt's AppArmor driver is inactive: nothing loads or \
                 applies the profiles"
            ),
            Some("virt-aa-hook caps (auto mode then picks standalone), or set mode = \"standalone\" in the config"),
        ),
        (Mode::Standalone, Some(true)) => check(
            State::Warn,
            mode_title,
            format!("standalone ({why}), but libvirt's AppArmor driver is active too"),
            Some("virt-aa-hook caps, or set mode = \"auto\""),
        ),
        _ => check(State::Pass, mode_title, format!("{mode} ({why})"), None),
    });
    v.push(day2_check(
        mode,
        virt_aa_hook::host::helper_installed(cfg),
        driver_live,
    ));

    v.push(match (mode, &facts) {
        (Mode::Libvirt, _) => check(
            State::Pass,
            "guests enrolled",
            "not needed in libvirt mode (libvirt applies the profiles)",
            None,
        ),
        (Mode::Standalone, None) => check(
            State::NotChecked,
            "guests enrolled",
            format!(
                "not checked ({})",
                unreachable_why.as_deref().unwrap_or("no answer")
            ),
            None,
        ),
        (Mode::Standalone, Some(f)) => {
            let relevant: Vec<&GuestInfo> = f
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
                    "guests enrolled",
                    format!("all {} QEMU guest(s) enrolled", relevant.len()),
                    None,
                )
            } else {
                check(
                    State::Warn,
                    "guests enrolled",
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
    });
    v
}

/// Which day-2 operations (hotplug, snapshots, block jobs, backups) will work on this host, and
/// how to make the rest work. Pure: the mode, whether our helper is at libvirt's helper path,
/// and whether libvirt's AppArmor driver is live (None: libvirt did not answer).
fn day2_check(mode: Mode, helper_mode: bool, driver_live: Option<bool>) -> Check {
    const TITLE: &str = "day-2 operations";
    match (mode, helper_mode) {
        (Mode::Libvirt, true) => check(
            State::Pass,
            TITLE,
            "helper mode: hotplug, snapshots, block jobs and backup files are relabelled through virt-aa-hook (no deny rules)",
            None,
        ),
        (Mode::Libvirt, false) => check(
            State::Warn,
            TITLE,
            "libvirt's own virt-aa-helper relabels: blockcommit into a backing file fails (it writes `deny w` for backing files)",
            Some(
                "helper mode: remove `helper_mode = false` from the config, then dpkg-reconfigure virt-aa-hook",
            ),
        ),
        (Mode::Standalone, _) => check(
            State::Warn,
            TITLE,
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
        assert_eq!(
            day2_check(Mode::Libvirt, true, Some(true)).state,
            State::Pass
        );
        let c = day2_check(Mode::Libvirt, false, Some(true));
        assert_eq!(c.state, State::Warn);
        assert!(c.detail.contains("deny w"), "{}", c.detail);
        let c = day2_check(Mode::Standalone, false, Some(false));
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
        let c = hook_check(&cfg);
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
