//! Who may reach a file: the policy for backing files named by image headers, and the answer to
//! "is this another guest's writable disk?".
//!
//! # Why
//! A guest owns its images. A compromised QEMU can rewrite its own qcow2 header so that, at the
//! next start, the backing file is another guest's disk or any host file; libvirt follows the
//! header (its probe shows up as `<backingStore>` in the live XML) and so does our prober. Such a
//! name is chosen by the guest, not by whoever defined the domain, so it is granted only if it
//! passes [`judge`], which nothing in an image can steer:
//! 1. never another defined guest's *writable* disk (running or shut off; read from libvirt's own
//!    files, never from libvirt itself: hooks must not call back into the daemon). A disk that is
//!    `<readonly/>` (or a cdrom) elsewhere is a shared base and fine; a `<shareable/>` writable
//!    disk is still writable, so it is refused; the guest's own disks are always fine;
//! 2. only regular files (or a file that does not exist yet: QEMU then fails to open it); never a
//!    device node, FIFO, socket or directory;
//! 3. only inside directories the admin trusts for images: the directory of each of the guest's
//!    own top-level disk sources as the definition names them (that directory only, not below
//!    it: a disk in `/` must not trust the whole host), plus the configured `image_dirs`
//!    ([`DEFAULT_IMAGE_DIRS`], with everything below them).
//!
//! The top-level `<source>` of a `<disk>` is *not* judged here: the domain definer chose it, and
//! the host policy in [`crate::paths`] is what limits a definer.
//!
//! # Block jobs
//! Files libvirt names itself through the helper's `-F`/`-f` during snapshots, block copies,
//! blockcommit and backups are libvirt's choice, not read from a header, and are not judged
//! here ([`crate::helper`] grants them as before). The chain in the live XML that libvirt
//! hands us on every reload *is* judged each time, like at start: a snapshot or copy whose
//! resulting chain leaves the trusted directories fails when libvirt asks for the relabel, with
//! the reason, instead of leaving a guest that could not be started again. Put such snapshot
//! and copy directories in `image_dirs`.
//!
//! The decision is the pure function [`judge`]; reading libvirt's files and `stat`ing happen at
//! the edge ([`WritableDisks::load`], [`Candidate::stat`]). [`WritableDisks`] is the one owner of
//! "whose writable disk is this file", for `explain` too.

use crate::paths;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The configuration's default `image_dirs` (owned there: the configuration's default).
pub use crate::config::DEFAULT_IMAGE_DIRS;

/// libvirt's persistent definitions and live status files (host paths, rooted for tests).
const LIBVIRT_XML_DIRS: &[&str] = &[
    crate::layout::QEMU_STATUS_DIR,
    crate::layout::QEMU_CONFIG_DIR,
];

/// Device and inode: the identity of a file whatever name (symlink, hard link) reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

pub use crate::distrust::{Distrust, FileKind, Refused};

/// A backing file to judge: its resolved path (as [`crate::paths::Resolver`] returns it) and
/// what is there.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    pub kind: FileKind,
    pub id: Option<FileId>,
}

impl Candidate<'_> {
    /// The candidate as the host has it now (`lstat`: the path is resolved, so a symlink here
    /// was swapped in since and is not a regular file).
    pub fn stat(path: &Path) -> Candidate<'_> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => Candidate {
                path,
                kind: FileKind::of(m.file_type()),
                id: Some(FileId {
                    dev: m.dev(),
                    ino: m.ino(),
                }),
            },
            Err(_) => Candidate {
                path,
                kind: FileKind::Missing,
                id: None,
            },
        }
    }
}

/// One writable disk of a guest, as libvirt's files name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub guest: String,
    pub uuid: Uuid,
    /// `<target dev>` (empty when the definition has none).
    pub disk: String,
}

/// Every defined guest's writable disks, by file identity and by (lexically clean) path. Built
/// from libvirt's own files; each guest's own disks are skipped at lookup by its UUID.
#[derive(Clone, Debug, Default)]
pub struct WritableDisks {
    by_id: HashMap<FileId, Owner>,
    by_path: HashMap<PathBuf, Owner>,
    /// Files that could not be read (one line each): their disks are not known.
    pub warnings: Vec<String>,
    /// How many definition files were read.
    pub files_read: usize,
}

