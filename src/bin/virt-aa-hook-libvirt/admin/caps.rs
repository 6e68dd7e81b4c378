//! `caps`: ask libvirt what this host offers and write the capability cache the hook reads.
//!
//! The hook must never call libvirt (it runs while the daemon waits for it), so everything it
//! needs to know about the host — is libvirt's AppArmor driver active, which emulators and
//! firmware images may a guest use — is collected here and stored with
//! [`virt_aa_hook::caps::Caps::store`]. The hook starts `caps --background` when the cache is
//! missing or stale, including right after a daemon restart, so that mode tolerates a daemon
//! that is not accepting connections yet.

use super::conn::{self, Libvirt, LvError};
use anyhow::{Context, Result, anyhow};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use virt::connect::Connect;
use virt_aa_hook::caps::{CACHE_VERSION, Caps};
use virt_aa_hook::config::Config;
use virt_aa_hook::layout::LIBEXEC_DIR;
use virt_aa_hook::mode::HostKey;
use virt_aa_hook::xml::{self, Element};

/// Longest time `--background` keeps retrying a daemon that is not accepting connections.
pub const BACKGROUND_RETRY_WINDOW: Duration = Duration::from_secs(60);

/// A background refresh skips its work when the cache is younger than this: several hooks
/// firing together would otherwise refresh one after another.
pub const BACKGROUND_FRESH_ENOUGH: Duration = Duration::from_secs(30);

/// One `<guest><arch>` of the host capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestArch {
    /// `hvm`, `xen`, ...
    pub os_type: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// The arch's default `<emulator>`.
    pub emulator: Option<String>,
    /// Machine type names, aliases included (`pc`, `q35`, `pc-q35-7.2`).
    pub machines: Vec<String>,
    /// `<domain type=...>` entries with their own `<emulator>` if they override the arch's.
    pub domains: Vec<(String, Option<String>)>,
}

/// The parts of `virConnectGetCapabilities` we use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCaps {
    /// `<host><secmodel><model>` values, in libvirt's order.
    pub secmodels: Vec<String>,
    /// The `<guest><arch>` entries: where emulators and machine types come from.
    pub arches: Vec<GuestArch>,
}

/// One `virConnectGetDomainCapabilities` question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomcapsQuery {
    /// Emulator binary to describe.
    pub emulator: String,
    /// Guest architecture.
    pub arch: String,
    /// `None`: the arch's default machine.
    pub machine: Option<String>,
    /// `kvm` or `qemu` (firmware support differs).
    pub virttype: String,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !s.is_empty() && !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Parse host capabilities XML.
pub fn parse_capabilities(text: &str) -> Result<HostCaps> {
    let root = xml::parse(text.as_bytes()).context("capabilities XML")?;
    if root.name != "capabilities" {
        return Err(anyhow!(
            "capabilities XML has root <{}>, expected <capabilities>",
            root.name
        ));
    }
    let mut caps = HostCaps::default();
    if let Some(host) = root.child("host") {
        for sm in host.children_named("secmodel") {
            if let Some(m) = sm.child("model").and_then(Element::text_nonempty) {
                push_unique(&mut caps.secmodels, m);
            }
        }
    }
    for g in root.children_named("guest") {
        let os_type = g
            .child("os_type")
            .and_then(Element::text_nonempty)
            .unwrap_or("")
            .to_string();
        for a in g.children_named("arch") {
            let mut ga = GuestArch {
                os_type: os_type.clone(),
                arch: a.attr("name").unwrap_or("").to_string(),
                emulator: a
                    .child("emulator")
                    .and_then(Element::text_nonempty)
                    .map(str::to_string),
                ..Default::default()
            };
            for m in a.children_named("machine") {
                if let Some(n) = m.text_nonempty() {
                    push_unique(&mut ga.machines, n);
                }
            }
            for d in a.children_named("domain") {
                let emu = d
                    .child("emulator")
                    .and_then(Element::text_nonempty)
                    .map(str::to_string);
                ga.domains
                    .push((d.attr("type").unwrap_or("").to_string(), emu));
            }
            caps.arches.push(ga);
        }
    }
    Ok(caps)
}

