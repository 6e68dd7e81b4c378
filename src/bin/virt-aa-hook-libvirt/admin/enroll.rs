//! `enroll` / `unenroll`: switch a guest's `<emulator>` to our wrapper and back.
//!
//! With libvirt's AppArmor driver off (standalone mode), nothing would apply a guest's profile
//! to QEMU; the wrapper `/usr/lib/libvirt/virt-aa-hook.<emulator>` does, so a guest is protected
//! only once its `<emulator>` points there. The original emulator is remembered in our metadata
//! (`<vah:guest original-emulator="..."/>`) so `unenroll` restores exactly what was there.
//!
//! The edit is done on the text of the persistent definition (fetched with
//! `VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE`, so secrets such as VNC passwords survive
//! the redefinition) and changes only the `<emulator>` text and our metadata element; every
//! other byte, other applications' metadata and our other attributes (`mode`, `manage`) stay
//! as they were. One `virDomainDefineXML` applies both changes atomically.

use super::conn::{self, Libvirt};
use anyhow::{Result, anyhow, bail};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use std::ops::Range;
use std::path::{Path, PathBuf};
use virt::connect::Connect;
use virt::domain::Domain;
use virt_aa_hook::config::Config;
use virt_aa_hook::domain::{Domain as DomainDef, METADATA_NS};
use virt_aa_hook::layout::WRAPPER_PATH_PREFIX;

/// Our metadata attribute naming the emulator the wrapper replaced.
pub const ORIGINAL_ATTR: &str = "original-emulator";

/// What `enroll`/`unenroll` will do to one definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to change, and why (already enrolled, not enrolled).
    Unchanged(String),
    /// Replace emulator `from` with `to`; `xml` is the full new definition.
    Change {
        from: String,
        to: String,
        xml: String,
    },
}

#[derive(Debug, Default)]
struct GuestSpan {
    start_tag: Range<usize>,
    empty: bool,
    outer: Range<usize>,
    ws_before: usize,
    qname: String,
    attrs: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct MetaSpan {
    outer: Range<usize>,
    ws_before: usize,
    content: Option<Range<usize>>,
    guest: Option<GuestSpan>,
}

/// Byte positions in the definition text that the edit needs.
#[derive(Debug, Default)]
struct Spans {
    /// Text content of `/domain/devices/emulator`; `(range, true)` for an empty `<emulator/>`
    /// tag, whose whole range is replaced.
    emulator: Option<(Range<usize>, bool)>,
    /// Where a new `<metadata>` goes: after `</uuid>`, else `</name>`, else the root tag.
    insert_at: usize,
    metadata: Option<MetaSpan>,
}

fn attrs_of(s: &BytesStart<'_>) -> Result<Vec<(String, String)>> {
    let mut v = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| anyhow!("domain XML: {e}"))?;
        let val = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| anyhow!("domain XML: {e}"))?
            .into_owned();
        v.push((a.key.as_ref().to_string(), val));
    }
    Ok(v)
}

