//! One AppArmor audit record, parsed from whichever log the host has: the kernel ring buffer
//! (`dmesg`, `journalctl -k`), auditd's `/var/log/audit/audit.log`, or a `journalctl -o json`
//! line whose `MESSAGE` carries the record.
//!
//! This is hostile input: a guest chooses the paths its QEMU opens, and those paths end up in
//! the record's `name=` field. The kernel writes an untrusted string either in double quotes
//! (only when it has no quote, space, control or non-ASCII byte) or as bare upper-case hex
//! (`name=2F7372762F6120622E696D67`, `/srv/a b.img`), so a field can never contain a forged
//! `name="..."`. We rely on exactly that and nothing more: a record with a repeated key, an
//! unterminated quote, a bare `name` that is not hex, or a name that does not decode to UTF-8
//! without control characters is refused, never guessed at. The name is returned as the literal
//! bytes the kernel logged; turning it into a rule is [`crate::explain`]'s job, through the one
//! escaper in [`crate::paths`].

use thiserror::Error;

/// Longest line we look at (audit records are well under 8 KiB; the kernel caps them).
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line that looks like an AppArmor record cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DenialError {
    #[error("record is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("field {0} has an unterminated quote")]
    Unterminated(String),
    #[error("field {0} appears twice")]
    Repeated(String),
    #[error("field {field} is neither quoted nor hex: {value:?}")]
    NotHex { field: String, value: String },
    #[error("field {0} is not UTF-8 or contains a control character")]
    BadText(String),
    #[error("record has no {0} field")]
    Missing(&'static str),
    #[error("journal entry is not valid JSON: {0}")]
    Json(String),
}

/// What AppArmor did with the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// Enforce mode: refused.
    Denied,
    /// Complain mode: allowed and logged (what enforce would refuse).
    Allowed,
}

/// One AppArmor record (`apparmor="DENIED"` or `apparmor="ALLOWED"`). Other AppArmor records
/// (`STATUS`, `AUDIT`) are not returned by [`parse_line`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub outcome: Outcome,
    /// `operation=`: `open`, `mknod`, `file_mmap`, `capable`, `signal`, ...
    pub operation: String,
    /// `class=` (AppArmor ≥ 3.1 kernels): `file`, `net`, `cap`, ...
    pub class: Option<String>,
    /// `profile=`: the confining profile, `libvirt-<uuid>` or a child `libvirt-<uuid>//passt`.
    pub profile: String,
    /// `name=`: the path (for file records), exactly as logged, decoded from hex if need be.
    pub name: Option<String>,
    /// `requested_mask=`: `r`, `w`, `rw`, `wc`, `k`, `m`, `x`, ...
    pub requested: Option<String>,
    /// `denied_mask=`.
    pub denied: Option<String>,
    /// `comm=` (decoded); informational.
    pub comm: Option<String>,
    /// `pid=`.
    pub pid: Option<u32>,
    /// `audit(<secs>.<ms>:<serial>)`: seconds since the epoch and the audit serial.
    pub time: Option<(u64, u32)>,
    /// `info=`: the kernel's note (`Failed name lookup - disconnected path`, ...).
    pub info: Option<String>,
    /// `capname=` (capability records: `sys_admin`), or `capability=<number>` when the kernel
    /// wrote no name.
    pub capability: Option<String>,
    /// Network records: `family=` and `sock_type=` (`inet stream`), `protocol=` if given.
    pub network: Option<String>,
}

impl Record {
    /// A file access with a path (the only kind `explain` can turn into a rule).
    pub fn is_file(&self) -> bool {
        self.name.is_some()
            && self.requested.is_some()
            && self.class.as_deref().is_none_or(|c| c == "file")
            && !NON_FILE_OPS.contains(&self.operation.as_str())
    }

    /// What a record that is not a file access asked for, for the admin: `capability sys_admin`,
    /// `network inet stream`, `signal kill to <peer>`.
    pub fn what(&self) -> Option<String> {
        if let Some(c) = &self.capability {
            return Some(format!("capability {c}"));
        }
        if let Some(n) = &self.network {
            return Some(format!("network {n}"));
        }
        None
    }

    /// The key under which repeated records of one access collapse.
    pub fn key(&self) -> (String, Option<String>, String) {
        (
            self.profile.clone(),
            self.name.clone(),
            self.operation.clone(),
        )
    }
}

