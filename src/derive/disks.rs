//! Disks and other storage: the image, its backing chain (from the XML or the image headers),
//! mirrors and pool volumes.

use super::{Cx, label_of};
use crate::backing;
use crate::paths::PathError;
use crate::reach;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;
use std::path::{Path, PathBuf};

/// What a header-named source is and which header named it, for the refusal message. The
/// message itself is only written for a refusal ([`Named::by`]): a guest whose libvirt XML
/// records a `<backingStore>` for each of a thousand disks would otherwise format a thousand.
pub(super) struct Named<'n> {
    what: &'static str,
    /// The source whose image header named this one.
    header_of: &'n Element,
    /// That source's resolved file, if it has one.
    local: Option<&'n Path>,
    /// The element libvirt recorded the name in: `<backingStore>` or `<dataStore>`.
    recorded_in: &'static str,
}

impl Named<'_> {
    /// Which header named the source, for a refusal.
    fn by(&self) -> String {
        format!(
            "the image header of {}, as libvirt recorded it in {}",
            self_name(self.header_of, self.local),
            self.recorded_in
        )
    }
}

/// How a storage source names its image in messages: as written in the XML, or resolved when
/// it names no file of its own (a volume).
fn self_name(src: &Element, local: Option<&Path>) -> String {
    src.attr_nonempty("file")
        .or_else(|| src.attr_nonempty("dev"))
        .map(str::to_string)
        .or_else(|| local.map(|l| l.display().to_string()))
        .unwrap_or_else(|| "its parent image".to_string())
}

