//! libvirt's command line to the helper (`vahParseArgv`'s options) → what to do, pure.

use crate::paths;

/// What libvirt asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `-a`: load the existing profile.
    Load,
    /// `-c`: create (the main file did not exist when libvirt looked).
    Create,
    /// `-r`: regenerate and reload.
    Replace,
    /// `-R`: unload.
    Unload,
    /// `-D`: unload and delete the generated rules.
    Delete,
}

/// A file named with `-f` (add to a profile generated from the XML) or `-F` (append to the
/// existing one). We treat both the same: the file joins the guest's extra files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraFile {
    pub path: String,
    pub append: bool,
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    /// `libvirt-<uuid>`, validated.
    pub profile: String,
    pub file: Option<ExtraFile>,
    pub dry_run: bool,
}

/// What to do, decided from the command line alone (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `-h`: usage on stdout, exit 0.
    Usage,
    /// Read the XML on stdin, generate, write, load (unless dry run).
    Generate {
        profile: String,
        file: Option<ExtraFile>,
        dry_run: bool,
        create: bool,
    },
    /// Load the main file as it is.
    Load { profile: String },
    /// Unload; with `delete`, also remove `.files` and our main file.
    Unload { profile: String, delete: bool },
}

impl Plan {
    /// Whether libvirt sends the domain XML on stdin for this call.
    pub fn reads_stdin(&self) -> bool {
        matches!(self, Plan::Generate { .. })
    }
}

/// A command line libvirt would never send; printed as `virt-aa-helper: error: <msg>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unsupported option {0:?}")]
    Unsupported(String),
    #[error("option {0} needs an argument")]
    MissingValue(String),
    #[error("invalid UUID {0:?} (expected libvirt-<uuid>)")]
    BadUuid(String),
    #[error("no command (-c, -r, -a, -R or -D)")]
    NoCommand,
    #[error("invalid file name {0:?}")]
    BadFile(String),
}

/// Parse libvirt's arguments (getopt style: `-u X`, `-uX`, `--uuid X`, `--uuid=X`; the last
/// command wins, as in `vahParseArgv`).
pub fn parse_args(args: &[String]) -> Result<Option<Args>, ArgError> {
    let mut command = None;
    let mut uuid: Option<String> = None;
    let mut file = None;
    let mut dry_run = false;
    let mut help = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            break;
        }
        // Split into (option letter, inline value).
        let (opt, inline): (char, Option<String>) = if let Some(long) = a.strip_prefix("--") {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let c = match name {
                "add" => 'a',
                "create" => 'c',
                "dryrun" => 'd',
                "delete" => 'D',
                "help" => 'h',
                "replace" => 'r',
                "remove" => 'R',
                "uuid" => 'u',
                "add-file" => 'f',
                "append-file" => 'F',
                "probing" => 'p',
                _ => return Err(ArgError::Unsupported(a.to_string())),
            };
            (c, val)
        } else if let Some(short) = a.strip_prefix('-') {
            let mut chars = short.chars();
            let Some(c) = chars.next() else {
                return Err(ArgError::Unsupported(a.to_string()));
            };
            let rest: String = chars.collect();
            if rest.is_empty() {
                (c, None)
            } else if "ufFpHb".contains(c) {
                (c, Some(rest))
            } else {
                // Clustered flags (`-dr`): expand and re-parse.
                let mut expanded: Vec<String> = short.chars().map(|c| format!("-{c}")).collect();
                expanded.extend_from_slice(&args[i..]);
                let mut head = args[..i - 1].to_vec();
                head.append(&mut expanded);
                return parse_args(&head);
            }
        } else {
            return Err(ArgError::Unsupported(a.to_string()));
        };
        let mut value = || -> Result<String, ArgError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| ArgError::MissingValue(format!("-{opt}")))?;
            i += 1;
            Ok(v)
        };
        match opt {
            'a' => command = Some(Command::Load),
            'c' => command = Some(Command::Create),
            'r' => command = Some(Command::Replace),
            'R' => command = Some(Command::Unload),
            'D' => command = Some(Command::Delete),
            'd' => dry_run = true,
            'h' => help = true,
            'u' => uuid = Some(value()?),
            // Old libvirt: `-p 0|1` (allow disk format probing). Accepted, ignored.
            'p' => {
                value()?;
            }
            'f' | 'F' => {
                let path = value()?;
                file = Some(ExtraFile {
                    path,
                    append: opt == 'F',
                })
            }
            _ => return Err(ArgError::Unsupported(a.to_string())),
        }
    }
    if help {
        return Ok(None);
    }
    let command = command.ok_or(ArgError::NoCommand)?;
    let profile = uuid.ok_or_else(|| ArgError::BadUuid(String::new()))?;
    if !valid_profile_name(&profile) {
        return Err(ArgError::BadUuid(profile));
    }
    if let Some(f) = &file {
        if paths::validate(&f.path).is_err() {
            return Err(ArgError::BadFile(f.path.clone()));
        }
    }
    Ok(Some(Args {
        command,
        profile,
        file,
        dry_run,
    }))
}

