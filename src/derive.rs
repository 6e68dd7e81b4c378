//! Domain definition → access rules: what this guest's QEMU may open, device by device.
//!
//! Covers everything libvirt's `virt-aa-helper` grants (same or narrower permissions) plus the
//! devices it misses (virtiofs, chardev logs, RNG, TPM passthrough, SCSI hostdevs, NVMe,
//! vhost-user disks, redirdevs, memory backing, SEV, recursive `type='dir'` disks, non-standard
//! emulators). Paths from the XML are granted through [`RuleSet::grant`], which validates,
//! resolves, polices and escapes them; the few globs we write ourselves are fixed strings.

use crate::backing;
use crate::domain::Domain;
use crate::paths::{self, PathError};
use crate::rules::{GrantError, Perms, RuleSet, Scope};
use crate::xml::Element;
use std::path::{Path, PathBuf};

/// Knobs for derivation; the defaults are what the hook uses.
#[derive(Clone, Debug)]
pub struct Options {
    /// Read image headers to find backing chains when the XML has no `<backingStore>`.
    pub probe_backing: bool,
    /// Deepest backing chain followed (libvirt uses 200).
    pub max_chain_depth: usize,
    /// Firmware images libvirt may autoselect for `<os firmware='efi'>` (from the capability
    /// cache); granted read-only while the XML has no resolved `<loader>` yet (`prepare`).
    pub firmware: Vec<String>,
    /// Host root for host lookups (sysfs, /dev, /proc/mounts); `/` except in tests.
    pub host_root: PathBuf,
    /// Real emulator to use when `<emulator>` is our wrapper (from the enroll metadata).
    pub wrapper_prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            probe_backing: true,
            max_chain_depth: 200,
            firmware: Vec::new(),
            host_root: PathBuf::from("/"),
            wrapper_prefix: crate::layout::WRAPPER_PATH_PREFIX.into(),
        }
    }
}

/// The rules for one guest plus the warnings met on the way (unreadable images, skipped
/// relative paths, devices that are absent on this host).
#[derive(Debug, Default)]
pub struct Derived {
    pub rules: RuleSet,
    pub warnings: Vec<String>,
}

/// Derive the rules for a domain. Fails only on input that must not start (a refused host
/// path, a control character): the error names the element and the value.
pub fn derive(dom: &Domain, opts: &Options) -> Result<Derived, GrantError> {
    let mut cx = Cx {
        dom,
        opts,
        out: Derived::default(),
        needs_vfio: false,
        needs_gl: false,
        resolver: paths::Resolver::new(),
        headers: backing::HeaderCache::default(),
    };
    cx.base();
    cx.emulator();
    let devices = dom.root.child("devices");
    if let Some(devs) = devices {
        for (i, disk) in devs.children_named("disk").enumerate() {
            cx.disk(disk, i)?;
        }
        for kind in ["serial", "parallel", "console", "channel"] {
            for (i, c) in devs.children_named(kind).enumerate() {
                let label = label_of(kind, c, i);
                cx.chardev(&label, c)?;
            }
        }
    }
    cx.channel_dirs();
    cx.os()?;
    if let Some(devs) = devices {
        for (i, g) in devs.children_named("graphics").enumerate() {
            cx.graphics(g, i)?;
        }
        for (i, h) in devs.children_named("hostdev").enumerate() {
            cx.hostdev(h, i)?;
        }
        for (i, f) in devs.children_named("filesystem").enumerate() {
            cx.filesystem(f, i)?;
        }
        for (i, inp) in devs.children_named("input").enumerate() {
            // <input type='passthrough'><source evdev=…> (virtio-input-host, libvirt 1.3) and
            // <input type='evdev'><source dev=…> (input-linux, libvirt 7.4; virt-aa-helper
            // up to 12.x grants only the first).
            let src = inp.child("source");
            let ev = match inp.attr("type") {
                Some("passthrough") => src.and_then(|s| s.attr_nonempty("evdev")),
                Some("evdev") => src.and_then(|s| s.attr_nonempty("dev")),
                _ => None,
            };
            if let Some(ev) = ev {
                cx.grant(&label_of("input", inp, i), ev, Perms::RW, Scope::File)?;
            }
        }
        for (i, n) in devs.children_named("interface").enumerate() {
            cx.interface(n, i)?;
        }
        for (i, m) in devs.children_named("memory").enumerate() {
            cx.memory_device(m, i)?;
        }
        for (i, s) in devs.children_named("shmem").enumerate() {
            cx.shmem(s, i)?;
        }
        for (i, t) in devs.children_named("tpm").enumerate() {
            cx.tpm(t, i)?;
        }
        for (i, s) in devs.children_named("smartcard").enumerate() {
            cx.smartcard(s, i)?;
        }
        for (i, r) in devs.children_named("rng").enumerate() {
            cx.rng(r, i)?;
        }
        for (i, r) in devs.children_named("redirdev").enumerate() {
            cx.chardev(&label_of("redirdev", r, i), r)?;
        }
        for (i, p) in devs.children_named("pstore").enumerate() {
            if let Some(path) = p.child("path").and_then(|e| e.text_nonempty()) {
                cx.grant(&label_of("pstore", p, i), path, Perms::RW, Scope::File)?;
            }
        }
        for (i, a) in devs.children_named("audio").enumerate() {
            if a.attr("type") == Some("file") {
                if let Some(p) = a.attr_nonempty("path") {
                    cx.grant(&label_of("audio", a, i), p, Perms::RW, Scope::File)?;
                }
            }
        }
    }
    cx.sysinfo()?;
    cx.memory_backing()?;
    cx.launch_security()?;
    cx.qemu_commandline()?;
    if cx.needs_vfio {
        cx.out.rules.fixed("/dev/vfio/vfio", Perms::RW);
    }
    if cx.needs_gl {
        cx.gl_block();
    }
    Ok(cx.out)
}

/// A label like `disk 'vda'`, `serial 'serial0'` or `hostdev #2` for error messages.
fn label_of(kind: &str, el: &Element, index: usize) -> String {
    let ident = match kind {
        "disk" => el.child("target").and_then(|t| t.attr_nonempty("dev")),
        "filesystem" => el.child("target").and_then(|t| t.attr_nonempty("dir")),
        _ => None,
    }
    .or_else(|| el.child("alias").and_then(|a| a.attr_nonempty("name")));
    match ident {
        Some(id) => format!("{kind} '{id}'"),
        None => format!("{kind} #{}", index + 1),
    }
}

struct Cx<'a> {
    dom: &'a Domain,
    opts: &'a Options,
    out: Derived,
    needs_vfio: bool,
    needs_gl: bool,
    /// This derivation's path resolution: every path of the guest is resolved through it, and
    /// the backing-chain prober is lent it (see [`paths::Resolver`]).
    resolver: paths::Resolver,
    headers: backing::HeaderCache,
}

