//! Helper mode (`virt-aa-helper` argv, XML on stdin) against a temporary root, through the real
//! binary and the real apparmor_parser (compile checks; loading is tested in the AppArmor VM,
//! tests/aavm/suites/06-day2.sh).

use crate::util::*;
use std::path::Path;

const UUID: &str = "66666666-6666-4666-8666-666666666666";

fn guest(disk: &Path) -> String {
    format!(
        "<domain type='qemu' id='3'><name>hp</name><uuid>{UUID}</uuid><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/>\
         <target dev='vda'/></disk></devices></domain>",
        disk.display()
    )
}

#[test]
fn create_relabel_delete() {
    let r = TempRoot::new("");
    let img = r.path("images/hp.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::write(&img, b"").unwrap();
    let xml = guest(&img);
    let prof = format!("libvirt-{UUID}");
    let main = format!("etc/apparmor.d/libvirt/{prof}");
    let files = format!("{main}.files");

    let (code, err) = r.helper(&["-c", "-u", &prof], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let text = r.read(&main).unwrap();
    assert!(
        text.contains(&format!("\"{}\" rwk,", img.display())),
        "{text}"
    );
    assert!(text.contains(&format!("libvirt/{prof}.files")), "{text}");

    // A relabel names a new overlay and a state directory subtree: both persist, no deny.
    let overlay = r.path("images/hp.snap1");
    std::fs::write(&overlay, b"").unwrap();
    let ov = overlay.to_string_lossy().into_owned();
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", &ov], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let libdir = r.path("var/lib/libvirt/qemu/domain-3-hp");
    std::fs::create_dir_all(&libdir).unwrap();
    let sub = format!("{}/{{,**}}", libdir.display());
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", &sub], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    // The same form for a directory libvirt does not label as a subtree (a definer's
    // `<serial type='file'>` path, literally `…/{,**}`): one escaped literal file.
    let srv = r.path("srv/h");
    std::fs::create_dir_all(&srv).unwrap();
    let lit = format!("{}/{{,**}}", srv.display());
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", &lit], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    // A full regeneration (libvirt's Restore*Label) keeps both.
    let (code, err) = r.helper(&["-r", "-u", &prof], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let f = r.read(&files).unwrap();
    assert!(f.contains(&format!("\"{ov}\" rwk,")), "{f}");
    assert!(f.contains("/domain-3-hp/**\" rwk,"), "{f}");
    assert!(f.contains("/srv/h/\\{\\,\\*\\*\\}\" rwk,"), "{f}");
    assert!(!f.contains("/srv/h/**"), "{f}");
    assert!(!f.contains("deny"), "{f}");
    assert_eq!(f.matches("# extra: ").count(), 3, "{f}");
    compile_file(&r.path(&main), Some(&r.path("etc/apparmor.d"))).unwrap();

    // A host system path is refused: exit 1, one error line, nothing changed.
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", "/etc/shadow"], xml.as_bytes());
    assert_eq!(code, 1);
    assert!(err.starts_with("virt-aa-helper: error: "), "{err}");
    assert_eq!(r.read(&files).unwrap(), f);

    // The uuid must match the XML's.
    let other = "libvirt-77777777-7777-4777-8777-777777777777";
    let (code, err) = r.helper(&["-r", "-u", other], xml.as_bytes());
    assert_eq!(code, 1);
    assert!(err.contains("does not match"), "{err}");

    // Teardown removes our files only.
    let (code, err) = r.helper(&["-D", "-u", &prof], b"");
    assert_eq!(code, 0, "{err}");
    assert!(r.read(&files).is_none());
    assert!(r.read(&main).is_none());
    let log = std::fs::read_to_string(r.path("var/log/libvirt/virt-aa-hook.log")).unwrap();
    assert!(log.contains("helper -r -u"), "{log}");
    assert!(log.lines().count() >= 6, "{log}");
}

#[test]
fn foreign_profile_is_handed_to_the_distribution_helper() {
    let r = TempRoot::new("");
    let prof = format!("libvirt-{UUID}");
    let main = r.path(&format!("etc/apparmor.d/libvirt/{prof}"));
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    std::fs::write(&main, "profile x {}\n").unwrap();
    // No diverted helper: a clear error, the foreign file untouched.
    let (code, err) = r.helper(&["-D", "-u", &prof], b"");
    assert_eq!(code, 1);
    assert!(err.contains("virt-aa-helper.distrib"), "{err}");
    assert!(main.exists());
    // With one, it runs with the same arguments.
    let distrib = r.path("usr/lib/libvirt/virt-aa-helper.distrib");
    std::fs::create_dir_all(distrib.parent().unwrap()).unwrap();
    write_script(
        &distrib,
        &format!(
            "#!/bin/sh\necho \"$@\" > {}\nexit 0\n",
            r.path("args").display()
        ),
    );
    let (code, err) = r.helper(&["-D", "-u", &prof], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.read("args").unwrap().trim(), format!("-D -u {prof}"));
}

#[test]
fn create_starts_from_an_empty_files_list() {
    let r = TempRoot::new("");
    let img = r.path("images/hp.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::write(&img, b"").unwrap();
    let xml = guest(&img);
    let prof = format!("libvirt-{UUID}");
    let main = format!("etc/apparmor.d/libvirt/{prof}");
    let files = format!("{main}.files");
    let (code, err) = r.helper(&["-c", "-u", &prof], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let old = r.path("images/old-run.qcow2");
    std::fs::write(&old, b"").unwrap();
    let old = old.to_string_lossy().into_owned();
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", &old], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    assert!(r.read(&files).unwrap().contains(&old));
    // An unclean stop: no -D, the main file goes (libvirt's -c test is "main file missing").
    std::fs::remove_file(r.path(&main)).unwrap();
    let (code, err) = r.helper(&["-c", "-u", &prof], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let f = r.read(&files).unwrap();
    assert!(!f.contains(&old), "{f}");
    assert_eq!(f.matches("# extra: ").count(), 0, "{f}");
    // -r keeps what this run named.
    let (code, err) = r.helper(&["-r", "-u", &prof, "-F", &old], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    let (code, err) = r.helper(&["-r", "-u", &prof], xml.as_bytes());
    assert_eq!(code, 0, "{err}");
    assert!(r.read(&files).unwrap().contains(&old));
}

#[test]
fn a_failing_call_logs_its_arguments_on_one_escaped_line() {
    let r = TempRoot::new("");
    let forged = "libvirt-x\n2026-01-01T00:00:00.000Z INFO  forged\x1b[2J";
    let (code, err) = r.helper(&["-r", "-u", forged, "-F", "/a\rb"], b"");
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    let log = r.log();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(!log.contains('\x1b') && !log.contains('\r'), "{log:?}");
    assert!(log.contains("libvirt-x\\n2026"), "{log}");
    assert!(log.contains("\\u{1b}[2J"), "{log}");
}
