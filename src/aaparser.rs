//! Driving `apparmor_parser`: compile checks, loads, unloads — each with a timeout.
//!
//! libvirt waits for a hook with no timeout at all, so a hung parser would hang the guest start
//! and the daemon's job for that guest. Every run here is killed (with its whole process group)
//! when it exceeds the configured time, and its stderr becomes part of our error.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

use crate::layout::APPARMOR_PARSER_CANDIDATES;

/// What went wrong with a parser run. One line each.
#[derive(Debug, Error)]
pub enum ParserError {
    #[error("apparmor_parser not found (looked in {})", APPARMOR_PARSER_CANDIDATES.join(", "))]
    NotFound,
    #[error("cannot run {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("apparmor_parser {action} timed out after {secs}s and was killed")]
    Timeout { action: &'static str, secs: u64 },
    #[error("apparmor_parser {action} failed (exit {code}): {stderr}")]
    Failed {
        action: &'static str,
        code: i32,
        stderr: String,
    },
}

/// Exit status of `apparmor_parser -R` for a profile that is not loaded.
const NOT_LOADED: i32 = 254;

/// A configured parser: binary, include dirs, binary cache dir, timeout.
#[derive(Clone, Debug)]
pub struct Parser {
    pub binary: PathBuf,
    pub include_dirs: Vec<PathBuf>,
    /// Private binary cache (`-W -L`), so an unchanged profile is not recompiled.
    pub cache_dir: Option<PathBuf>,
    pub timeout: Duration,
}

impl Parser {
    /// The parser as configured: binary (configured or found), include dirs, our private
    /// binary cache under the state directory, timeout.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Parser, ParserError> {
        Ok(Parser {
            binary: Parser::locate(cfg.apparmor_parser.as_deref())?,
            include_dirs: cfg.include_dirs(),
            cache_dir: Some(cfg.rooted(&cfg.state_dir).join("cache")),
            timeout: cfg.parser_timeout(),
        })
    }

    /// Find the binary (configured path first).
    pub fn locate(configured: Option<&Path>) -> Result<PathBuf, ParserError> {
        if let Some(p) = configured {
            return if p.exists() {
                Ok(p.to_path_buf())
            } else {
                Err(ParserError::NotFound)
            };
        }
        APPARMOR_PARSER_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(ParserError::NotFound)
    }

    fn base(&self, flags: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(flags);
        for d in &self.include_dirs {
            c.arg("-I").arg(d);
        }
        c
    }

    /// Compile a profile file without touching the kernel or any cache (`-Q -K`).
    pub fn check(&self, file: &Path) -> Result<(), ParserError> {
        let mut c = self.base(&["-Q", "-K"]);
        c.arg(file);
        self.run(c, "compile check")
    }

    /// Load or replace a profile in the kernel (`-r`), using the binary cache when the file is
    /// the final one (`use_cache`), never for temporary files.
    pub fn replace(&self, file: &Path, use_cache: bool) -> Result<(), ParserError> {
        let mut c = self.base(&["-r"]);
        match (&self.cache_dir, use_cache) {
            (Some(dir), true) => {
                let _ = std::fs::create_dir_all(dir);
                c.arg("-W").arg("-L").arg(dir);
            }
            _ => {
                c.arg("-K");
            }
        }
        c.arg(file);
        self.run(c, "load")
    }

    /// Unload the profile(s) defined in `file` (`-R`). Not loaded is not an error: returns
    /// `Ok(false)`.
    pub fn remove(&self, file: &Path) -> Result<bool, ParserError> {
        let mut c = self.base(&["-R", "-K"]);
        c.arg(file);
        match self.run(c, "unload") {
            Ok(()) => Ok(true),
            Err(ParserError::Failed { code, stderr, .. })
                if code == NOT_LOADED || code == 234 || stderr.contains("not found") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `apparmor_parser --version`'s first line.
    pub fn version(&self) -> Option<String> {
        let out = Command::new(&self.binary).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
    }

    fn run(&self, mut c: Command, action: &'static str) -> Result<(), ParserError> {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = c
            .spawn()
            .map_err(|e| ParserError::Spawn(self.binary.clone(), e))?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if start.elapsed() >= self.timeout => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(_) => break None,
            }
        };
        let Some(status) = status else {
            // SAFETY: signalling the process group we created for this child.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(ParserError::Timeout {
                action,
                secs: self.timeout.as_secs(),
            });
        };
        let err = reader.join().unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&err);
        let stderr = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Cache read/write disabled"))
            .collect::<Vec<_>>()
            .join(" | ");
        Err(ParserError::Failed {
            action,
            code: status.code().unwrap_or(-1),
            stderr,
        })
    }
}

/// Test support: an executable `#!/bin/sh` script at `path` (a stand-in `apparmor_parser`).
/// Written by a short-lived `sh`, never through a descriptor of this multi-threaded test
/// process: a sibling test forking meanwhile would inherit it and exec would fail with ETXTBSY
/// (seen in CI).
#[cfg(test)]
pub(crate) fn write_script(path: &Path, script: &str) {
    let mut w = Command::new("/bin/sh")
        .args(["-c", "cat >\"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut w.stdin.take().unwrap(),
        format!("#!/bin/sh\n{script}\n").as_bytes(),
    )
    .unwrap();
    assert!(w.wait().unwrap().success());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path, script: &str) -> Parser {
        let p = dir.join("fake_parser");
        write_script(&p, script);
        Parser {
            binary: p,
            include_dirs: vec![],
            cache_dir: None,
            timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn hanging_parser_is_killed() {
        let d = tempfile::tempdir().unwrap();
        let p = fake(d.path(), "sleep 30 & sleep 30");
        let t = Instant::now();
        let e = p.check(Path::new("/x")).unwrap_err();
        assert!(matches!(e, ParserError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn failing_parser_reports_stderr_on_one_line() {
        let d = tempfile::tempdir().unwrap();
        let p = fake(
            d.path(),
            "echo 'AppArmor parser error at line 3:' >&2; echo 'bad' >&2; exit 1",
        );
        let e = p.check(Path::new("/x")).unwrap_err().to_string();
        assert_eq!(
            e,
            "apparmor_parser compile check failed (exit 1): AppArmor parser error at line 3: | bad"
        );
        let p = fake(d.path(), "echo 'Profile doesn'\"'\"'t exist' >&2; exit 254");
        assert!(!p.remove(Path::new("/x")).unwrap());
    }
}
