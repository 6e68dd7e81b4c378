//! Checks of our own install: the hook entry libvirt runs, the template, the QEMU abstraction,
//! and the directories and log file the hook writes.

use super::facts::Facts;
use super::{Check, State, check};
use std::path::{Path, PathBuf};
use virt_aa_hook::config::Config;
use virt_aa_hook::layout::{self, LIBEXEC_DIR};
use virt_aa_hook::profile;

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

pub(super) fn hook_check(cfg: &Config, title: &str) -> Check {
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

pub(super) fn log_check(f: &Facts, title: &str) -> Check {
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

pub(super) fn template_check(f: &Facts, title: &str) -> Check {
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
pub(super) fn abstraction_check(f: &Facts, title: &str) -> Check {
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

pub(super) fn profile_dir_check(f: &Facts, title: &str) -> Check {
    dir_check(title, &f.cfg.rooted(&f.cfg.profile_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cfg = Config::rooted_at(root);
        let c = hook_check(&cfg, "hook installed");
        assert_eq!(c.state, State::Fail, "{c:?}");
        assert!(c.detail.contains("plain copy"), "{c:?}");
    }
}
