//! libvirt calls with a deadline, and the per-guest facts several commands share.
//!
//! A libvirt client call blocks for as long as the daemon takes; a daemon that is restarting,
//! wedged on a job, or an unanswered socket would hang an admin command forever. Every call here
//! runs on a worker thread that owns its own connection; the caller waits at most the timeout
//! and then reports which URI did not answer. A worker left blocked dies with the process.

use anyhow::{Context, anyhow};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;
use virt::connect::Connect;
use virt::domain::DomainState;
use virt::enumutil::Enum;
use virt_aa_hook::domain::{Domain as DomainDef, GuestSettings};
use virt_aa_hook::layout::WRAPPER_PATH_PREFIX;

/// Why a libvirt call gave no answer. Commands need the distinction: "daemon unreachable"
/// turns the remaining libvirt checks of `doctor` into "not checked", and `caps --background`
/// retries only that case.
#[derive(Debug)]
pub enum LvError {
    /// No connection (socket missing, refused, auth failed) or no answer within the deadline.
    Unreachable(String),
    /// Connected, but a call failed.
    Failed(anyhow::Error),
}

impl std::fmt::Display for LvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LvError::Unreachable(m) => f.write_str(m),
            LvError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for LvError {}

/// Where and how long to talk to libvirt.
#[derive(Clone, Debug)]
pub struct Libvirt {
    /// Connection URI (`qemu:///system`).
    pub uri: String,
    /// Deadline for one `run` (connect plus the closure's calls).
    pub timeout: Duration,
    /// Open a read-only connection (enough for listing; works for non-root users too).
    pub read_only: bool,
}

impl Libvirt {
    /// A read-write connection description.
    pub fn new(uri: &str, timeout: Duration) -> Libvirt {
        Libvirt {
            uri: uri.to_string(),
            timeout,
            read_only: false,
        }
    }

    /// The same, read-only.
    pub fn read_only(&self) -> Libvirt {
        Libvirt {
            read_only: true,
            ..self.clone()
        }
    }

    /// Open a connection on a worker thread, run `f` with it, close it; give up after the
    /// timeout. The closure's own errors come back as [`LvError::Failed`].
    pub fn run<T, F>(&self, f: F) -> Result<T, LvError>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> anyhow::Result<T> + Send + 'static,
    {
        // libvirt's default error handler prints every error to stderr itself; we report each
        // once, in our own words.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let (tx, rx) = mpsc::channel();
        let (closed_tx, closed_rx) = mpsc::channel::<()>();
        let uri = self.uri.clone();
        let ro = self.read_only;
        let spawned = std::thread::Builder::new()
            .name("libvirt".into())
            .spawn(move || {
                let opened = if ro {
                    Connect::open_read_only(Some(&uri))
                } else {
                    Connect::open(Some(&uri))
                };
                let conn = match opened {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(LvError::Unreachable(format!(
                            "cannot connect to libvirt at {uri}: {}",
                            e.message()
                        ))));
                        return;
                    }
                };
                let r = f(&conn).map_err(LvError::Failed);
                let _ = tx.send(r);
                // virt 0.5 panics in Drop when virConnectClose fails; the answer is already sent.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(conn)));
                let _ = closed_tx.send(());
            });
        if let Err(e) = spawned {
            return Err(LvError::Failed(anyhow!("cannot start a thread: {e}")));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(r) => {
                // Wait (briefly) for virConnectClose to finish before the caller returns: a
                // process that exits while this thread still frees libvirt's objects aborts in
                // malloc ("corrupted double-linked list" after `enroll` printed its result, seen
                // once in suite 03). A close that hangs is not waited for beyond CLOSE_WAIT.
                let _ = closed_rx.recv_timeout(CLOSE_WAIT);
                r
            }
            Err(RecvTimeoutError::Timeout) => Err(LvError::Unreachable(format!(
                "libvirt at {} did not answer within {}s (is the daemon hung or still starting?)",
                self.uri,
                self.timeout.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(LvError::Failed(anyhow!(
                "the libvirt call crashed (panic in the binding)"
            ))),
        }
    }
}

/// How long [`Libvirt::run`] waits for the connection to close after the answer came back.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// libvirt's packed version number (major·10⁶ + minor·10³ + micro) as `9.0.0`.
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}

/// The state word `virsh list` uses, so admins see the same vocabulary.
pub fn state_word(s: Enum<DomainState, virt::sys::virDomainState>) -> String {
    match s {
        Enum::Known(k) => match k {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Blocked => "idle",
            DomainState::Paused => "paused",
            DomainState::Shutdown => "in shutdown",
            DomainState::Shutoff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PMSuspended => "pmsuspended",
        }
        .to_string(),
        Enum::Unknown(n) => format!("state {n}"),
    }
}

/// What the persistent definition of a guest says, as far as we care.
#[derive(Clone, Debug, Default)]
pub struct ConfigFacts {
    /// `<domain type=...>`.
    pub virt_type: String,
    /// `<devices><emulator>` of the persistent (inactive) definition.
    pub emulator: Option<String>,
    /// Our `<vah:guest>` metadata.
    pub settings: GuestSettings,
}

