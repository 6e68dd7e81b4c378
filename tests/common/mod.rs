//! Helpers shared by the integration tests: run the real binary, compile with the real parser.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `virt-aa-hook` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_virt-aa-hook"))
}

/// The project's test corpus directory.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Run the binary with args and stdin, with a clean config environment.
pub fn run(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("VIRT_AA_HOOK_ROOT")
        .env("VIRT_AA_HOOK_CONFIG", "/nonexistent/virt-aa-hook.conf")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn virt-aa-hook");
    let mut si = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = w.join();
    out
}

/// Compile a profile with the real `apparmor_parser -Q -K`; `Err(stderr)` on failure.
pub fn compile(profile_text: &str, extra_include: Option<&Path>) -> Result<(), String> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("profile");
    std::fs::write(&f, profile_text).unwrap();
    compile_file(&f, extra_include)
}

/// Compile a profile file with the real parser.
pub fn compile_file(f: &Path, extra_include: Option<&Path>) -> Result<(), String> {
    let mut c = Command::new(parser());
    c.args(["-Q", "-K"]);
    if let Some(i) = extra_include {
        c.arg("-I").arg(i);
    }
    c.args(["-I", "/etc/apparmor.d"]).arg(f);
    let out = c.output().expect("run apparmor_parser");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Path of the real parser (the test command installs the `apparmor` package).
pub fn parser() -> &'static str {
    for p in ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("apparmor_parser is not installed: run tests/run.sh (it installs the apparmor package)");
}

/// Parse rule lines `  "<pattern>" <perms>,` into (pattern, perms).
pub fn rule_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if !l.starts_with('"') || !l.ends_with(',') {
                return None;
            }
            // find the closing quote that is not escaped
            let b = l.as_bytes();
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            let pat = l[1..i].to_string();
            let perms = l[i + 1..].trim().trim_end_matches(',').trim().to_string();
            Some((pat, perms))
        })
        .collect()
}

/// Write an executable script without ever holding a write descriptor to it in this process.
///
/// Tests run in parallel threads: a file written here with `std::fs::write` and exec'd right after
/// can fail with ETXTBSY ("Text file busy") when another thread forks at that moment, because the
/// child inherits the write descriptor until it execs. A short-lived `sh` writes it instead.
#[allow(dead_code)]
pub fn write_script(path: &Path, body: &str) {
    use std::io::Write;
    let mut c = Command::new("/bin/sh")
        .args(["-c", "cat >\"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    c.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    assert!(
        c.wait().unwrap().success(),
        "cannot write {}",
        path.display()
    );
}
