//! What QEMU starts from: the emulator binary, `<os>` (kernel, initrd, DTB, ACPI tables,
//! loader, NVRAM, varstore, firmware autoselection) and fw_cfg `<sysinfo>` files.

use super::Cx;
use crate::paths;
use crate::rules::{GrantError, Perms, Scope};

impl Cx<'_> {
    /// QEMU is exec'd after the profile switch, so a non-standard emulator (not in the
    /// abstraction's `/usr/bin/qemu*` list) must be executable inside the profile. When the
    /// emulator is our wrapper, grant the real emulator it will exec.
    pub(super) fn emulator(&mut self) {
        let Some(emu) = self.dom.emulator.clone() else {
            return;
        };
        let real = if let Some(tail) = emu.strip_prefix(&self.opts.wrapper_prefix) {
            self.dom
                .settings
                .original_emulator
                .clone()
                .unwrap_or_else(|| {
                    self.opts
                        .emulator_dir
                        .join(tail)
                        .to_string_lossy()
                        .into_owned()
                })
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
    pub(super) fn os(&mut self) -> Result<(), GrantError> {
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
                        if self.opts.policy.check(&res, true, "rwk").is_err()
                            && self.opts.policy.check(&res, false, "rk").is_ok()
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
    pub(super) fn sysinfo(&mut self) -> Result<(), GrantError> {
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
}