/// One defined guest, gathered once so `status`, `doctor` and `gc` agree on the facts.
#[derive(Clone, Debug)]
pub struct GuestInfo {
    /// Guest name, for people.
    pub name: String,
    /// Lowercase hyphenated UUID (libvirt's `virUUIDFormat`).
    pub uuid: String,
    /// State in `virsh list` words.
    pub state: String,
    /// Running (or paused): a live definition exists.
    pub active: bool,
    /// Has a persistent definition (`enroll` can change it).
    pub persistent: bool,
    /// The persistent definition, or why it could not be read.
    pub config: Result<ConfigFacts, String>,
    /// `<emulator>` of the running definition (active guests only).
    pub live_emulator: Option<String>,
}

impl GuestInfo {
    /// Whether the persistent definition runs the guest through our emulator wrapper.
    pub fn enrolled(&self) -> Option<bool> {
        let c = self.config.as_ref().ok()?;
        Some(is_wrapper(c.emulator.as_deref()))
    }

    /// Whether libvirt runs it with QEMU (the only guests we confine).
    pub fn is_qemu(&self) -> bool {
        self.config
            .as_ref()
            .is_ok_and(|c| matches!(c.virt_type.as_str(), "qemu" | "kvm" | "kqemu" | "hvf"))
    }
}

/// Whether an emulator path is one of our wrappers.
pub fn is_wrapper(emulator: Option<&str>) -> bool {
    emulator.is_some_and(|e| e.starts_with(WRAPPER_PATH_PREFIX))
}

fn facts(xml: &str) -> Result<ConfigFacts, String> {
    let d = DomainDef::parse(xml.as_bytes()).map_err(|e| e.to_string())?;
    Ok(ConfigFacts {
        virt_type: d.virt_type,
        emulator: d.emulator,
        settings: d.settings,
    })
}

/// Every defined guest, active and inactive (`virConnectListAllDomains(0)`). Fails as a whole
/// if the list cannot be had: callers such as `gc` must never act on a partial list.
pub fn list_guests(conn: &Connect) -> anyhow::Result<Vec<GuestInfo>> {
    let doms = conn
        .list_all_domains(0)
        .map_err(|e| anyhow!("{}", e.message()))
        .context("cannot list the defined guests")?;
    let mut out = Vec::with_capacity(doms.len());
    for d in doms {
        let uuid = d
            .uuid_string()
            .map_err(|e| anyhow!("cannot read a guest's UUID: {}", e.message()))?
            .to_ascii_lowercase();
        let name = d.name().unwrap_or_else(|_| "?".into());
        let (state, active) = match d.state() {
            Ok((s, _)) => (state_word(s), d.is_active().unwrap_or(false)),
            Err(e) => (format!("? ({})", e.message()), false),
        };
        let persistent = d.is_persistent().unwrap_or(true);
        let config = d
            .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| e.message().to_string())
            .and_then(|x| facts(&x));
        let live_emulator = if active {
            d.xml_desc(0)
                .ok()
                .and_then(|x| facts(&x).ok())
                .and_then(|f| f.emulator)
        } else {
            None
        };
        out.push(GuestInfo {
            name,
            uuid,
            state,
            active,
            persistent,
            config,
            live_emulator,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A virt error as one line of text, for messages.
pub fn msg(e: &virt::error::Error) -> String {
    e.message().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_format_like_virsh() {
        assert_eq!(version_string(9_000_000), "9.0.0");
        assert_eq!(version_string(10_010_003), "10.10.3");
    }

    #[test]
    #[serial_test::serial]
    fn lists_the_test_driver_guest() {
        let lv = Libvirt::new("test:///default", Duration::from_secs(20));
        let g = lv.run(list_guests).unwrap();
        let t = g.iter().find(|g| g.name == "test").expect("guest 'test'");
        assert_eq!(t.uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
        assert_eq!(t.state, "running");
        assert_eq!(t.enrolled(), Some(false));
        assert!(!t.is_qemu());
    }

    #[test]
    fn unanswered_socket_fails_promptly() {
        let lv = Libvirt::new(
            "qemu+unix:///system?socket=/nonexistent/vah.sock",
            Duration::from_secs(20),
        );
        let t = std::time::Instant::now();
        let e = lv.run(|c| Ok(c.lib_version()?)).unwrap_err();
        assert!(matches!(e, LvError::Unreachable(_)), "{e}");
        assert!(e.to_string().contains("cannot connect"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn hung_call_times_out() {
        let lv = Libvirt::new("test:///default", Duration::from_millis(300));
        let e = lv
            .run(|_| {
                std::thread::sleep(Duration::from_secs(5));
                Ok(())
            })
            .unwrap_err();
        assert!(e.to_string().contains("did not answer within"), "{e}");
    }
}
