//! `status`: one line per defined guest answering "is this guest protected, and what happened
//! last?" — profile file, kernel state, enrollment and the last hook event from our log.

use super::conn::{self, GuestInfo, Libvirt};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use virt_aa_hook::apparmorfs::{Kernel, LoadedMode};
use virt_aa_hook::config::Config;
use virt_aa_hook::domain::PROFILE_PREFIX;
use virt_aa_hook::lifecycle;
#[cfg(test)]
use virt_aa_hook::profile::MARKER;

/// How much of the end of the log `status` reads: enough for months of events on a busy host,
/// bounded so a huge log cannot make `status` slow.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024 * 1024;

/// The last hook event for a guest, from one log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// The line's RFC 3339 timestamp.
    pub time: String,
    /// `INFO`, `WARN`, `ERROR`.
    pub level: String,
    /// `op/sub`, e.g. `prepare/begin`.
    pub event: String,
}

/// One row of the table (and one object of `--json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Guest name.
    pub name: String,
    /// Guest UUID (the profile is `libvirt-<uuid>`).
    pub uuid: String,
    /// `virsh list` state word.
    pub state: String,
    /// `ours`, `libvirt's`, `missing`, `unreadable`.
    pub profile: String,
    /// `enforce`, `complain`, `no`, `n/a (no AppArmor)`.
    pub loaded: String,
    /// `yes`, `no`, `n/a`, optionally with ` (at next start)` for a running guest whose
    /// persistent definition differs from what runs.
    pub enrolled: String,
    /// Last hook event in our log, if any.
    pub last_event: Option<LogEvent>,
    /// The label QEMU actually runs under (`/proc/<pid>/attr/apparmor/current`), running guests
    /// only; `--json` only.
    pub qemu_label: Option<String>,
    /// The profile's mode as the kernel has it: `enforce`, `complain`, `no` (not loaded).
    pub profile_mode: String,
    /// AppArmor DENIED/ALLOWED records of the guest's profile (and its children) since boot, in
    /// the host's log (`explain` tells what they mean); `None` when no log could be read.
    /// `--json` only.
    pub denials_since_boot: Option<usize>,
}

/// Parse `<ts> <LEVEL> [<name> <uuid>] <op>/<sub> ...` into (uuid, event). Domain names may
/// contain spaces and brackets, so the UUID is found as the 36 characters before a `] `.
pub fn parse_log_line(line: &str) -> Option<(String, LogEvent)> {
    let (time, rest) = line.split_once(' ')?;
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return None;
    }
    let mut from = 0;
    while let Some(i) = rest[from..].find("] ").map(|i| i + from) {
        from = i + 2;
        if i < 37 || !rest.is_char_boundary(i - 36) {
            continue;
        }
        let cand = &rest[i - 36..i];
        let before = rest.as_bytes()[i - 37];
        if (before == b' ' || before == b'[') && uuid::Uuid::parse_str(cand).is_ok() {
            let ev = rest[i + 2..]
                .split_whitespace()
                .next()?
                .trim_end_matches(':');
            if !ev.contains('/') {
                return None;
            }
            return Some((
                cand.to_ascii_lowercase(),
                LogEvent {
                    time: time.to_string(),
                    level: level.to_string(),
                    event: ev.to_string(),
                },
            ));
        }
    }
    None
}

/// The last event of every guest in a log text.
pub fn last_events(text: &str) -> HashMap<String, LogEvent> {
    let mut m = HashMap::new();
    for l in text.lines() {
        if let Some((u, e)) = parse_log_line(l) {
            m.insert(u, e);
        }
    }
    m
}

/// The last [`LOG_TAIL_BYTES`] of the log, from a line start. Empty when there is no log.
pub fn read_log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let skip = len.saturating_sub(LOG_TAIL_BYTES);
    if skip > 0 && f.seek(SeekFrom::Start(skip)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut buf);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if skip > 0 {
        // Drop the partial first line.
        s = s
            .split_once('\n')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
    }
    s
}

/// The LOADED column from the kernel's list (`None`: kernel without AppArmor).
pub fn loaded_word(loaded: Option<&[(String, LoadedMode)]>, profile: &str) -> String {
    match loaded {
        None => "n/a (no AppArmor)".into(),
        Some(l) => l
            .iter()
            .find(|(n, _)| n == profile)
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| "no".into()),
    }
}

