//! Disks and other storage: the image, its backing chain (from the XML or the image headers),
//! mirrors and pool volumes.

use super::{Cx, label_of};
use crate::backing;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;
use std::path::PathBuf;

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
    /// One storage source (`<disk>`, `<backingStore>`, `<mirror>`, `<nvram>` with a `<source>`)
    /// and, recursively, its backing chain.
    pub(super) fn storage_source(
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