impl Cx<'_> {
    fn warn(&mut self, msg: String) {
        self.out.warnings.push(crate::rules::one_line(&msg));
    }

    /// Grant a path from the XML. Relative paths are skipped with a warning (TCP consoles and
    /// the like reach here as non-paths), every other problem is an error.
    fn grant(
        &mut self,
        dev: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<(), GrantError> {
        self.grant_path(dev, raw, perms, scope).map(|_| ())
    }

    /// Like [`grant`](Self::grant), returning the resolved path (`None` when skipped).
    fn grant_path(
        &mut self,
        dev: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<Option<PathBuf>, GrantError> {
        match self
            .out
            .rules
            .grant(&mut self.resolver, dev, raw, perms, scope)
        {
            Err(GrantError {
                cause: PathError::NotAbsolute(p),
                ..
            }) => {
                self.warn(format!("{dev}: skipping non-absolute path {p:?}"));
                Ok(None)
            }
            r => r.map(Some),
        }
    }

    /// A pattern built from our fixed text plus an escaped piece of the input (the domain
    /// name); never goes through the host policy because the fixed part decides where it lands.
    fn fixed_with_name(&mut self, before: &str, name: &str, after: &str, perms: Perms) {
        let p = format!("{before}{}{after}", paths::escape(name));
        self.out.rules.fixed(&p, perms);
    }

    /// The per-domain rules libvirt's helper always writes: log, monitor socket, pid, domain
    /// directories, tunnelled-migration socket.
    fn base(&mut self) {
        let name = self.dom.name.clone();
        self.fixed_with_name("/var/log/libvirt/**/", &name, ".log", Perms::W);
        self.fixed_with_name(
            "/var/lib/libvirt/qemu/domain-",
            &name,
            "/monitor.sock",
            Perms::RW,
        );
        for short in self.dom.short_names() {
            self.fixed_with_name("/var/lib/libvirt/qemu/domain-", &short, "/*", Perms::RW);
            self.fixed_with_name("/var/lib/libvirt/qemu/domain-", &short, "/", Perms::R);
            self.fixed_with_name("/var/lib/libvirt/qemu/domain-", &short, "/**", Perms::RWK);
        }
        self.fixed_with_name("/run/libvirt/**/", &name, ".pid", Perms::RWK);
        self.fixed_with_name(
            "/run/libvirt/**/*.tunnelmigrate.dest.",
            &name,
            "",
            Perms::RW,
        );
        // Post-copy migration: libvirt ≥ 9.x (11.3: qemuProcessAllowPostCopyMigration) adds
        // /dev/userfaultfd to every guest's profile at start when the host has it and
        // cgroup_device_acl allows it, so QEMU can create userfaultfds without the
        // vm.unprivileged_userfaultfd sysctl. Granted here so standalone mode matches.
        self.out.rules.fixed("/dev/userfaultfd", Perms::RW);
    }

    /// The per-guest directory of auto-generated channel sockets (`<channel type='unix'>`
    /// without a path; the live XML then names the socket libvirt made up). libvirt moved it
    /// in 9.7.0 (qemu_domain.c, qemuDomainChrDefDropDefaultPath):
    /// - 1.3.3 – 9.6: `/var/lib/libvirt/qemu/channel/target/domain-<id>-<short name>/<target>`
    /// - 9.7.0 on:   `/run/libvirt/qemu/channel/<id>-<short name>/<target>`
    ///
    /// The directory of whichever layout the XML's socket paths use is granted; an XML without
    /// paths yet (the `prepare` event) gets both, since it does not tell the libvirt version.
    fn channel_dirs(&mut self) {
        const OLD: &str = "/var/lib/libvirt/qemu/channel/target/";
        const NEW: &str = "/run/libvirt/qemu/channel/";
        let Some(devs) = self.dom.root.child("devices") else {
            return;
        };
        let (mut old, mut new) = (false, false);
        for c in devs.children_named("channel") {
            if c.attr("type") != Some("unix") {
                continue;
            }
            match c.child("source").and_then(|s| s.attr_nonempty("path")) {
                Some(p) if p.starts_with(OLD) => old = true,
                Some(p) if p.starts_with(NEW) => new = true,
                Some(_) => {}
                None => {
                    if c.child("target").and_then(|t| t.attr("type")) == Some("virtio") {
                        (old, new) = (true, true);
                    }
                }
            }
        }
        for short in self.dom.short_names() {
            if old {
                self.fixed_with_name(&format!("{OLD}domain-"), &short, "/{,*}", Perms::RW);
            }
            if new {
                self.fixed_with_name(NEW, &short, "/{,*}", Perms::RW);
            }
        }
    }

    /// QEMU is exec'd after the profile switch, so a non-standard emulator (not in the
    /// abstraction's `/usr/bin/qemu*` list) must be executable inside the profile. When the
    /// emulator is our wrapper, grant the real emulator it will exec.
    fn emulator(&mut self) {
        let Some(emu) = self.dom.emulator.clone() else {
            return;
        };
        let real = if let Some(tail) = emu.strip_prefix(&self.opts.wrapper_prefix) {
            self.dom
                .settings
                .original_emulator
                .clone()
                .unwrap_or_else(|| format!("/usr/bin/{tail}"))
        } else {
            emu
        };
        let resolved = match self.resolver.resolve(&real) {
            Ok(p) => p,
            Err(e) => {
                self.warn(format!("emulator: {e}"));
                return;
            }
        };
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_file() => {
                let s = resolved.to_string_lossy().into_owned();
                self.out
                    .rules
                    .fixed(&paths::escape(&s), Perms::R.with(Perms::M).with(Perms::IX));
            }
            _ => self.warn(format!(
                "emulator: {} is not an existing file; not granting exec",
                resolved.display()
            )),
        }
    }

    fn disk(&mut self, disk: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("disk", disk, i);
        // libvirt forces every cdrom read-only ("Force CDROM to be listed as read only",
        // virDomainDiskDefPostParse, 9.0 and 11.3 alike), so QEMU opens it read-only and
        // virt-aa-helper grants `rk` even without <readonly/>.
        let ro = disk.child("readonly").is_some() || disk.attr("device") == Some("cdrom");
        let top = if ro { Perms::RK } else { Perms::RWK };
        let fmt = disk.child("driver").and_then(|d| d.attr_nonempty("type"));
        self.storage_source(&label, disk, top, fmt, 0)?;
        // blockcopy / mirror destination of a running job
        if let Some(m) = disk.child("mirror") {
            if let Some(f) = m.attr_nonempty("file") {
                self.grant(&label, f, Perms::RWK, Scope::File)?;
            } else {
                let mfmt = m.child("format").and_then(|f| f.attr_nonempty("type"));
                self.storage_source(&label, m, Perms::RWK, mfmt, 0)?;
            }
        }
        Ok(())
    }

    /// One storage source (`<disk>`, `<backingStore>`, `<mirror>`, `<nvram>` with a `<source>`)
    /// and, recursively, its backing chain.
    fn storage_source(
        &mut self,
        label: &str,
        el: &Element,
        perms: Perms,
        fmt: Option<&str>,
        depth: usize,
    ) -> Result<(), GrantError> {
        if depth > self.opts.max_chain_depth {
            self.warn(format!(
                "{label}: backing chain deeper than {} levels",
                self.opts.max_chain_depth
            ));
            return Ok(());
        }
        let kind = el.attr("type").unwrap_or("file");
        let Some(src) = el.child("source") else {
            return Ok(());
        };
        let mut local: Option<PathBuf> = None;
        match kind {
            "file" => {
                if let Some(f) = src.attr_nonempty("file") {
                    local = self.grant_storage(label, f, perms, Scope::File)?;
                }
            }
            "block" => {
                if let Some(d) = src.attr_nonempty("dev") {
                    local = self.grant_storage(label, d, perms, Scope::File)?;
                }
            }
            "dir" => {
                if let Some(d) = src.attr_nonempty("dir") {
                    self.grant(label, d, perms, Scope::Tree)?;
                }
            }
            "volume" => {
                if let Some(p) = self.volume_path(src) {
                    local = self.grant_storage(label, &p, perms, Scope::File)?;
                } else {
                    self.warn(format!(
                        "{label}: pool volume {}/{} could not be resolved to a path; in libvirt mode libvirt's own helper grants it",
                        src.attr("pool").unwrap_or("?"),
                        src.attr("volume").unwrap_or("?")
                    ));
                }
            }
            "network" => {
                // Remote storage needs no file access, except NBD (and friends) over a unix socket.
                for h in src.children_named("host") {
                    if h.attr("transport") == Some("unix") {
                        if let Some(s) = h.attr_nonempty("socket") {
                            self.grant(label, s, Perms::RW, Scope::File)?;
                        }
                    }
                }
            }
            "nvme" => {
                if let Some(a) = src.child("address") {
                    self.pci_vfio_group(label, a)?;
                }
            }
            "vhostuser" => {
                if let Some(p) = src.attr_nonempty("path") {
                    self.grant(label, p, Perms::RW, Scope::File)?;
                }
            }
            "vhostvdpa" => {
                if let Some(p) = src.attr_nonempty("dev") {
                    self.grant(label, p, Perms::RW, Scope::File)?;
                }
            }
            _ => {}
        }
        // persistent reservations helper socket
        if let Some(r) = src.child("reservations") {
            if let Some(s) = r.child("source").and_then(|s| s.attr_nonempty("path")) {
                self.grant(label, s, Perms::RW, Scope::File)?;
            }
        }
        // qcow2 external data file
        if let Some(ds) = src.child("dataStore") {
            let dfmt = ds.child("format").and_then(|f| f.attr_nonempty("type"));
            self.storage_source(label, ds, perms, dfmt, depth + 1)?;
        }
        // Backing chain: the XML's own <backingStore> wins; otherwise read the headers.
        // Backing images are read-only (`rk`) with no `deny w`, so blockcommit can still
        // reopen them read-write through libvirt's later grants.
        match el.child("backingStore") {
            Some(bs) => {
                if bs.child("source").is_some() || bs.attr("type").is_some() {
                    let bfmt = bs.child("format").and_then(|f| f.attr_nonempty("type"));
                    self.storage_source(label, bs, Perms::RK, bfmt, depth + 1)?;
                }
            }
            None => {
                if let (Some(top), true) = (local, self.opts.probe_backing) {
                    let chain = backing::probe_chain(
                        backing::Top::Resolved(&top),
                        fmt,
                        self.opts.max_chain_depth,
                        &mut self.resolver,
                        &mut self.headers,
                    );
                    for w in chain.warnings {
                        self.warn(format!("{label}: {w}"));
                    }
                    for ext in chain.top_extents {
                        self.out
                            .rules
                            .grant_resolved(label, &ext, perms, Scope::File)?;
                    }
                    for link in chain.links {
                        self.out
                            .rules
                            .grant_resolved(label, &link, Perms::RK, Scope::File)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Grant a file/block storage path and return its resolved form for chain probing.
    fn grant_storage(
        &mut self,
        label: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<Option<PathBuf>, GrantError> {
        self.grant_path(label, raw, perms, scope)
    }

    /// `<source pool= volume=>` of a directory-backed pool, resolved from the pool's own
    /// definition file (no call to libvirt: hooks must not call back into the daemon).
    fn volume_path(&self, src: &Element) -> Option<String> {
        let pool = src.attr_nonempty("pool")?;
        let vol = src.attr_nonempty("volume")?;
        if pool.contains('/') || vol.contains('/') {
            return None;
        }
        let f = self
            .opts
            .host_root
            .join("etc/libvirt/storage")
            .join(format!("{pool}.xml"));
        let text = std::fs::read(&f).ok()?;
        let el = crate::xml::parse(&text).ok()?;
        if !matches!(el.attr("type"), Some("dir" | "fs" | "netfs")) {
            return None;
        }
        let target = el.path(&["target", "path"])?.text_nonempty()?;
        Some(format!("{}/{vol}", target.trim_end_matches('/')))
    }

    /// Character devices by source type. `pipe` is two FIFOs `<path>.in`/`.out` (and the plain
    /// path, which QEMU falls back to); a `<log file=…>` is written by QEMU itself.
    fn chardev(&mut self, label: &str, c: &Element) -> Result<(), GrantError> {
        let kind = c.attr("type").unwrap_or("");
        for src in c.children_named("source") {
            let Some(path) = src.attr_nonempty("path") else {
                continue;
            };
            match kind {
                "file" | "dev" | "pty" | "unix" => {
                    self.grant(label, path, Perms::RW, Scope::File)?
                }
                "pipe" => {
                    self.grant(label, &format!("{path}.in"), Perms::RW, Scope::File)?;
                    self.grant(label, &format!("{path}.out"), Perms::RW, Scope::File)?;
                    self.grant(label, path, Perms::RW, Scope::File)?;
                }
                _ => {}
            }
        }
        if let Some(f) = c.child("log").and_then(|l| l.attr_nonempty("file")) {
            self.grant(label, f, Perms::RW, Scope::File)?;
        }
        Ok(())
    }

    fn os(&mut self) -> Result<(), GrantError> {
        let Some(os) = self.dom.root.child("os") else {
            return Ok(());
        };
        // <shim> (libvirt 11.2, UKI/secure boot with a direct kernel): read like the kernel.
        for k in ["kernel", "initrd", "shim", "dtb"] {
            if let Some(p) = os.child(k).and_then(|e| e.text_nonempty()) {
                self.grant(&format!("os <{k}>"), p, Perms::R, Scope::File)?;
            }
        }
        if let Some(acpi) = os.child("acpi") {
            for t in acpi.children_named("table") {
                if let Some(p) = t.text_nonempty() {
                    self.grant("os <acpi><table>", p, Perms::R, Scope::File)?;
                }
            }
        }
        let loader = os.child("loader");
        match loader.and_then(|l| l.text_nonempty()) {
            Some(p) => {
                let l = loader.expect("loader");
                // virt-aa-helper 9.0 grants every loader `rk`; 11.3 (changed in 10.x) grants
                // `rwk` unless readonly='yes', whatever its type (`readonly ? "rk" : "rwk"`).
                // QEMU writes only a pflash that is not read-only (a ROM/-bios image is mapped
                // read-only), so only that one gets `rwk` here: same or narrower.
                let writable =
                    l.attr("type") == Some("pflash") && l.attr("readonly") != Some("yes");
                let mut perms = if writable { Perms::RWK } else { Perms::RK };
                if writable {
                    if let Ok(res) = self.resolver.resolve(p) {
                        if paths::check_policy(&res, true, "rwk").is_err()
                            && paths::check_policy(&res, false, "rk").is_ok()
                        {
                            self.warn(format!("os <loader>: {} is a pflash without readonly='yes' in a read-only firmware location; granting read-only", res.display()));
                            perms = Perms::RK;
                        }
                    }
                }
                self.grant("os <loader>", p, perms, Scope::File)?;
            }
            None => {
                // Firmware autoselection not yet resolved (the `prepare` event): allow reading
                // the firmware libvirt may pick, and the default NVRAM location.
                let efi = os.attr("firmware") == Some("efi")
                    || loader.is_some_and(|l| l.attr("type") == Some("pflash"));
                if efi {
                    for fw in self.opts.firmware.clone() {
                        self.grant("os firmware (autoselected)", &fw, Perms::RK, Scope::File)?;
                    }
                    if os.child("nvram").is_none() {
                        let name = self.dom.name.clone();
                        self.fixed_with_name(
                            "/var/lib/libvirt/qemu/nvram/",
                            &name,
                            "_VARS.fd",
                            Perms::RWK,
                        );
                    }
                }
            }
        }
        if let Some(nv) = os.child("nvram") {
            if let Some(p) = nv.text_nonempty() {
                self.grant("os <nvram>", p, Perms::RWK, Scope::File)?;
            } else if nv.child("source").is_some() {
                // <nvram type='file'|'block'|'network' format='raw|qcow2'> with <source file=|dev=>
                // (type= since 8.5, format= and block devices since 10.10).
                let f = nv.attr_nonempty("format");
                self.storage_source("os <nvram>", nv, Perms::RWK, f, 0)?;
            }
        }
        // <varstore template=… path=…/> (libvirt 12.1): the JSON variable store of QEMU's
        // uefi-vars device, which QEMU reads and rewrites (no image locking); `template=` is
        // read by libvirt only. virt-aa-helper 12.8 grants the path `rw`.
        if let Some(vs) = os.child("varstore") {
            if let Some(p) = vs.attr_nonempty("path") {
                self.grant("os <varstore>", p, Perms::RW, Scope::File)?;
            }
        }
        Ok(())
    }

    fn graphics(&mut self, g: &Element, i: usize) -> Result<(), GrantError> {
        let kind = g.attr("type").unwrap_or("");
        let label = format!("graphics {kind} #{}", i + 1);
        if let Some(s) = g.attr_nonempty("socket") {
            self.grant(&label, s, Perms::RW, Scope::File)?;
        }
        for l in g.children_named("listen") {
            if l.attr("type") == Some("socket") {
                if let Some(s) = l.attr_nonempty("socket") {
                    self.grant(&label, s, Perms::RW, Scope::File)?;
                }
            }
        }
        if kind == "sdl" {
            match g.attr_nonempty("xauth") {
                Some(x) => self.grant(&label, x, Perms::R, Scope::File)?,
                None => self.warn(format!("{label}: no xauth attribute; nothing to grant")),
            }
        }
        if kind == "dbus" {
            if let Some(p) = g
                .attr_nonempty("address")
                .and_then(|a| a.strip_prefix("unix:path="))
            {
                let p = p.split(',').next().unwrap_or(p).to_string();
                self.grant(&label, &p, Perms::RW, Scope::File)?;
            }
        }
        let gl = g.child("gl");
        let gl_on = gl.is_some_and(|e| e.attr_yes("enable"));
        let explicit = gl
            .and_then(|e| e.attr_nonempty("rendernode"))
            .or_else(|| g.attr_nonempty("rendernode"));
        if let Some(node) = explicit {
            self.grant(&label, node, Perms::RW, Scope::File)?;
            self.needs_gl = true;
        } else if gl_on || kind == "egl-headless" {
            self.needs_gl = true;
            match self.first_render_node() {
                Some(n) => self.grant(&label, &n, Perms::RW, Scope::File)?,
                None => self.warn(format!(
                    "{label}: GL requested but no /dev/dri/renderD* on this host"
                )),
            }
        }
        Ok(())
    }

    fn first_render_node(&self) -> Option<String> {
        let dir = self.opts.host_root.join("dev/dri");
        let mut nodes: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("renderD"))
            .collect();
        nodes.sort();
        nodes.first().map(|n| format!("/dev/dri/{n}"))
    }

    /// The DRI/Mesa/EGL paths a GL-enabled display needs (libvirt's helper emits the same block).
    fn gl_block(&mut self) {
        self.out
            .rules
            .notes
            .push("DRI/Mesa/(e)GL config and driver paths (GL display)".into());
        for (p, perms) in [
            ("/usr/lib{,32,64}/dri/*.so*", Perms::R.with(Perms::M)),
            ("/usr/lib/@{multiarch}/dri/*.so*", Perms::R.with(Perms::M)),
            ("/usr/lib/fglrx/dri/*.so*", Perms::R.with(Perms::M)),
            ("/etc/drirc", Perms::R),
            ("/usr/share/drirc.d/{,*.conf}", Perms::R),
            ("/etc/glvnd/egl_vendor.d/{,*}", Perms::R),
            ("/usr/share/glvnd/egl_vendor.d/{,*}", Perms::R),
            ("/usr/share/egl/egl_external_platform.d/", Perms::R),
            ("/usr/share/egl/egl_external_platform.d/*", Perms::R),
            ("/proc/modules", Perms::R),
            ("/proc/driver/nvidia/params", Perms::R),
            ("/dev/nvidiactl", Perms::RW),
            ("/dev/dri/", Perms::R),
            (
                "/sys/devices/**/{uevent,vendor,device,subsystem_vendor,subsystem_device,config,revision}",
                Perms::R,
            ),
        ] {
            self.out.rules.fixed(p, perms);
        }
    }

    fn hostdev(&mut self, h: &Element, i: usize) -> Result<(), GrantError> {
        if h.attr("mode").unwrap_or("subsystem") != "subsystem" {
            return Ok(());
        }
        let kind = h.attr("type").unwrap_or("");
        let label = format!("hostdev {kind} #{}", i + 1);
        let Some(src) = h.child("source") else {
            return Ok(());
        };
        match kind {
            "usb" => match self.usb_device(src) {
                Some(p) => self.grant(&label, &p, Perms::RW, Scope::File)?,
                None => self.warn(format!("{label}: USB device not found on this host")),
            },
            "pci" => {
                if let Some(a) = src.child("address") {
                    self.pci_hostdev(&label, a, h.child("driver"))?;
                }
            }
            "mdev" => {
                if let Some(uuid) = src.child("address").and_then(|a| a.attr_nonempty("uuid")) {
                    if uuid.contains('/') {
                        return Ok(());
                    }
                    let link = self
                        .opts
                        .host_root
                        .join("sys/bus/mdev/devices")
                        .join(uuid)
                        .join("iommu_group");
                    self.vfio_group_from_link(&label, &link)?;
                }
            }
            "scsi" => {
                if src.attr("protocol") == Some("iscsi") {
                    return Ok(());
                }
                match self.scsi_sg(src) {
                    Some(sg) => self.grant(&label, &sg, Perms::RW, Scope::File)?,
                    None => self.warn(format!("{label}: SCSI device not found on this host")),
                }
            }
            "scsi_host" => {
                self.grant(&label, "/dev/vhost-scsi", Perms::RW, Scope::File)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A PCI device QEMU drives directly (`<hostdev type='pci'>`, `<interface type='hostdev'>`):
    /// its sysfs files and, with the VFIO driver, its VFIO group — or, with
    /// `<driver iommufd='yes'/>` (libvirt 12.2), `/dev/iommu` and its VFIO cdev
    /// `/dev/vfio/devices/vfioN` as virt-aa-helper 12.x grants.
    fn pci_hostdev(
        &mut self,
        label: &str,
        a: &Element,
        driver: Option<&Element>,
    ) -> Result<(), GrantError> {
        let Some(bdf) = pci_bdf(a) else {
            self.warn(format!("{label}: bad PCI address"));
            return Ok(());
        };
        let dev = self.opts.host_root.join("sys/bus/pci/devices").join(&bdf);
        for f in pci_device_files(&dev) {
            if let Ok(real) = std::fs::canonicalize(&f) {
                self.out
                    .rules
                    .grant_resolved(label, &real, Perms::RW, Scope::File)?;
            }
        }
        if driver.and_then(|d| d.attr("name")).unwrap_or("vfio") != "vfio" {
            return Ok(());
        }
        if driver.is_some_and(|d| d.attr_yes("iommufd")) {
            self.out.rules.fixed("/dev/iommu", Perms::RW);
            let cdevs = std::fs::read_dir(dev.join("vfio-dev"))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| {
                            n.strip_prefix("vfio").is_some_and(|d| {
                                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if cdevs.is_empty() {
                self.warn(format!(
                    "{label}: no VFIO device file under {}; device absent or not bound to vfio-pci",
                    dev.join("vfio-dev").display()
                ));
            }
            for c in cdevs {
                self.grant(
                    label,
                    &format!("/dev/vfio/devices/{c}"),
                    Perms::RW,
                    Scope::File,
                )?;
            }
            return Ok(());
        }
        self.pci_vfio_group(label, a)
    }

    /// The VFIO group device of a PCI address (`/dev/vfio/<group>`) — only that group, not
    /// every group on the host as libvirt's helper grants.
    fn pci_vfio_group(&mut self, label: &str, addr: &Element) -> Result<(), GrantError> {
        let Some(bdf) = pci_bdf(addr) else {
            self.warn(format!("{label}: bad PCI address"));
            return Ok(());
        };
        let link = self
            .opts
            .host_root
            .join("sys/bus/pci/devices")
            .join(bdf)
            .join("iommu_group");
        self.vfio_group_from_link(label, &link)
    }

    fn vfio_group_from_link(&mut self, label: &str, link: &Path) -> Result<(), GrantError> {
        self.needs_vfio = true;
        match std::fs::read_link(link) {
            Ok(t) => {
                if let Some(g) = t.file_name().and_then(|n| n.to_str()) {
                    if g.chars().all(|c| c.is_ascii_digit()) {
                        let dev = format!("/dev/vfio/{g}");
                        self.grant(label, &dev, Perms::RW, Scope::File)?;
                    }
                }
            }
            Err(_) => self.warn(format!(
                "{label}: no IOMMU group at {}; device absent or IOMMU off",
                link.display()
            )),
        }
        Ok(())
    }

    fn usb_device(&self, src: &Element) -> Option<String> {
        if let Some(a) = src.child("address") {
            let bus = parse_num(a.attr("bus")?)?;
            let dev = parse_num(a.attr("device")?)?;
            return Some(format!("/dev/bus/usb/{bus:03}/{dev:03}"));
        }
        let vendor = parse_num(src.child("vendor")?.attr("id")?)?;
        let product = parse_num(src.child("product")?.attr("id")?)?;
        let dir = self.opts.host_root.join("sys/bus/usb/devices");
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let rd = |f: &str| {
                std::fs::read_to_string(p.join(f))
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
            };
            let rdd = |f: &str| {
                std::fs::read_to_string(p.join(f))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
            };
            if rd("idVendor") == Some(vendor) && rd("idProduct") == Some(product) {
                return Some(format!(
                    "/dev/bus/usb/{:03}/{:03}",
                    rdd("busnum")?,
                    rdd("devnum")?
                ));
            }
        }
        None
    }

    fn scsi_sg(&self, src: &Element) -> Option<String> {
        let adapter = src.child("adapter")?.attr_nonempty("name")?;
        let host = adapter.strip_prefix("scsi_host")?.parse::<u32>().ok()?;
        let a = src.child("address")?;
        let (b, t, u) = (
            parse_num(a.attr("bus")?)?,
            parse_num(a.attr("target")?)?,
            parse_num(a.attr("unit")?)?,
        );
        let dir = self.opts.host_root.join(format!(
            "sys/bus/scsi/devices/{host}:{b}:{t}:{u}/scsi_generic"
        ));
        let sg = std::fs::read_dir(dir).ok()?.flatten().next()?.file_name();
        Some(format!("/dev/{}", sg.to_str()?))
    }

    fn filesystem(&mut self, f: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("filesystem", f, i);
        let kind = f.attr("type").unwrap_or("mount");
        let driver = f
            .child("driver")
            .and_then(|d| d.attr("type"))
            .unwrap_or("path");
        let ro = f.child("readonly").is_some();
        let src = f.child("source");
        match (kind, driver) {
            ("mount", "virtiofs") => {
                if let Some(s) = src.and_then(|s| s.attr_nonempty("socket")) {
                    self.grant(&label, s, Perms::RW, Scope::File)?;
                }
                if let Some(d) = src.and_then(|s| s.attr_nonempty("dir")) {
                    let p = if ro {
                        Perms::R
                    } else {
                        Perms::RW.with(Perms::L).with(Perms::K)
                    };
                    self.grant(&label, d, p, Scope::Tree)?;
                }
            }
            ("mount", "path" | "handle") => {
                if let Some(d) = src.and_then(|s| s.attr_nonempty("dir")) {
                    let p = if ro {
                        Perms::R
                    } else {
                        Perms::RW.with(Perms::L)
                    };
                    self.grant(&label, d, p, Scope::Tree)?;
                }
            }
            ("file", _) => {
                if let Some(p) = src.and_then(|s| s.attr_nonempty("file")) {
                    let perms = if ro { Perms::RK } else { Perms::RWK };
                    self.grant(&label, p, perms, Scope::File)?;
                }
            }
            ("block", _) => {
                if let Some(p) = src.and_then(|s| s.attr_nonempty("dev")) {
                    let perms = if ro { Perms::RK } else { Perms::RWK };
                    self.grant(&label, p, perms, Scope::File)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn interface(&mut self, n: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("interface", n, i);
        let kind = n.attr("type").unwrap_or("");
        match kind {
            "vhostuser" => {
                if let Some(src) = n.child("source") {
                    match src.attr("type").unwrap_or("unix") {
                        "unix" => {
                            if let Some(p) = src.attr_nonempty("path") {
                                self.grant(&label, p, Perms::RW, Scope::File)?;
                            }
                        }
                        "pipe" => {
                            if let Some(p) = src.attr_nonempty("path") {
                                self.grant(&label, &format!("{p}.in"), Perms::RW, Scope::File)?;
                                self.grant(&label, &format!("{p}.out"), Perms::RW, Scope::File)?;
                            }
                        }
                        _ => {}
                    }
                }
            }
            "vdpa" => {
                if let Some(d) = n.child("source").and_then(|s| s.attr_nonempty("dev")) {
                    self.grant(&label, d, Perms::RW, Scope::File)?;
                }
            }
            // SR-IOV VF given to the guest as a NIC: libvirt adds it to the domain's hostdev
            // list, so it is a PCI hostdev in every respect (VFIO group, /dev/vfio/vfio).
            "hostdev" => {
                if let Some(a) = n
                    .child("source")
                    .and_then(|s| s.child("address"))
                    .filter(|a| a.attr("type").unwrap_or("pci") == "pci")
                {
                    let driver = n.child("driver");
                    self.pci_hostdev(&label, a, driver)?;
                }
            }
            _ => {}
        }
        // passt back-end (type='user' since 9.0, type='vhostuser' since 11.1): QEMU connects to
        // the socket libvirt's passt listens on, `<passtStateDir>/<short name>-<alias>.socket`
        // (qemu_passt.c qemuPasstCreateSocketPath; passtStateDir = /run/libvirt/qemu/passt).
        // The alias is known in live XML; before that any alias of this guest.
        if n.child("backend").and_then(|b| b.attr("type")) == Some("passt") {
            let alias = n.child("alias").and_then(|a| a.attr_nonempty("name"));
            for short in self.dom.short_names() {
                match alias {
                    Some(a) if !a.contains('/') => {
                        let p = format!("/run/libvirt/qemu/passt/{short}-{a}.socket");
                        self.grant(&label, &p, Perms::RW, Scope::File)?;
                    }
                    _ => self.fixed_with_name(
                        "/run/libvirt/qemu/passt/",
                        &short,
                        "-*.socket",
                        Perms::RW,
                    ),
                }
            }
        }
        if let Some(b) = n.child("backend") {
            for a in ["tap", "vhost"] {
                if let Some(p) = b.attr_nonempty(a) {
                    self.grant(&label, p, Perms::RW, Scope::File)?;
                }
            }
        }
        let model = n.child("model").and_then(|m| m.attr("type"));
        let driver = n.child("driver").and_then(|d| d.attr("name"));
        if self.dom.virt_type == "kvm"
            && (model.is_none() || (model == Some("virtio") && driver != Some("qemu")))
        {
            self.out.rules.fixed("/dev/vhost-net", Perms::RW);
        }
        Ok(())
    }

    fn memory_device(&mut self, m: &Element, i: usize) -> Result<(), GrantError> {
        let model = m.attr("model").unwrap_or("");
        let label = format!("memory {model} #{}", i + 1);
        match model {
            // virtio-pmem: virt-aa-helper grants it since libvirt 7.1 (11.3: rw, like nvdimm).
            "nvdimm" | "virtio-pmem" => {
                if let Some(p) = m.path(&["source", "path"]).and_then(|e| e.text_nonempty()) {
                    self.grant(&label, p, Perms::RW, Scope::File)?;
                }
            }
            // SGX enclave page cache: virt-aa-helper grants DEV_SGX_VEPC rw and
            // DEV_SGX_PROVISION r since 11.1 (NEWS: "apparmor: Allow SGX if configured").
            "sgx-epc" => {
                self.out.rules.fixed("/dev/sgx_vepc", Perms::RW);
                self.out.rules.fixed("/dev/sgx_provision", Perms::R);
            }
            _ => {}
        }
        Ok(())
    }

    fn shmem(&mut self, s: &Element, i: usize) -> Result<(), GrantError> {
        let name = s.attr("name").unwrap_or("");
        let label = format!("shmem '{name}'");
        let _ = i;
        let model = s
            .child("model")
            .and_then(|m| m.attr("type"))
            .unwrap_or("ivshmem");
        if let Some(p) = s.child("server").and_then(|e| e.attr_nonempty("path")) {
            return self.grant(&label, p, Perms::RW, Scope::File);
        }
        if name.is_empty() {
            return Ok(());
        }
        match model {
            "ivshmem-plain" => {
                self.grant(&label, &format!("/dev/shm/{name}"), Perms::RW, Scope::File)
            }
            _ => self.grant(
                &label,
                &format!("/var/lib/libvirt/shmem-{name}-sock"),
                Perms::RW,
                Scope::File,
            ),
        }
    }

    fn tpm(&mut self, t: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("tpm", t, i);
        let Some(b) = t.child("backend") else {
            return Ok(());
        };
        match b.attr("type").unwrap_or("") {
            "emulator" => {
                let dir = match b.attr("version") {
                    Some("1.2") => "tpm1.2",
                    _ => "tpm2",
                };
                let name = self.dom.name.clone();
                let uuid = self.dom.uuid.hyphenated().to_string();
                for short in self.dom.short_names() {
                    self.fixed_with_name(
                        "/run/libvirt/qemu/swtpm/",
                        &short,
                        "-swtpm.sock",
                        Perms::RW,
                    );
                    self.fixed_with_name(
                        "/run/libvirt/qemu/swtpm/",
                        &short,
                        "-swtpm.pid",
                        Perms::RW,
                    );
                }
                self.out
                    .rules
                    .fixed(&format!("/var/lib/libvirt/swtpm/{uuid}/{dir}/"), Perms::R);
                self.out.rules.fixed(
                    &format!("/var/lib/libvirt/swtpm/{uuid}/{dir}/**"),
                    Perms::RWK,
                );
                self.fixed_with_name(
                    "/var/log/swtpm/libvirt/qemu/",
                    &name,
                    "-swtpm.log",
                    Perms::W,
                );
                if let Some(p) = b.child("source").and_then(|s| s.attr_nonempty("path")) {
                    self.grant(&label, p, Perms::RWK, Scope::Tree)?;
                }
            }
            "passthrough" => {
                let dev = b
                    .child("device")
                    .and_then(|d| d.attr_nonempty("path"))
                    .unwrap_or("/dev/tpm0")
                    .to_string();
                self.grant(&label, &dev, Perms::RW, Scope::File)?;
                // The cancel file QEMU writes to abort a command: /sys/class/tpm/tpmN/device/cancel.
                if let Some(n) = Path::new(&dev).file_name().and_then(|n| n.to_str()) {
                    let n = n.replace("tpmrm", "tpm");
                    for class in ["tpm", "misc"] {
                        let c = self
                            .opts
                            .host_root
                            .join(format!("sys/class/{class}/{n}/device/cancel"));
                        if let Ok(real) = std::fs::canonicalize(&c) {
                            if real.starts_with("/sys/devices") {
                                let esc = paths::escape(&real.to_string_lossy());
                                self.out.rules.fixed(&esc, Perms::RW);
                            }
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn smartcard(&mut self, s: &Element, i: usize) -> Result<(), GrantError> {
        let label = format!("smartcard #{}", i + 1);
        match s.attr("mode").unwrap_or("") {
            "host" => self.out.rules.fixed("/etc/pki/nssdb/{,*}", Perms::RK),
            "host-certificates" => match s.child("database").and_then(|d| d.text_nonempty()) {
                Some(db) => self.grant(&label, db, Perms::RK, Scope::DirEntries)?,
                None => self.out.rules.fixed("/etc/pki/nssdb/{,*}", Perms::RK),
            },
            "passthrough" => self.chardev(&label, s)?,
            _ => {}
        }
        Ok(())
    }

    fn rng(&mut self, r: &Element, i: usize) -> Result<(), GrantError> {
        let label = label_of("rng", r, i);
        let Some(b) = r.child("backend") else {
            return Ok(());
        };
        match b.attr("model").unwrap_or("") {
            "random" => {
                let dev = b.text_nonempty().unwrap_or("/dev/random").to_string();
                self.grant(&label, &dev, Perms::R, Scope::File)?;
            }
            "egd" => self.chardev(&label, b)?,
            _ => {}
        }
        Ok(())
    }

    fn sysinfo(&mut self) -> Result<(), GrantError> {
        for si in self.dom.root.children_named("sysinfo") {
            if si.attr("type") != Some("fwcfg") {
                continue;
            }
            for e in si.children_named("entry") {
                if let Some(f) = e.attr_nonempty("file") {
                    let label = format!("sysinfo fw_cfg '{}'", e.attr("name").unwrap_or("?"));
                    self.grant(&label, f, Perms::R, Scope::File)?;
                }
            }
        }
        Ok(())
    }

    /// Hugepage and file memory backing: the per-domain directories libvirt creates under each
    /// hugetlbfs mount and under `memory_backing_dir`.
    fn memory_backing(&mut self) -> Result<(), GrantError> {
        let Some(mb) = self.dom.root.child("memoryBacking") else {
            return Ok(());
        };
        let shorts = self.dom.short_names();
        if mb.child("hugepages").is_some() {
            let mut mounts = hugetlbfs_mounts(&self.opts.host_root);
            if mounts.is_empty() {
                mounts.push("/dev/hugepages".into());
            }
            for m in mounts {
                for s in &shorts {
                    let p = format!("{m}/libvirt/qemu/{s}");
                    self.grant("memoryBacking hugepages", &p, Perms::RW, Scope::Tree)?;
                }
            }
        }
        let file_backed = mb
            .child("source")
            .is_some_and(|s| s.attr("type") == Some("file"));
        if file_backed {
            for s in &shorts {
                let p = format!("/var/lib/libvirt/qemu/ram/{s}");
                self.grant("memoryBacking file", &p, Perms::RW, Scope::Tree)?;
            }
        }
        Ok(())
    }

    fn launch_security(&mut self) -> Result<(), GrantError> {
        if let Some(ls) = self.dom.root.child("launchSecurity") {
            if matches!(ls.attr("type"), Some("sev" | "sev-snp")) {
                self.grant("launchSecurity sev", "/dev/sev", Perms::RW, Scope::File)?;
            }
        }
        Ok(())
    }

    /// `<qemu:commandline>` arguments are invisible to libvirt's helper; we grant the files
    /// named by `file=`, `path=` and `filename=` options (read-write: we cannot know better).
    fn qemu_commandline(&mut self) -> Result<(), GrantError> {
        let Some(cl) = self.dom.root.child("commandline") else {
            return Ok(());
        };
        for a in cl.children_named("arg") {
            let Some(v) = a.attr("value") else { continue };
            for opt in v.split(',') {
                if let Some((k, val)) = opt.split_once('=') {
                    if matches!(k, "file" | "path" | "filename") && val.starts_with('/') {
                        self.grant("qemu:commandline", val, Perms::RW, Scope::File)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `DDDD:BB:SS.F` from a libvirt `<address domain= bus= slot= function=>`.
fn pci_bdf(a: &Element) -> Option<String> {
    let d = parse_num(a.attr("domain").unwrap_or("0"))?;
    let b = parse_num(a.attr("bus")?)?;
    let s = parse_num(a.attr("slot")?)?;
    let f = parse_num(a.attr("function").unwrap_or("0"))?;
    (d <= 0xffff && b <= 0xff && s <= 0x1f && f <= 7)
        .then(|| format!("{d:04x}:{b:02x}:{s:02x}.{f:x}"))
}

/// The sysfs files QEMU opens for a PCI device it drives directly (libvirt's helper list).
fn pci_device_files(dev: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dev) else {
        return v;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if matches!(n.as_ref(), "config" | "rom" | "vendor" | "device" | "reset")
            || n.starts_with("resource")
        {
            v.push(e.path());
        }
    }
    v.sort();
    v
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn hugetlbfs_mounts(root: &Path) -> Vec<String> {
    let Ok(m) = std::fs::read_to_string(root.join("proc/mounts")) else {
        return Vec::new();
    };
    m.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fs) = (f.next()?, f.next()?, f.next()?);
            (fs == "hugetlbfs" && !mnt.contains('\\')).then(|| mnt.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive_xml(xml: &str, opts: &Options) -> Result<Derived, GrantError> {
        derive(&Domain::parse(xml.as_bytes()).unwrap(), opts)
    }

    #[test]
    fn pool_volume_resolved_from_the_pool_definition() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/libvirt/storage")).unwrap();
        std::fs::write(
            d.path().join("etc/libvirt/storage/images.xml"),
            "<pool type='dir'><name>images</name><target><path>/srv/pool/</path></target></pool>",
        )
        .unwrap();
        let opts = Options {
            host_root: d.path().into(),
            probe_backing: false,
            ..Default::default()
        };
        let xml = "<domain type='kvm'><name>v</name><uuid>10000000-0000-4000-8000-000000000001</uuid>\
            <devices><disk type='volume' device='disk'><source pool='images' volume='v.qcow2'/><target dev='vda'/></disk>\
            <disk type='volume' device='disk'><source pool='missing' volume='x'/><target dev='vdb'/></disk></devices></domain>";
        let out = derive_xml(xml, &opts).unwrap();
        assert!(out.rules.render().contains("\"/srv/pool/v.qcow2\" rwk,"));
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("pool volume missing/x"))
        );
    }

    /// A host root with two PCI devices: 0000:7f:10.1 in IOMMU group 42 (classic VFIO) and
    /// 0000:7f:11.0 bound to vfio-pci with the cdev vfio3 (IOMMUFD).
    fn fake_pci_host() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let pci = d.path().join("sys/bus/pci/devices");
        for bdf in ["0000:7f:10.1", "0000:7f:11.0"] {
            std::fs::create_dir_all(pci.join(bdf).join("vfio-dev/vfio3")).unwrap();
            std::fs::write(pci.join(bdf).join("config"), "").unwrap();
        }
        std::fs::create_dir_all(d.path().join("sys/kernel/iommu_groups/42")).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("sys/kernel/iommu_groups/42"),
            pci.join("0000:7f:10.1/iommu_group"),
        )
        .unwrap();
        d
    }

    #[test]
    fn libvirt_10_to_12_devices() {
        let host = fake_pci_host();
        let opts = Options {
            host_root: host.path().into(),
            probe_backing: false,
            ..Default::default()
        };
        let xml = "<domain type='kvm' id='5'><name>n</name><uuid>10000000-0000-4000-8000-000000000003</uuid>\
            <os><type>hvm</type><loader type='pflash'>/srv/fw/CODE.fd</loader>\
            <nvram type='block' format='qcow2'><source dev='/dev/vg/vars'/></nvram>\
            <kernel>/srv/k</kernel><shim>/srv/shim.efi</shim>\
            <varstore template='/usr/share/x.json' path='/srv/vars.json'/></os>\
            <devices>\
            <disk type='file' device='cdrom'><source file='/srv/a.iso'/><target dev='sda'/></disk>\
            <disk type='file' device='disk'><driver type='qcow2'/><source file='/srv/m.qcow2'><dataStore type='file'><format type='raw'/><source file='/srv/m.raw'/></dataStore></source><target dev='vda'/></disk>\
            <channel type='unix'><source mode='bind' path='/run/libvirt/qemu/channel/5-n/org.qemu.guest_agent.0'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
            <input type='evdev'><source dev='/dev/input/event9' grab='all'/></input>\
            <input type='passthrough' bus='virtio'><source evdev='/dev/input/event8'/></input>\
            <interface type='hostdev'><source><address type='pci' domain='0' bus='0x7f' slot='0x10' function='1'/></source></interface>\
            <hostdev mode='subsystem' type='pci'><driver name='vfio' iommufd='yes'/><source><address domain='0' bus='0x7f' slot='0x11' function='0'/></source></hostdev>\
            <interface type='vhostuser'><backend type='passt'/><alias name='net1'/></interface>\
            <memory model='sgx-epc'><target><size unit='KiB'>1024</size></target></memory>\
            </devices></domain>";
        let r = derive_xml(xml, &opts).unwrap().rules.render();
        for want in [
            "\"/srv/fw/CODE.fd\" rwk,",
            "\"/dev/vg/vars\" rwk,",
            "\"/srv/shim.efi\" r,",
            "\"/srv/vars.json\" rw,",
            "\"/srv/a.iso\" rk,",
            "\"/srv/m.raw\" rwk,",
            "\"/run/libvirt/qemu/channel/5-n/{,*}\" rw,",
            "\"/dev/input/event9\" rw,",
            "\"/dev/input/event8\" rw,",
            "\"/dev/vfio/42\" rw,",
            "\"/dev/vfio/vfio\" rw,",
            "\"/dev/iommu\" rw,",
            "\"/dev/vfio/devices/vfio3\" rw,",
            "\"/run/libvirt/qemu/passt/5-n-net1.socket\" rw,",
            "\"/dev/sgx_vepc\" rw,",
            "\"/dev/sgx_provision\" r,",
            "\"/dev/userfaultfd\" rw,",
        ] {
            assert!(r.contains(want), "missing {want} in\n{r}");
        }
        assert!(!r.contains("/var/lib/libvirt/qemu/channel/target"), "{r}");
        assert!(!r.contains("/usr/share/x.json"), "{r}");
    }

    #[test]
    fn a_channel_without_a_path_gets_both_directory_layouts() {
        let xml = "<domain type='kvm' id='6'><name>m</name><uuid>10000000-0000-4000-8000-000000000004</uuid><devices>\
            <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>";
        let r = derive_xml(xml, &Options::default()).unwrap().rules.render();
        assert!(
            r.contains("\"/var/lib/libvirt/qemu/channel/target/domain-6-m/{,*}\" rw,"),
            "{r}"
        );
        assert!(
            r.contains("\"/run/libvirt/qemu/channel/6-m/{,*}\" rw,"),
            "{r}"
        );
        let none = "<domain type='kvm' id='6'><name>m</name><uuid>10000000-0000-4000-8000-000000000004</uuid></domain>";
        let r = derive_xml(none, &Options::default())
            .unwrap()
            .rules
            .render();
        assert!(!r.contains("/channel/"), "{r}");
    }

    #[test]
    fn devices_beyond_virt_aa_helper() {
        let xml = "<domain type='kvm' id='4'><name>x</name><uuid>10000000-0000-4000-8000-000000000002</uuid>\
            <memoryBacking><source type='file'/></memoryBacking>\
            <devices>\
            <serial type='pty'><log file='/var/log/x-serial.log'/></serial>\
            <rng model='virtio'><backend model='random'>/dev/hwrng</backend></rng>\
            <redirdev bus='usb' type='unix'><source mode='connect' path='/run/x/redir.sock'/></redirdev>\
            <tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>\
            <hostdev mode='subsystem' type='scsi_host'><source protocol='vhost' wwpn='naa.1'/></hostdev>\
            <disk type='vhostuser' device='disk'><source type='unix' path='/run/x/blk.sock'/><target dev='vda'/></disk>\
            <filesystem type='mount'><driver type='virtiofs'/><source dir='/srv/vfs'/><target dir='t'/></filesystem>\
            </devices><launchSecurity type='sev'/></domain>";
        let r = derive_xml(xml, &Options::default()).unwrap().rules.render();
        for want in [
            "\"/var/log/x-serial.log\" rw,",
            "\"/dev/hwrng\" r,",
            "\"/run/x/redir.sock\" rw,",
            "\"/dev/tpm0\" rw,",
            "\"/dev/vhost-scsi\" rw,",
            "\"/run/x/blk.sock\" rw,",
            "\"/srv/vfs/**\" rwlk,",
            "\"/dev/sev\" rw,",
            "\"/var/lib/libvirt/qemu/ram/4-x/**\" rw,",
        ] {
            assert!(r.contains(want), "missing {want} in\n{r}");
        }
    }
}
