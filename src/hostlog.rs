//! Where this host's AppArmor records are, and reading them: the journal (`journalctl -k -o
//! json`) when journald runs, else the kernel ring buffer (`dmesg`), else auditd's
//! `/var/log/audit/audit.log`. Parsing each line is [`crate::denial`]'s job; this module only
//! finds and reads, and selects the records of libvirt guests after a point in time.

use crate::config::Config;
use crate::denial::{self, Record};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

use crate::layout::AUDIT_LOG;

/// Most bytes read from one source (a busy host's kernel log is far smaller).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `journalctl -k -o json`.
    Journal,
    /// `dmesg`.
    Dmesg,
    /// A log file of any supported shape (audit.log, saved dmesg or journal JSON output).
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Journal => f.write_str("journalctl -k"),
            Source::Dmesg => f.write_str("dmesg"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why no records could be read.
#[derive(Debug, Error)]
pub enum HostLogError {
    #[error("cannot run {cmd}: {err}")]
    Spawn { cmd: String, err: std::io::Error },
    #[error("{cmd} failed (exit {code}): {stderr}")]
    Failed {
        cmd: String,
        code: i32,
        stderr: String,
    },
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error(
        "no AppArmor log found: no journald, dmesg unavailable and no {AUDIT_LOG} (use --log FILE)"
    )]
    Nothing,
}

fn in_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// The sources this host has, best first: journald (its socket exists and `journalctl` is
/// there), `dmesg`, auditd's log.
pub fn detect(cfg: &Config) -> Vec<Source> {
    let mut v = Vec::new();
    if cfg
        .rooted(Path::new(crate::layout::JOURNAL_SOCKET))
        .exists()
        && in_path("journalctl")
    {
        v.push(Source::Journal);
    }
    if in_path("dmesg") {
        v.push(Source::Dmesg);
    }
    let audit = cfg.rooted(Path::new(AUDIT_LOG));
    if audit.exists() {
        v.push(Source::File(audit));
    }
    v
}

