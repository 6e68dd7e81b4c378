//! What the integration tests share: one temporary-root fixture ([`TempRoot`]), running the real
//! binary, compiling with the real parser, and the skip-or-fail rule for missing tools.

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

/// A temporary host root (`VIRT_AA_HOOK_ROOT`) holding the shipped template and a config file:
/// every test that runs the hook or the helper runs it against one of these.
pub struct TempRoot {
    pub dir: tempfile::TempDir,
    /// The config file (`VIRT_AA_HOOK_CONFIG`), inside the root.
    pub conf: PathBuf,
}

impl TempRoot {
    /// A root whose config file holds `conf` (`""`: all defaults).
    pub fn new(conf: &str) -> TempRoot {
        let dir = tempfile::tempdir().unwrap();
        let conf_path = dir.path().join("virt-aa-hook.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let t = dir.path().join("etc/libvirt/virt-aa-hook.template");
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/template.qemu"),
            t,
        )
        .unwrap();
        TempRoot {
            dir,
            conf: conf_path,
        }
    }

    /// `rel` inside the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The text of `rel` inside the root, if it is there.
    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// The guest profile of `uuid`.
    pub fn profile(&self, uuid: &str) -> PathBuf {
        self.path(&format!("etc/apparmor.d/libvirt/libvirt-{uuid}"))
    }

    /// The admin's log so far.
    pub fn log(&self) -> String {
        self.read("var/log/libvirt/virt-aa-hook.log")
            .unwrap_or_default()
    }

    /// Run the binary with `args` and `stdin` against this root and its config.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run(
            args,
            stdin,
            &[
                ("VIRT_AA_HOOK_ROOT", self.dir.path().to_str().unwrap()),
                ("VIRT_AA_HOOK_CONFIG", self.conf.to_str().unwrap()),
            ],
        )
    }

    /// `virt-aa-hook hook <args>`: exit code, stdout, stderr.
    pub fn hook(&self, args: &[&str], xml: &[u8]) -> (i32, String, String) {
        let mut a = vec!["hook"];
        a.extend_from_slice(args);
        let out = self.run(&a, xml);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `virt-aa-hook helper -- <args>` (virt-aa-helper's argv): exit code, stderr.
    pub fn helper(&self, args: &[&str], xml: &[u8]) -> (i32, String) {
        let mut a = vec!["helper", "--"];
        a.extend_from_slice(args);
        let out = self.run(&a, xml);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Whether the tests run as root (mounts, the differential against libvirt's helper).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skip with a message, or fail under tests/run.sh (VIRT_AA_HOOK_TESTS_STRICT), where a skip
/// would hide a broken set-up behind a green run.
pub fn skip_or_fail(msg: &str) {
    assert!(
        std::env::var_os("VIRT_AA_HOOK_TESTS_STRICT").is_none(),
        "{msg} (VIRT_AA_HOOK_TESTS_STRICT is set: not skipping)"
    );
    eprintln!("SKIPPED: {msg}");
}

/// Write an executable script without ever holding a write descriptor to it in this process.
///
/// Tests run in parallel threads: a file written here with `std::fs::write` and exec'd right after
/// can fail with ETXTBSY ("Text file busy") when another thread forks at that moment, because the
/// child inherits the write descriptor until it execs. A short-lived `sh` writes it instead.
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