fn scan(text: &str) -> Result<Spans> {
    let mut r = quick_xml::reader::NsReader::from_str(text);
    r.config_mut().check_end_names = true;
    let mut sp = Spans::default();
    let (mut after_uuid, mut after_name, mut after_root) = (None, None, None);
    let mut stack: Vec<String> = Vec::new();
    // Start of the whitespace-only text right before the current event, if any.
    let mut ws_start: Option<usize> = None;
    let mut emu_start: Option<usize> = None;
    let (mut meta_open, mut guest_open) = (false, false);
    loop {
        let p0 = r.buffer_position() as usize;
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| anyhow!("domain XML is malformed at byte {p0}: {e}"))?;
        let ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == METADATA_NS);
        let p1 = r.buffer_position() as usize;
        let ws = ws_start.take().unwrap_or(p0);
        let path = stack.join("/");
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = s.local_name().as_ref().to_string();
                match (path.as_str(), name.as_str()) {
                    ("", _) => after_root = Some(p1),
                    ("domain/devices", "emulator") if sp.emulator.is_none() => {
                        if empty {
                            sp.emulator = Some((p0..p1, true));
                        } else {
                            emu_start = Some(p1);
                        }
                    }
                    ("domain", "metadata") if sp.metadata.is_none() => {
                        meta_open = !empty;
                        sp.metadata = Some(MetaSpan {
                            outer: p0..p1,
                            ws_before: ws,
                            content: (!empty).then_some(p1..p1),
                            guest: None,
                        });
                    }
                    ("domain/metadata", "guest") if ours && meta_open => {
                        if let Some(m) = sp.metadata.as_mut().filter(|m| m.guest.is_none()) {
                            guest_open = !empty;
                            m.guest = Some(GuestSpan {
                                start_tag: p0..p1,
                                empty,
                                outer: p0..p1,
                                ws_before: ws,
                                qname: s.name().as_ref().to_string(),
                                attrs: attrs_of(s)?,
                            });
                        }
                    }
                    _ => {}
                }
                if !empty {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                match path.as_str() {
                    "domain/uuid" => after_uuid = Some(p1),
                    "domain/name" => after_name = Some(p1),
                    "domain/devices/emulator" => {
                        if let Some(st) = emu_start.take() {
                            sp.emulator = Some((st..p0, false));
                        }
                    }
                    "domain/metadata" if meta_open => {
                        meta_open = false;
                        if let Some(m) = sp.metadata.as_mut() {
                            if let Some(c) = m.content.as_mut() {
                                c.end = p0;
                            }
                            m.outer.end = p1;
                        }
                    }
                    "domain/metadata/guest" if guest_open => {
                        guest_open = false;
                        if let Some(g) = sp.metadata.as_mut().and_then(|m| m.guest.as_mut()) {
                            g.outer.end = p1;
                        }
                    }
                    _ => {}
                }
                stack.pop();
            }
            Event::Text(ref t) if t.xml10_content().trim().is_empty() => {
                ws_start = Some(p0);
            }
            Event::DocType(_) => bail!("domain XML with a DOCTYPE is not accepted"),
            Event::Eof => break,
            _ => {}
        }
    }
    if after_root.is_none() {
        bail!("domain XML has no root element");
    }
    sp.insert_at = after_uuid.or(after_name).or(after_root).unwrap_or(0);
    Ok(sp)
}

fn start_tag(qname: &str, attrs: &[(String, String)], empty: bool) -> String {
    let mut s = format!("<{qname}");
    for (k, v) in attrs {
        s.push_str(&format!(" {k}=\"{}\"", virt_aa_hook::xml::escape(v)));
    }
    s.push_str(if empty { "/>" } else { ">" });
    s
}

