use super::*;
use crate::autogrant::{self, Asker, FileKind};
use crate::denial::{Outcome, Record, parse_line};
use crate::domain::Domain;
use crate::owner::Source;
use crate::paths;

const U: &str = "aaaaaaaa-0000-4000-8000-000000000001";

fn dom(name: &str, uuid: &str, devs: &str) -> Domain {
    Domain::parse(
        format!(
            "<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid><devices>\
             <emulator>/usr/bin/qemu-system-x86_64</emulator>{devs}</devices></domain>"
        )
        .as_bytes(),
    )
    .unwrap()
}

fn claims(d: &Domain) -> Claims {
    let derived = crate::derive::derive_unprobed(d);
    Claims::of(d, derived.as_ref().map(|x| &x.rules))
}

/// Classify with the default data places, every path not created yet.
fn cls(rec: &Record, own: &Claims, others: &[(String, Claims)]) -> Verdict {
    let dirs = autogrant::data_dirs([]);
    classify(rec, own, others, &Site::fixed(&dirs))
}

fn rec(name_field: &str, mask: &str) -> Record {
    parse_line(&format!(
        r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="open" profile="libvirt-{U}" {name_field} requested_mask="{mask}" denied_mask="{mask}""#
    ))
    .unwrap()
    .unwrap()
}