impl HostCaps {
    /// Every emulator binary libvirt knows, arch defaults and per-domain-type overrides.
    pub fn emulators(&self) -> Vec<String> {
        let mut v = Vec::new();
        for a in &self.arches {
            if let Some(e) = &a.emulator {
                push_unique(&mut v, e);
            }
            for (_, e) in &a.domains {
                if let Some(e) = e {
                    push_unique(&mut v, e);
                }
            }
        }
        v
    }

    /// The domain-capability questions worth asking: per hardware-virtualised arch, its
    /// default machine plus the machine type that offers more firmware (`q35` on x86, `virt`
    /// on ARM/RISC-V), with `kvm` when the host offers it, else `qemu`.
    pub fn domcaps_queries(&self) -> Vec<DomcapsQuery> {
        let mut out: Vec<DomcapsQuery> = Vec::new();
        for a in self.arches.iter().filter(|a| a.os_type == "hvm") {
            let kvm = a.domains.iter().find(|(t, _)| t == "kvm");
            let (virttype, emu) = match kvm {
                Some((_, e)) => ("kvm", e.clone().or_else(|| a.emulator.clone())),
                None => ("qemu", a.emulator.clone()),
            };
            let Some(emulator) = emu else { continue };
            let mut machines = vec![None];
            for extra in ["q35", "virt"] {
                if a.machines.iter().any(|m| m == extra) {
                    machines.push(Some(extra.to_string()));
                }
            }
            for machine in machines {
                let q = DomcapsQuery {
                    emulator: emulator.clone(),
                    arch: a.arch.clone(),
                    machine,
                    virttype: virttype.to_string(),
                };
                if !out.contains(&q) {
                    out.push(q);
                }
            }
        }
        out
    }
}

/// Firmware images from domain capabilities XML (`<os><loader><value>`).
pub fn parse_domcaps_firmware(text: &str) -> Result<Vec<String>> {
    let root = xml::parse(text.as_bytes()).context("domain capabilities XML")?;
    let mut v = Vec::new();
    if let Some(loader) = root.path(&["os", "loader"]) {
        for val in loader.children_named("value") {
            if let Some(t) = val.text_nonempty() {
                push_unique(&mut v, t);
            }
        }
    }
    Ok(v)
}

