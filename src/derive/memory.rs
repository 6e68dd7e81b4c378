//! Memory: NVDIMM/virtio-pmem and SGX devices, ivshmem, hugepage and file memory backing.

use super::Cx;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;

impl Cx<'_> {
    pub(super) fn memory_device(&mut self, m: &Element, i: usize) -> Result<(), GrantError> {
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
    pub(super) fn shmem(&mut self, s: &Element, i: usize) -> Result<(), GrantError> {
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
    /// Hugepage and file memory backing: the per-domain directories libvirt creates under each
    /// hugetlbfs mount and under `memory_backing_dir`.
    pub(super) fn memory_backing(&mut self) -> Result<(), GrantError> {
        let Some(mb) = self.dom.root.child("memoryBacking") else {
            return Ok(());
        };
        let shorts = self.dom.short_names();
        if mb.child("hugepages").is_some() {
            let mut mounts = self.host().hugetlbfs_mounts();
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
                let p = format!("{}{s}", super::RAM_DIR);
                self.grant("memoryBacking file", &p, Perms::RW, Scope::Tree)?;
            }
        }
        Ok(())
    }
}
