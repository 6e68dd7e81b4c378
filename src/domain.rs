//! The parts of a libvirt domain definition every later step needs: identity (name, UUID, id),
//! virtualisation type, security labels and our own per-guest settings in `<metadata>`.
//!
//! The device tree itself stays an [`Element`] tree; [`crate::derive`] walks it.

use crate::xml::{self, Element, XmlError};
use thiserror::Error;
use uuid::Uuid;

/// XML namespace of our per-guest settings inside the domain's `<metadata>`:
/// `<vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain"/>`.
pub const METADATA_NS: &str = "http://virt-aa-hook.dev/xmlns/domain/1";

/// Why a document is not a usable domain definition.
#[derive(Debug, Error)]
pub enum DomainError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("root element is <{0}>, expected <domain>")]
    NotDomain(String),
    #[error("domain has no <uuid>")]
    NoUuid,
    #[error("domain <uuid> {0:?} is not a valid UUID")]
    BadUuid(String),
    #[error("domain has no <name>")]
    NoName,
    #[error("domain name {0:?} contains a control character or '/'")]
    BadName(String),
    #[error("domain has no type attribute (<domain type='kvm|qemu'>)")]
    NoType,
    #[error("metadata <vah:guest {attr}={value:?}>: expected {expected}")]
    BadMetadata {
        attr: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// How the guest's profile is enforced, chosen per guest in the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Enforce,
    Complain,
}

/// Our settings from `<metadata><vah:guest .../></metadata>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestSettings {
    /// `mode="complain"`: log instead of deny for this guest.
    pub enforcement: Option<Enforcement>,
    /// `manage="no"`: leave this guest alone entirely.
    pub opt_out: bool,
    /// `original-emulator=`: set by `enroll`, the emulator the wrapper replaced.
    pub original_emulator: Option<String>,
}

/// A `<seclabel>` element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecLabel {
    pub model: Option<String>,
    pub kind: Option<String>,
    pub label: Option<String>,
    pub relabel: Option<String>,
}

/// A parsed domain.
#[derive(Clone, Debug)]
pub struct Domain {
    pub name: String,
    pub uuid: Uuid,
    /// `id=` of a running (live) definition; absent in inactive XML.
    pub id: Option<i64>,
    /// `type=` attribute: kvm, qemu, lxc, xen, ...
    pub virt_type: String,
    pub emulator: Option<String>,
    pub seclabels: Vec<SecLabel>,
    pub settings: GuestSettings,
    pub root: Element,
}

impl Domain {
    /// Parse domain XML bytes (size-capped, UTF-8, well-formed).
    pub fn parse(input: &[u8]) -> Result<Domain, DomainError> {
        Self::from_element(xml::parse(input)?)
    }

    /// Build from an already parsed tree.
    pub fn from_element(root: Element) -> Result<Domain, DomainError> {
        if root.name != "domain" {
            return Err(DomainError::NotDomain(root.name.to_string()));
        }
        let uuid_text = root
            .child("uuid")
            .and_then(|u| u.text_nonempty())
            .ok_or(DomainError::NoUuid)?;
        let uuid =
            Uuid::parse_str(uuid_text).map_err(|_| DomainError::BadUuid(uuid_text.to_string()))?;
        let name = root
            .child("name")
            .and_then(|n| n.text_nonempty())
            .ok_or(DomainError::NoName)?
            .to_string();
        if name.chars().any(|c| c.is_control() || c == '/') || name.len() > 1024 {
            return Err(DomainError::BadName(name));
        }
        let virt_type = root
            .attr_nonempty("type")
            .ok_or(DomainError::NoType)?
            .to_string();
        let id = root.attr("id").and_then(|v| v.parse::<i64>().ok());
        let emulator = root
            .path(&["devices", "emulator"])
            .and_then(|e| e.text_nonempty())
            .map(str::to_string);
        let seclabels = root
            .children_named("seclabel")
            .map(|s| SecLabel {
                model: s.attr("model").map(str::to_string),
                kind: s.attr("type").map(str::to_string),
                label: s
                    .child("label")
                    .and_then(|l| l.text_nonempty())
                    .map(str::to_string),
                relabel: s.attr("relabel").map(str::to_string),
            })
            .collect();
        let settings = parse_settings(&root)?;
        Ok(Domain {
            name,
            uuid,
            id,
            virt_type,
            emulator,
            seclabels,
            settings,
            root,
        })
    }