/// NVRAM templates of the firmware images libvirt offers, from the QEMU firmware descriptors
/// (`mapping.executable.filename` → `mapping.nvram-template.filename`). Domain capabilities do
/// not list them; these descriptors are where libvirt itself finds them.
pub fn nvram_templates(dirs: &[PathBuf], firmware: &[String]) -> Vec<String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            v.sort();
            files.extend(v);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(Some(bytes)) = virt_aa_hook::store::read_capped(&f) else {
            continue;
        };
        let Ok(j) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let exe = j["mapping"]["executable"]["filename"].as_str();
        let tpl = j["mapping"]["nvram-template"]["filename"].as_str();
        if let (Some(exe), Some(tpl)) = (exe, tpl) {
            if firmware.iter().any(|f| f == exe) {
                push_unique(&mut out, tpl);
            }
        }
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Ask libvirt everything the cache holds. Domain-capability questions that fail (a driver
/// without them, an emulator that cannot be probed) become warnings, not errors: the rest of the
/// cache is still right.
pub fn collect(conn: &Connect, uri: &str) -> Result<(Caps, Vec<String>)> {
    let lib =
        Connect::version().map_err(|e| anyhow!("libvirt library version: {}", conn::msg(&e)))?;
    let daemon = conn
        .lib_version()
        .map_err(|e| anyhow!("libvirt daemon version: {}", conn::msg(&e)))?;
    let text = conn
        .capabilities()
        .map_err(|e| anyhow!("capabilities: {}", conn::msg(&e)))?;
    let host = parse_capabilities(&text)?;
    let mut warnings = Vec::new();
    let mut firmware = Vec::new();
    for q in host.domcaps_queries() {
        let attempt = |virttype: &str| {
            conn.domain_capabilities(
                Some(&q.emulator),
                Some(&q.arch),
                q.machine.as_deref(),
                Some(virttype),
                0,
            )
        };
        let mut res = attempt(&q.virttype);
        if res.is_err() && q.virttype == "kvm" {
            res = attempt("qemu");
        }
        match res {
            Ok(x) => match parse_domcaps_firmware(&x) {
                Ok(fw) => fw.iter().for_each(|f| push_unique(&mut firmware, f)),
                Err(e) => warnings.push(format!("{}: {e:#}", q.emulator)),
            },
            Err(e) => warnings.push(format!(
                "domain capabilities of {} ({} {} {}): {}",
                q.emulator,
                q.arch,
                q.machine.as_deref().unwrap_or("default machine"),
                q.virttype,
                conn::msg(&e)
            )),
        }
    }
    let dirs: Vec<PathBuf> = virt_aa_hook::layout::FIRMWARE_DESCRIPTOR_DIRS
        .iter()
        .map(PathBuf::from)
        .collect();
    let nvram = nvram_templates(&dirs, &firmware);
    let caps = Caps {
        version: CACHE_VERSION,
        generated_at: now_secs(),
        uri: uri.to_string(),
        libvirt_version: conn::version_string(lib),
        daemon_version: conn::version_string(daemon),
        secmodels: host.secmodels.clone(),
        emulators: host.emulators(),
        firmware,
        nvram_templates: nvram,
        // Set by the caller right after the query, from the host it ran on.
        host_key: None,
    };
    Ok((caps, warnings))
}

/// The readable summary `caps` prints.
pub fn summary(c: &Caps, cache: &Path) -> String {
    let mut s = String::new();
    let list = |s: &mut String, title: &str, v: &[String]| {
        s.push_str(&format!("{title} ({}):\n", v.len()));
        for x in v {
            s.push_str(&format!("  {x}\n"));
        }
    };
    s.push_str(&format!(
        "libvirt {} (daemon {}) at {}\n",
        c.libvirt_version, c.daemon_version, c.uri
    ));
    s.push_str(&format!("security models: {}\n", c.secmodels.join(", ")));
    s.push_str(&format!(
        "libvirt AppArmor driver: {}\n",
        if c.apparmor_driver() {
            "active"
        } else {
            "inactive"
        }
    ));
    list(&mut s, "emulators", &c.emulators);
    list(&mut s, "firmware", &c.firmware);
    list(&mut s, "nvram templates", &c.nvram_templates);
    s.push_str(&format!("cache written to {}\n", cache.display()));
    s
}

/// An exclusive, non-blocking `flock` on `<state_dir>/caps.lock`, held until drop, so that
/// several hooks firing at once start one refresher, not N.
pub struct RefreshLock {
    _file: std::fs::File,
}

impl RefreshLock {
    /// `Ok(None)` when another refresher holds it.
    pub fn try_acquire(path: &Path) -> std::io::Result<Option<RefreshLock>> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; no memory is touched.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(Some(RefreshLock { _file: f }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}

/// Update the ctime of every emulator wrapper (`chmod` to its own mode). libvirt caches an
/// emulator's capabilities keyed by the binary's ctime; a wrapper's ctime does not change when
/// QEMU is upgraded, so without this libvirt keeps describing the old QEMU.
pub fn touch_wrappers(dir: &Path) -> Vec<Result<PathBuf, String>> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(virt_aa_hook::layout::WRAPPER_PREFIX))
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let mode = std::fs::metadata(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .permissions()
                .mode();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        })
        .collect()
}

/// Options of the `caps` command.
pub struct CapsArgs {
    /// Print the cache as JSON (for scripts).
    pub json: bool,
    /// Started by the hook: silent, locked, retrying.
    pub background: bool,
    /// Touch the wrappers so libvirt re-probes QEMU.
    pub refresh: bool,
}