impl WritableDisks {
    /// Read every guest libvirt knows, running (`/run/libvirt/qemu`) or not
    /// (`/etc/libvirt/qemu`), under `root`; both files of a running guest count (its live
    /// chain may differ from its definition). Only the `<disk>` elements are looked at.
    pub fn load(root: &Path) -> WritableDisks {
        let mut w = WritableDisks::default();
        for dir in LIBVIRT_XML_DIRS {
            let dir = root.join(dir.trim_start_matches('/'));
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "xml") {
                    continue;
                }
                match crate::store::read_capped(&p) {
                    Ok(Some(bytes)) => match scan_disks(&bytes) {
                        Ok(g) => {
                            w.files_read += 1;
                            for (disk, src) in g.disks {
                                let path = match src {
                                    Source::Path(p) => p,
                                    Source::Volume { pool, volume } => {
                                        match crate::pools::volume_path(root, &pool, &volume) {
                                            Some(p) => p,
                                            // Not a directory pool (LVM, iSCSI, …): a device
                                            // node or a network disk, which the backing-file
                                            // check refuses anyway.
                                            None => continue,
                                        }
                                    }
                                };
                                w.insert(
                                    Path::new(&path),
                                    Owner {
                                        guest: g.name.clone(),
                                        uuid: g.uuid,
                                        disk,
                                    },
                                );
                            }
                        }
                        Err(e) => w.warnings.push(format!(
                            "{}: {e}; its disks are not known to the backing-file check",
                            p.display()
                        )),
                    },
                    Ok(None) => {}
                    Err(e) => w.warnings.push(format!(
                        "{}: {e}; its disks are not known to the backing-file check",
                        p.display()
                    )),
                }
            }
        }
        w
    }

    /// Record `path` as `owner`'s writable disk (its identity too, when it exists).
    pub fn insert(&mut self, path: &Path, owner: Owner) {
        if let Ok(m) = std::fs::metadata(path) {
            self.by_id.insert(
                FileId {
                    dev: m.dev(),
                    ino: m.ino(),
                },
                owner.clone(),
            );
        }
        self.by_path.insert(paths::normalize_lexically(path), owner);
    }

    /// The guest other than `except` whose writable disk `c` is, if any.
    pub fn owner_of(&self, path: &Path, id: Option<FileId>, except: Uuid) -> Option<&Owner> {
        id.and_then(|i| self.by_id.get(&i))
            .filter(|o| o.uuid != except)
            .or_else(|| self.by_path.get(path).filter(|o| o.uuid != except))
    }

    /// Number of writable disks known (by path).
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether no writable disk is known.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// The directories a guest's header-named files may live in, all resolved.
#[derive(Clone, Debug, Default)]
pub struct TrustedDirs {
    /// Directories of the guest's own top-level disks: files directly in them.
    pub own: Vec<PathBuf>,
    /// The admin's image directories: files anywhere below them.
    pub image_dirs: Vec<PathBuf>,
}

impl TrustedDirs {
    fn holds(&self, path: &Path) -> bool {
        let parent = path.parent().unwrap_or(Path::new("/"));
        self.own.iter().any(|d| d == parent)
            || self.image_dirs.iter().any(|d| {
                d.to_str()
                    .is_some_and(|s| paths::is_under(path, s) && path != d.as_path())
            })
    }
}

/// The policy: may a file named by an image header (not by the definition) be granted to guest
/// `this`? Pure: the caller gathers the facts.
pub fn judge(
    c: &Candidate<'_>,
    dirs: &TrustedDirs,
    others: &WritableDisks,
    this: Uuid,
) -> Result<(), Distrust> {
    if let Some(o) = others.owner_of(c.path, c.id, this) {
        return Err(Distrust::OtherGuestsDisk {
            guest: o.guest.clone(),
            disk: o.disk.clone(),
        });
    }
    if !matches!(c.kind, FileKind::Regular | FileKind::Missing) {
        return Err(Distrust::NotRegular(c.kind));
    }
    if !dirs.holds(c.path) {
        let covered = |d: &PathBuf| {
            dirs.image_dirs
                .iter()
                .any(|i| i.to_str().is_some_and(|i| paths::is_under(d, i)))
        };
        let list: Vec<String> = dirs
            .own
            .iter()
            .filter(|d| !covered(d))
            .map(|d| d.display().to_string())
            .chain(
                dirs.image_dirs
                    .iter()
                    .map(|d| format!("{}/**", d.display())),
            )
            .collect();
        return Err(Distrust::Untrusted {
            dirs: list.join(", "),
        });
    }
    Ok(())
}