/// Set the `<emulator>` text and set (`Some`) or remove (`None`) our `original-emulator`
/// attribute; our element and an emptied `<metadata>` are removed again when nothing else is
/// left in them, so enroll followed by unenroll gives back the original text.
pub fn edit_definition(xml: &str, emulator: &str, original: Option<&str>) -> Result<String> {
    let sp = scan(xml)?;
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let emu_text = virt_aa_hook::xml::escape(emulator);
    match &sp.emulator {
        Some((r, false)) => edits.push((r.clone(), emu_text)),
        Some((r, true)) => edits.push((r.clone(), format!("<emulator>{emu_text}</emulator>"))),
        None => bail!("the definition has no <devices><emulator>"),
    }
    let new_guest = |orig: &str| {
        start_tag(
            "vah:guest",
            &[
                ("xmlns:vah".to_string(), METADATA_NS.to_string()),
                (ORIGINAL_ATTR.to_string(), orig.to_string()),
            ],
            true,
        )
    };
    match (original, &sp.metadata) {
        (Some(orig), None) => edits.push((
            sp.insert_at..sp.insert_at,
            format!("\n  <metadata>\n    {}\n  </metadata>", new_guest(orig)),
        )),
        (Some(orig), Some(m)) => match (&m.guest, &m.content) {
            (Some(g), _) => {
                let mut attrs: Vec<(String, String)> = g
                    .attrs
                    .iter()
                    .filter(|(k, _)| k != ORIGINAL_ATTR)
                    .cloned()
                    .collect();
                attrs.push((ORIGINAL_ATTR.to_string(), orig.to_string()));
                edits.push((g.start_tag.clone(), start_tag(&g.qname, &attrs, g.empty)));
            }
            (None, Some(c)) => {
                edits.push((c.start..c.start, format!("\n    {}", new_guest(orig))));
            }
            (None, None) => edits.push((
                m.outer.clone(),
                format!("<metadata>\n    {}\n  </metadata>", new_guest(orig)),
            )),
        },
        (
            None,
            Some(MetaSpan {
                guest: Some(g),
                content: Some(c),
                outer,
                ws_before,
            }),
        ) => {
            let attrs: Vec<(String, String)> = g
                .attrs
                .iter()
                .filter(|(k, _)| k != ORIGINAL_ATTR)
                .cloned()
                .collect();
            let meaningful = attrs
                .iter()
                .any(|(k, _)| k != "xmlns" && !k.starts_with("xmlns:"));
            if meaningful || !g.empty {
                edits.push((g.start_tag.clone(), start_tag(&g.qname, &attrs, g.empty)));
            } else {
                let rest = format!("{}{}", &xml[c.start..g.ws_before], &xml[g.outer.end..c.end]);
                if rest.trim().is_empty() {
                    edits.push((*ws_before..outer.end, String::new()));
                } else {
                    edits.push((g.ws_before..g.outer.end, String::new()));
                }
            }
        }
        (None, _) => {}
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = xml.to_string();
    for (r, s) in edits {
        out.replace_range(r, &s);
    }
    Ok(out)
}

/// The enroll plan for one definition. `wrapper_prefix` is `/usr/lib/libvirt/virt-aa-hook.`;
/// `emulator_dir` is where the wrapper finds the real emulator, so an emulator elsewhere is
/// refused (the wrapper would run a different binary).
pub fn plan_enroll(xml: &str, wrapper_prefix: &str, emulator_dir: &Path) -> Result<Plan> {
    let d = DomainDef::parse(xml.as_bytes())?;
    if !d.is_qemu() {
        bail!("not a QEMU guest (type='{}')", d.virt_type);
    }
    let emu = d
        .emulator
        .ok_or_else(|| anyhow!("the definition has no <emulator>"))?;
    if emu.starts_with(wrapper_prefix) {
        return Ok(Plan::Unchanged(format!(
            "already enrolled (emulator {emu})"
        )));
    }
    let p = Path::new(&emu);
    let base = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("emulator {emu:?} has no file name"))?;
    if p.parent() != Some(emulator_dir) {
        bail!(
            "emulator {emu} is not in {}: the wrapper runs {}/{base}, which is another binary \
             (set emulator_dir in the config if all emulators live elsewhere)",
            emulator_dir.display(),
            emulator_dir.display()
        );
    }
    let to = format!("{wrapper_prefix}{base}");
    let xml = edit_definition(xml, &to, Some(&emu))?;
    Ok(Plan::Change { from: emu, to, xml })
}

/// The unenroll plan: back to the remembered emulator (or, if the metadata was lost, the one
/// the wrapper runs).
pub fn plan_unenroll(xml: &str, wrapper_prefix: &str, emulator_dir: &Path) -> Result<Plan> {
    let d = DomainDef::parse(xml.as_bytes())?;
    let emu = d
        .emulator
        .ok_or_else(|| anyhow!("the definition has no <emulator>"))?;
    if !emu.starts_with(wrapper_prefix) {
        return Ok(Plan::Unchanged(format!("not enrolled (emulator {emu})")));
    }
    let to = match d.settings.original_emulator {
        Some(o) => o,
        None => virt_aa_hook::wrapper::real_emulator(Path::new(&emu), emulator_dir)
            .ok_or_else(|| anyhow!("cannot tell the real emulator behind {emu}"))?
            .to_string_lossy()
            .into_owned(),
    };
    let xml = edit_definition(xml, &to, None)?;
    Ok(Plan::Change { from: emu, to, xml })
}

/// Which guests a command applies to.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Names or UUIDs given on the command line.
    Named(Vec<String>),
    /// Every persistent guest.
    All,
}

/// One guest's outcome: success and the line to print.
type Outcome = (bool, String);

