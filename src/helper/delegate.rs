//! Guests we do not manage go to the distribution's helper, diverted to
//! `/usr/lib/libvirt/virt-aa-helper.distrib`, with the same arguments and stdin.

use super::{DISTRIB_PATH, HelperError, Outcome};
use crate::host::Host;
use crate::log::Level;
use std::path::Path;

/// Run the distribution's helper for this call and log that we did; its exit status is ours.
pub(super) fn run(
    host: &Host,
    args: &[String],
    xml: Option<&[u8]>,
    who: &str,
    reason: &str,
) -> Result<Outcome, HelperError> {
    let distrib = host.cfg.rooted(Path::new(DISTRIB_PATH));
    if !distrib.exists() {
        return Err(HelperError::NoDistrib {
            reason: reason.to_string(),
            path: distrib,
        });
    }
    let code = run_distrib(&distrib, args, xml);
    host.log.line(
        Level::Info,
        &format!(
            "{who} helper {}: {reason}: handed to {} (exit {code})",
            args.join(" "),
            distrib.display()
        ),
    );
    Ok(Outcome {
        code,
        stderr: vec![],
    })
}

fn run_distrib(distrib: &Path, args: &[String], xml: Option<&[u8]>) -> i32 {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new(distrib)
        .args(args)
        .stdin(if xml.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "virt-aa-helper: error: cannot run {}: {e}",
                distrib.display()
            );
            return 1;
        }
    };
    if let (Some(x), Some(mut si)) = (xml, child.stdin.take()) {
        let _ = si.write_all(x);
    }
    match child.wait() {
        Ok(s) => s.code().unwrap_or(1),
        Err(_) => 1,
    }
}