/// The ENROLLED column.
pub fn enrolled_word(g: &GuestInfo) -> String {
    if !g.is_qemu() {
        return if g.config.is_ok() { "n/a" } else { "?" }.into();
    }
    let Some(cfg) = g.enrolled() else {
        return "?".into();
    };
    let word = if cfg { "yes" } else { "no" };
    match &g.live_emulator {
        Some(live) if g.active && conn::is_wrapper(Some(live)) != cfg => {
            format!("{word} (at next start)")
        }
        _ => word.into(),
    }
}

/// Build the rows from libvirt's guests and the local state.
pub fn rows(cfg: &Config, guests: &[GuestInfo], log_text: &str) -> Vec<Row> {
    let kernel = Kernel::from_config(cfg);
    let loaded = kernel.enabled().then(|| kernel.loaded());
    let events = last_events(log_text);
    guests
        .iter()
        .map(|g| {
            let pname = format!("{PROFILE_PREFIX}{}", g.uuid);
            Row {
                name: g.name.clone(),
                uuid: g.uuid.clone(),
                state: if g.persistent {
                    g.state.clone()
                } else {
                    format!("{} (transient)", g.state)
                },
                profile: lifecycle::owner(&cfg.profile_path(&pname)).word().into(),
                loaded: loaded_word(loaded.as_deref(), &pname),
                enrolled: enrolled_word(g),
                last_event: events.get(&g.uuid).cloned(),
                qemu_label: None,
                profile_mode: loaded_word(loaded.as_deref(), &pname),
                denials_since_boot: None,
            }
        })
        .collect()
}

