//! Where things live on a host: virt-aa-hook's own installed files, and the files of libvirt,
//! AppArmor, auditd and systemd that we read or talk to by name. One owner for every such path;
//! what an admin may move is in [`crate::config::Config`] instead.
//!
//! Our installed files are host paths that libvirt, libvirtd's AppArmor profile or the package refer to by
//! name, so they are fixed, not configured: libvirtd's profile lets the daemon run programs in
//! `/usr/lib/libvirt/` unconfined (`PUxr`), libvirt looks for hooks in `/etc/libvirt/hooks/`,
//! and libvirt's AppArmor driver runs `/usr/lib/libvirt/virt-aa-helper`. Code that needs one
//! asks here (tests root them with [`crate::config::Config::rooted`]). The installer and the
//! package ship files at exactly these places: `tests/pkg/run.sh` checks the package's file list
//! (`dpkg-deb -c`) against README's "Where files go" table, and `readme_table_names_them` below
//! checks the table against these constants.

/// A path inside libvirt's libexec directory, as a `&'static str` literal.
macro_rules! libexec {
    ($file:literal) => {
        concat!("/usr/lib/libvirt/", $file)
    };
}

/// libvirt's libexec directory: what libvirtd's profile lets the daemon exec unconfined.
pub const LIBEXEC_DIR: &str = "/usr/lib/libvirt";
/// The hook, wrapper and admin binary (no libvirt linked).
pub const HOOK_BINARY: &str = libexec!("virt-aa-hook");
/// File name of the libvirt-linked admin binary, found beside the running executable.
pub const ADMIN_BINARY_NAME: &str = "virt-aa-hook-libvirt";
/// The libvirt-linked admin binary at its installed place.
pub const ADMIN_BINARY: &str = libexec!("virt-aa-hook-libvirt");
/// File-name prefix that makes the binary act as an emulator wrapper.
pub const WRAPPER_PREFIX: &str = "virt-aa-hook.";
/// Full path prefix of the installed wrappers (`<this><emulator file name>`): they must sit
/// directly in the libexec directory, whose `PUxr` rule in libvirtd's profile applies.
pub const WRAPPER_PATH_PREFIX: &str = libexec!("virt-aa-hook.");
/// libvirt's AppArmor helper, which its security driver runs at every label/relabel/teardown.
pub const LIBVIRT_HELPER: &str = libexec!("virt-aa-helper");
/// Where the distribution's helper is kept while ours answers in its place (`dpkg-divert`).
pub const LIBVIRT_HELPER_DIVERTED: &str = libexec!("virt-aa-helper.distrib");
/// libvirt's hook directory.
pub const HOOKS_DIR: &str = "/etc/libvirt/hooks";
/// The qemu hook libvirt runs when there is no admin hook of its own.
pub const HOOK_LINK: &str = "/etc/libvirt/hooks/qemu";
/// Our entry in `qemu.d/` when the admin already has a `qemu` hook (never touched).
pub const HOOK_LINK_D: &str = "/etc/libvirt/hooks/qemu.d/50-virt-aa-hook";
/// libvirt's QEMU driver configuration (`security_driver`).
pub const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";

// --- Other programs' files we read by name (host paths; rooted by the caller for tests) ------

/// libvirt's persistent guest definitions (`<name>.xml`).
pub const QEMU_CONFIG_DIR: &str = "/etc/libvirt/qemu";
/// libvirt's status files of running guests (`<name>.xml`) and their pid files (`<name>.pid`).
pub const QEMU_STATUS_DIR: &str = "/run/libvirt/qemu";
/// libvirt's storage pool definitions.
pub const STORAGE_POOL_DIR: &str = "/etc/libvirt/storage";
/// Where QEMU firmware descriptors live (the files libvirt itself reads to pair firmware images
/// with their NVRAM templates), in libvirt's order of precedence.
pub const FIRMWARE_DESCRIPTOR_DIRS: &[&str] = &["/etc/qemu/firmware", "/usr/share/qemu/firmware"];
/// Where distributions install the QEMU emulators (the default `emulator_dir`).
pub const EMULATOR_DIR: &str = "/usr/bin";
/// AppArmor's policy directory on the host (the default `apparmor_dir`; the distribution's
/// tunables and abstractions are always included from here).
pub const APPARMOR_DIR: &str = "/etc/apparmor.d";
/// Where distributions install `apparmor_parser` (Debian: /usr/sbin, older: /sbin).
pub const APPARMOR_PARSER_CANDIDATES: &[&str] = &[
    "/usr/sbin/apparmor_parser",
    "/sbin/apparmor_parser",
    "/usr/bin/apparmor_parser",
];
/// auditd's log.
pub const AUDIT_LOG: &str = "/var/log/audit/audit.log";
/// journald's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The wrapper path for an emulator binary (`/usr/bin/qemu-system-x86_64` →
/// `/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64`).
pub fn wrapper_path(emulator_file_name: &str) -> String {
    format!("{WRAPPER_PATH_PREFIX}{emulator_file_name}")
}

/// Whether an `<emulator>` path is one of our wrappers.
pub fn is_wrapper_path(emulator: &str) -> bool {
    emulator.starts_with(WRAPPER_PATH_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_agree() {
        assert_eq!(HOOK_BINARY, format!("{LIBEXEC_DIR}/virt-aa-hook"));
        assert_eq!(ADMIN_BINARY, format!("{LIBEXEC_DIR}/{ADMIN_BINARY_NAME}"));
        assert_eq!(
            WRAPPER_PATH_PREFIX,
            format!("{LIBEXEC_DIR}/{WRAPPER_PREFIX}")
        );
        assert!(HOOK_LINK_D.starts_with(&format!("{HOOKS_DIR}/qemu.d/")));
        assert_eq!(
            wrapper_path("qemu-system-x86_64"),
            "/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64"
        );
        assert!(is_wrapper_path(&wrapper_path("qemu-system-x86_64")));
        assert!(!is_wrapper_path("/usr/bin/qemu-system-x86_64"));
    }

    #[test]
    fn readme_table_names_them() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Where files go")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .expect("README has a \"Where files go\" section");
        let hooks_parent = HOOKS_DIR.rsplit_once('/').unwrap().0;
        for p in [
            HOOK_BINARY,
            ADMIN_BINARY,
            HOOK_LINK,
            WRAPPER_PATH_PREFIX,
            HOOK_LINK_D
                .strip_prefix(&format!("{hooks_parent}/"))
                .unwrap(),
            LIBVIRT_HELPER_DIVERTED.rsplit_once('/').unwrap().1,
        ] {
            assert!(table.contains(&format!("`{p}")), "README table lacks {p}");
        }
    }
}
