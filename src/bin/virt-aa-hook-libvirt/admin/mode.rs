//! `complain GUEST` / `enforce GUEST`: switch a guest's profile mode in our metadata
//! (`<vah:guest mode="…"/>`, README "Per-guest settings") — the `virsh metadata` equivalent —
//! and, for a running guest, regenerate and reload its profile at once.
//!
//! The change goes to the persistent definition and, for a running guest, to the live one, so
//! the mode holds across restarts. Our other attributes (`manage`, `original-emulator`) are kept.
//! The reload is the lifecycle's install ([`virt_aa_hook::lifecycle::Profiles::install`]) on the
//! live definition, under the guest's lock: the same generation, compile and atomic write as at
//! a guest start, logged in the hook's log.

use super::conn::Libvirt;
use anyhow::{Result, anyhow};
use virt_aa_hook::config::Config;
use virt_aa_hook::domain::{Domain, Enforcement, METADATA_NS};
use virt_aa_hook::host::Host;
use virt_aa_hook::lifecycle::InstallRequest;
use virt_aa_hook::log::Level;

/// libvirt's `VIR_DOMAIN_METADATA_ELEMENT`.
const METADATA_ELEMENT: i32 = 2;
/// Prefix libvirt writes our element with.
const KEY: &str = "vah";

/// The new `<guest …/>` element for `set_metadata`: the old element's attributes (without
/// namespace declarations) with `mode` set. Pure, tested.
pub fn new_element(old: Option<&str>, mode: Enforcement) -> Result<String> {
    let mut attrs: Vec<(String, String)> = match old {
        Some(x) if !x.trim().is_empty() => {
            let e = virt_aa_hook::xml::parse_str(x).map_err(|e| anyhow!("our metadata: {e}"))?;
            e.attrs
                .into_iter()
                .filter(|(k, _)| k != "xmlns" && !k.starts_with("xmlns:") && k != "mode")
                .map(|(k, v)| (k.into_owned(), v))
                .collect()
        }
        _ => Vec::new(),
    };
    let word = match mode {
        Enforcement::Enforce => "enforce",
        Enforcement::Complain => "complain",
    };
    attrs.insert(0, ("mode".into(), word.into()));
    let body: String = attrs
        .iter()
        .map(|(k, v)| format!(" {k}=\"{}\"", virt_aa_hook::xml::escape(v)))
        .collect();
    Ok(format!("<guest{body}/>"))
}

pub fn run(cfg: &Config, lv: &Libvirt, key: &str, mode: Enforcement) -> Result<i32> {
    let k = key.to_string();
    let (name, live_xml) = lv
        .run(move |c| {
            let dom = super::enroll::lookup(c, &k)?;
            let name = dom.name().map_err(|e| anyhow!("{}", e.message()))?;
            let active = dom.is_active().unwrap_or(false);
            let persistent = dom.is_persistent().unwrap_or(true);
            let mut flags = 0;
            if active {
                flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
            }
            if persistent {
                flags |= virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
            }
            let read_flags = if persistent {
                virt::sys::VIR_DOMAIN_AFFECT_CONFIG
            } else {
                virt::sys::VIR_DOMAIN_AFFECT_LIVE
            };
            let old = dom
                .metadata(METADATA_ELEMENT, Some(METADATA_NS), read_flags)
                .ok();
            let el = new_element(old.as_deref(), mode)?;
            dom.set_metadata(
                METADATA_ELEMENT,
                Some(&el),
                Some(KEY),
                Some(METADATA_NS),
                flags,
            )
            .map_err(|e| {
                anyhow!(
                    "cannot set the metadata of {name}: {}",
                    super::conn::msg(&e)
                )
            })?;
            let live = if active {
                Some(
                    dom.xml_desc(0)
                        .map_err(|e| anyhow!("cannot read the live definition: {}", e.message()))?,
                )
            } else {
                None
            };
            Ok((name, live))
        })
        .map_err(|e| anyhow!("{e}"))?;
    let word = format!("{mode:?}").to_lowercase();
    let Some(xml) = live_xml else {
        println!("{name}: mode={word} set; applies at its next start");
        return Ok(0);
    };
    // Regenerate and reload now: the lifecycle's install, as at a guest's start.
    let text = reload(cfg, &word, &xml)
        .map_err(|e| anyhow!("{name}: mode={word} set, but the profile was not reloaded: {e}"))?;
    println!(
        "{name}: mode={word} set; {text} (see {})",
        cfg.rooted(&cfg.log_file).display()
    );
    Ok(0)
}

/// Regenerate, write if changed and (re)load a running guest's profile from its live
/// definition, under the guest's lock, and log it like a hook event. The text for the admin.
fn reload(cfg: &Config, word: &str, xml: &str) -> Result<String> {
    let t0 = std::time::Instant::now();
    let host = Host::new(cfg.clone());
    let dom = Domain::parse(xml.as_bytes()).map_err(|e| anyhow!("invalid domain XML: {e}"))?;
    let who = format!("[{} {}] {word}", dom.name, dom.uuid.hyphenated());
    if let Some(reason) = host.skip_reason(&dom) {
        host.log
            .line(Level::Info, &format!("{who}: skipped: {reason}"));
        return Ok(format!("its profile is not ours to reload ({reason})"));
    }
    let (mode, _) = host.mode();
    let profiles = host.profiles();
    let _lock = profiles.lock(&dom.uuid.hyphenated().to_string())?;
    let opts = host.derive_options();
    let result = profiles.install(&InstallRequest {
        domain: &dom,
        mode,
        load: true,
        derive: &opts,
    });
    let ms = virt_aa_hook::log::elapsed_ms(t0);
    match result {
        Ok(r) => {
            for w in &r.warnings {
                host.log.line(Level::Warn, &format!("{who}: {w}"));
            }
            host.log.line(
                Level::Info,
                &format!("{who} mode={mode}: {} ({ms})", r.text),
            );
            Ok("profile regenerated and reloaded".into())
        }
        Err(e) => {
            host.log.line(
                Level::Error,
                &format!("{who} mode={mode}: FAILED: {e} ({ms})"),
            );
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_our_other_attributes() {
        let old = r#"<vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain" original-emulator="/usr/bin/qemu-system-x86_64"/>"#;
        assert_eq!(
            new_element(Some(old), Enforcement::Enforce).unwrap(),
            r#"<guest mode="enforce" original-emulator="/usr/bin/qemu-system-x86_64"/>"#
        );
        assert_eq!(
            new_element(None, Enforcement::Complain).unwrap(),
            r#"<guest mode="complain"/>"#
        );
    }
}