/// Operations that carry a `name=` but are not file opens a path rule can grant.
const NON_FILE_OPS: &[&str] = &[
    "capable",
    "signal",
    "ptrace",
    "mount",
    "umount",
    "pivotroot",
    "change_profile",
    "change_hat",
    "change_onexec",
    "profile_load",
    "profile_replace",
    "profile_remove",
    "create",
    "bind",
    "connect",
    "listen",
    "accept",
    "sendmsg",
    "recvmsg",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "shutdown",
    "dbus_method_call",
    "dbus_signal",
    "userns_create",
];

/// Fields whose value the kernel writes as an untrusted string (quoted or hex).
const UNTRUSTED: &[&str] = &["name", "profile", "comm", "target", "peer", "label", "exe"];

/// Parse one log line of any supported shape. `Ok(None)`: not an AppArmor DENIED/ALLOWED record
/// (most lines of a kernel log). A `{`-line is read as `journalctl -o json` output.
pub fn parse_line(line: &str) -> Result<Option<Record>, DenialError> {
    if line.len() > MAX_LINE {
        return Err(DenialError::TooLong);
    }
    let t = line.trim_start();
    if t.starts_with('{') {
        return match journal_message(t)? {
            Some(m) => parse_record(&m),
            None => Ok(None),
        };
    }
    parse_record(line)
}

/// The `MESSAGE` of one `journalctl -o json` line. journald writes it as a string, or as an
/// array of byte values when it is not valid UTF-8 or has control characters; both are taken.
pub fn journal_message(line: &str) -> Result<Option<String>, DenialError> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| DenialError::Json(e.to_string()))?;
    Ok(match v.get("MESSAGE") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(a)) => {
            let bytes: Option<Vec<u8>> = a
                .iter()
                .map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    })
}

/// Parse the text of one record (kernel, audit.log or journal `MESSAGE`): the part from
/// `apparmor=` on is a list of `key=value` fields.
pub fn parse_record(text: &str) -> Result<Option<Record>, DenialError> {
    if text.len() > MAX_LINE {
        return Err(DenialError::TooLong);
    }
    let Some(start) = find_field_start(text, "apparmor=") else {
        return Ok(None);
    };
    let time = audit_time(&text[..start]);
    // auditd's enriched format appends `\x1d` and the interpreted fields: not ours to read.
    let body = text[start..].split('\x1d').next().unwrap_or("");
    let fields = split_fields(body)?;
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v);
    let outcome = match get("apparmor").map(|v| v.raw.as_str()) {
        Some("DENIED") => Outcome::Denied,
        Some("ALLOWED") => Outcome::Allowed,
        _ => return Ok(None),
    };
    let text_of = |k: &'static str| -> Result<Option<String>, DenialError> {
        match get(k) {
            None => Ok(None),
            Some(v) => decode(k, v).map(Some),
        }
    };
    let profile = text_of("profile")?.ok_or(DenialError::Missing("profile"))?;
    let capability = match text_of("capname")? {
        Some(n) => Some(n),
        None => text_of("capability")?,
    };
    let network = match (text_of("family")?, text_of("sock_type")?) {
        (None, None) => None,
        (f, t) => {
            let mut v: Vec<String> = [f, t].into_iter().flatten().collect();
            if let Some(p) = text_of("protocol")?.filter(|p| p != "0") {
                v.push(format!("protocol {p}"));
            }
            Some(v.join(" "))
        }
    };
    Ok(Some(Record {
        outcome,
        operation: text_of("operation")?.unwrap_or_default(),
        class: text_of("class")?,
        profile,
        name: text_of("name")?,
        requested: text_of("requested_mask")?,
        denied: text_of("denied_mask")?,
        comm: text_of("comm")?,
        pid: get("pid").and_then(|v| v.raw.parse().ok()),
        time,
        info: text_of("info")?,
        capability,
        network,
    }))
}

/// `key=` at the start of the text or after a space (so `xapparmor=` does not count).
fn find_field_start(text: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(key).map(|i| i + from) {
        if i == 0 || matches!(text.as_bytes()[i - 1], b' ' | b':' | b'\t') {
            return Some(i);
        }
        from = i + key.len();
    }
    None
}

/// `audit(1701388800.123:45)` before the fields: (seconds, serial).
fn audit_time(prefix: &str) -> Option<(u64, u32)> {
    let i = prefix.rfind("audit(")?;
    let rest = &prefix[i + 6..];
    let end = rest.find(')')?;
    let (ts, serial) = rest[..end].split_once(':')?;
    let secs = ts.split('.').next()?.parse().ok()?;
    Some((secs, serial.parse().ok()?))
}