/// Find a guest by name or UUID.
pub fn lookup(c: &Connect, key: &str) -> Result<Domain> {
    c.lookup_domain_by_name(key)
        .or_else(|_| c.lookup_domain_by_uuid_string(key))
        .map_err(|_| anyhow!("no defined guest is named or has the UUID {key:?}"))
}

fn apply_one(
    c: &Connect,
    dom: &Domain,
    enroll: bool,
    prefix: &str,
    emulator_dir: &Path,
    wrapper_dir_check: bool,
) -> Result<String> {
    let name = dom.name().unwrap_or_else(|_| "?".into());
    if !dom.is_persistent().unwrap_or(true) {
        bail!("{name}: transient guest (no persistent definition to change)");
    }
    let flags = virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE;
    let xml = dom
        .xml_desc(flags)
        .map_err(|e| anyhow!("{name}: cannot read its definition: {}", conn::msg(&e)))?;
    let plan = if enroll {
        plan_enroll(&xml, prefix, emulator_dir)
    } else {
        plan_unenroll(&xml, prefix, emulator_dir)
    }
    .map_err(|e| anyhow!("{name}: {e:#}"))?;
    let (from, to, new_xml) = match plan {
        Plan::Unchanged(why) => return Ok(format!("{name}: {why}, no change")),
        Plan::Change { from, to, xml } => (from, to, xml),
    };
    if enroll && wrapper_dir_check && !Path::new(&to).exists() {
        bail!(
            "{name}: the wrapper {to} does not exist; run 'virt-aa-hook setup-links' (it creates \
             a wrapper for every emulator in emulator_dir), then enroll again"
        );
    }
    let defined = c.define_domain_xml(&new_xml).map_err(|e| {
        anyhow!(
            "{name}: libvirt refused the new definition: {}",
            conn::msg(&e)
        )
    })?;
    let check = defined
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .ok()
        .and_then(|x| DomainDef::parse(x.as_bytes()).ok())
        .and_then(|d| d.emulator);
    if check.as_deref() != Some(to.as_str()) {
        bail!(
            "{name}: libvirt stored emulator {:?} instead of {to}",
            check.unwrap_or_default()
        );
    }
    let word = if enroll { "enrolled" } else { "unenrolled" };
    let mut line = format!("{word} {name}: emulator {from} -> {to}");
    if dom.is_active().unwrap_or(false) {
        line.push_str("; takes effect at next start (guest is running)");
    }
    Ok(line)
}

/// Enroll or unenroll guests over one connection. `wrapper_dir_check` is off only in tests
/// against libvirt's test driver, whose emulators do not exist.
pub fn apply(
    c: &Connect,
    targets: &Targets,
    enroll: bool,
    prefix: &str,
    emulator_dir: &Path,
    wrapper_dir_check: bool,
) -> Result<Vec<Outcome>> {
    let doms: Vec<Result<Domain>> = match targets {
        Targets::Named(v) => v.iter().map(|k| lookup(c, k)).collect(),
        Targets::All => c
            .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
            .map_err(|e| anyhow!("cannot list the defined guests: {}", conn::msg(&e)))?
            .into_iter()
            .map(Ok)
            .collect(),
    };
    let mut out = Vec::new();
    for d in doms {
        let r = d.and_then(|d| {
            if matches!(targets, Targets::All) {
                // --all skips what enrollment does not apply to instead of failing on it.
                let x = d
                    .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
                    .map_err(|e| anyhow!("{}", conn::msg(&e)))?;
                let def = DomainDef::parse(x.as_bytes())?;
                if !def.is_qemu() {
                    return Ok(format!("{}: not a QEMU guest, skipped", def.name));
                }
                if enroll && def.settings.opt_out {
                    return Ok(format!("{}: opted out (manage=\"no\"), skipped", def.name));
                }
            }
            apply_one(c, &d, enroll, prefix, emulator_dir, wrapper_dir_check)
        });
        out.push(match r {
            Ok(l) => (true, l),
            Err(e) => (false, format!("error: {e:#}")),
        });
    }
    Ok(out)
}

