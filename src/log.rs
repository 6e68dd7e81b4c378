//! The log file admins read: one line per event, appended atomically.
//!
//! Each line is written with a single `write(2)` on an `O_APPEND` descriptor, so concurrent hook
//! runs never interleave within a line. A log that cannot be written never fails an event: the
//! error goes to stderr (which libvirt logs) and the event carries on.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO ",
            Level::Warn => "WARN ",
            Level::Error => "ERROR",
        }
    }
}

/// Appends lines to the log file.
#[derive(Clone, Debug)]
pub struct Log {
    pub path: PathBuf,
}

impl Log {
    /// A log at `path` (created on first write, parent directory included).
    pub fn new(path: PathBuf) -> Log {
        Log { path }
    }

    /// Append `<timestamp> <LEVEL> <message>`. The message goes through [`one_line`], so one
    /// event stays one line and a hostile string (a guest name, an argument libvirt passed, a
    /// path) cannot forge a line or send terminal escapes to the admin reading the log.
    /// Returns false (after telling stderr) when the write failed.
    pub fn line(&self, level: Level, msg: &str) -> bool {
        let mut l = format!(
            "{} {} {}",
            timestamp(SystemTime::now()),
            level.as_str(),
            one_line(msg)
        );
        l.push('\n');
        match append(&self.path, l.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "virt-aa-hook: cannot write log {}: {e}",
                    self.path.display()
                );
                false
            }
        }
    }
}

/// The one-line escaper: control characters (newline, carriage return, escape, NUL, …) become
/// their Rust escapes (`\n`, `\u{1b}`), everything else stays as it is. Every string that
/// reaches the log, libvirt's error output or journald's `MESSAGE` goes through it.
pub fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    f.write_all(bytes)
}

/// RFC 3339 UTC timestamp with milliseconds, without pulling in a date crate.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The time since `t0` as the log shows it (`38.0 ms`): the hook's, the helper's and the
/// admin's reload lines all end with it.
pub fn elapsed_ms(t0: std::time::Instant) -> String {
    format!("{:.1} ms", t0.elapsed().as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_996_800_123);
        assert_eq!(timestamp(t), "2026-11-30T00:00:00.123Z");
    }

    #[test]
    fn lines_are_single_and_unwritable_log_is_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let log = Log::new(d.path().join("sub/x.log"));
        assert!(log.line(Level::Info, "a\nb\r\x1b[2J\0c"));
        let text = std::fs::read_to_string(&log.path).unwrap();
        assert!(
            text.ends_with("INFO  a\\nb\\r\\u{1b}[2J\\u{0}c\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
        let bad = Log::new(PathBuf::from("/proc/nope/x.log"));
        assert!(!bad.line(Level::Error, "x"));
    }
}