/// A field value as it appears in the record.
#[derive(Debug)]
struct Value {
    raw: String,
    quoted: bool,
}

fn split_fields(body: &str) -> Result<Vec<(String, Value)>, DenialError> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else { break };
        let key = &rest[..eq];
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            // Not a field (the kernel's own trailing text, or a journal prefix): skip a word.
            match rest.find(' ') {
                Some(sp) => {
                    rest = &rest[sp..];
                    continue;
                }
                None => break,
            }
        }
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| DenialError::Unterminated(key.to_string()))?;
            (
                Value {
                    raw: q[..end].to_string(),
                    quoted: true,
                },
                &q[end + 1..],
            )
        } else {
            let end = after.find([' ', '\t', '\n', '\r']).unwrap_or(after.len());
            (
                Value {
                    raw: after[..end].to_string(),
                    quoted: false,
                },
                &after[end..],
            )
        };
        if out.iter().any(|(k, _)| k == key) {
            return Err(DenialError::Repeated(key.to_string()));
        }
        out.push((key.to_string(), value));
        rest = next;
    }
    Ok(out)
}

/// The text of a field. Untrusted strings come quoted or hex-encoded; anything else in those
/// fields is refused. The result never contains a control character.
fn decode(key: &str, v: &Value) -> Result<String, DenialError> {
    let s = if v.quoted || !UNTRUSTED.contains(&key) || v.raw == "(null)" {
        v.raw.clone()
    } else {
        let bytes = from_hex(&v.raw).ok_or_else(|| DenialError::NotHex {
            field: key.to_string(),
            value: v.raw.chars().take(64).collect(),
        })?;
        String::from_utf8(bytes).map_err(|_| DenialError::BadText(key.to_string()))?
    };
    if s.chars().any(char::is_control) {
        return Err(DenialError::BadText(key.to_string()));
    }
    Ok(s)
}

