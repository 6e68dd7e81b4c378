//! In-process generation time (no process start-up): `cargo bench --bench inprocess`.
//! Prints the median time to derive and render a profile for guests with 1, 100, 1000 and
//! 10000 disks over one shared base image (headers are probed from real qcow2 files); then the
//! backing-file check's cost with 0 and 1000 other defined guests (libvirt's files are read
//! once per derivation that has a header-named file; see `virt_aa_hook::reach`).
//! `VAH_BENCH_ONLY=guests` runs only the second table.

use std::time::{Duration, Instant};
use virt_aa_hook::{derive, domain::Enforcement, generate, profile};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let q = |args: &[&str]| {
        assert!(
            std::process::Command::new("qemu-img")
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    q(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        d.join("base.qcow2").to_str().unwrap(),
        "16M",
    ]);
    q(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        d.join("base.qcow2").to_str().unwrap(),
        d.join("top.qcow2").to_str().unwrap(),
    ]);
    let only_guests = std::env::var("VAH_BENCH_ONLY").is_ok_and(|v| v == "guests");
    println!(
        "{:>8} {:>12} {:>12} {:>10}",
        "disks", "median", "per disk", "rules"
    );
    let sizes: &[usize] = if only_guests {
        &[]
    } else {
        &[1, 100, 1000, 10000]
    };
    for &n in sizes {
        let mut disks = String::new();
        for i in 0..n {
            let p = d.join(format!("top{i}.qcow2"));
            if !p.exists() {
                std::fs::copy(d.join("top.qcow2"), &p).unwrap();
            }
            disks.push_str(&format!(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vd{i}'/></disk>",
                p.display()
            ));
        }
        let xml = format!(
            "<domain type='kvm' id='1'><name>bench</name><uuid>12345678-1234-4234-8234-123456789012</uuid><devices>{disks}</devices></domain>"
        );
        let opts = derive::Options::default();
        let settings = generate::Settings {
            mode: profile::Mode::Libvirt,
            default_enforcement: Enforcement::Enforce,
            template: profile::DEFAULT_TEMPLATE,
            derive: &opts,
        };
        let mut times: Vec<Duration> = Vec::new();
        let mut rules = 0;
        let runs = if n >= 10000 { 5 } else { 21 };
        for _ in 0..runs {
            let t = Instant::now();
            let g = generate::from_xml(xml.as_bytes(), &settings).unwrap();
            times.push(t.elapsed());
            rules = g.derived.rules.len();
        }
        times.sort();
        let med = times[times.len() / 2];
        println!(
            "{n:>8} {:>10.3}ms {:>10.2}µs {rules:>10}",
            med.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e6 / n as f64
        );
    }
    other_guests(d);
}

/// A 1-disk guest over a backing file, generated with `n` other guests defined (a realistic
/// ~5 KiB definition each, two writable disks and a cdrom), and reading those files alone.
fn other_guests(d: &std::path::Path) {
    use virt_aa_hook::reach::WritableDisks;
    println!(
        "\n{:>8} {:>14} {:>14} {:>8}",
        "guests", "start (median)", "read (median)", "disks"
    );
    for n in [0usize, 1000] {
        let root = d.join(format!("root{n}"));
        let etc = root.join("etc/libvirt/qemu");
        std::fs::create_dir_all(&etc).unwrap();
        for i in 0..n {
            let mut x = format!(
                "<domain type='kvm'>\n  <name>guest{i}</name>\n  <uuid>00000000-0000-4000-8000-{i:012}</uuid>\n\
                 <memory unit='KiB'>2097152</memory><vcpu placement='static'>2</vcpu>\n\
                 <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>\n\
                 <features><acpi/><apic/><vmport state='off'/></features><cpu mode='host-passthrough' check='none' migratable='on'/>\n\
                 <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/><timer name='hpet' present='no'/></clock>\n\
                 <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
            );
            for (dev, ro) in [("vda", ""), ("vdb", ""), ("sda", "<readonly/>")] {
                x.push_str(&format!(
                    "<disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>\
                     <source file='/var/lib/libvirt/images/guest{i}-{dev}.qcow2'/><target dev='{dev}' bus='virtio'/>{ro}\
                     <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/></disk>\n"
                ));
            }
            for c in 0..12 {
                x.push_str(&format!(
                    "<controller type='pci' index='{c}' model='pcie-root-port'><model name='pcie-root-port'/>\
                     <target chassis='{c}' port='0x1{c:x}'/><address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x{c:x}'/></controller>\n"
                ));
            }
            x.push_str(
                "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/><model type='virtio'/></interface>\n\
                 <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>\n\
                 <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n\
                 <graphics type='spice' autoport='yes'><listen type='address'/><image compression='off'/></graphics>\n\
                 <video><model type='qxl' ram='65536' vram='65536' vgamem='16384' heads='1' primary='yes'/></video>\n\
                 <memballoon model='virtio'/><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n\
                 </devices>\n</domain>\n",
            );
            std::fs::write(etc.join(format!("guest{i}.xml")), x).unwrap();
        }
        let xml = format!(
            "<domain type='kvm'><name>me</name><uuid>12345678-1234-4234-8234-123456789012</uuid><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda'/></disk>\
             </devices></domain>",
            d.join("top.qcow2").display()
        );
        let opts = derive::Options {
            libvirt_root: root.clone(),
            ..Default::default()
        };
        let settings = generate::Settings {
            mode: profile::Mode::Libvirt,
            default_enforcement: Enforcement::Enforce,
            template: profile::DEFAULT_TEMPLATE,
            derive: &opts,
        };
        let median = |f: &mut dyn FnMut()| {
            let mut t: Vec<Duration> = (0..21)
                .map(|_| {
                    let s = Instant::now();
                    f();
                    s.elapsed()
                })
                .collect();
            t.sort();
            t[t.len() / 2]
        };
        let start = median(&mut || {
            generate::from_xml(xml.as_bytes(), &settings).unwrap();
        });
        let mut disks = 0;
        let read = median(&mut || disks = WritableDisks::load(&root).len());
        println!(
            "{n:>8} {:>12.3}ms {:>12.3}ms {disks:>8}",
            start.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3
        );
    }
}
