//! `explain --apply`: add rules to a guest's local file
//! (`/etc/apparmor.d/local/libvirt/libvirt-<uuid>`) and reload its profile.
//!
//! The local file is the admin's; we only ever add or widen lines (see
//! [`crate::explain::merge_local`]), under the guest's lock so no hook event regenerates the
//! profile meanwhile. The file is replaced atomically, and if the profile then fails to
//! compile or load, the previous file is put back: old or new, never a broken guest profile.

use crate::config::Config;
use crate::explain;
use crate::store;
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

/// Merge `rules` into the guest's local file and have the lifecycle reload its profile
/// ([`crate::lifecycle::Profiles::reload`]: `apparmor_parser -r`, or only a compile check when
/// it is not loaded: kernel without AppArmor, guest not running).
pub fn apply(cfg: &Config, uuid: &Uuid, rules: &[String]) -> Result<Applied, ApplyError> {
    let profile = crate::domain::profile_name(uuid);
    let io = |err| ApplyError::Io {
        profile: profile.clone(),
        err,
    };
    let _lock = crate::lifecycle::Profiles::new(cfg)
        .lock(&uuid.hyphenated().to_string())
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
    let profiles = crate::lifecycle::Profiles::new(cfg);
    let main = profiles.path(&profile);
    let result = if profiles.parser().is_err() {
        Ok("not checked: apparmor_parser not found".to_string())
    } else if !main.exists() {
        Ok(format!(
            "{} does not exist yet: the rules apply when the guest starts",
            main.display()
        ))
    } else {
        match profiles.reload(&profile) {
            Ok(true) => Ok(format!("reloaded {profile}")),
            Ok(false) => Ok(format!(
                "compile ok, {profile} not loaded: the rules apply when it is"
            )),
            Err(e) => Err(e.to_string()),
        }
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