/// Upper- or lower-case hex of an even length, as the kernel's `audit_log_n_hex` writes it.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The guest UUID and child profile of a libvirt guest profile name: `libvirt-<uuid>` →
/// `(uuid, None)`, `libvirt-<uuid>//passt` → `(uuid, Some("passt"))`. `None` for every other
/// profile (the record is not about a guest).
pub fn guest_of(profile: &str) -> Option<(uuid::Uuid, Option<String>)> {
    let rest = profile.strip_prefix(crate::domain::PROFILE_PREFIX)?;
    let (id, child) = match rest.split_once("//") {
        Some((id, child)) if !child.is_empty() => (id, Some(child.to_string())),
        Some(_) => return None,
        None => (rest, None),
    };
    if id.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::parse_str(id).ok()?;
    // The profile name is always lower-case hyphenated (libvirt's virUUIDFormat).
    (u.hyphenated().to_string() == id).then_some((u, child))
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "92c4f559-3323-44d7-abd5-34c49aef304a";

    /// Debian 12 (kernel 6.1, AppArmor 3.0): dmesg.
    const DMESG_30: &str = r#"[  812.402611] audit: type=1400 audit(1764545412.395:85): apparmor="DENIED" operation="open" profile="libvirt-92c4f559-3323-44d7-abd5-34c49aef304a" name="/srv/vah/other.img" pid=2719 comm="qemu-system-x86" requested_mask="r" denied_mask="r" fsuid=64055 ouid=0"#;
    /// Ubuntu 24.10 (kernel 6.11, AppArmor 4.1): dmesg, with class= and a hex name.
    const DMESG_41: &str = r#"[ 1043.117210] audit: type=1400 audit(1764545643.110:212): apparmor="ALLOWED" operation="open" class="file" profile="libvirt-92c4f559-3323-44d7-abd5-34c49aef304a" name=2F7372762F6120622E696D67 pid=4410 comm="qemu-system-x86" requested_mask="wr" denied_mask="wr" fsuid=64055 ouid=64055"#;
    /// auditd, raw format (Debian 12).
    const AUDIT_AVC: &str = r#"type=AVC msg=audit(1764545412.395:85): apparmor="DENIED" operation="open" profile="libvirt-92c4f559-3323-44d7-abd5-34c49aef304a" name="/srv/vah/other.img" pid=2719 comm="qemu-system-x86" requested_mask="r" denied_mask="r" fsuid=64055 ouid=0FSUID="libvirt-qemu" OUID="root""#;
    /// auditd, enriched format (`\x1d` then interpreted fields), AppArmor 4.1 (Ubuntu 24.10).
    const AUDIT_1400: &str = "type=1400 msg=audit(1764545643.110:212): apparmor=\"DENIED\" operation=\"file_lock\" class=\"file\" profile=\"libvirt-92c4f559-3323-44d7-abd5-34c49aef304a//passt\" name=\"/run/user/0/libvirt/qemu/run/passt/1-vm-net0.pid\" pid=4471 comm=\"passt.avx2\" requested_mask=\"k\" denied_mask=\"k\" fsuid=0 ouid=0\x1dFSUID=\"root\" OUID=\"root\"";
    /// `journalctl -k -o json`, AppArmor 3.0 (MESSAGE as a string).
    const JOURNAL_30: &str = r#"{"__REALTIME_TIMESTAMP":"1764545412395123","_TRANSPORT":"kernel","SYSLOG_IDENTIFIER":"kernel","PRIORITY":"5","MESSAGE":"audit: type=1400 audit(1764545412.395:85): apparmor=\"DENIED\" operation=\"open\" profile=\"libvirt-92c4f559-3323-44d7-abd5-34c49aef304a\" name=\"/srv/vah/other.img\" pid=2719 comm=\"qemu-system-x86\" requested_mask=\"r\" denied_mask=\"r\" fsuid=64055 ouid=0","_BOOT_ID":"3b1e1f3a0cbb4bd6a1f0c1d2e3f4a5b6"}"#;

    fn journal_bytes(msg: &[u8]) -> String {
        let nums: Vec<String> = msg.iter().map(|b| b.to_string()).collect();
        format!(
            r#"{{"_TRANSPORT":"kernel","MESSAGE":[{}],"PRIORITY":"5"}}"#,
            nums.join(",")
        )
    }

    #[test]
    fn kernel_lines_of_3_0_and_4_1() {
        let r = parse_line(DMESG_30).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Denied);
        assert_eq!(r.operation, "open");
        assert_eq!(r.profile, format!("libvirt-{U}"));
        assert_eq!(r.name.as_deref(), Some("/srv/vah/other.img"));
        assert_eq!(r.requested.as_deref(), Some("r"));
        assert_eq!(r.pid, Some(2719));
        assert_eq!(r.time, Some((1764545412, 85)));
        assert!(r.is_file());
        let r = parse_line(DMESG_41).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Allowed);
        assert_eq!(r.class.as_deref(), Some("file"));
        assert_eq!(r.name.as_deref(), Some("/srv/a b.img"));
        assert_eq!(r.requested.as_deref(), Some("wr"));
    }

    #[test]
    fn audit_log_lines() {
        let r = parse_line(AUDIT_AVC).unwrap().unwrap();
        assert_eq!(r.name.as_deref(), Some("/srv/vah/other.img"));
        assert_eq!(r.time, Some((1764545412, 85)));
        let r = parse_line(AUDIT_1400).unwrap().unwrap();
        assert_eq!(r.profile, format!("libvirt-{U}//passt"));
        assert_eq!(r.operation, "file_lock");
        assert_eq!(
            guest_of(&r.profile),
            Some((uuid::Uuid::parse_str(U).unwrap(), Some("passt".into())))
        );
    }

    #[test]
    fn journal_json_string_and_byte_array() {
        let r = parse_line(JOURNAL_30).unwrap().unwrap();
        assert_eq!(r.name.as_deref(), Some("/srv/vah/other.img"));
        // AppArmor 4.1 kernel message, stored by journald as a byte array.
        let msg = DMESG_41.split_once("] ").unwrap().1;
        let r = parse_line(&journal_bytes(msg.as_bytes())).unwrap().unwrap();
        assert_eq!(r.name.as_deref(), Some("/srv/a b.img"));
        assert_eq!(r.outcome, Outcome::Allowed);
        // journald's audit transport (no `audit: type=` prefix).
        let j = r#"{"_TRANSPORT":"audit","MESSAGE":"AVC apparmor=\"DENIED\" operation=\"open\" profile=\"libvirt-92c4f559-3323-44d7-abd5-34c49aef304a\" name=\"/x\" requested_mask=\"r\" denied_mask=\"r\""}"#;
        assert_eq!(parse_line(j).unwrap().unwrap().name.as_deref(), Some("/x"));
        assert!(
            parse_line(r#"{"MESSAGE":"eth0: link up"}"#)
                .unwrap()
                .is_none()
        );
        assert!(parse_line("{not json").is_err());
    }

    #[test]
    fn other_lines_are_not_records() {
        assert_eq!(
            parse_line("[ 1.0] virbr0: port 1(vnet0) entered blocking state"),
            Ok(None)
        );
        let status = r#"audit: type=1400 audit(1.2:3): apparmor="STATUS" operation="profile_load" profile="unconfined" name="libvirt-x" pid=1 comm="apparmor_parser""#;
        assert_eq!(parse_line(status), Ok(None));
        let cap = r#"audit: type=1400 audit(1.2:3): apparmor="DENIED" operation="capable" class="cap" profile="libvirt-92c4f559-3323-44d7-abd5-34c49aef304a" pid=1 comm="qemu" capability=21 capname="sys_admin""#;
        let r = parse_line(cap).unwrap().unwrap();
        assert!(!r.is_file());
        assert_eq!(r.what().as_deref(), Some("capability sys_admin"));
        let cap = cap.replace(r#" capname="sys_admin""#, "");
        let r = parse_line(&cap).unwrap().unwrap();
        assert_eq!(r.what().as_deref(), Some("capability 21"));
        let net = r#"audit: type=1400 audit(1.2:3): apparmor="DENIED" operation="create" class="net" profile="libvirt-92c4f559-3323-44d7-abd5-34c49aef304a" pid=1 comm="qemu" family="inet6" sock_type="raw" protocol=58 requested_mask="create" denied_mask="create""#;
        let r = parse_line(net).unwrap().unwrap();
        assert!(!r.is_file());
        assert_eq!(r.what().as_deref(), Some("network inet6 raw protocol 58"));
    }

    #[test]
    fn hostile_names_never_forge_fields() {
        // A path with a quote and a space is hex-encoded by the kernel: decoded to exactly it.
        let path = "/srv/x\" name=\"/etc/shadow";
        let hex: String = path.bytes().map(|b| format!("{b:02X}")).collect();
        let line = format!(
            r#"audit: type=1400 audit(1.0:1): apparmor="DENIED" operation="open" profile="libvirt-{U}" name={hex} requested_mask="r" denied_mask="r""#
        );
        assert_eq!(
            parse_line(&line).unwrap().unwrap().name.as_deref(),
            Some(path)
        );
        // A repeated field (a forged second name) is refused, not resolved either way.
        let forged = format!(
            r#"apparmor="DENIED" operation="open" profile="libvirt-{U}" name="/a" name="/etc/shadow" requested_mask="r""#
        );
        assert_eq!(
            parse_line(&forged),
            Err(DenialError::Repeated("name".into()))
        );
        // A bare name that is not hex, a newline (hex 0A) inside a name, an open quote.
        let bare = format!(r#"apparmor="DENIED" profile="libvirt-{U}" name=/etc/x"#);
        assert!(matches!(parse_line(&bare), Err(DenialError::NotHex { .. })));
        let nl = format!(r#"apparmor="DENIED" profile="libvirt-{U}" name=2F610A2F62"#);
        assert_eq!(parse_line(&nl), Err(DenialError::BadText("name".into())));
        let open = format!(r#"apparmor="DENIED" profile="libvirt-{U}" name="/a"#);
        assert!(matches!(
            parse_line(&open),
            Err(DenialError::Unterminated(_))
        ));
        let notutf8 = format!(r#"apparmor="DENIED" profile="libvirt-{U}" name=2FFF"#);
        assert_eq!(
            parse_line(&notutf8),
            Err(DenialError::BadText("name".into()))
        );
        // Globs stay literal text here; escaping is the rule writer's job.
        let glob = format!(
            r#"apparmor="DENIED" profile="libvirt-{U}" name="/srv/*/{{a,b}}" requested_mask="r""#
        );
        assert_eq!(
            parse_line(&glob).unwrap().unwrap().name.as_deref(),
            Some("/srv/*/{a,b}")
        );
        assert_eq!(
            parse_line(&"x".repeat(MAX_LINE + 1)),
            Err(DenialError::TooLong)
        );
    }

    #[test]
    fn guest_profile_names() {
        let u = uuid::Uuid::parse_str(U).unwrap();
        assert_eq!(guest_of(&format!("libvirt-{U}")), Some((u, None)));
        assert_eq!(guest_of(&format!("libvirt-{}", U.to_uppercase())), None);
        assert_eq!(guest_of(&format!("libvirt-{U}//")), None);
        assert_eq!(guest_of("libvirtd"), None);
        assert_eq!(guest_of("libvirt-1234"), None);
    }
}
