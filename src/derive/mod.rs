//! Domain definition → access rules: what this guest's QEMU may open, device by device.
//!
//! Covers everything libvirt's `virt-aa-helper` grants (same or narrower permissions) plus the
//! devices it misses (virtiofs, chardev logs, RNG, TPM passthrough, SCSI hostdevs, NVMe,
//! vhost-user disks, redirdevs, memory backing, SEV, recursive `type='dir'` disks, non-standard
//! emulators). Paths from the XML are granted through [`RuleSet::grant`], which validates,
//! resolves, polices and escapes them; the few globs we write ourselves are fixed strings.
//!
//! One file per device family: `disks` (storage and backing chains), `chardevs` (serial,
//! channels, smartcards, RNG), `firmware_os` (emulator, `<os>`, fw_cfg), `graphics`, `hostdev`,
//! `net`, `memory`, `misc` (filesystems, TPM, SEV, `<qemu:commandline>`). Every question asked
//! of the host rather than the XML (sysfs, `/dev/dri`, `/proc/mounts`, pool files) goes through
//! `host`. The order in which [`derive()`] visits the devices is the order of the rules.

mod chardevs;
mod disks;
mod firmware_os;
mod graphics;
mod host;
mod hostdev;
mod memory;
mod misc;
mod net;

use crate::backing;
use crate::domain::Domain;
use crate::paths::{self, PathError};
use crate::rules::{GrantError, Perms, RuleSet, Scope};
use crate::xml::Element;
use host::Host;
use std::path::PathBuf;

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
    /// Directory of the real emulators the wrapper execs (config `emulator_dir`): where the
    /// emulator behind a wrapper is when the enroll metadata does not name it.
    pub emulator_dir: PathBuf,
    /// Directories the admin trusts for backing images named by image headers, besides each
    /// guest's own disk directories (config `image_dirs`; see [`crate::reach`]).
    pub image_dirs: Vec<PathBuf>,
    /// Root under which libvirt's guest files (`/etc/libvirt/qemu`, `/run/libvirt/qemu`) are
    /// read to know the other guests' writable disks: the config's `root` (a temp dir in tests).
    pub libvirt_root: PathBuf,
    /// The host policy of the configuration in force ([`paths::HostPolicy::new`]).
    pub policy: std::sync::Arc<paths::HostPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            probe_backing: true,
            max_chain_depth: 200,
            firmware: Vec::new(),
            host_root: PathBuf::from("/"),
            wrapper_prefix: crate::layout::WRAPPER_PATH_PREFIX.into(),
            emulator_dir: crate::layout::EMULATOR_DIR.into(),
            image_dirs: crate::reach::DEFAULT_IMAGE_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            libvirt_root: PathBuf::from("/"),
            policy: Default::default(),
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

/// libvirt's per-guest state directory (`priv->libDir`): `<this><short name>`.
pub const LIB_DIR_PREFIX: &str = "/var/lib/libvirt/qemu/domain-";
/// The channel socket directory before libvirt 9.7 (`priv->channelTargetDir`):
/// `<this>domain-<short name>`.
pub const CHANNEL_DIR_OLD: &str = "/var/lib/libvirt/qemu/channel/target/";
/// The channel socket directory from libvirt 9.7 on: `<this><short name>`.
pub const CHANNEL_DIR_NEW: &str = "/run/libvirt/qemu/channel/";
/// `memory_backing_dir`'s default: file-backed guest RAM lives in `<this><short name>`.
pub const RAM_DIR: &str = "/var/lib/libvirt/qemu/ram/";

/// The hugetlbfs mount points of the host at `root` (its `/proc/mounts`): libvirt makes a
/// per-guest directory `<mount>/libvirt/qemu/<short name>` under each.
pub fn hugetlbfs_mounts(root: &std::path::Path) -> Vec<String> {
    Host { root }.hugetlbfs_mounts()
}