/// Run `caps`.
pub fn run(cfg: &Config, lv: &Libvirt, a: &CapsArgs) -> Result<i32> {
    let cache = cfg.caps_path();
    let lock_path = cfg.rooted(&cfg.state_dir).join("caps.lock");
    if a.background {
        return Ok(background(cfg, lv, &cache, &lock_path, a.refresh));
    }
    let _lock = match RefreshLock::try_acquire(&lock_path) {
        Ok(Some(l)) => Some(l),
        Ok(None) => {
            eprintln!("note: a background refresh is running; querying anyway");
            None
        }
        Err(e) => {
            eprintln!("warning: cannot take {}: {e}", lock_path.display());
            None
        }
    };
    if a.refresh {
        let dir = Path::new(LIBEXEC_DIR);
        let touched = touch_wrappers(dir);
        if touched.is_empty() {
            println!("no emulator wrappers in {} to touch", dir.display());
        }
        for t in &touched {
            match t {
                Ok(p) => println!("touched {} (libvirt re-probes it at next use)", p.display()),
                Err(e) => eprintln!("warning: cannot touch {e}"),
            }
        }
    }
    let uri = lv.uri.clone();
    let (mut caps, warnings) = lv.run(move |c| collect(c, &uri))?;
    caps.host_key = Some(HostKey::current(&cfg.root));
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    caps.store(&cache)
        .with_context(|| format!("cannot write the cache {}", cache.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&caps)?);
    } else {
        print!("{}", summary(&caps, &cache));
    }
    Ok(0)
}