/// Count records per guest UUID (main profile and children).
pub fn denials_by_guest(records: &[virt_aa_hook::denial::Record]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        if let Some((u, _)) = virt_aa_hook::denial::guest_of(&r.profile) {
            *m.entry(u.hyphenated().to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// The facts that cost a look at processes and the host's log: QEMU's label and the denials
/// since boot.
pub fn add_runtime(cfg: &Config, rows: &mut [Row]) {
    let kernel = Kernel {
        root: cfg.root.clone(),
    };
    let boot = virt_aa_hook::hostlog::boot_time(&cfg.root);
    let counts = virt_aa_hook::hostlog::read_host(cfg, boot)
        .ok()
        .map(|(_, text)| denials_by_guest(&virt_aa_hook::hostlog::guest_records(&text, boot).0));
    for r in rows {
        r.qemu_label =
            virt_aa_hook::host::qemu_process(cfg, &kernel, &r.name).and_then(|(_, label)| label);
        r.denials_since_boot = counts
            .as_ref()
            .map(|c| c.get(&r.uuid).copied().unwrap_or(0));
    }
}

/// The aligned table (columns padded by character count, so non-ASCII names line up).
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "NAME",
        "UUID",
        "STATE",
        "PROFILE",
        "LOADED",
        "ENROLLED",
        "LAST EVENT",
    ];
    let mut cells: Vec<[String; 7]> = vec![header.map(str::to_string)];
    for r in rows {
        let ev = match &r.last_event {
            None => "-".to_string(),
            Some(e) if e.level == "INFO" => format!("{} {}", e.time, e.event),
            Some(e) => format!("{} {} ({})", e.time, e.event, e.level),
        };
        cells.push([
            r.name.clone(),
            r.uuid.clone(),
            r.state.clone(),
            r.profile.clone(),
            r.loaded.clone(),
            r.enrolled.clone(),
            ev,
        ]);
    }
    let mut width = [0usize; 7];
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = width[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Run `status [DOMAIN] [--json]`.
pub fn run(cfg: &Config, lv: &Libvirt, filter: Option<&str>, json: bool) -> Result<i32> {
    let mut guests = lv.read_only().run(conn::list_guests)?;
    if let Some(f) = filter {
        guests.retain(|g| g.name == f || g.uuid.eq_ignore_ascii_case(f));
        if guests.is_empty() {
            bail!("no defined guest is named or has the UUID {f:?}");
        }
    }
    let log = read_log_tail(&cfg.rooted(&cfg.log_file));
    let mut rows = rows(cfg, &guests, &log);
    if json {
        add_runtime(cfg, &mut rows);
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no guests defined at {}", lv.uri);
    } else {
        print!("{}", render_table(&rows));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const U: &str = "92c4f559-3323-44d7-abd5-34c49aef304a";

    #[test]
    fn log_lines() {
        let l = format!(
            "2026-11-30T10:00:00.123Z INFO  [vm one {U}] prepare/begin mode=standalone (x): wrote"
        );
        let (u, e) = parse_log_line(&l).unwrap();
        assert_eq!(u, U);
        assert_eq!(e.event, "prepare/begin");
        assert_eq!(e.level, "INFO");
        assert_eq!(e.time, "2026-11-30T10:00:00.123Z");
        let l = format!("2026-11-30T10:00:01.000Z ERROR [we] ird] {U}] release/end: skipped: x");
        assert_eq!(parse_log_line(&l).unwrap().1.event, "release/end");
        assert!(parse_log_line("2026 INFO  [vm] prepare/begin: invalid domain XML").is_none());
        assert!(parse_log_line("garbage").is_none());
        let text = format!("{l}\n2026-11-30T10:00:02.000Z WARN  [vm {U}] started/begin: x\n");
        assert_eq!(last_events(&text)[U].event, "started/begin");
    }

    #[test]
    fn table_is_aligned() {
        let rows = vec![
            Row {
                name: "vm-é".into(),
                uuid: U.into(),
                state: "running".into(),
                profile: "ours".into(),
                loaded: "n/a (no AppArmor)".into(),
                enrolled: "yes".into(),
                qemu_label: None,
                profile_mode: "enforce".into(),
                denials_since_boot: None,
                last_event: Some(LogEvent {
                    time: "2026-11-30T10:00:00.123Z".into(),
                    level: "ERROR".into(),
                    event: "prepare/begin".into(),
                }),
            },
            Row {
                name: "a-much-longer-name".into(),
                uuid: "00000000-0000-0000-0000-000000000001".into(),
                state: "shut off".into(),
                profile: "missing".into(),
                loaded: "no".into(),
                enrolled: "no".into(),
                last_event: None,
                qemu_label: None,
                profile_mode: "no".into(),
                denials_since_boot: None,
            },
        ];
        let t = render_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str, w: &str| l.find(w).map(|b| l[..b].chars().count());
        assert_eq!(col(lines[0], "UUID"), col(lines[1], U));
        assert_eq!(col(lines[0], "STATE"), col(lines[2], "shut off"));
        assert_eq!(col(lines[0], "LAST EVENT"), col(lines[1], "2026-"));
        assert!(lines[1].ends_with("prepare/begin (ERROR)"), "{t}");
        assert!(lines[2].ends_with(" -"), "{t}");
        let j = serde_json::to_value(&rows).unwrap();
        assert_eq!(j[0]["last_event"]["event"], "prepare/begin");
        assert!(j[1]["last_event"].is_null());
    }

    #[test]
    fn profile_owner_and_loaded() {
        let d = tempfile::tempdir().unwrap();
        let ours = d.path().join("a");
        std::fs::write(&ours, format!("{MARKER} for domain 'x'\n")).unwrap();
        let theirs = d.path().join("b");
        std::fs::write(&theirs, "#include <tunables/global>\n").unwrap();
        assert_eq!(lifecycle::owner(&ours).word(), "ours");
        assert_eq!(lifecycle::owner(&theirs).word(), "libvirt's");
        assert_eq!(lifecycle::owner(&d.path().join("c")).word(), "missing");
        let l = vec![("libvirt-x".to_string(), LoadedMode::Complain)];
        assert_eq!(loaded_word(Some(&l), "libvirt-x"), "complain");
        assert_eq!(loaded_word(Some(&l), "libvirt-y"), "no");
        assert_eq!(loaded_word(None, "libvirt-y"), "n/a (no AppArmor)");
    }

    #[test]
    #[serial_test::serial]
    fn rows_from_the_test_driver() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::rooted_at(d.path());
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let guests = lv.run(conn::list_guests).unwrap();
        let u = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        let pdir = cfg.rooted(&cfg.profile_dir);
        std::fs::create_dir_all(&pdir).unwrap();
        std::fs::write(pdir.join(format!("libvirt-{u}")), format!("{MARKER}\n")).unwrap();
        let log = format!("2026-11-30T10:00:00.000Z INFO  [test {u}] start/begin mode=x\n");
        let r = rows(&cfg, &guests, &log);
        let t = r.iter().find(|r| r.name == "test").unwrap();
        assert_eq!(t.state, "running");
        assert_eq!(t.profile, "ours");
        assert_eq!(t.loaded, "n/a (no AppArmor)");
        assert_eq!(t.enrolled, "n/a");
        assert_eq!(t.last_event.as_ref().unwrap().event, "start/begin");
    }
}
