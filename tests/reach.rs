//! Image-header trust end to end (`virt-aa-hook generate` against a temp root holding libvirt's
//! guest files): a guest that rewrites its own image header cannot reach another guest's
//! writable disk, a file outside the trusted image directories or a special file; the shared
//! read-only base beside it still works. Images are made by the real `qemu-img`.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const A: &str = "aaaaaaaa-1111-4111-8111-00000000000a";
const B: &str = "bbbbbbbb-1111-4111-8111-00000000000b";
const C: &str = "cccccccc-1111-4111-8111-00000000000c";

fn qemu_img_ok() -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail("qemu-img missing: image-header trust tests need it");
    }
    ok
}

/// A qcow2 at `path` whose header names `backing` (format qcow2 or raw), written as a guest
/// would write it (`-u`: the backing file need not exist or be valid).
fn overlay(path: &Path, backing: &Path, fmt: &str) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-u", "-F", fmt, "-b"])
        .arg(backing)
        .arg(path)
        .arg("1M")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn domain(name: &str, uuid: &str, disks: &str) -> String {
    format!(
        "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><devices>{disks}</devices></domain>"
    )
}

fn disk(path: &Path, dev: &str, extra: &str) -> String {
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/>\
         <target dev='{dev}'/>{extra}</disk>",
        path.display()
    )
}

/// `generate` guest A (disk `vda` at `top`) in `root`: (exit code, rules, stderr).
fn gen_a(root: &TempRoot, top: &Path, extra: &str) -> (i32, String, String) {
    let xml = domain("a", A, &disk(top, "vda", extra));
    let out = root.run(&["generate", "--mode", "libvirt"], xml.as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Host {
    root: TempRoot,
    /// A's own disk directory, B's, a shared image directory (configured), and elsewhere.
    a: PathBuf,
    b: PathBuf,
    shared: PathBuf,
    elsewhere: PathBuf,
}

/// A temp root whose libvirt knows guest B (shut off: `/etc/libvirt/qemu/b.xml`, with a
/// writable disk and the shared base read-only) and guest C (running: only its status file).
fn host() -> Host {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().canonicalize().unwrap();
    let (a, b, shared, elsewhere) = (
        base.join("a"),
        base.join("b"),
        base.join("shared"),
        base.join("elsewhere"),
    );
    let root = TempRoot::new(&format!("image_dirs = [\"{}\"]\n", shared.display()));
    for dir in [&a, &b, &shared, &elsewhere] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(b.join("b.qcow2"), b"").unwrap();
    std::fs::write(shared.join("base.raw"), b"").unwrap();
    std::fs::write(shared.join("c.raw"), b"").unwrap();
    std::fs::write(elsewhere.join("x.raw"), b"").unwrap();
    let etc = root.path("etc/libvirt/qemu");
    let run = root.path("run/libvirt/qemu");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        etc.join("b.xml"),
        domain(
            "b",
            B,
            &format!(
                "{}{}",
                disk(&b.join("b.qcow2"), "vda", ""),
                disk(&shared.join("base.raw"), "vdb", "<readonly/>")
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        run.join("c.xml"),
        format!(
            "<domstatus state='running' pid='1'>{}</domstatus>",
            domain("c", C, &disk(&shared.join("c.raw"), "vdc", ""))
        ),
    )
    .unwrap();
    // Keep the temp dir of the images alive with the root.
    std::mem::forget(d);
    Host {
        root,
        a,
        b,
        shared,
        elsewhere,
    }
}

#[test]
fn a_header_cannot_reach_another_guests_disk_or_a_file_outside_the_image_dirs() {
    if !qemu_img_ok() {
        return;
    }
    let h = host();
    let top = h.a.join("a.qcow2");

    // The shared read-only base (another guest's <readonly/> disk) in a configured dir: granted.
    overlay(&top, &h.shared.join("base.raw"), "raw");
    let (code, out, err) = gen_a(&h.root, &top, "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("\"{}\" rk,", h.shared.join("base.raw").display())),
        "{out}"
    );

    // Guest B's writable disk (B shut off): the guest does not start; one line says why.
    overlay(&top, &h.b.join("b.qcow2"), "qcow2");
    let (code, out, err) = gen_a(&h.root, &top, "");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "disk 'vda': backing file {} (named by the image header of {}) is another guest's \
             writable disk (guest 'b', disk 'vda')",
            h.b.join("b.qcow2").display(),
            top.display()
        )),
        "{err}"
    );

    // Guest C's writable disk (C running, known from its status file only), though it lies in
    // a trusted directory.
    overlay(&top, &h.shared.join("c.raw"), "raw");
    let (code, _, err) = gen_a(&h.root, &top, "");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another guest's writable disk (guest 'c', disk 'vdc')"),
        "{err}"
    );

    // The same file under another name (a hard link beside A's disk): known by its identity.
    std::fs::hard_link(h.b.join("b.qcow2"), h.a.join("innocent.qcow2")).unwrap();
    overlay(&top, &h.a.join("innocent.qcow2"), "qcow2");
    let (code, _, err) = gen_a(&h.root, &top, "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(guest 'b', disk 'vda')"), "{err}");

    // A file outside A's own directory and the image dirs.
    overlay(&top, &h.elsewhere.join("x.raw"), "raw");
    let (code, _, err) = gen_a(&h.root, &top, "");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "backing file {} (named by the image header of {}) is outside the directories \
             trusted for images",
            h.elsewhere.join("x.raw").display(),
            top.display()
        )),
        "{err}"
    );

    // A FIFO beside the image, and a character device: never opened, never granted.
    let fifo = h.a.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain mkfifo(3) on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (special, kind) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/null"), "a character device"),
    ] {
        overlay(&top, special, "qcow2");
        let (code, _, err) = gen_a(&h.root, &top, "");
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("backing file {} ", special.display()))
                && err.contains(&format!("is {kind}, not a regular file")),
            "{err}"
        );
    }

    // libvirt's own probe of the header, as <backingStore> in the live XML: the same policy.
    overlay(&top, &h.b.join("b.qcow2"), "qcow2");
    let bs = format!(
        "<backingStore type='file'><format type='qcow2'/><source file='{}'/><backingStore/></backingStore>",
        h.b.join("b.qcow2").display()
    );
    let (code, _, err) = gen_a(&h.root, &top, &bs);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("as libvirt recorded it in <backingStore>)")
            && err.contains("(guest 'b', disk 'vda')"),
        "{err}"
    );

    // Guest B itself may of course have its own disk below its overlay.
    let xml = domain(
        "b",
        B,
        &disk(
            &h.b.join("top.qcow2"),
            "vda",
            &format!(
                "<backingStore type='file'><format type='qcow2'/><source file='{}'/><backingStore/></backingStore>",
                h.b.join("b.qcow2").display()
            ),
        ),
    );
    let out = h
        .root
        .run(&["generate", "--mode", "libvirt"], xml.as_bytes());
    assert!(out.status.success(), "{out:?}");
}