/// `caps --background`: silent, one refresher at a time, retrying a daemon that is not up yet
/// with exponential backoff (0.5 s doubling, within [`BACKGROUND_RETRY_WINDOW`]). Exit status
/// 0 = written or not needed, 1 = gave up.
fn background(cfg: &Config, lv: &Libvirt, cache: &Path, lock_path: &Path, refresh: bool) -> i32 {
    let _lock = match RefreshLock::try_acquire(lock_path) {
        Ok(Some(l)) => l,
        Ok(None) => return 0,
        Err(_) => return 1,
    };
    if let Some(c) = Caps::load(cache) {
        // Fresh and written under today's host facts: another refresher just did the work.
        if !refresh && !c.needs_refresh(BACKGROUND_FRESH_ENOUGH, &HostKey::current(&cfg.root)) {
            return 0;
        }
    }
    if refresh {
        let _ = touch_wrappers(Path::new(LIBEXEC_DIR));
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let uri = lv.uri.clone();
        match lv.run(move |c| collect(c, &uri)) {
            Ok((mut caps, _)) => {
                caps.host_key = Some(HostKey::current(&cfg.root));
                return if caps.store(cache).is_ok() { 0 } else { 1 };
            }
            Err(LvError::Unreachable(_)) => {
                let left = BACKGROUND_RETRY_WINDOW.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return 1;
                }
                std::thread::sleep(delay.min(left));
                delay *= 2;
            }
            Err(LvError::Failed(_)) => return 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = r#"<capabilities>
  <host><uuid>x</uuid>
    <secmodel><model>none</model><doi>0</doi></secmodel>
    <secmodel><model>dac</model><doi>0</doi><baselabel type='kvm'>+64055:+64055</baselabel></secmodel>
  </host>
  <guest><os_type>hvm</os_type>
    <arch name='x86_64'><wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'><emulator>/usr/bin/kvm</emulator></domain>
    </arch>
  </guest>
  <guest><os_type>hvm</os_type>
    <arch name='aarch64'><emulator>/usr/bin/qemu-system-aarch64</emulator>
      <machine>virt-7.2</machine><machine canonical='virt-7.2'>virt</machine>
      <domain type='qemu'/>
    </arch>
  </guest>
  <guest><os_type>xen</os_type>
    <arch name='i686'><emulator>/usr/bin/test-hv</emulator><domain type='test'/></arch>
  </guest>
</capabilities>"#;

    #[test]
    fn host_capabilities_parse() {
        let c = parse_capabilities(HOST).unwrap();
        assert_eq!(c.secmodels, vec!["none", "dac"]);
        assert_eq!(
            c.emulators(),
            vec![
                "/usr/bin/qemu-system-x86_64",
                "/usr/bin/kvm",
                "/usr/bin/qemu-system-aarch64",
                "/usr/bin/test-hv"
            ]
        );
        let q = c.domcaps_queries();
        assert_eq!(q.len(), 4, "{q:?}");
        assert_eq!(
            q[0],
            DomcapsQuery {
                emulator: "/usr/bin/kvm".into(),
                arch: "x86_64".into(),
                machine: None,
                virttype: "kvm".into()
            }
        );
        assert_eq!(q[1].machine.as_deref(), Some("q35"));
        assert_eq!(q[2].virttype, "qemu");
        assert_eq!(q[3].machine.as_deref(), Some("virt"));
        assert!(parse_capabilities("<domain/>").is_err());
    }

    #[test]
    fn domain_capabilities_firmware() {
        let x = r#"<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path>
          <os supported='yes'><enum name='firmware'><value>efi</value></enum>
            <loader supported='yes'>
              <value>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</value>
              <value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>
              <enum name='type'><value>rom</value><value>pflash</value></enum>
            </loader></os></domainCapabilities>"#;
        assert_eq!(
            parse_domcaps_firmware(x).unwrap(),
            vec![
                "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
                "/usr/share/OVMF/OVMF_CODE_4M.fd"
            ]
        );
        assert!(
            parse_domcaps_firmware("<domainCapabilities/>")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn nvram_templates_from_descriptors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("50-x.json"),
            r#"{"mapping":{"device":"flash","executable":{"filename":"/fw/CODE.fd"},
                "nvram-template":{"filename":"/fw/VARS.fd"}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("60-y.json"),
            r#"{"mapping":{"executable":{"filename":"/fw/OTHER.fd"},
                "nvram-template":{"filename":"/fw/OTHER_VARS.fd"}}}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("70-bad.json"), "{").unwrap();
        let v = nvram_templates(&[d.path().to_path_buf()], &["/fw/CODE.fd".to_string()]);
        assert_eq!(v, vec!["/fw/VARS.fd"]);
    }

    #[test]
    #[serial_test::serial]
    fn test_driver_capabilities() {
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let (caps, warnings) = lv.run(|c| collect(c, "test:///default")).unwrap();
        assert_eq!(caps.secmodels, vec!["testSecurity"]);
        assert_eq!(caps.emulators, vec!["/usr/bin/test-hv"]);
        assert!(!caps.apparmor_driver());
        assert_eq!(caps.version, CACHE_VERSION);
        assert!(
            caps.libvirt_version
                .starts_with(|c: char| c.is_ascii_digit())
        );
        // The test driver has no domain capabilities before libvirt 9.8: a warning, not a failure.
        assert!(warnings.len() <= 1, "{warnings:?}");
        let s = summary(&caps, Path::new("/x/caps.json"));
        assert!(s.contains("libvirt AppArmor driver: inactive"), "{s}");
        assert!(s.contains("emulators (1):\n  /usr/bin/test-hv\n"), "{s}");
    }

    #[test]
    fn refresh_lock_is_exclusive_and_wrappers_are_touched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state/caps.lock");
        let a = RefreshLock::try_acquire(&p).unwrap();
        assert!(a.is_some());
        assert!(RefreshLock::try_acquire(&p).unwrap().is_none());
        drop(a);
        assert!(RefreshLock::try_acquire(&p).unwrap().is_some());

        std::fs::write(d.path().join("virt-aa-hook.qemu-system-x86_64"), "x").unwrap();
        std::fs::write(d.path().join("virt-aa-helper"), "x").unwrap();
        let t = touch_wrappers(d.path());
        assert_eq!(t.len(), 1);
        assert!(
            t[0].as_ref()
                .unwrap()
                .ends_with("virt-aa-hook.qemu-system-x86_64")
        );
    }
}