#[test]
fn three_classes() {
    let me = dom(
        "web",
        U,
        "<disk type='file' device='disk'><source file='/srv/web.img'/><target dev='vda'/></disk>\
         <disk type='file' device='cdrom'><source file='/srv/iso/x.iso'/><target dev='hdc'/><readonly/></disk>",
    );
    let other = dom(
        "db",
        "aaaaaaaa-0000-4000-8000-000000000002",
        "<disk type='file' device='disk'><source file='/srv/db.img'/><target dev='vda'/></disk>",
    );
    let (own, others) = (claims(&me), vec![("db".to_string(), claims(&other))]);
    // Outside every definition: one escaped literal rule.
    let v = cls(&rec(r#"name="/srv/extra/a*b.img""#, "r"), &own, &others);
    assert_eq!(
        v,
        Verdict::SiteSpecific {
            rule: r#""/srv/extra/a\*b.img" r,"#.into(),
            perms: Perms::R
        }
    );
    // Another guest's disk: refused, names the guest.
    let v = cls(&rec(r#"name="/srv/db.img""#, "rw"), &own, &others);
    assert!(
        matches!(&v, Verdict::Refused(w) if w.contains("\"db\"") && w.contains("vda")),
        "{v:?}"
    );
    // virtnbdbackup's default socket: a name any guest could squat; the fix is -f.
    let v = cls(
        &rec(r#"name="/var/tmp/virtnbdbackup.704""#, "c"),
        &own,
        &others,
    );
    assert!(
        matches!(&v, Verdict::Refused(w) if w.contains("-f /var/lib/libvirt/qemu/domain-")),
        "{v:?}"
    );
    // A host system path: refused by the host policy.
    let v = cls(&rec(r#"name="/etc/shadow""#, "r"), &own, &others);
    assert!(
        matches!(&v, Verdict::Refused(w) if w.contains("host system path")),
        "{v:?}"
    );
    // Granted read-only (cdrom), written: a generator gap naming the element.
    let v = cls(&rec(r#"name="/srv/iso/x.iso""#, "w"), &own, &others);
    assert_eq!(
        v,
        Verdict::GeneratorGap {
            element: "disk 'hdc'".into(),
            perms: Perms::W
        }
    );
    // Granted already: the loaded profile is stale.
    let v = cls(&rec(r#"name="/srv/web.img""#, "r"), &own, &others);
    assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    // Execute and relative paths are never offered.
    assert!(matches!(
        cls(&rec(r#"name="/srv/x""#, "x"), &own, &others),
        Verdict::Unusable(_)
    ));
    assert!(matches!(
        cls(&rec(r#"name="/srv/../etc/x""#, "r"), &own, &others),
        Verdict::Unusable(_)
    ));
}

#[test]
fn element_lookup_for_paths_not_granted() {
    // A path the XML names but the generator does not grant (an element it does not know).
    let me = dom("web", U, "<foo><bar path='/srv/foo.bin'/></foo>");
    let v = cls(&rec(r#"name="/srv/foo.bin""#, "r"), &claims(&me), &[]);
    assert!(
        matches!(&v, Verdict::GeneratorGap { element, .. } if element.contains("<domain><devices><foo><bar> path=")),
        "{v:?}"
    );
    let e = element_writing(&me.root, "/srv/foo.bin").unwrap();
    assert_eq!(
        crate::xml::element_xml(e),
        "<foo>\n  <bar path='/srv/foo.bin'/>\n</foo>\n"
    );
}

#[test]
fn hostile_names_give_one_escaped_literal() {
    let path = "/srv/x\" rwk,\n/etc/shadow r,";
    let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
    // The newline makes the record unusable already at parse time.
    assert!(
        parse_line(&format!(
            r#"apparmor="DENIED" operation="open" profile="libvirt-{U}" name={hex} requested_mask="r""#
        ))
        .is_err()
    );
    let path = "/srv/x\" rwk, /etc/shadow r, \"y{a,b}";
    let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
    let v = cls(&rec(&format!("name={hex}"), "r"), &Claims::default(), &[]);
    assert_eq!(
        v,
        Verdict::SiteSpecific {
            rule: r#""/srv/x\" rwk\, /etc/shadow r\, \"y\{a\,b\}" r,"#.into(),
            perms: Perms::R
        }
    );
}

#[test]
fn merging_is_idempotent_and_deduplicated() {
    let base = "# mine\n/srv/www/ r,\n";
    let a = rule_line("/srv/a b.img", Perms::R);
    let b = rule_line("/srv/b,c", Perms::RW);
    let once = merge_local(base, &[a.clone(), b.clone(), a.clone()]).unwrap();
    assert_eq!(
        once,
        format!(
            "# mine\n/srv/www/ r,\n\n{APPLY_HEADER}\n  \"/srv/a b.img\" r,\n  \"/srv/b\\,c\" rw,\n"
        )
    );
    assert_eq!(merge_local(&once, &[a.clone(), b.clone()]), None);
    // Wider permissions widen the existing line in place.
    let wider = merge_local(&once, &[rule_line("/srv/a b.img", Perms::RWK)]).unwrap();
    assert!(wider.contains("  \"/srv/a b.img\" rwk,\n"), "{wider}");
    assert_eq!(wider.matches("a b.img").count(), 1);
    assert_eq!(wider.matches(APPLY_HEADER).count(), 1);
    // Appended twice with different masks in one run: one line.
    let two = merge_local("", &[rule_line("/x", Perms::R), rule_line("/x", Perms::W)]).unwrap();
    assert_eq!(two, format!("{APPLY_HEADER}\n  \"/x\" rw,\n"));
}

#[test]
fn masks() {
    assert_eq!(perms_of_mask("wr").unwrap(), Perms::RW);
    assert_eq!(perms_of_mask("wc").unwrap(), Perms::W);
    assert_eq!(perms_of_mask("k").unwrap(), Perms::K);
    assert!(perms_of_mask("rx").is_err());
    assert!(perms_of_mask("").is_err());
}

#[test]
fn collapsing_merges_masks() {
    let v = collapse(vec![
        rec(r#"name="/a""#, "r"),
        rec(r#"name="/a""#, "w"),
        rec(r#"name="/b""#, "r"),
    ]);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].1, 2);
    assert_eq!(v[0].0.requested.as_deref(), Some("rw"));
}

const UDB: &str = "aaaaaaaa-0000-4000-8000-000000000002";

/// `web` running as domain 7 and `db` running as domain 3 with a TPM.
fn pair() -> (Claims, Vec<(String, Claims)>) {
    let parse = |x: String| Domain::parse(x.as_bytes()).unwrap();
    let web = parse(format!(
        "<domain type='kvm' id='7'><name>web</name><uuid>{U}</uuid><devices>\
         <disk type='file' device='disk'><source file='/srv/web.img'/><target dev='vda'/></disk>\
         </devices></domain>"
    ));
    let db = parse(format!(
        "<domain type='kvm' id='3'><name>db</name><uuid>{UDB}</uuid><devices>\
         <disk type='file' device='disk'><source file='/var/lib/libvirt/images/db.qcow2'/><target dev='vda'/></disk>\
         <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\
         </devices></domain>"
    ));
    (claims(&web), vec![("db".to_string(), claims(&db))])
}

#[test]
fn other_guests_derived_files_are_refused_naming_the_guest() {
    let (own, others) = pair();
    for p in [
        "/var/lib/libvirt/qemu/domain-3-db/master-key.aes",
        "/var/lib/libvirt/qemu/domain-9-db/master-key.aes",
        "/var/lib/libvirt/qemu/domain-3-db/monitor.sock",
        "/run/libvirt/qemu/db.pid",
        "/run/libvirt/qemu/swtpm/3-db-swtpm.sock",
        "/var/lib/libvirt/swtpm/aaaaaaaa-0000-4000-8000-000000000002/tpm2/tpm2-00.permall",
        "/var/log/libvirt/qemu/db.log",
        "/var/lib/libvirt/qemu/nvram/db_VARS.fd",
        "/var/lib/libvirt/images/db.qcow2",
    ] {
        let v = cls(&rec(&format!("name=\"{p}\""), "rw"), &own, &others);
        assert!(
            matches!(&v, Verdict::Refused(w) if w.contains("belongs to guest \"db\"")),
            "{p}: {v:?}"
        );
    }
}

#[test]
fn own_current_rules_mean_a_stale_profile() {
    let (mut own, others) = pair();
    let v = cls(
        &rec(
            r#"name="/var/lib/libvirt/qemu/domain-7-web/master-key.aes""#,
            "r",
        ),
        &own,
        &others,
    );
    assert!(
        matches!(&v, Verdict::Stale { element } if element.contains("domain-7-web/")),
        "{v:?}"
    );
    let f = Finding {
        record: rec(r#"name="/run/libvirt/qemu/web.pid""#, "w"),
        count: 1,
        outcomes: vec![Outcome::Denied],
        verdict: cls(
            &rec(r#"name="/run/libvirt/qemu/web.pid""#, "w"),
            &own,
            &others,
        ),
    };
    let out = render(&f, "web", "/l", "/p/libvirt-x", None, None);
    assert!(
        out.contains("stale profile") && out.contains("apparmor_parser -r /p/libvirt-x"),
        "{out}"
    );
    // A rule of the guest's local file that the loaded profile lacks: stale too.
    own.add_text("  \"/srv/site/a.img\" rw,\n", Source::Local);
    let v = cls(&rec(r#"name="/srv/site/a.img""#, "r"), &own, &others);
    assert!(matches!(v, Verdict::Stale { .. }), "{v:?}");
    // Wider than the local rule: site-specific, not a generator gap.
    let v = cls(&rec(r#"name="/srv/site/a.img""#, "k"), &own, &others);
    assert!(matches!(v, Verdict::SiteSpecific { .. }), "{v:?}");
}

#[test]
fn host_locations_from_the_issue_are_never_offered() {
    let (own, others) = pair();
    for (p, m) in [
        ("/root/.bashrc", "w"),
        ("/var/spool/cron/crontabs/root", "wc"),
        ("/run/libvirt/libvirt-sock", "rw"),
        ("/var/cache/apparmor/26b63962.0/libvirt-x", "w"),
        ("/dev/kmsg", "r"),
        ("/dev/watchdog", "w"),
        ("/sys/devices/pci0000:00/0000:00:02.0/resource0", "rw"),
        ("/sys/devices/pci0000:00/0000:00:02.0/remove", "w"),
        ("/", "rw"),
    ] {
        let v = cls(&rec(&format!("name=\"{p}\""), m), &own, &others);
        assert!(matches!(v, Verdict::Refused(_)), "{p}: {v:?}");
    }
    // A disk device: listed, grant --device is the way.
    let v = cls(&rec(r#"name="/dev/sda""#, "rw"), &own, &others);
    assert!(
        matches!(v, Verdict::GrantOnly { device: true, .. }),
        "{v:?}"
    );
    let f = Finding {
        record: rec(r#"name="/dev/sda""#, "r"),
        count: 1,
        outcomes: vec![Outcome::Denied],
        verdict: cls(&rec(r#"name="/dev/sda""#, "r"), &own, &others),
    };
    let out = render(&f, "web", "/l", "/p", None, None);
    assert!(
        out.contains("virt-aa-hook grant --device --read-only web /dev/sda"),
        "{out}"
    );
    // Outside the data places: not applied, the admin may grant it.
    let v = cls(&rec(r#"name="/opt/data/x.img""#, "r"), &own, &others);
    assert!(
        matches!(v, Verdict::GrantOnly { device: false, .. }),
        "{v:?}"
    );
    // A socket in a data place is not a regular file.
    let dirs = autogrant::data_dirs([]);
    let site = Site {
        data_dirs: &dirs,
        kind: &|_| FileKind::Special("socket"),
        policy: paths::HostPolicy::defaults(),
    };
    let v = classify(&rec(r#"name="/srv/s.sock""#, "rw"), &own, &others, &site);
    assert!(matches!(v, Verdict::GrantOnly { .. }), "{v:?}");
}

#[test]
fn backup_scratch_files_get_the_scratch_dir_advice() {
    let (own, others) = pair();
    let v = cls(
        &rec(r#"name="/var/tmp/backup.Xa3k9Q.vda""#, "rwc"),
        &own,
        &others,
    );
    assert!(
        matches!(&v, Verdict::Refused(w) if w.contains("-S /var/lib/libvirt/qemu/domain-")),
        "{v:?}"
    );
}

#[test]
fn capability_and_network_records_name_what_was_asked() {
    let line = format!(
        r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="capable" class="cap" profile="libvirt-{U}" pid=1 comm="qemu" capability=21 capname="sys_admin""#
    );
    let r = parse_line(&line).unwrap().unwrap();
    let f = Finding {
        verdict: cls(&r, &Claims::default(), &[]),
        record: r,
        count: 1,
        outcomes: vec![Outcome::Denied],
    };
    let out = render(&f, "web", "/l", "/p", None, None);
    assert!(
        out.starts_with("DENIED capable capability sys_admin -"),
        "{out}"
    );
    assert!(out.contains("asking for capability sys_admin"), "{out}");
    let line = format!(
        r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="create" class="net" profile="libvirt-{U}" pid=1 comm="qemu" family="inet" sock_type="stream" protocol=6 requested_mask="create" denied_mask="create""#
    );
    let r = parse_line(&line).unwrap().unwrap();
    assert!(
        matches!(cls(&r, &Claims::default(), &[]), Verdict::NotFile(w) if w.contains("network inet stream protocol 6"))
    );
}

/// A small deterministic generator (no proptest in the tree): xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// Property: for random guests and random records, a rule `explain` offers (the only ones
/// `--apply` writes) never matches a file another guest's rules grant, never lies in a
/// location [`autogrant`] refuses, and is exactly the record's path.
#[test]
fn no_offered_rule_reaches_another_guest_or_a_refused_place() {
    const NAMES: &[&str] = &["web", "db", "a", "ab", "a-b", "x*y", "sp ace", "web2", "w"];
    const DIRS: &[&str] = &[
        "/srv",
        "/srv/img",
        "/var/lib/libvirt/images",
        "/data/vm",
        "/var/tmp",
        "/home/u",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut offered, mut refused) = (0, 0);
    for round in 0..40 {
        let n = 2 + (rng.next() % 3) as usize;
        let mut doms = Vec::new();
        let mut used = Vec::new();
        while doms.len() < n {
            let name = *rng.pick(NAMES);
            if used.contains(&name) {
                continue;
            }
            used.push(name);
            let id = if rng.next() % 2 == 0 {
                format!(" id='{}'", rng.next() % 40)
            } else {
                String::new()
            };
            let uuid = format!("aaaaaaaa-0000-4000-8000-{:012x}", round * 10 + doms.len());
            let mut devs = String::new();
            for (i, t) in ["vda", "vdb"].iter().enumerate() {
                if i == 0 || rng.next() % 2 == 0 {
                    let dir = rng.pick(DIRS);
                    devs += &format!(
                        "<disk type='file' device='disk'><source file='{dir}/{name}-{t}.img'/><target dev='{t}'/></disk>"
                    );
                }
            }
            if rng.next() % 2 == 0 {
                devs += "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
            }
            if rng.next() % 3 == 0 {
                devs += &format!(
                    "<filesystem type='mount'><source dir='{}/share-{name}'/><target dir='s'/></filesystem>",
                    rng.pick(DIRS)
                );
            }
            let xml = format!(
                "<domain type='kvm'{id}><name>{name}</name><uuid>{uuid}</uuid><devices>{devs}</devices></domain>"
            )
            .replace('&', "&amp;");
            doms.push(Domain::parse(xml.as_bytes()).unwrap());
        }
        let all: Vec<(String, Claims)> = doms.iter().map(|d| (d.name.clone(), claims(d))).collect();
        for _ in 0..80 {
            let me = (rng.next() % n as u64) as usize;
            let other = &doms[(me + 1 + (rng.next() % (n as u64 - 1)) as usize) % n];
            let on = &other.name;
            let short = format!("{}-{}", rng.next() % 40, on);
            let path = match rng.next() % 14 {
                0 => format!("/var/lib/libvirt/qemu/domain-{short}/master-key.aes"),
                1 => format!("/run/libvirt/qemu/{on}.pid"),
                2 => format!("/var/lib/libvirt/qemu/domain-{short}/monitor.sock"),
                3 => format!("/var/lib/libvirt/swtpm/{}/tpm2/x", other.uuid),
                4 => format!("/var/log/libvirt/qemu/{on}.log"),
                5 => format!("/var/lib/libvirt/qemu/nvram/{on}_VARS.fd"),
                6 => format!("{}/{on}-vda.img", rng.pick(DIRS)),
                7 => format!("{}/share-{on}/f", rng.pick(DIRS)),
                8 => rng
                    .pick(&[
                        "/root/.bashrc",
                        "/var/spool/cron/crontabs/root",
                        "/run/libvirt/libvirt-sock",
                        "/var/cache/apparmor/a/b",
                        "/dev/sda",
                        "/dev/kmsg",
                        "/dev/watchdog",
                        "/sys/devices/pci0000:00/0000:00:02.0/resource0",
                        "/",
                        "/etc/passwd",
                        "/proc/1/mem",
                        "/home/u/.ssh/id_rsa",
                    ])
                    .to_string(),
                9 => format!("/var/tmp/backup.{:x}.vda", rng.next() % 4096),
                _ => format!(
                    "{}/site-{}/{}",
                    rng.pick(DIRS),
                    rng.next() % 5,
                    rng.pick(NAMES)
                ),
            };
            let mask = *rng.pick(&["r", "w", "rw", "wc", "k", "rwk", "m"]);
            let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
            let r = parse_line(&format!(
                r#"apparmor="DENIED" operation="open" profile="libvirt-{}" name={hex} requested_mask="{mask}""#,
                doms[me].uuid
            ))
            .unwrap()
            .unwrap();
            let others: Vec<(String, Claims)> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != me)
                .map(|(_, c)| c.clone())
                .collect();
            let v = cls(&r, &all[me].1, &others);
            let Verdict::SiteSpecific { rule, perms } = v else {
                refused += 1;
                continue;
            };
            offered += 1;
            assert_eq!(rule, rule_line(&path, perms), "{path}");
            for (on, c) in &others {
                assert!(
                    c.rules.matching(&path).next().is_none(),
                    "rule {rule} for {} matches guest {on:?}'s rules",
                    doms[me].name
                );
            }
            let dirs = autogrant::data_dirs([]);
            assert_eq!(
                autogrant::check(
                    paths::HostPolicy::defaults(),
                    &path,
                    perms,
                    FileKind::Missing,
                    Asker::Apply { data_dirs: &dirs }
                ),
                Ok(()),
                "{path}"
            );
        }
    }
    // The generator is not degenerate: both outcomes are exercised.
    assert!(
        offered > 50 && refused > 1000,
        "{offered} offered, {refused} refused"
    );
}
