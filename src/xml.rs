//! A small read-only element tree built with quick-xml.
//!
//! libvirt domain XML is small (kilobytes, a few MiB for guests with thousands of disks) and the
//! rule derivation needs random access (a `<console>` may refer to the first `<serial>`, the
//! `<os>` block decides what `<loader>` means), so a tree is simpler and safer than a streaming
//! state machine. Names are stored as *local* names: libvirt's own elements carry no prefix and
//! the namespaced parts (`<metadata>`, `qemu:commandline`) are matched by local name plus, where it
//! matters (our own metadata), by namespace URI.

use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;
use thiserror::Error;

/// Largest document we accept; virt-aa-helper uses the same 10 MiB cap.
pub const MAX_XML_BYTES: usize = 10 * 1024 * 1024;
/// Deepest nesting we accept. Real domain XML nests about 8 levels; this stops stack and memory
/// abuse from hostile input without ever rejecting a real definition.
pub const MAX_DEPTH: usize = 64;

/// Why a document could not be turned into a tree. Each variant renders as one line.
#[derive(Debug, Error)]
pub enum XmlError {
    #[error("domain XML is larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    #[error("domain XML is not valid UTF-8 (byte offset {0})")]
    NotUtf8(usize),
    #[error("domain XML is malformed at byte {pos}: {msg}")]
    Malformed { pos: u64, msg: String },
    #[error("domain XML nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("domain XML has no root element")]
    Empty,
}

/// An element or attribute name: one of libvirt's common names borrowed from a static table,
/// or the document's own (interned from a static table).
pub type Name = Cow<'static, str>;

/// One element: local name, namespace URI (if any), attributes (unescaped), children and the
/// concatenated text directly inside it (entity references resolved, so `/a&amp;b` stays whole).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: Name,
    pub ns: Option<String>,
    pub attrs: Vec<(Name, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Attribute value by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Attribute value, treating an empty string like an absent attribute (libvirt does the same
    /// for paths: `file=''` means "no media").
    pub fn attr_nonempty(&self, name: &str) -> Option<&str> {
        self.attr(name).filter(|v| !v.is_empty())
    }

    /// `yes`/`on` style boolean attribute.
    pub fn attr_yes(&self, name: &str) -> bool {
        matches!(self.attr(name), Some("yes" | "on" | "true" | "1"))
    }

    /// First child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follow a path of child names (first match at each step).
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for n in names {
            cur = cur.child(n)?;
        }
        Some(cur)
    }

    /// Trimmed text content, `None` when empty.
    pub fn text_nonempty(&self) -> Option<&str> {
        let t = self.text.trim();
        (!t.is_empty()).then_some(t)
    }
}

/// libvirt's common element and attribute names, shared instead of allocated per element: a
/// thousand-disk guest has some four thousand elements and seven thousand attributes, and their
/// names were a third of the allocations of its parse.
const COMMON_NAMES: &[&str] = &[
    "address",
    "alias",
    "arch",
    "audio",
    "backend",
    "backingStore",
    "boot",
    "bus",
    "channel",
    "controller",
    "console",
    "cpu",
    "currentMemory",
    "dev",
    "device",
    "devices",
    "dir",
    "disk",
    "domain",
    "driver",
    "emulator",
    "features",
    "file",
    "filesystem",
    "format",
    "function",
    "graphics",
    "hostdev",
    "id",
    "index",
    "input",
    "interface",
    "listen",
    "loader",
    "mac",
    "machine",
    "memballoon",
    "memory",
    "metadata",
    "mode",
    "model",
    "name",
    "nvram",
    "os",
    "path",
    "pool",
    "port",
    "protocol",
    "readonly",
    "rng",
    "seclabel",
    "serial",
    "shareable",
    "slot",
    "source",
    "target",
    "tpm",
    "type",
    "unit",
    "uuid",
    "vcpu",
    "video",
    "volume",
];

/// A slot of [`COMMON_NAMES`]' little hash table: from the length and the first, second and
/// last bytes (factors searched for no collision among the names; a test checks it), so that a
/// lookup is one table read and one comparison (a binary search over the names cost as much as
/// the allocations it saved).
fn slot(name: &[u8]) -> usize {
    let (first, second, last) = match name {
        [] => (0, 0, 0),
        [only] => (*only, 0, *only),
        [first, second, .., last] => (*first, *second, *last),
        [first, last] => (*first, *last, *last),
    };
    (name.len() * 3 + first as usize * 53 + last as usize * 5 + second as usize) % 256
}

/// [`COMMON_NAMES`] by [`slot`] (a name whose slot is taken stays out: it is then allocated
/// like any other, still correct).
fn common_names() -> &'static [Option<&'static str>; 256] {
    static TABLE: std::sync::OnceLock<[Option<&'static str>; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [None; 256];
        for n in COMMON_NAMES {
            t[slot(n.as_bytes())].get_or_insert(*n);
        }
        t
    })
}

