//! The backing-chain prober against real images: made by qemu-img (under
//! VIRT_AA_HOOK_TESTS_STRICT=1 a missing qemu-img fails, as tests/run.sh installs it) or written
//! by hand where qemu-img cannot make the case (loops, devices, hostile descriptors).

use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use virt_aa_hook::backing::{Chain, HeaderCache, Top, parse_header, probe_chain};
use virt_aa_hook::paths;

use crate::util::skip_or_fail;

/// qcow2 header extension: name of the backing file's format.
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// Big-endian u32 at `at`.
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// [`probe_chain`] from a path as written, with a resolver and header cache of its own.
fn probe(top: &Path, format: Option<&str>, max_depth: usize) -> Chain {
    probe_chain(
        Top::Named(top),
        format,
        max_depth,
        &mut paths::Resolver::new(),
        &mut HeaderCache::default(),
    )
}

/// Whether the real qemu-img is installed (tests that need it are skipped, loudly, if not;
/// under tests/run.sh, which installs qemu-utils, they fail).
fn have_qemu_img() -> bool {
    let ok = Command::new("qemu-img").arg("--version").output().is_ok();
    if !ok {
        skip_or_fail("qemu-img not found (install qemu-utils)");
    }
    ok
}

/// Run qemu-img in `dir`; true on success. Its stderr is shown on failure.
fn try_qemu_img(dir: &Path, args: &[&str]) -> bool {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run qemu-img");
    if !out.status.success() {
        eprintln!(
            "qemu-img {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Run qemu-img in `dir` and insist it succeeds.
fn qemu_img(dir: &Path, args: &[&str]) {
    assert!(try_qemu_img(dir, args), "qemu-img {args:?}");
}

/// A fresh temporary directory, canonicalised (so expected paths match resolved ones).
fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().canonicalize().unwrap();
    (t, p)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Replace the qcow2 backing-format header extension with an unknown (ignored) one, giving
/// an image whose backing format is not recorded (qemu-img no longer creates those).
fn drop_backing_format(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mut pos = if be32(&b, 4) == 2 {
        72
    } else {
        be32(&b, 100) as usize
    };
    loop {
        let kind = be32(&b, pos);
        let len = be32(&b, pos + 4) as usize;
        assert_ne!(kind, 0, "no backing-format extension found");
        if kind == QCOW2_EXT_BACKING_FORMAT {
            b[pos..pos + 4].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            break;
        }
        pos += 8 + ((len + 7) & !7);
    }
    std::fs::write(path, b).unwrap();
    assert_eq!(
        parse_header(&std::fs::read(path).unwrap())
            .unwrap()
            .backing_format,
        None
    );
}

// ---- probe_chain on real images made by qemu-img -------------------------------------

#[test]
fn chain_qcow2_qcow2_raw() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    let (base, mid, top) = (d.join("base.raw"), d.join("mid.qcow2"), d.join("top.qcow2"));
    qemu_img(&d, &["create", "-f", "raw", s(&base), "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            s(&base),
            "-F",
            "raw",
            s(&mid),
        ],
    );
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            s(&mid),
            "-F",
            "qcow2",
            s(&top),
        ],
    );
    let c = probe(&top, Some("qcow2"), 200);
    assert_eq!(c.links, vec![mid.clone(), base.clone()]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Probing from the middle gives the rest.
    assert_eq!(probe(&mid, Some("qcow2"), 200).links, vec![base]);
}

#[test]
fn chain_relative_names() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    std::fs::create_dir(d.join("sub")).unwrap();
    qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
    // sub/mid.qcow2 names "../base.raw": relative to sub/, not to the cwd.
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "../base.raw",
            "-F",
            "raw",
            "sub/mid.qcow2",
            "1M",
        ],
    );
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "sub/mid.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    );
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("sub/mid.qcow2"), d.join("base.raw")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn chain_through_symlinks() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    std::fs::create_dir(d.join("real")).unwrap();
    symlink(d.join("real"), d.join("link")).unwrap();
    qemu_img(&d, &["create", "-f", "raw", "real/base.raw", "1M"]);
    qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "real/mid.qcow2",
            "1M",
        ],
    );
    // Backing named through a symlinked directory: listed as its target.
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "link/mid.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
            "1M",
        ],
    );
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(
        c.links,
        vec![d.join("real/mid.qcow2"), d.join("real/base.raw")]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // The backing image itself is a symlink into another directory: QEMU joins its relative
    // backing name to the symlink's directory (as named), so base.raw is d/base.raw.
    symlink(d.join("real/mid.qcow2"), d.join("m.qcow2")).unwrap();
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "m.qcow2",
            "-F",
            "qcow2",
            "top2.qcow2",
            "1M",
        ],
    );
    let c = probe(&d.join("top2.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("real/mid.qcow2"), d.join("base.raw")]);
}

#[test]
fn chain_loop() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "qcow2", "b.qcow2", "1M"]);
    qemu_img(
        &d,
        &[
            "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2",
        ],
    );
    qemu_img(
        &d,
        &["rebase", "-u", "-F", "qcow2", "-b", "a.qcow2", "b.qcow2"],
    );
    let a = d.join("a.qcow2");
    let c = probe(&a, Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("b.qcow2")]);
    assert_eq!(
        c.warnings,
        vec![format!(
            "backing chain of {} loops at {}",
            a.display(),
            a.display()
        )]
    );
    // Self-loop.
    qemu_img(
        &d,
        &["rebase", "-u", "-F", "qcow2", "-b", "a.qcow2", "a.qcow2"],
    );
    let c = probe(&a, Some("qcow2"), 200);
    assert!(c.links.is_empty());
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn chain_depth_limit() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "qcow2", "i0.qcow2", "1M"]);
    for i in 1..5 {
        let (b, o) = (format!("i{}.qcow2", i - 1), format!("i{i}.qcow2"));
        qemu_img(&d, &["create", "-f", "qcow2", "-b", &b, "-F", "qcow2", &o]);
    }
    let top = d.join("i4.qcow2");
    let c = probe(&top, Some("qcow2"), 200);
    assert_eq!(c.links.len(), 4);
    assert!(c.warnings.is_empty());
    let c = probe(&top, Some("qcow2"), 4);
    assert_eq!(c.links.len(), 4);
    assert!(c.warnings.is_empty());
    let c = probe(&top, Some("qcow2"), 2);
    assert_eq!(c.links, vec![d.join("i3.qcow2"), d.join("i2.qcow2")]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("deeper than 2"), "{:?}", c.warnings);
}

