//! Structured records for journald, so a fleet collects hook events with the agents it already
//! runs (journald forwarders, `journalctl -o json`), filtered by field instead of by grep.
//!
//! The native protocol is small enough to speak directly: one datagram to
//! `/run/systemd/journal/socket` holding `KEY=value\n` lines, or `KEY\n<u64 LE length><value>\n`
//! for a value with a newline. The hook must never wait for journald (libvirt waits for the hook),
//! so the socket is non-blocking and every error — no journald, a full queue, a datagram too
//! large — is ignored: the log file stays the record of what happened.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// `SYSLOG_IDENTIFIER` of our records: `journalctl -t virt-aa-hook`.
pub const IDENTIFIER: &str = "virt-aa-hook";

/// Whether a field name is one journald accepts: `A-Z`, `0-9`, `_`, not starting with `_` or a
/// digit (those are trusted fields journald sets itself).
pub fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !k.starts_with('_')
        && !k.as_bytes()[0].is_ascii_digit()
}

/// Encode fields as one native-protocol datagram. Invalid keys are dropped.
pub fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for (k, v) in fields {
        if !valid_key(k) {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Send one record if journald's socket exists; never blocks, never fails. Returns whether the
/// datagram was handed to the kernel.
pub fn send(socket: &Path, fields: &[(&str, &str)]) -> bool {
    if !socket.exists() {
        return false;
    }
    let Ok(s) = UnixDatagram::unbound() else {
        return false;
    };
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    s.send_to(&encode(fields), socket).is_ok()
}

/// syslog priority of a log level (`PRIORITY=`).
pub fn priority(level: crate::log::Level) -> &'static str {
    match level {
        crate::log::Level::Error => "3",
        crate::log::Level::Warn => "4",
        crate::log::Level::Info => "6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        let d = encode(&[
            ("MESSAGE", "one"),
            ("VAH_RESULT", "a\nb"),
            ("bad key", "x"),
            ("_PID", "1"),
        ]);
        let mut want = b"MESSAGE=one\nVAH_RESULT\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(d, want);
    }

    #[test]
    fn sends_to_a_real_socket_and_never_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("socket");
        assert!(!send(&p, &[("MESSAGE", "x")]));
        let rx = UnixDatagram::bind(&p).unwrap();
        assert!(send(
            &p,
            &[("MESSAGE", "hello"), ("VAH_EVENT", "prepare/begin")]
        ));
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"MESSAGE=hello\nVAH_EVENT=prepare/begin\n");
        // A full queue (nobody reading) makes send return false at once instead of blocking.
        let t = std::time::Instant::now();
        let mut sent = 0;
        while send(&p, &[("MESSAGE", &"x".repeat(1000))]) && sent < 100_000 {
            sent += 1;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        assert!(sent < 100_000);
    }
}