/// `libvirt-` + a canonical (lowercase, hyphenated) UUID: the only names libvirt generates, and
/// the only ones that are safe as a file name under the profile directory.
pub fn valid_profile_name(s: &str) -> bool {
    let Some(u) = s.strip_prefix("libvirt-") else {
        return false;
    };
    u.len() == 36 && uuid::Uuid::parse_str(u).is_ok_and(|p| p.hyphenated().to_string() == u)
}

/// argv (after the program name) → plan.
pub fn plan(args: &[String]) -> Result<Plan, ArgError> {
    let Some(a) = parse_args(args)? else {
        return Ok(Plan::Usage);
    };
    Ok(match a.command {
        Command::Create | Command::Replace => Plan::Generate {
            profile: a.profile,
            file: a.file,
            dry_run: a.dry_run,
            create: a.command == Command::Create,
        },
        Command::Load => Plan::Load { profile: a.profile },
        Command::Unload => Plan::Unload {
            profile: a.profile,
            delete: false,
        },
        Command::Delete => Plan::Unload {
            profile: a.profile,
            delete: true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }
    const P: &str = "libvirt-1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    #[test]
    fn libvirt_argv_forms() {
        // load_profile at start: -c when the main file is missing, else -r.
        assert_eq!(
            plan(&a(&format!("-c -u {P}"))).unwrap(),
            Plan::Generate {
                profile: P.into(),
                file: None,
                dry_run: false,
                create: true
            }
        );
        // reload_profile at relabel: -r -F FILE.
        let p = plan(&a(&format!("-r -u {P} -F /var/lib/libvirt/images/a.qcow2"))).unwrap();
        assert_eq!(
            p,
            Plan::Generate {
                profile: P.into(),
                file: Some(ExtraFile {
                    path: "/var/lib/libvirt/images/a.qcow2".into(),
                    append: true
                }),
                dry_run: false,
                create: false
            }
        );
        assert!(p.reads_stdin());
        // remove_profile at stop.
        let d = plan(&a(&format!("-D -u {P}"))).unwrap();
        assert_eq!(
            d,
            Plan::Unload {
                profile: P.into(),
                delete: true
            }
        );
        assert!(!d.reads_stdin());
        // Old libvirt: -p 0|1 first; -R at stop.
        assert!(matches!(
            plan(&a(&format!("-p 0 -r -u {P} -f /x/y.img"))).unwrap(),
            Plan::Generate {
                file: Some(ExtraFile { append: false, .. }),
                ..
            }
        ));
        assert_eq!(
            plan(&a(&format!("-R -u {P}"))).unwrap(),
            Plan::Unload {
                profile: P.into(),
                delete: false
            }
        );
        assert_eq!(
            plan(&a(&format!("-a -u {P}"))).unwrap(),
            Plan::Load { profile: P.into() }
        );
        // Inline values, long forms, clustered flags, help.
        assert!(matches!(
            plan(&a(&format!("-dr -u{P} --append-file=/a/b"))).unwrap(),
            Plan::Generate {
                dry_run: true,
                file: Some(_),
                ..
            }
        ));
        assert_eq!(plan(&a("-h")).unwrap(), Plan::Usage);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for bad in [
            "-r".to_string(),
            format!("-u {P}"),
            "-r -u libvirt-1B4E28BA-2FA1-11D2-883F-0016D3CCA427".into(),
            "-r -u libvirt-../../etc/passwd".into(),
            "-r -u 1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            format!("-r -u {P} -F relative/path"),
            format!("-r -u {P} -F"),
            format!("-x -u {P}"),
            format!("-r -u {P} extra"),
        ] {
            assert!(plan(&a(&bad)).is_err(), "{bad}");
        }
    }
}