#[test]
fn devices_and_fifos_in_a_chain_are_never_opened() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    // A FIFO as backing file: a writer blocked in open() is released the moment anybody
    // opens the FIFO for reading, so the flag proves whether the prober opened it.
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain mkfifo(3) on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f2, o2) = (fifo.clone(), opened.clone());
    let writer = std::thread::spawn(move || {
        let _w = std::fs::OpenOptions::new().write(true).open(&f2);
        o2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    for (name, backing) in [
        ("f.qcow2", fifo.to_str().unwrap()),
        ("n.qcow2", "/dev/null"),
    ] {
        qemu_img(
            &d,
            &[
                "create", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", name, "1M",
            ],
        );
        let c = probe(&d.join(name), Some("qcow2"), 200);
        assert_eq!(c.links, vec![PathBuf::from(backing)]);
        assert!(
            c.warnings.len() == 1 && c.warnings[0].contains("not a regular file or block device"),
            "{:?}",
            c.warnings
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let was_opened = opened.load(std::sync::atomic::Ordering::SeqCst);
    // release the writer
    let _r = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    writer.join().unwrap();
    assert!(
        !was_opened,
        "the prober opened a FIFO named by an image header"
    );
}

#[test]
fn chain_missing_backing_is_listed() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "gone.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
            "1M",
        ],
    );
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("gone.qcow2")]);
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("gone.qcow2") && c.warnings[0].contains("cannot open"),
        "{:?}",
        c.warnings
    );
    // The top itself missing: nothing, one warning.
    let c = probe(&d.join("nope.qcow2"), Some("qcow2"), 200);
    assert!(c.links.is_empty());
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn chain_garbage_and_truncated_headers() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "qcow2", "mid.qcow2", "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    );
    // The backing image is overwritten with a truncated header.
    std::fs::write(d.join("mid.qcow2"), b"QFI\xfb\0\0\0\x03garbage").unwrap();
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("mid.qcow2")]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("truncated"), "{:?}", c.warnings);
    // Not a qcow2 at all although recorded as one.
    std::fs::write(d.join("mid.qcow2"), vec![0x5au8; 70000]).unwrap();
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("mid.qcow2")]);
    assert!(
        c.warnings[0].contains("not a qcow2 image"),
        "{:?}",
        c.warnings
    );
    // Declared qcow2 at the top but garbage / empty / a directory / a FIFO.
    std::fs::write(d.join("g.qcow2"), b"").unwrap();
    let c = probe(&d.join("g.qcow2"), Some("qcow2"), 200);
    assert_eq!((c.links.len(), c.warnings.len()), (0, 1));
    let c = probe(&d, Some("qcow2"), 200);
    assert_eq!((c.links.len(), c.warnings.len()), (0, 1));
    let fifo = d.join("fifo");
    let cpath = std::ffi::CString::new(s(&fifo)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    qemu_img(
        &d,
        &[
            "create", "-f", "qcow2", "-u", "-b", "fifo", "-F", "qcow2", "f.qcow2", "1M",
        ],
    );
    let c = probe(&d.join("f.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![fifo]);
    assert!(
        c.warnings[0].contains("not a regular file"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn raw_or_undeclared_is_never_probed() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "raw", "secret", "1M"]);
    // A "raw" disk whose guest wrote a qcow2 header naming a host file.
    qemu_img(
        &d,
        &[
            "create", "-f", "qcow2", "-b", "secret", "-F", "raw", "disk.img",
        ],
    );
    let disk = d.join("disk.img");
    assert_eq!(probe(&disk, Some("raw"), 200), Chain::default());
    assert_eq!(probe(&disk, None, 200), Chain::default());
    assert_eq!(probe(&disk, Some("vdi"), 200), Chain::default());
    assert_eq!(
        probe(&disk, Some("qcow2"), 200).links,
        vec![d.join("secret")]
    );
    // A qcow2 recording its backing as raw: the backing's qcow2-looking header is ignored.
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "disk.img",
            "-F",
            "raw",
            "top.qcow2",
        ],
    );
    let c = probe(&d.join("top.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![disk]);
    assert!(c.warnings.is_empty());
}

#[test]
fn chain_without_backing_format_detects_magic() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
    qemu_img(&d, &["create", "-f", "qcow2", "base.qcow2", "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "over-raw.qcow2",
        ],
    );
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "over-q.qcow2",
        ],
    );
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "over-raw.qcow2",
            "-F",
            "qcow2",
            "over-over.qcow2",
        ],
    );
    for f in ["over-raw.qcow2", "over-q.qcow2", "over-over.qcow2"] {
        drop_backing_format(&d.join(f));
    }
    let c = probe(&d.join("over-raw.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("base.raw")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = probe(&d.join("over-q.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("base.qcow2")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Detected as qcow2, but it has a backing file itself: not followed (libvirt's rule).
    let c = probe(&d.join("over-over.qcow2"), Some("qcow2"), 200);
    assert_eq!(c.links, vec![d.join("over-raw.qcow2")]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("not recorded"), "{:?}", c.warnings);
}

#[test]
fn chain_protocol_backing_names() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "nbd://x/y",
            "-F",
            "raw",
            "n.qcow2",
            "1M",
        ],
    );
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-u",
            "-b",
            r#"json:{"file":{"driver":"file","filename":"/etc/shadow"}}"#,
            "-F",
            "raw",
            "j.qcow2",
            "1M",
        ],
    );
    let c = probe(&d.join("n.qcow2"), Some("qcow2"), 200);
    assert!(c.links.is_empty());
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("nbd:"), "{:?}", c.warnings);
    let c = probe(&d.join("j.qcow2"), Some("qcow2"), 200);
    assert!(c.links.is_empty());
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("json:"), "{:?}", c.warnings);
}

