//! `virt-aa-hook-libvirt`: the libvirt-linked half of the `virt-aa-hook` command line.
//!
//! `virt-aa-hook caps|doctor|status|gc|enroll|unenroll|complain|enforce|explain ...` execs this binary (found next to
//! itself), so the hook and the emulator wrapper — which run on every guest event — never load
//! libvirt. `setup-links` / `remove-links` (no libvirt call) are here because this binary runs
//! under its own AppArmor profile (usr.lib.libvirt.virt-aa-hook-libvirt), which may make the
//! wrappers in /usr/lib/libvirt; virt-aa-hook's profile must not let the hook write there. Every libvirt call here is bounded by `--timeout`: a daemon that does not answer
//! produces a clear message instead of a hung command.

mod admin;

use admin::conn::Libvirt;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use virt_aa_hook::config::Config;

/// Default deadline for one libvirt conversation, except `caps`.
const DEFAULT_TIMEOUT: u64 = 30;
/// `caps` may make libvirt probe QEMU binaries (seconds each on a slow or nested host).
const CAPS_TIMEOUT: u64 = 120;

#[derive(Parser)]
#[command(
    name = "virt-aa-hook",
    bin_name = "virt-aa-hook",
    version,
    about = "Per-guest AppArmor profiles for libvirt/QEMU guests: the commands that talk to libvirt"
)]
struct Cli {
    /// libvirt connection URI (default: `connect` from the config, qemu:///system).
    #[arg(long, short = 'c', global = true, value_name = "URI")]
    connect: Option<String>,
    /// Give up on libvirt after this many seconds (default 30; 120 for caps).
    #[arg(long, global = true, value_name = "SECS")]
    timeout: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ask libvirt about this host and write the capability cache the hook reads.
    Caps {
        /// Print the cache as JSON instead of the summary.
        #[arg(long)]
        json: bool,
        /// How the hook starts it: silent, one at a time, retries a daemon that is starting.
        #[arg(long)]
        background: bool,
        /// Also touch every emulator wrapper so libvirt re-probes QEMU (after a QEMU upgrade).
        #[arg(long)]
        refresh: bool,
    },
    /// Check everything guests need to be confined; one line per check, exit 1 on failure.
    Doctor,
    /// Show every defined guest: profile, kernel state, enrollment, last event.
    Status {
        /// Only this guest (name or UUID).
        domain: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove our profiles of guests libvirt no longer knows.
    Gc {
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run guests' QEMU through the confining wrapper (standalone mode).
    Enroll {
        /// Guest names or UUIDs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        domains: Vec<String>,
        /// Every persistent QEMU guest.
        #[arg(long)]
        all: bool,
    },
    /// Make the emulator wrappers (one hard link per qemu-system-* in emulator_dir) match the
    /// installed binary and emulators; run by the package's postinst and trigger. Idempotent.
    SetupLinks,
    /// Remove every emulator wrapper; run by the package's prerm.
    RemoveLinks,
    /// Explain AppArmor denials of guests (kernel log, journal or audit.log) and how to fix them.
    Explain {
        /// Only records at or after TIME: @EPOCH, YYYY-MM-DD[ HH:MM[:SS]] (UTC), or N[smhd] (ago).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only this guest (name or UUID).
        #[arg(long, value_name = "NAME|UUID")]
        guest: Option<String>,
        /// Add the site-specific rules to the guests' local files and reload their profiles.
        #[arg(long)]
        apply: bool,
        /// Read records from FILE (audit.log, saved dmesg or `journalctl -o json` output; `-` for
        /// stdin) instead of the host's log.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
    /// Put a guest's profile in complain mode (log, do not deny); reloads a running guest's.
    Complain {
        /// Guest name or UUID.
        domain: String,
    },
    /// Put a guest's profile back in enforce mode; reloads a running guest's.
    Enforce {
        /// Guest name or UUID.
        domain: String,
    },
    /// Let a guest open PATH (a file; with --tree a directory and everything below it) outside
    /// its definition: adds the escaped rule to its local file and reloads a running guest's
    /// profile. Host system paths, the locations `explain --apply` never writes and other
    /// guests' files are refused; device nodes need --device. For scripts in standalone mode
    /// (hotplug, snapshot overlays, block-commit targets) and paths libvirt never labels.
    Grant {
        /// Guest name or UUID.
        domain: String,
        /// Absolute paths.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Read access only (default: read, write and lock).
        #[arg(long)]
        read_only: bool,
        /// Each PATH is a directory: grant it and everything below it.
        #[arg(long)]
        tree: bool,
        /// Allow device nodes (`/dev/...`): never granted without it. Kernel interfaces (kmsg,
        /// watchdogs, memory, consoles) stay refused.
        #[arg(long)]
        device: bool,
    },
    /// Restore guests' original emulator.
    Unenroll {
        /// Guest names or UUIDs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        domains: Vec<String>,
        /// Every enrolled guest.
        #[arg(long)]
        all: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let background = matches!(
        cli.cmd,
        Cmd::Caps {
            background: true,
            ..
        }
    );
    let code = match run(cli) {
        Ok(c) => c,
        Err(e) => {
            if !background {
                eprintln!("error: {e:#}");
            }
            1
        }
    };
    std::process::exit(code);
}

fn targets(domains: Vec<String>, all: bool) -> admin::enroll::Targets {
    if all {
        admin::enroll::Targets::All
    } else {
        admin::enroll::Targets::Named(domains)
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::SetupLinks => return links(true),
        Cmd::RemoveLinks => return links(false),
        _ => {}
    }
    let cfg = Config::load()?;
    let uri = cli.connect.clone().unwrap_or_else(|| cfg.connect.clone());
    let default = if matches!(cli.cmd, Cmd::Caps { .. }) {
        CAPS_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    };
    let lv = Libvirt::new(
        &uri,
        Duration::from_secs(cli.timeout.unwrap_or(default).max(1)),
    );
    match cli.cmd {
        Cmd::Caps {
            json,
            background,
            refresh,
        } => admin::caps::run(
            &cfg,
            &lv,
            &admin::caps::CapsArgs {
                json,
                background,
                refresh,
            },
        ),
        Cmd::Doctor => admin::doctor::run(&cfg, &lv),
        Cmd::Status { domain, json } => admin::status::run(&cfg, &lv, domain.as_deref(), json),
        Cmd::Gc { dry_run } => admin::gc::run(&cfg, &lv, dry_run),
        Cmd::Enroll { domains, all } => admin::enroll::run(&cfg, &lv, targets(domains, all), true),
        Cmd::Explain {
            since,
            guest,
            apply,
            log,
        } => admin::explain::run(&cfg, since, guest, apply, log),
        Cmd::Complain { domain } => admin::mode::run(
            &cfg,
            &lv,
            &domain,
            virt_aa_hook::domain::Enforcement::Complain,
        ),
        Cmd::Enforce { domain } => admin::mode::run(
            &cfg,
            &lv,
            &domain,
            virt_aa_hook::domain::Enforcement::Enforce,
        ),
        Cmd::Grant {
            domain,
            paths,
            read_only,
            tree,
            device,
        } => admin::grant::run(&cfg, &domain, &paths, read_only, tree, device),
        Cmd::Unenroll { domains, all } => {
            admin::enroll::run(&cfg, &lv, targets(domains, all), false)
        }
        Cmd::SetupLinks | Cmd::RemoveLinks => unreachable!("handled above"),
    }
}

/// `setup-links` / `remove-links`. A broken config falls back to the defaults, as the wrapper
/// itself does (wrapper::main), so the links always match what the wrapper will exec.
fn links(setup: bool) -> Result<i32> {
    let cfg = Config::load().unwrap_or_else(|e| {
        eprintln!("warning: {e}; using the default emulator_dir");
        let mut d = Config::default();
        if let Some(r) = std::env::var_os("VIRT_AA_HOOK_ROOT") {
            d.root = r.into();
        }
        d
    });
    let binary = cfg.rooted(Path::new(virt_aa_hook::layout::HOOK_BINARY));
    let libexec = binary.parent().unwrap_or(Path::new("/"));
    let changes = if setup {
        virt_aa_hook::links::setup_links(libexec, &binary, &cfg.rooted(&cfg.emulator_dir))?
    } else {
        virt_aa_hook::links::remove_links(libexec)?
    };
    for c in changes
        .iter()
        .filter(|c| !matches!(c, virt_aa_hook::links::LinkChange::Unchanged(_)))
    {
        println!("{c}");
    }
    Ok(0)
}
