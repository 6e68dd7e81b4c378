//! `explain --apply`: add rules to a guest's local file
//! (`/etc/apparmor.d/local/libvirt/libvirt-<uuid>`) and reload its profile.
//!
//! The local file is the admin's; we only ever add or widen lines (see
//! [`crate::explain::merge_local`]), under the guest's lock so no hook event regenerates the
//! profile meanwhile. The file is replaced atomically, and if the profile then fails to
//! compile or load, the previous file is put back: old or new, never a broken guest profile.

use crate::aaparser::Parser;
use crate::config::Config;
use crate::explain;
use crate::store::{self, GuestLock};
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

/// Why the rules could not be applied (nothing changed on disk then).
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("{profile}: {err}")]
    Io {
        profile: String,
        err: std::io::Error,
    },
    #[error(
        "{profile}: the profile does not accept the new rules ({err}); local file left as it was"
    )]
    Reload { profile: String, err: String },
}

/// What `apply` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Every rule was already there.
    Unchanged,
    /// File written; and how the profile took it (`reloaded`, `compile ok, not loaded: …`).
    Written(String),
}

/// Merge `rules` into the guest's local file and reload its profile (`apparmor_parser -r`),
/// or only compile-check it when it is not loaded (kernel without AppArmor, guest not running).
pub fn apply(
    cfg: &Config,
    parser: Option<&Parser>,
    uuid: &Uuid,
    rules: &[String],
) -> Result<Applied, ApplyError> {
    let profile = crate::domain::profile_name(uuid);
    let io = |err| ApplyError::Io {
        profile: profile.clone(),
        err,
    };
    let _lock = GuestLock::acquire(
        &cfg.rooted(&cfg.state_dir).join("locks"),
        &uuid.hyphenated().to_string(),
        Duration::from_secs(cfg.lock_timeout),
    )
    .map_err(io)?;
    let local = cfg.local_path(&profile);
    let old = store::read_capped(&local).map_err(io)?;
    let old_text = old
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let Some(new) = explain::merge_local(&old_text, rules) else {
        return Ok(Applied::Unchanged);
    };
    if let Some(dir) = local.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    store::write_atomic(&local, new.as_bytes()).map_err(io)?;
    let kernel = crate::apparmorfs::Kernel {
        root: cfg.root.clone(),
    };
    let main = cfg.profile_path(&profile);
    let result = match parser {
        None => Ok("not checked: apparmor_parser not found".to_string()),
        Some(_) if !main.exists() => Ok(format!(
            "{} does not exist yet: the rules apply when the guest starts",
            main.display()
        )),
        Some(p) if kernel.enabled() && kernel.profile_mode(&profile).is_some() => p
            .replace(&main, false)
            .map(|_| format!("reloaded {profile}"))
            .map_err(|e| e.to_string()),
        Some(p) => p
            .check(&main)
            .map(|_| format!("compile ok, {profile} not loaded: the rules apply when it is"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(how) => Ok(Applied::Written(how)),
        Err(err) => {
            let _ = match &old {
                Some(b) => store::write_atomic(&local, b),
                None => store::remove_if_exists(&local).map(|_| ()),
            };
            Err(ApplyError::Reload { profile, err })
        }
    }
}