#[test]
fn chain_qed() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "mid.qcow2",
        ],
    );
    if !try_qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qed",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            "top.qed",
        ],
    ) {
        eprintln!("qemu-img cannot create QED images: skipping");
        return;
    }
    // QED can only record "raw" as a backing format, so mid.qcow2 is detected as qcow2 and,
    // as in libvirt, a detected image may not pull in its own backing file.
    let c = probe(&d.join("top.qed"), Some("qed"), 200);
    assert_eq!(c.links, vec![d.join("mid.qcow2")]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("not recorded"), "{:?}", c.warnings);
    // QED over a qcow2 without a backing file: a full chain.
    qemu_img(&d, &["create", "-f", "qcow2", "leaf.qcow2", "1M"]);
    qemu_img(
        &d,
        &[
            "create",
            "-f",
            "qed",
            "-b",
            "leaf.qcow2",
            "-F",
            "qcow2",
            "q2.qed",
        ],
    );
    let c = probe(&d.join("q2.qed"), Some("qed"), 200);
    assert_eq!(c.links, vec![d.join("leaf.qcow2")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // QED over raw records "do not probe": the raw image is not read.
    qemu_img(
        &d,
        &[
            "create", "-f", "qed", "-b", "base.raw", "-F", "raw", "r.qed",
        ],
    );
    let h = parse_header(&std::fs::read(d.join("r.qed")).unwrap()).unwrap();
    assert_eq!(h.backing_format.as_deref(), Some("raw"));
    let c = probe(&d.join("r.qed"), Some("qed"), 200);
    assert_eq!(c.links, vec![d.join("base.raw")]);
}

#[test]
fn chain_qcow_v1() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "raw", "base.raw", "1M"]);
    if !try_qemu_img(
        &d,
        &[
            "create", "-f", "qcow", "-b", "base.raw", "-F", "raw", "v1.qcow",
        ],
    ) {
        eprintln!("qemu-img cannot create qcow images: skipping");
        return;
    }
    let c = probe(&d.join("v1.qcow"), Some("qcow"), 200);
    assert_eq!(c.links, vec![d.join("base.raw")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Declared qcow2 but it is qcow v1: refused with a warning.
    let c = probe(&d.join("v1.qcow"), Some("qcow2"), 200);
    assert!(c.links.is_empty());
    assert!(
        c.warnings[0].contains("not a qcow2 image"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn chain_vmdk() {
    if !have_qemu_img() {
        return;
    }
    let (_t, d) = tmp();
    qemu_img(&d, &["create", "-f", "vmdk", "p.vmdk", "1M"]);
    if !try_qemu_img(
        &d,
        &[
            "create", "-f", "vmdk", "-b", "p.vmdk", "-F", "vmdk", "c.vmdk",
        ],
    ) {
        eprintln!("qemu-img cannot create VMDK images with a parent: skipping");
        return;
    }
    let c = probe(&d.join("c.vmdk"), Some("vmdk"), 200);
    assert_eq!(c.links, vec![d.join("p.vmdk")]);
    // a sparse file's embedded descriptor names the file itself: no extents of its own
    assert!(c.top_extents.is_empty(), "{:?}", c.top_extents);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A standalone descriptor file (twoGbMaxExtentSparse: descriptor + extent files) with a
    // parent, if qemu-img makes one (it refuses a parent for monolithicFlat).
    if try_qemu_img(
        &d,
        &[
            "create",
            "-f",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentSparse",
            "-b",
            "c.vmdk",
            "-F",
            "vmdk",
            "split.vmdk",
        ],
    ) {
        let h = parse_header(&std::fs::read(d.join("split.vmdk")).unwrap()).unwrap();
        assert_eq!(h.backing.as_deref(), Some("c.vmdk"));
        let c = probe(&d.join("split.vmdk"), Some("vmdk"), 200);
        assert_eq!(c.links, vec![d.join("c.vmdk"), d.join("p.vmdk")]);
        // its data files need the disk's own permissions: they are listed apart
        assert_eq!(c.top_extents, vec![d.join("split-s001.vmdk")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    } else {
        eprintln!("qemu-img cannot create a split VMDK with a parent: skipped");
    }
}

#[test]
fn chain_vmdk_descriptor_extents() {
    let (_t, d) = tmp();
    let desc = |extents: &[&str], parent: Option<&str>| {
        let mut t = String::from("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n");
        if let Some(p) = parent {
            t.push_str(&format!("parentFileNameHint=\"{p}\"\n"));
        }
        for e in extents {
            t.push_str(&format!("RW 8 FLAT \"{e}\" 0\n"));
        }
        t
    };
    std::fs::write(d.join("base.vmdk"), desc(&["base-flat.vmdk"], None)).unwrap();
    std::fs::write(d.join("base-flat.vmdk"), b"").unwrap();
    std::fs::write(
        d.join("top.vmdk"),
        desc(
            &["top-f001.vmdk", "top-f002.vmdk", "top-f001.vmdk"],
            Some("base.vmdk"),
        ),
    )
    .unwrap();
    let c = probe(&d.join("top.vmdk"), Some("vmdk"), 200);
    // missing extent files are still granted (QEMU will try them; it fails closed)
    assert_eq!(
        c.top_extents,
        vec![d.join("top-f001.vmdk"), d.join("top-f002.vmdk")]
    );
    assert_eq!(c.links, vec![d.join("base.vmdk"), d.join("base-flat.vmdk")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // hostile names: warned about, never granted
    std::fs::write(
        d.join("evil.vmdk"),
        desc(
            &["/etc/shadow", "../x-f1.vmdk", "other.img", "evil-ok.vmdk"],
            None,
        ),
    )
    .unwrap();
    let c = probe(&d.join("evil.vmdk"), Some("vmdk"), 200);
    assert_eq!(c.top_extents, vec![d.join("evil-ok.vmdk")]);
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(
        c.warnings
            .iter()
            .all(|w| w.contains("not granted") && !w.contains('\n'))
    );

    // extents of a backing image do not count as chain depth
    std::fs::write(
        d.join("mid.vmdk"),
        desc(&["mid-f1.vmdk", "mid-f2.vmdk"], Some("base.vmdk")),
    )
    .unwrap();
    std::fs::write(d.join("up.vmdk"), desc(&[], Some("mid.vmdk"))).unwrap();
    let c = probe(&d.join("up.vmdk"), Some("vmdk"), 2);
    assert_eq!(
        c.links,
        vec![
            d.join("mid.vmdk"),
            d.join("mid-f1.vmdk"),
            d.join("mid-f2.vmdk"),
            d.join("base.vmdk"),
            d.join("base-flat.vmdk")
        ]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // a long descriptor is read to its end (past the first 4 KiB)
    let many: Vec<String> = (0..300).map(|i| format!("long-f{i:03}.vmdk")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    std::fs::write(d.join("long.vmdk"), desc(&refs, None)).unwrap();
    assert!(std::fs::metadata(d.join("long.vmdk")).unwrap().len() > 4096);
    let c = probe(&d.join("long.vmdk"), Some("vmdk"), 200);
    assert_eq!(c.top_extents.len(), 300);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn chain_never_panics_on_odd_tops() {
    assert_eq!(
        probe(Path::new("relative.qcow2"), Some("qcow2"), 200)
            .warnings
            .len(),
        1
    );
    assert_eq!(
        probe(Path::new("/nonexistent/x"), Some("qcow2"), 0)
            .warnings
            .len(),
        1
    );
    assert_eq!(probe(Path::new("/"), Some("vmdk"), 200).warnings.len(), 1);
}