/// `name` as a [`Name`]: borrowed from [`COMMON_NAMES`] when it is one of them.
fn intern(name: &str) -> Name {
    match common_names()[slot(name.as_bytes())] {
        Some(n) if n == name => Cow::Borrowed(n),
        _ => Cow::Owned(name.to_string()),
    }
}

/// Parse a document into its root element.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    if input.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let text = std::str::from_utf8(input).map_err(|e| XmlError::NotUtf8(e.valid_up_to()))?;
    parse_str(text)
}

fn malformed(reader_pos: u64, msg: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed {
        pos: reader_pos,
        msg: msg.to_string().replace('\n', " "),
    }
}

/// Parse an already-decoded document.
pub fn parse_str(text: &str) -> Result<Element, XmlError> {
    if text.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let mut reader = quick_xml::reader::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // Attributes are gathered here, then copied into a vector of just their number: a guest
    // with thousands of disks has tens of thousands of elements, most with one or two.
    let mut attr_scratch: Vec<(Name, String)> = Vec::new();
    let mut scopes = Namespaces::default();
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| malformed(pos, e))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(malformed(pos, "content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let el = element_from_start(s, stack.len(), &mut scopes, pos, &mut attr_scratch)?;
                if matches!(ev, Event::Empty(_)) {
                    scopes.leave(stack.len());
                    close(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let mut el = stack
                    .pop()
                    .ok_or_else(|| malformed(pos, "unexpected end tag"))?;
                scopes.leave(stack.len());
                // A `<disk>`'s three children in room for three, not four (the vector grows
                // by doubling): thousands of disks, hundreds of KiB fewer to touch.
                el.children.shrink_to_fit();
                close(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                } else if !t.xml10_content().trim().is_empty() {
                    return Err(malformed(pos, "text outside the root element"));
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let name: &str = &r;
                let resolved = quick_xml::escape::unescape(&format!("&{name};"))
                    .map_err(|e| malformed(pos, e))?
                    .into_owned();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err(malformed(pos, "entity outside the root element")),
                }
            }
            Event::DocType(_) => {
                return Err(malformed(pos, "DOCTYPE declarations are not accepted"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed(text.len() as u64, "unexpected end of document"));
    }
    root.ok_or(XmlError::Empty)
}

fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// The namespace declarations in scope (`xmlns="…"`, `xmlns:p="…"`), each with the depth of
/// the element that made it. Resolved by hand rather than by quick-xml's `NsReader`, which
/// scans every element's attributes for declarations a second time: libvirt's XML declares a
/// namespace in a handful of places (its `<metadata>` children, `qemu:commandline`), and the
/// element names are what a thousand-disk guest spends its parse on.
#[derive(Default)]
struct Namespaces {
    /// (prefix, URI, depth); the prefix is empty for a default namespace.
    decls: Vec<(String, String, usize)>,
}

impl Namespaces {
    /// The URI `prefix` is bound to, `None` when unbound (or bound to the empty URI, which
    /// undeclares a default namespace).
    fn resolve(&self, prefix: &str) -> Option<String> {
        self.decls
            .iter()
            .rev()
            .find(|(p, _, _)| p == prefix)
            .filter(|(_, uri, _)| !uri.is_empty())
            .map(|(_, uri, _)| uri.clone())
    }

    /// The element at `depth` ended: its declarations go out of scope.
    fn leave(&mut self, depth: usize) {
        while self.decls.last().is_some_and(|(_, _, d)| *d >= depth) {
            self.decls.pop();
        }
    }
}

fn element_from_start(
    s: &BytesStart<'_>,
    depth: usize,
    scopes: &mut Namespaces,
    pos: u64,
    scratch: &mut Vec<(Name, String)>,
) -> Result<Element, XmlError> {
    let name = intern(s.local_name().as_ref());
    scratch.clear();
    let attrs = scratch;
    for a in s.attributes() {
        let a = a.map_err(|e| malformed(pos, e))?;
        let full = a.key.as_ref();
        if let Some(rest) = full.strip_prefix("xmlns") {
            let prefix = if rest.is_empty() {
                Some("")
            } else {
                rest.strip_prefix(':')
            };
            if let Some(prefix) = prefix {
                let uri = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| malformed(pos, e))?;
                scopes
                    .decls
                    .push((prefix.to_string(), uri.into_owned(), depth));
            }
            continue;
        }
        let key = intern(a.key.local_name().as_ref());
        // XML 1.0 §3.1 (AttValue) forbids a literal '<' in an attribute value; libxml2, and so
        // libvirt, rejects such a document, quick-xml does not. Be as strict: the guest must not
        // start from XML libvirt itself would have refused.
        if a.value.contains('<') {
            return Err(malformed(
                pos,
                format!("'<' in the value of attribute {key:?} (write &lt;)"),
            ));
        }
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| malformed(pos, e))?
            .into_owned();
        attrs.push((key, value));
    }
    // Not `mem::take`: that would hand over the scratch vector's spare capacity.
    let mut exact = Vec::with_capacity(attrs.len());
    exact.append(attrs);
    let ns = if scopes.decls.is_empty() {
        None
    } else {
        scopes.resolve(s.name().prefix().map_or("", |p| p.into_inner()))
    };
    Ok(Element {
        name,
        ns,
        attrs: exact,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Escape a string for XML output, as element text or as an attribute value in either quote
/// style (`& < > ' "`): the one XML escaper for everything we write back.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Serialise an element back to XML for a bug report (attributes in order, text escaped).
pub fn element_xml(e: &Element) -> String {
    fn go(e: &Element, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        out.push_str(&format!("{pad}<{}", e.name));
        for (k, v) in &e.attrs {
            out.push_str(&format!(" {k}='{}'", escape(v)));
        }
        let text = e.text.trim();
        if e.children.is_empty() && text.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push('>');
        if e.children.is_empty() {
            out.push_str(&escape(text));
        } else {
            out.push('\n');
            for c in &e.children {
                go(c, depth + 1, out);
            }
            out.push_str(&pad);
        }
        out.push_str(&format!("</{}>\n", e.name));
    }
    let mut s = String::new();
    go(e, 0, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_common_name_has_a_slot_of_its_own() {
        for n in COMMON_NAMES {
            assert!(
                matches!(intern(n), Cow::Borrowed(b) if b == *n),
                "{n} shares a slot"
            );
        }
        for n in ["diskx", "", "x", "Disk", "dsk"] {
            assert!(matches!(intern(n), Cow::Owned(ref o) if o == n), "{n}");
        }
    }

    #[test]
    fn entity_in_text_does_not_truncate() {
        let e = parse_str("<a><b>/x&amp;y/z&#x41;</b></a>").unwrap();
        assert_eq!(e.child("b").unwrap().text, "/x&y/zA");
    }

    #[test]
    fn attributes_are_unescaped() {
        let e = parse_str(r#"<a p="/q&quot;r&lt;"/>"#).unwrap();
        assert_eq!(e.attr("p"), Some("/q\"r<"));
    }

    #[test]
    fn a_raw_lt_in_an_attribute_is_malformed_like_in_libxml2() {
        let e = parse_str("<a><b p='/x<y'/></a>").unwrap_err();
        assert!(
            e.to_string()
                .contains("'<' in the value of attribute \"p\""),
            "{e}"
        );
        assert!(parse_str("<a p=\"&lt;\"/>").is_ok());
        assert!(parse_str("<a p='>'/>").is_ok());
    }

    #[test]
    fn namespaces_resolve() {
        let e = parse_str(r#"<d><metadata><v:x xmlns:v="urn:t" m="1"/></metadata></d>"#).unwrap();
        let x = e.path(&["metadata", "x"]).unwrap();
        assert_eq!(x.ns.as_deref(), Some("urn:t"));
        assert_eq!(x.attr("m"), Some("1"));
    }

    #[test]
    fn namespaces_are_scoped_to_the_declaring_element() {
        let e = parse_str(
            r#"<d xmlns:q="urn:q"><m xmlns="urn:m"><g/><q:c/><n xmlns=""/></m><g/><q:c/><x:u/></d>"#,
        )
        .unwrap();
        let m = e.child("m").unwrap();
        assert_eq!(m.ns.as_deref(), Some("urn:m"));
        assert_eq!(m.child("g").unwrap().ns.as_deref(), Some("urn:m"));
        assert_eq!(m.child("c").unwrap().ns.as_deref(), Some("urn:q"));
        assert_eq!(m.child("n").unwrap().ns, None, "xmlns='' undeclares");
        // Out of <m>: its default namespace no longer applies, <d>'s prefix still does.
        assert_eq!(e.child("g").unwrap().ns, None);
        assert_eq!(e.child("c").unwrap().ns.as_deref(), Some("urn:q"));
        assert_eq!(
            e.child("u").unwrap().ns,
            None,
            "an undeclared prefix is unbound"
        );
        assert!(m.attrs.is_empty(), "declarations are not attributes");
    }

    #[test]
    fn malformed_and_deep_inputs_fail_cleanly() {
        assert!(matches!(
            parse_str("<a><b></a>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(parse_str(""), Err(XmlError::Empty)));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(parse_str(&deep), Err(XmlError::TooDeep)));
        assert!(matches!(parse(b"<a>\xff</a>"), Err(XmlError::NotUtf8(3))));
        assert!(parse_str("<!DOCTYPE x [<!ENTITY e 'v'>]><a>&e;</a>").is_err());
    }
}