/// Where a writable disk's data is, as libvirt's file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `<source file=…>` or `<source dev=…>`, and the NVRAM file.
    Path(String),
    /// `<source pool=… volume=…>`: a file of a directory-backed pool ([`crate::pools`]).
    Volume { pool: String, volume: String },
}

/// One guest's name, UUID and writable disks `(target dev, source)`, from a definition or
/// status file. The UEFI variable store (`<os><nvram>`) counts as a writable disk named
/// `nvram`: the guest writes it, and another guest must not read it through a header.
#[derive(Debug, Default)]
struct ScannedGuest {
    name: String,
    uuid: Uuid,
    disks: Vec<(String, Source)>,
}

/// Read only what [`WritableDisks`] needs from one of libvirt's files: the domain's name and
/// UUID, for each top-level `<disk>` that is neither `<readonly/>` nor a cdrom its `<source
/// file=…>`, `<source dev=…>` or `<source pool=… volume=…>`, and the `<os><nvram>` file (as
/// text, or `<source file=…>` in libvirt ≥ 8.5). A streaming scan: a thousand files stay cheap.
fn scan_disks(bytes: &[u8]) -> Result<ScannedGuest, String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(bytes);
    let mut g = ScannedGuest::default();
    let mut stack: Vec<String> = Vec::new();
    let mut uuid_text = String::new();
    // The disk being read: (target dev, source, read-only).
    let mut disk: Option<(String, Option<Source>, bool)> = None;
    // Inside `<os><nvram>`: its text is the file.
    let mut in_nvram = false;
    let attr = |s: &quick_xml::events::BytesStart<'_>, k: &str| -> Option<String> {
        s.attributes()
            .flatten()
            .find(|a| a.key.as_ref() == k)
            .and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
    };
    // The depth of <domain> (0 in a definition, 1 inside <domstatus>).
    let mut dom_depth: Option<usize> = None;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| e.to_string().replace('\n', " "))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let name = s.local_name().as_ref().to_string();
                let depth = stack.len();
                if name == "domain" && dom_depth.is_none() && depth <= 1 {
                    dom_depth = Some(depth);
                }
                if let Some(dd) = dom_depth {
                    let parent = stack.last().map(String::as_str);
                    if name == "disk" && depth == dd + 2 && parent == Some("devices") {
                        let ro = attr(s, "device").as_deref() == Some("cdrom");
                        disk = Some((String::new(), None, ro));
                    } else if depth == dd + 3 && parent == Some("disk") {
                        if let Some(d) = disk.as_mut() {
                            match name.as_str() {
                                "source" => {
                                    d.1 = match (
                                        attr(s, "file").or_else(|| attr(s, "dev")),
                                        attr(s, "pool"),
                                        attr(s, "volume"),
                                    ) {
                                        (Some(p), _, _) => Some(Source::Path(p)),
                                        (None, Some(pool), Some(volume)) => {
                                            Some(Source::Volume { pool, volume })
                                        }
                                        _ => None,
                                    }
                                }
                                "target" => d.0 = attr(s, "dev").unwrap_or_default(),
                                "readonly" => d.2 = true,
                                _ => {}
                            }
                        }
                    } else if name == "nvram" && depth == dd + 2 && parent == Some("os") {
                        in_nvram = matches!(ev, Event::Start(_));
                    } else if in_nvram && name == "source" && depth == dd + 3 {
                        if let Some(p) = attr(s, "file") {
                            g.disks.push(("nvram".into(), Source::Path(p)));
                        }
                    }
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(name);
                } else if name == "disk" {
                    disk = None;
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if name == "nvram" {
                    in_nvram = false;
                }
                if name == "disk" && Some(stack.len()) == dom_depth.map(|d| d + 2) {
                    if let Some((t, Some(p), false)) = disk.take() {
                        g.disks.push((t, p));
                    }
                }
            }
            Event::Text(t) => {
                if let (Some(dd), Some(last)) = (dom_depth, stack.last()) {
                    if stack.len() == dd + 2 {
                        let text = t.xml10_content();
                        match last.as_str() {
                            "name" => g.name.push_str(text.trim()),
                            "uuid" => uuid_text.push_str(text.trim()),
                            _ => {}
                        }
                    } else if in_nvram && stack.len() == dd + 3 {
                        let text = t.xml10_content();
                        if !text.trim().is_empty() {
                            g.disks
                                .push(("nvram".into(), Source::Path(text.trim().into())));
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if dom_depth.is_none() {
        return Err("no <domain> element".into());
    }
    g.uuid = Uuid::parse_str(&uuid_text).map_err(|_| "no valid <uuid>".to_string())?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Uuid = Uuid::from_u128(1);
    const B: Uuid = Uuid::from_u128(2);

    fn others() -> WritableDisks {
        let mut w = WritableDisks::default();
        w.insert(
            Path::new("/srv/b/b.qcow2"),
            Owner {
                guest: "b".into(),
                uuid: B,
                disk: "vda".into(),
            },
        );
        w.insert(
            Path::new("/var/lib/libvirt/images/mine.qcow2"),
            Owner {
                guest: "me".into(),
                uuid: ME,
                disk: "vdb".into(),
            },
        );
        w
    }

    fn dirs() -> TrustedDirs {
        TrustedDirs {
            own: vec!["/srv/a".into()],
            image_dirs: vec!["/var/lib/libvirt/images".into()],
        }
    }

    fn cand(p: &str, kind: FileKind) -> Candidate<'_> {
        Candidate {
            path: Path::new(p),
            kind,
            id: None,
        }
    }

    #[test]
    fn every_reason() {
        let (d, o) = (dirs(), others());
        let ok = |p, k| judge(&cand(p, k), &d, &o, ME);
        // Own directory (not below it), the image dirs (and below), own disks.
        assert_eq!(ok("/srv/a/base.qcow2", FileKind::Regular), Ok(()));
        assert_eq!(
            ok("/var/lib/libvirt/images/x/base", FileKind::Regular),
            Ok(())
        );
        assert_eq!(
            ok("/var/lib/libvirt/images/mine.qcow2", FileKind::Regular),
            Ok(())
        );
        assert_eq!(ok("/srv/a/not-yet", FileKind::Missing), Ok(()));
        assert!(matches!(
            ok("/srv/a/sub/base.qcow2", FileKind::Regular),
            Err(Distrust::Untrusted { .. })
        ));
        assert!(matches!(
            ok("/var/lib/libvirt/images", FileKind::Directory),
            Err(Distrust::NotRegular(FileKind::Directory))
        ));
        assert!(matches!(
            ok("/home/admin/db.sqlite", FileKind::Regular),
            Err(Distrust::Untrusted { .. })
        ));
        assert_eq!(
            ok("/srv/b/b.qcow2", FileKind::Regular),
            Err(Distrust::OtherGuestsDisk {
                guest: "b".into(),
                disk: "vda".into()
            })
        );
        for k in [
            FileKind::BlockDevice,
            FileKind::CharDevice,
            FileKind::Fifo,
            FileKind::Socket,
        ] {
            assert_eq!(
                ok("/var/lib/libvirt/images/dev", k),
                Err(Distrust::NotRegular(k))
            );
        }
        // Another guest's disk reached by identity (a hard link or a symlink elsewhere).
        let mut o2 = WritableDisks::default();
        let id = FileId { dev: 1, ino: 2 };
        o2.by_id.insert(
            id,
            Owner {
                guest: "b".into(),
                uuid: B,
                disk: "sda".into(),
            },
        );
        let c = Candidate {
            path: Path::new("/srv/a/innocent.qcow2"),
            kind: FileKind::Regular,
            id: Some(id),
        };
        assert!(matches!(
            judge(&c, &d, &o2, ME),
            Err(Distrust::OtherGuestsDisk { .. })
        ));
        assert_eq!(judge(&c, &d, &o2, B), Ok(()));
        let msg = Refused {
            what: "backing file",
            file: "/srv/b/b.qcow2".into(),
            named_by: "the image header of /srv/a/a.qcow2".into(),
            why: Distrust::OtherGuestsDisk {
                guest: "b".into(),
                disk: "vda".into(),
            },
        }
        .to_string();
        assert_eq!(
            msg,
            "backing file /srv/b/b.qcow2 (named by the image header of /srv/a/a.qcow2) is \
             another guest's writable disk (guest 'b', disk 'vda')"
        );
    }

    fn path(p: &str) -> Source {
        Source::Path(p.into())
    }

    #[test]
    fn scan_reads_writable_disks_only() {
        let xml = br#"<domstatus state='running'><domain type='kvm'><name>b</name>
            <uuid>00000000-0000-0000-0000-000000000002</uuid>
            <metadata><disk><source file='/not/a/disk'/></disk></metadata>
            <os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/b_VARS.fd</nvram></os>
            <devices>
              <disk type='file' device='disk'><source file='/srv/b/b.qcow2'/>
                <backingStore type='file'><source file='/srv/base.qcow2'/></backingStore>
                <target dev='vda'/></disk>
              <disk type='block' device='disk'><source dev='/dev/vg/b'/><target dev='vdb'/><shareable/></disk>
              <disk type='file' device='disk'><source file='/srv/ro.img'/><readonly/><target dev='vdc'/></disk>
              <disk type='file' device='cdrom'><source file='/srv/x.iso'/><target dev='sda'/></disk>
              <disk type='network' device='disk'><source protocol='nbd' name='x'/><target dev='vdd'/></disk>
              <disk type='volume' device='disk'><source pool='p' volume='v.qcow2'/><target dev='vde'/></disk>
            </devices></domain></domstatus>"#;
        let g = scan_disks(xml).unwrap();
        assert_eq!(g.name, "b");
        assert_eq!(g.uuid, B);
        assert_eq!(
            g.disks,
            vec![
                (
                    "nvram".to_string(),
                    path("/var/lib/libvirt/qemu/nvram/b_VARS.fd")
                ),
                ("vda".to_string(), path("/srv/b/b.qcow2")),
                ("vdb".to_string(), path("/dev/vg/b")),
                (
                    "vde".to_string(),
                    Source::Volume {
                        pool: "p".into(),
                        volume: "v.qcow2".into()
                    }
                ),
            ]
        );
        // libvirt >= 8.5 may write the store as a `<source>` of `<nvram type='file'>`.
        let newer = br#"<domain><name>c</name><uuid>00000000-0000-0000-0000-000000000003</uuid>
            <os><nvram type='file'><source file='/n/c_VARS.fd'/></nvram></os></domain>"#;
        assert_eq!(
            scan_disks(newer).unwrap().disks,
            vec![("nvram".to_string(), path("/n/c_VARS.fd"))]
        );
        assert!(scan_disks(b"<domain><name>x</name></domain>").is_err());
        assert!(scan_disks(b"<pool/>").is_err());
    }

    #[test]
    fn load_reads_libvirts_files_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc/libvirt/qemu");
        std::fs::create_dir_all(&etc).unwrap();
        let disk = d.path().join("b.qcow2");
        std::fs::write(&disk, b"").unwrap();
        std::fs::write(
            etc.join("b.xml"),
            format!(
                "<domain><name>b</name><uuid>{B}</uuid><devices><disk><source file='{}'/>\
                 <target dev='vda'/></disk></devices></domain>",
                disk.display()
            ),
        )
        .unwrap();
        std::fs::write(etc.join("broken.xml"), b"<domain>").unwrap();
        let w = WritableDisks::load(d.path());
        assert_eq!(w.files_read, 1);
        assert_eq!(w.warnings.len(), 1, "{:?}", w.warnings);
        // Found by another name for the same file.
        let link = d.path().join("link");
        std::fs::hard_link(&disk, &link).unwrap();
        let c = Candidate::stat(&link);
        assert_eq!(c.kind, FileKind::Regular);
        assert_eq!(w.owner_of(c.path, c.id, ME).unwrap().guest, "b");
        assert!(w.owner_of(c.path, c.id, B).is_none());
    }

    #[test]
    fn a_pool_volume_is_found_as_the_file_of_its_directory_pool() {
        let d = tempfile::tempdir().unwrap();
        let (etc, pools, vms) = (
            d.path().join("etc/libvirt/qemu"),
            d.path().join("etc/libvirt/storage"),
            d.path().join("vms"),
        );
        for p in [&etc, &pools, &vms] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(vms.join("v.qcow2"), b"").unwrap();
        std::fs::write(
            pools.join("p.xml"),
            format!(
                "<pool type='dir'><name>p</name><target><path>{}</path></target></pool>",
                vms.display()
            ),
        )
        .unwrap();
        std::fs::write(
            etc.join("b.xml"),
            format!(
                "<domain><name>b</name><uuid>{B}</uuid><devices><disk type='volume'>\
                 <source pool='p' volume='v.qcow2'/><target dev='vdb'/></disk>\
                 <disk type='volume'><source pool='nosuch' volume='w'/></disk></devices></domain>"
            ),
        )
        .unwrap();
        let w = WritableDisks::load(d.path());
        let v = vms.join("v.qcow2");
        let c = Candidate::stat(&v);
        let o = w
            .owner_of(c.path, c.id, ME)
            .expect("the volume is b's writable disk");
        assert_eq!((o.guest.as_str(), o.disk.as_str()), ("b", "vdb"));
        assert_eq!(w.len(), 1);
    }
}
