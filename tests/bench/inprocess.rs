//! In-process generation time (no process start-up): `cargo bench --bench inprocess`.
//! Prints the median time to derive and render a profile for guests with 1, 100, 1000 and
//! 10000 disks over one shared base image (headers are probed from real qcow2 files).

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
    println!(
        "{:>8} {:>12} {:>12} {:>10}",
        "disks", "median", "per disk", "rules"
    );
    for n in [1usize, 100, 1000, 10000] {
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
}