    /// The AppArmor profile name libvirt uses for this guest: `libvirt-<uuid>` (44 characters).
    pub fn profile_name(&self) -> String {
        profile_name(&self.uuid)
    }

    /// libvirt's "short name" used in per-domain directories: `<id>-<first 20 characters>`.
    /// libvirt truncates by characters in a UTF-8 locale and by bytes in the C locale, so for a
    /// multibyte name both spellings are returned (when the byte cut falls on a character).
    pub fn short_names(&self) -> Vec<String> {
        let Some(id) = self.id else { return Vec::new() };
        let by_chars: String = self.name.chars().take(20).collect();
        let mut v = vec![format!("{id}-{by_chars}")];
        if self.name.len() > 20 && self.name.is_char_boundary(20) {
            let by_bytes = format!("{id}-{}", &self.name[..20]);
            if !v.contains(&by_bytes) {
                v.push(by_bytes);
            }
        }
        v
    }

    /// Whether libvirt runs this guest with QEMU (the only driver we generate for).
    pub fn is_qemu(&self) -> bool {
        matches!(self.virt_type.as_str(), "qemu" | "kvm" | "kqemu" | "hvf")
    }
}

/// What every guest profile name starts with; libvirt's AppArmor driver names profiles so.
pub const PROFILE_PREFIX: &str = "libvirt-";

/// `libvirt-<lowercase hyphenated uuid>`.
pub fn profile_name(uuid: &Uuid) -> String {
    format!("{PROFILE_PREFIX}{}", uuid.hyphenated())
}

fn parse_settings(root: &Element) -> Result<GuestSettings, DomainError> {
    let mut s = GuestSettings::default();
    let Some(meta) = root.child("metadata") else {
        return Ok(s);
    };
    let Some(g) = meta
        .children
        .iter()
        .find(|c| c.ns.as_deref() == Some(METADATA_NS) && c.name == "guest")
    else {
        return Ok(s);
    };
    if let Some(m) = g.attr("mode") {
        s.enforcement = Some(match m {
            "enforce" => Enforcement::Enforce,
            "complain" => Enforcement::Complain,
            _ => {
                return Err(DomainError::BadMetadata {
                    attr: "mode",
                    value: m.into(),
                    expected: "enforce or complain",
                });
            }
        });
    }
    if let Some(m) = g.attr("manage") {
        s.opt_out = match m {
            "yes" => false,
            "no" => true,
            _ => {
                return Err(DomainError::BadMetadata {
                    attr: "manage",
                    value: m.into(),
                    expected: "yes or no",
                });
            }
        };
    }
    s.original_emulator = g.attr_nonempty("original-emulator").map(str::to_string);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"<domain type='kvm' id='7'><name>vm1</name>
        <uuid>92C4F559-3323-44d7-abd5-34c49aef304a</uuid>
        <metadata><vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain"/></metadata>
        <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"#;

    #[test]
    fn identity_and_settings() {
        let d = Domain::parse(MIN.as_bytes()).unwrap();
        assert_eq!(
            d.profile_name(),
            "libvirt-92c4f559-3323-44d7-abd5-34c49aef304a"
        );
        assert_eq!(d.profile_name().len(), 44);
        assert_eq!(d.id, Some(7));
        assert_eq!(d.short_names(), vec!["7-vm1".to_string()]);
        assert_eq!(d.settings.enforcement, Some(Enforcement::Complain));
        assert!(d.is_qemu());
    }

    #[test]
    fn errors_are_specific() {
        let e = Domain::parse(b"<domain type='kvm'><name>x</name></domain>").unwrap_err();
        assert_eq!(e.to_string(), "domain has no <uuid>");
        let e = Domain::parse(b"<domain type='kvm'><name>x</name><uuid>nope</uuid></domain>")
            .unwrap_err();
        assert!(e.to_string().contains("not a valid UUID"));
        let e = Domain::parse(b"<vm/>").unwrap_err();
        assert!(e.to_string().contains("expected <domain>"));
    }

    #[test]
    fn short_name_truncation() {
        let mut d = Domain::parse(MIN.as_bytes()).unwrap();
        d.name = "a".repeat(30);
        assert_eq!(d.short_names(), vec![format!("7-{}", "a".repeat(20))]);
        d.name = format!("{}{}", "é".repeat(15), "x");
        let v = d.short_names();
        assert_eq!(v[0], format!("7-{}x", "é".repeat(15)));
        assert_eq!(v[1], format!("7-{}", "é".repeat(10)));
    }
}