/// Run `enroll` / `unenroll`.
pub fn run(cfg: &Config, lv: &Libvirt, targets: Targets, enroll: bool) -> Result<i32> {
    if let Targets::Named(v) = &targets {
        if v.is_empty() {
            bail!("name at least one guest, or use --all");
        }
    }
    if enroll {
        let (mode, why) = virt_aa_hook::host::Host::new(cfg.clone()).mode();
        if mode == virt_aa_hook::profile::Mode::Libvirt {
            eprintln!(
                "note: this host uses libvirt mode ({why}): libvirt's AppArmor driver applies the \
                 profiles; the wrapper only matters in standalone mode"
            );
        }
    }
    let prefix = WRAPPER_PATH_PREFIX.to_string();
    let emulator_dir: PathBuf = cfg.emulator_dir.clone();
    let outcomes = lv.run(move |c| apply(c, &targets, enroll, &prefix, &emulator_dir, true))?;
    if outcomes.is_empty() {
        println!("no guests defined at {}", lv.uri);
    }
    let mut ok = true;
    for (good, line) in outcomes {
        if good {
            println!("{line}");
        } else {
            ok = false;
            eprintln!("{line}");
        }
    }
    Ok(i32::from(!ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PREFIX: &str = "/usr/lib/libvirt/virt-aa-hook.";

    const PLAIN: &str = "<domain type='kvm'>
  <name>vm</name>
  <uuid>92c4f559-3323-44d7-abd5-34c49aef304a</uuid>
  <memory unit='KiB'>65536</memory>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
";

    const WITH_META: &str = r#"<domain type='kvm'>
  <name>vm</name>
  <uuid>92c4f559-3323-44d7-abd5-34c49aef304a</uuid>
  <metadata>
    <app:x xmlns:app="urn:other">keep &amp; me</app:x>
    <vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain"/>
  </metadata>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
"#;

    fn dir() -> &'static Path {
        Path::new("/usr/bin")
    }

    fn change(p: Plan) -> (String, String, String) {
        match p {
            Plan::Change { from, to, xml } => (from, to, xml),
            Plan::Unchanged(w) => panic!("unchanged: {w}"),
        }
    }

    #[test]
    fn enroll_adds_metadata_and_unenroll_round_trips() {
        let (from, to, xml) = change(plan_enroll(PLAIN, PREFIX, dir()).unwrap());
        assert_eq!(from, "/usr/bin/qemu-system-x86_64");
        assert_eq!(to, "/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64");
        let d = DomainDef::parse(xml.as_bytes()).unwrap();
        assert_eq!(d.emulator.as_deref(), Some(to.as_str()));
        assert_eq!(d.settings.original_emulator.as_deref(), Some(from.as_str()));
        assert!(xml.contains(
            "</uuid>\n  <metadata>\n    <vah:guest xmlns:vah=\"http://virt-aa-hook.dev/xmlns/domain/1\" original-emulator=\"/usr/bin/qemu-system-x86_64\"/>\n  </metadata>\n  <memory"
        ), "{xml}");
        assert_eq!(
            plan_enroll(&xml, PREFIX, dir()).unwrap(),
            Plan::Unchanged(format!("already enrolled (emulator {to})"))
        );
        let (f2, t2, back) = change(plan_unenroll(&xml, PREFIX, dir()).unwrap());
        assert_eq!((f2.as_str(), t2.as_str()), (to.as_str(), from.as_str()));
        assert_eq!(back, PLAIN);
        assert!(matches!(
            plan_unenroll(PLAIN, PREFIX, dir()).unwrap(),
            Plan::Unchanged(_)
        ));
    }

    #[test]
    fn enroll_merges_into_existing_metadata() {
        let (_, _, xml) = change(plan_enroll(WITH_META, PREFIX, dir()).unwrap());
        let d = DomainDef::parse(xml.as_bytes()).unwrap();
        assert_eq!(
            d.settings.enforcement,
            Some(virt_aa_hook::domain::Enforcement::Complain)
        );
        assert_eq!(
            d.settings.original_emulator.as_deref(),
            Some("/usr/bin/qemu-system-x86_64")
        );
        assert!(xml.contains("<app:x xmlns:app=\"urn:other\">keep &amp; me</app:x>"));
        assert!(xml.contains(
            "<vah:guest xmlns:vah=\"http://virt-aa-hook.dev/xmlns/domain/1\" mode=\"complain\" original-emulator=\"/usr/bin/qemu-system-x86_64\"/>"
        ), "{xml}");
        let (_, _, back) = change(plan_unenroll(&xml, PREFIX, dir()).unwrap());
        assert_eq!(back, WITH_META);
    }

    #[test]
    fn other_metadata_only_and_empty_metadata() {
        let other = WITH_META.replace(
            "    <vah:guest xmlns:vah=\"http://virt-aa-hook.dev/xmlns/domain/1\" mode=\"complain\"/>\n",
            "",
        );
        let (_, _, xml) = change(plan_enroll(&other, PREFIX, dir()).unwrap());
        assert!(xml.contains("<metadata>\n    <vah:guest "), "{xml}");
        assert!(xml.contains("keep &amp; me"));
        let (_, _, back) = change(plan_unenroll(&xml, PREFIX, dir()).unwrap());
        assert_eq!(back, other);

        let empty = PLAIN.replace("</uuid>", "</uuid>\n  <metadata/>");
        let (_, _, xml) = change(plan_enroll(&empty, PREFIX, dir()).unwrap());
        assert!(
            DomainDef::parse(xml.as_bytes())
                .unwrap()
                .settings
                .original_emulator
                .is_some()
        );
        let (_, _, back) = change(plan_unenroll(&xml, PREFIX, dir()).unwrap());
        assert_eq!(back, PLAIN);
    }

    #[test]
    fn special_characters_and_refusals() {
        let odd = PLAIN.replace("/usr/bin/qemu-system-x86_64", "/usr/bin/q&amp;emu");
        let (from, to, xml) = change(plan_enroll(&odd, PREFIX, dir()).unwrap());
        assert_eq!(from, "/usr/bin/q&emu");
        assert_eq!(to, "/usr/lib/libvirt/virt-aa-hook.q&emu");
        assert!(xml.contains("<emulator>/usr/lib/libvirt/virt-aa-hook.q&amp;emu</emulator>"));
        assert!(xml.contains("original-emulator=\"/usr/bin/q&amp;emu\""));
        assert_eq!(change(plan_unenroll(&xml, PREFIX, dir()).unwrap()).2, odd);

        let elsewhere = PLAIN.replace("/usr/bin/", "/opt/qemu/bin/");
        let e = plan_enroll(&elsewhere, PREFIX, dir())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in /usr/bin"), "{e}");
        let lxc = PLAIN.replace("type='kvm'", "type='lxc'");
        assert!(plan_enroll(&lxc, PREFIX, dir()).is_err());

        // Metadata lost: unenroll falls back to the emulator the wrapper runs.
        let bare = PLAIN.replace(
            "/usr/bin/qemu-system-x86_64",
            "/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64",
        );
        let (_, to, back) = change(plan_unenroll(&bare, PREFIX, dir()).unwrap());
        assert_eq!(to, "/usr/bin/qemu-system-x86_64");
        assert_eq!(back, PLAIN);
    }

    #[test]
    #[serial_test::serial]
    fn test_driver_round_trip() {
        let name = "vah-enroll-unit";
        let xml = "<domain type='test'><name>vah-enroll-unit</name>\
            <uuid>11111111-2222-3333-4444-555555555555</uuid><memory>65536</memory>\
            <os><type>hvm</type></os>\
            <devices><emulator>/usr/bin/test-hv</emulator></devices></domain>";
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let out = lv
            .run(move |c| {
                let d = c.define_domain_xml(xml)?;
                let t = Targets::Named(vec![name.into()]);
                // The test driver's guests are not QEMU guests: enroll must refuse.
                let refused = apply(c, &t, true, PREFIX, Path::new("/usr/bin"), false)?;
                d.undefine()?;
                Ok(refused)
            })
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(
            !out[0].0 && out[0].1.contains("not a QEMU guest"),
            "{out:?}"
        );
        let missing = lv
            .run(|c| {
                apply(
                    c,
                    &Targets::Named(vec!["nope".into()]),
                    true,
                    PREFIX,
                    dir(),
                    true,
                )
            })
            .unwrap();
        assert!(missing[0].1.contains("no defined guest"), "{missing:?}");
    }
}