/// The text of one source. `since` (epoch seconds) narrows what journalctl returns.
pub fn read_source(src: &Source, since: Option<u64>) -> Result<String, HostLogError> {
    let run = |mut c: Command, name: &str| -> Result<String, HostLogError> {
        let out = c.output().map_err(|err| HostLogError::Spawn {
            cmd: name.into(),
            err,
        })?;
        if !out.status.success() {
            return Err(HostLogError::Failed {
                cmd: name.into(),
                code: out.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        let mut v = out.stdout;
        v.truncate(MAX_BYTES as usize);
        Ok(String::from_utf8_lossy(&v).into_owned())
    };
    match src {
        Source::Journal => {
            let mut c = Command::new("journalctl");
            c.args(["-k", "-o", "json", "--no-pager", "-q"]);
            if let Some(s) = since {
                c.arg(format!("--since=@{s}"));
            }
            run(c, "journalctl -k")
        }
        Source::Dmesg => run(Command::new("dmesg"), "dmesg"),
        Source::File(p) => {
            use std::io::Read;
            let f = std::fs::File::open(p).map_err(|err| HostLogError::Read {
                path: p.clone(),
                err,
            })?;
            let mut v = Vec::new();
            f.take(MAX_BYTES)
                .read_to_end(&mut v)
                .map_err(|err| HostLogError::Read {
                    path: p.clone(),
                    err,
                })?;
            Ok(String::from_utf8_lossy(&v).into_owned())
        }
    }
}

/// Read the first source that answers; returns which one and its text.
pub fn read_host(cfg: &Config, since: Option<u64>) -> Result<(Source, String), HostLogError> {
    let mut last = HostLogError::Nothing;
    for s in detect(cfg) {
        match read_source(&s, since) {
            Ok(t) => return Ok((s, t)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Records of libvirt guest profiles (and their children) in `text`, at or after `since`, and
/// the lines that looked like AppArmor records but could not be parsed (with why).
pub fn guest_records(text: &str, since: Option<u64>) -> (Vec<Record>, Vec<String>) {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        if !line.contains("apparmor") {
            continue;
        }
        match denial::parse_line(line) {
            Ok(Some(r)) => {
                if denial::guest_of(&r.profile).is_none() {
                    continue;
                }
                if let (Some(s), Some((t, _))) = (since, r.time) {
                    if t < s {
                        continue;
                    }
                }
                recs.push(r);
            }
            Ok(None) => {}
            Err(e) => {
                if line.contains("libvirt-") {
                    bad.push(e.to_string());
                }
            }
        }
    }
    (recs, bad)
}

/// Boot time (epoch seconds) from `/proc/stat`'s `btime`.
pub fn boot_time(root: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(root.join("proc/stat")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Parse `--since`: `@EPOCH`, `EPOCH`, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or with `T` and an
/// optional `Z` (UTC), or a relative `N[s|m|h|d]` / `N[smhd] ago` / `-N[smhd]`.
pub fn parse_since(s: &str, now: u64) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!("--since {s:?}: expected @EPOCH, YYYY-MM-DD[ HH:MM[:SS]] (UTC) or N[smhd] (ago)")
    };
    if let Some(e) = t.strip_prefix('@') {
        return e.parse().map_err(|_| bad());
    }
    if let Ok(e) = t.parse::<u64>() {
        return Ok(e);
    }
    let rel = t.trim_end_matches(" ago").trim_start_matches('-');
    if let Some(unit) = rel.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = rel[..rel.len() - 1].trim().parse::<u64>() {
            let mul = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86400,
            };
            return Ok(now.saturating_sub(n.saturating_mul(mul)));
        }
    }
    let t = t.trim_end_matches('Z').replace('T', " ");
    let (date, time) = t.split_once(' ').unwrap_or((&t, "00:00:00"));
    let d: Vec<&str> = date.split('-').collect();
    let tm: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&tm.len()) {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi) = (num(tm[0])?, num(tm[1])?);
    let se = if tm.len() == 3 { num(tm[2])? } else { 0 };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, da);
    Ok((days * 86400 + h * 3600 + mi * 60 + se).max(0) as u64)
}

/// (year, month, day) → days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_795_996_800; // 2026-11-30T00:00:00Z
        assert_eq!(parse_since("@5", now), Ok(5));
        assert_eq!(parse_since("2026-11-30", now), Ok(now));
        assert_eq!(parse_since("2026-11-30 01:02:03", now), Ok(now + 3723));
        assert_eq!(parse_since("2026-11-30T01:02Z", now), Ok(now + 3720));
        assert_eq!(parse_since("10m", now), Ok(now - 600));
        assert_eq!(parse_since("2h ago", now), Ok(now - 7200));
        assert_eq!(parse_since("-1d", now), Ok(now - 86400));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("2026-13-01", now).is_err());
    }

    #[test]
    fn guest_records_filter_profile_and_time() {
        let text = r#"[ 1.0] audit: type=1400 audit(100.0:1): apparmor="DENIED" operation="open" profile="libvirt-aaaaaaaa-0000-4000-8000-000000000001" name="/a" requested_mask="r" denied_mask="r"
[ 2.0] audit: type=1400 audit(200.0:2): apparmor="DENIED" operation="open" profile="libvirt-aaaaaaaa-0000-4000-8000-000000000001//passt" name="/b" requested_mask="r" denied_mask="r"
[ 2.5] audit: type=1400 audit(200.0:3): apparmor="DENIED" operation="open" profile="/usr/sbin/cupsd" name="/c" requested_mask="r" denied_mask="r"
[ 3.0] audit: type=1400 audit(300.0:4): apparmor="DENIED" operation="open" profile="libvirt-aaaaaaaa-0000-4000-8000-000000000001" name=/bad requested_mask="r"
[ 4.0] eth0: link up
"#;
        let (r, bad) = guest_records(text, None);
        assert_eq!(r.len(), 2);
        assert_eq!(bad.len(), 1);
        let (r, _) = guest_records(text, Some(150));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name.as_deref(), Some("/b"));
    }

    #[test]
    fn boot_time_from_proc_stat() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("proc")).unwrap();
        std::fs::write(d.path().join("proc/stat"), "cpu 1 2\nbtime 1764540000\n").unwrap();
        assert_eq!(boot_time(d.path()), Some(1_764_540_000));
    }
}