impl Cx<'_> {
    pub(super) fn disk(&mut self, disk: &Element, i: usize) -> Result<(), GrantError> {
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
    /// One storage source (`<disk>`, `<mirror>`, `<nvram>` with a `<source>`) as the definition
    /// names it, and, recursively, its backing chain.
    pub(super) fn storage_source(
        &mut self,
        label: &str,
        el: &Element,
        perms: Perms,
        fmt: Option<&str>,
        depth: usize,
    ) -> Result<(), GrantError> {
        self.storage_source_from(label, el, perms, fmt, depth, None)
    }

    /// [`storage_source`](Self::storage_source) for any source; `named` is set for a
    /// `<backingStore>` (and a `<dataStore>` below one): libvirt recorded it from an image header,
    /// which the guest can write, so its file must pass [`crate::reach::judge`].
    fn storage_source_from(
        &mut self,
        label: &str,
        el: &Element,
        perms: Perms,
        fmt: Option<&str>,
        depth: usize,
        named: Option<&Named<'_>>,
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
            "file" | "block" => {
                let attr = if kind == "file" { "file" } else { "dev" };
                if let Some(f) = src.attr_nonempty(attr) {
                    local = self.grant_storage(label, f, perms, Scope::File)?;
                    if let (Some(n), Some(l)) = (named, &local) {
                        self.judge_resolved(label, l, n.what, &|| n.by())?;
                    }
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
                    if let (Some(n), Some(l)) = (named, &local) {
                        self.judge_resolved(label, l, n.what, &|| n.by())?;
                    }
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
            // A data file is named by its image's header too; below a header-named image it is
            // the guest's choice as much as the image itself. (The top image's own data file
            // stays the definer's: libvirt ≥ 10.10 takes it from the definition.)
            let ds_named = named.map(|_| Named {
                what: "data file",
                header_of: src,
                local: local.as_deref(),
                recorded_in: "<dataStore>",
            });
            self.storage_source_from(label, ds, perms, dfmt, depth + 1, ds_named.as_ref())?;
        }
        // Backing chain: the XML's own <backingStore> wins; otherwise read the headers.
        // Backing images are read-only (`rk`) with no `deny w`, so blockcommit can still
        // reopen them read-write through libvirt's later grants.
        match el.child("backingStore") {
            Some(bs) => {
                if bs.child("source").is_some() || bs.attr("type").is_some() {
                    let bfmt = bs.child("format").and_then(|f| f.attr_nonempty("type"));
                    // Named by the header of this source: as written, or resolved when the
                    // XML names no local file (a volume, a block device as written).
                    let bs_named = Named {
                        what: "backing file",
                        header_of: src,
                        local: local.as_deref(),
                        recorded_in: "<backingStore>",
                    };
                    self.storage_source_from(
                        label,
                        bs,
                        Perms::RK,
                        bfmt,
                        depth + 1,
                        Some(&bs_named),
                    )?;
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
                    // Granted first, then judged: a host system path keeps the host policy's
                    // own message; either refusal stops the guest.
                    for ext in &chain.top_extents {
                        self.out
                            .rules
                            .grant_resolved(label, ext, perms, Scope::File)?;
                        let by = || format!("the VMDK descriptor {}", top.display());
                        self.judge_resolved(label, ext, "extent", &by)?;
                    }
                    for (link, parent) in chain.links.iter().zip(&chain.named_by) {
                        self.out
                            .rules
                            .grant_resolved(label, link, Perms::RK, Scope::File)?;
                        let by = || format!("the image header of {}", parent.display());
                        self.judge_resolved(label, link, "backing file", &by)?;
                    }
                }
            }
        }
        Ok(())
    }
    /// Judge a resolved file that an image header or descriptor named (`named_by` says which):
    /// an error naming the disk, the file and the reason unless [`reach::judge`] allows it.
    /// Verdicts are kept per file: a thousand disks over one base judge it once. `named_by` is
    /// only called for a refusal (a message per disk cost a `format!` each).
    pub(super) fn judge_resolved(
        &mut self,
        label: &str,
        resolved: &Path,
        what: &'static str,
        named_by: &dyn Fn() -> String,
    ) -> Result<(), GrantError> {
        let this = self.dom.uuid;
        if self.reach.is_none() {
            let state = self.reach_state();
            self.reach = Some(state);
        }
        let st = self.reach.as_mut().expect("just set");
        // A thousand disks over one base ask about the same file a thousand times in a row:
        // the last answer is checked first (a byte comparison instead of hashing the path).
        let verdict = match st.last_allowed.as_deref() {
            Some(last) if last == resolved.as_os_str() => Ok(()),
            _ => match st.verdicts.get(resolved.as_os_str()) {
                Some(v) => v.clone(),
                None => {
                    let c = reach::Candidate::stat(resolved);
                    let v = reach::judge(&c, &st.dirs, &st.others, this);
                    st.verdicts
                        .insert(resolved.as_os_str().to_os_string(), v.clone());
                    v
                }
            },
        };
        if verdict.is_ok() {
            let last = st.last_allowed.get_or_insert_with(Default::default);
            if last.as_os_str() != resolved.as_os_str() {
                last.clear();
                last.push(resolved.as_os_str());
            }
        }
        verdict.map_err(|why| GrantError {
            device: crate::rules::one_line(label),
            cause: PathError::Unreachable(Box::new(reach::Refused {
                what,
                file: crate::rules::one_line(&resolved.to_string_lossy()),
                named_by: crate::rules::one_line(&named_by()),
                why,
            })),
        })
    }

    /// What [`reach::judge`] needs, gathered once per derivation and only for a guest that has
    /// a backing file: the directories of its own disks as its definition names them, the
    /// configured image directories (both resolved, as the candidates are), and every other
    /// guest's writable disks from libvirt's files.
    fn reach_state(&mut self) -> super::ReachState {
        let mut own: Vec<PathBuf> = Vec::new();
        let mut named: Vec<String> = Vec::new();
        if let Some(devs) = self.dom.root.child("devices") {
            for disk in devs.children_named("disk") {
                let Some(src) = disk.child("source") else {
                    continue;
                };
                let p = match disk.attr("type").unwrap_or("file") {
                    "file" => src.attr_nonempty("file").map(str::to_string),
                    "block" => src.attr_nonempty("dev").map(str::to_string),
                    "volume" => self.volume_path(src),
                    _ => None,
                };
                named.extend(p);
            }
        }
        // A guest's disks mostly share a directory: a parent written as the one before it has
        // the same answer, already in `own`.
        let mut last_parent: Option<&str> = None;
        for p in &named {
            // `<last parent>/<name>`: its parent is the last one (checked on the string, before
            // `Path::parent` splits it into components).
            if let Some(lp) = last_parent.filter(|lp| !lp.ends_with('/')) {
                if let Some(name) = p.strip_prefix(lp).and_then(|r| r.strip_prefix('/')) {
                    if !name.contains('/') && !matches!(name, "" | "." | "..") {
                        continue;
                    }
                }
            }
            let Some(parent) = Path::new(p).parent().and_then(|d| d.to_str()) else {
                continue;
            };
            if last_parent == Some(parent) {
                continue;
            }
            last_parent = Some(parent);
            if let Ok(d) = self.resolver.resolve_repeated(parent) {
                if !own.contains(&d) {
                    own.push(d);
                }
            }
        }
        let mut image_dirs = Vec::new();
        for d in &self.opts.image_dirs {
            if let Some(r) = d
                .to_str()
                .and_then(|s| self.resolver.resolve_repeated(s).ok())
            {
                image_dirs.push(r);
            }
        }
        let others = reach::WritableDisks::load(&self.opts.libvirt_root);
        for w in &others.warnings {
            self.warn(w.clone());
        }
        super::ReachState {
            dirs: reach::TrustedDirs { own, image_dirs },
            others,
            verdicts: Default::default(),
            last_allowed: None,
        }
    }

    /// Grant a file/block storage path and return its resolved form for chain probing.
    pub(super) fn grant_storage(
        &mut self,
        label: &str,
        raw: &str,
        perms: Perms,
        scope: Scope,
    ) -> Result<Option<PathBuf>, GrantError> {
        self.grant_path(label, raw, perms, scope)
    }
    /// `<source pool= volume=>` of a directory-backed pool (see [`Host::pool_volume_path`](super::host::Host::pool_volume_path)).
    pub(super) fn volume_path(&self, src: &Element) -> Option<String> {
        let pool = src.attr_nonempty("pool")?;
        let vol = src.attr_nonempty("volume")?;
        self.host().pool_volume_path(pool, vol)
    }
}