/// The directories libvirt itself creates for one guest and labels **as a subtree**
/// (`qemuSecurityDomainSetPathLabel(…, allowSubtree = true)`, which libvirt's AppArmor driver
/// (`security_apparmor.c:AppArmorSetPathLabel`) turns into `virt-aa-helper -F <dir>/{,**}`).
/// Read from libvirt's source (the `qemuSecurityDomainSetPathLabel(…, true)` call sites; the
/// 11.x/12.x trees were searched by call, not diffed line by line against 9.0):
/// - `qemu_process.c:qemuProcessPrepareHost` → `qemuProcessMakeDir` for `priv->libDir`
///   ([`LIB_DIR_PREFIX`]) and `priv->channelTargetDir` ([`CHANNEL_DIR_OLD`] before 9.7,
///   [`CHANNEL_DIR_NEW`] from 9.7);
/// - `qemu_process.c:qemuProcessBuildDestroyMemoryPathsImpl`: the per-guest hugepage directory
///   under every hugetlbfs mount and `memory_backing_dir/<short name>` ([`RAM_DIR`]);
/// - the other `allowSubtree = true` callers name files, not directories:
///   `qemuProcessSEVCreateFile` (`<libDir>/*.base64`), `qemuProcessStartManagedPRDaemon` (the
///   pr-helper socket in `libDir`) and, in some versions, `qemu_dbus.c:qemuDBusStart` (its
///   config file). libvirt's own helper turns those into a glob that matches nothing but the
///   file's non-existent children; the files are inside `libDir`, which this list covers.
///
/// swtpm, dbus, slirp and passt state is labelled file by file (`allowSubtree = false`).
/// Host paths (rooted by the caller); empty for a guest without an id (not running).
pub fn libvirt_subtree_dirs(dom: &Domain, host_root: &std::path::Path) -> Vec<String> {
    let mounts = hugetlbfs_mounts(host_root);
    let mut v = Vec::new();
    for s in dom.short_names() {
        v.push(format!("{LIB_DIR_PREFIX}{s}"));
        v.push(format!("{CHANNEL_DIR_OLD}domain-{s}"));
        v.push(format!("{CHANNEL_DIR_NEW}{s}"));
        v.push(format!("{RAM_DIR}{s}"));
        for m in &mounts {
            v.push(format!("{}/libvirt/qemu/{s}", m.trim_end_matches('/')));
        }
    }
    v
}

/// About how many rules a guest has besides its disks' (the base block, emulator, firmware,
/// channels): only sizes the rule set.
const FIXED_RULES: usize = 64;

/// Derive the rules for a domain. Fails only on input that must not start (a refused host
/// path, a control character): the error names the element and the value.
pub fn derive(dom: &Domain, opts: &Options) -> Result<Derived, GrantError> {
    // Sized for the disks up front: a guest with thousands of them otherwise rehashes every
    // path a dozen times as the maps grow.
    let disks = dom
        .root
        .child("devices")
        .map_or(0, |d| d.children_named("disk").count());
    let mut cx = Cx {
        dom,
        opts,
        out: Derived {
            rules: RuleSet::with_policy_and_capacity(opts.policy.clone(), FIXED_RULES + disks),
            warnings: Vec::new(),
        },
        needs_vfio: false,
        needs_gl: false,
        resolver: paths::Resolver::with_capacity(disks),
        headers: backing::HeaderCache::default(),
        reach: None,
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
        // Built by hand: one per disk, and `format!` cost several times as much.
        Some(id) => {
            let mut label = String::with_capacity(kind.len() + id.len() + 3);
            label.push_str(kind);
            label.push_str(" '");
            label.push_str(id);
            label.push('\'');
            label
        }
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
    /// The backing-file policy's facts, gathered at the first header-named file.
    reach: Option<ReachState>,
}

/// What [`crate::reach::judge`] is asked with during one derivation, and its answers so far.
struct ReachState {
    dirs: crate::reach::TrustedDirs,
    others: crate::reach::WritableDisks,
    verdicts: std::collections::HashMap<std::ffi::OsString, Result<(), crate::reach::Distrust>>,
    /// The file of the last verdict that allowed it (also in `verdicts`).
    last_allowed: Option<std::ffi::OsString>,
}

impl<'a> Cx<'a> {
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

    /// The host this guest starts on: every sysfs, `/dev` and `/proc` lookup goes through it.
    fn host(&self) -> Host<'a> {
        Host {
            root: &self.opts.host_root,
        }
    }
    /// The per-domain rules libvirt's helper always writes: log, monitor socket, pid, domain
    /// directories, tunnelled-migration socket; and the guest's managed-save image.
    fn base(&mut self) {
        let name = self.dom.name.clone();
        self.fixed_with_name("/var/log/libvirt/**/", &name, ".log", Perms::W);
        self.fixed_with_name(LIB_DIR_PREFIX, &name, "/monitor.sock", Perms::RW);
        for short in self.dom.short_names() {
            self.fixed_with_name(LIB_DIR_PREFIX, &short, "/*", Perms::RW);
            self.fixed_with_name(LIB_DIR_PREFIX, &short, "/", Perms::R);
            self.fixed_with_name(LIB_DIR_PREFIX, &short, "/**", Perms::RWK);
        }
        self.fixed_with_name("/run/libvirt/**/", &name, ".pid", Perms::RWK);
        // The managed-save image (`virsh managedsave`, later `virsh start`): libvirt opens
        // /var/lib/libvirt/qemu/save/<name>.save and hands QEMU the descriptor, which AppArmor
        // checks (file_inherit). libvirt's driver labels it in libvirt mode; in standalone mode
        // nothing does, and the saved guest could not be resumed (measured, suite 06). Read
        // only: QEMU only reads it back; the name is unique on the host.
        self.fixed_with_name("/var/lib/libvirt/qemu/save/", &name, ".save", Perms::R);
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
}

/// Tests: `dom`'s rules under the default options without probing backing files (no image on
/// the test host), `None` when derivation refuses the guest.
#[cfg(test)]
pub(crate) fn derive_unprobed(dom: &Domain) -> Option<Derived> {
    let opts = Options {
        probe_backing: false,
        ..Default::default()
    };
    derive(dom, &opts).ok()
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
