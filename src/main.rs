//! `virt-aa-hook`: the libvirt qemu hook, the emulator wrapper and the admin command, in one
//! small binary that does not link libvirt (start-up time on every guest event).
//!
//! Dispatch on the name it runs as:
//! - `.../hooks/qemu` or anything in `.../hooks/qemu.d/` → hook event;
//! - `virt-aa-helper` → helper mode: libvirt's AppArmor driver runs us in place of its own
//!   helper (`/usr/lib/libvirt/virt-aa-helper` is a symlink to this binary; see `helper`);
//! - `virt-aa-hook.<emulator>` → emulator wrapper;
//! - otherwise the admin command line. The other commands (`caps`, `doctor`, `status`, `gc`,
//!   `enroll`, `unenroll`, `setup-links`, `remove-links`, `complain`, `enforce`, `explain`) are
//!   run by `virt-aa-hook-libvirt` next to this binary: they talk to libvirt, or write what
//!   this binary's AppArmor profile does not allow (that binary has a profile of its own).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use virt_aa_hook::config::Config;
use virt_aa_hook::generate::GenerateError;
use virt_aa_hook::host::{self, Host};
use virt_aa_hook::profile::Mode;
use virt_aa_hook::{helper, wrapper};

#[derive(Parser)]
#[command(
    name = "virt-aa-hook",
    version,
    about = "Per-guest AppArmor profiles for libvirt/QEMU guests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Libvirt,
    Standalone,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the rules (or with --profile the whole profile) for a domain XML. No side effects.
    Generate {
        /// Print the complete profile exactly as it would be installed.
        #[arg(long)]
        profile: bool,
        /// Render for this mode (default: the mode the hook would use on this host).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Do not read image headers to find backing chains.
        #[arg(long)]
        no_probe: bool,
        /// Domain XML file (default: standard input).
        file: Option<PathBuf>,
    },
    /// Run one hook event by hand: `virt-aa-hook hook <domain> <op> <sub-op> [extra] < xml`.
    Hook {
        #[arg(num_args = 2..=4, required = true)]
        args: Vec<String>,
    },
    /// Answer libvirt's AppArmor driver by hand, as virt-aa-helper would be run:
    /// `virt-aa-hook helper -- -r -u libvirt-<uuid> [-F FILE] < xml`.
    Helper {
        #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Commands that talk to libvirt (run by virt-aa-hook-libvirt).
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = PathBuf::from(args.first().cloned().unwrap_or_default());
    if is_hook_name(&argv0) {
        silence_stdout();
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(virt_aa_hook::hook::main(&rest));
    }
    if argv0.file_name().and_then(|n| n.to_str()) == Some(helper::HELPER_NAME) {
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(helper::main(&rest));
    }
    if argv0
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(virt_aa_hook::layout::WRAPPER_PREFIX))
    {
        let rest = args.split_off(1);
        std::process::exit(wrapper::main(&argv0, rest));
    }
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// libvirt runs `/etc/libvirt/hooks/qemu` or `/etc/libvirt/hooks/qemu.d/<anything>`.
fn is_hook_name(argv0: &Path) -> bool {
    let name = argv0.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = argv0
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    name == "qemu" || parent == "qemu.d"
}

/// libvirt parses a hook's stdout as domain XML for migrate/restore: make sure nothing we (or a
/// library) print can reach it.
fn silence_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        // SAFETY: dup2 onto fd 1 with a valid descriptor; no Rust object owns fd 1.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Generate {
            profile,
            mode,
            no_probe,
            file,
        } => cmd_generate(profile, mode, no_probe, file),
        Cmd::Hook { args } => {
            silence_stdout();
            Ok(virt_aa_hook::hook::main(&args))
        }
        Cmd::Helper { args } => Ok(helper::main(&args)),
        Cmd::External(args) => exec_admin(args),
    }
}

fn cmd_generate(
    full: bool,
    mode: Option<ModeArg>,
    no_probe: bool,
    file: Option<PathBuf>,
) -> Result<i32> {
    let xml = match &file {
        Some(f) => host::read_xml(&mut fs_err::File::open(f)?)?,
        None => host::read_xml(&mut std::io::stdin().lock())?,
    };
    let cfg = Config::load()?;
    let host = Host::new(cfg);
    let mode = match mode {
        Some(ModeArg::Libvirt) => Mode::Libvirt,
        Some(ModeArg::Standalone) => Mode::Standalone,
        None => host.mode().0,
    };
    let mut opts = host.derive_options();
    opts.probe_backing = opts.probe_backing && !no_probe;
    let dom = virt_aa_hook::domain::Domain::parse(&xml).map_err(GenerateError::from)?;
    // The hook's own rendering (same template fallback, same warnings): what is printed is
    // exactly what would be installed.
    let mut warnings = Vec::new();
    let g = host.profiles().render(dom, mode, &opts, &mut warnings)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let out = if full { &g.profile } else { &g.rules_text };
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing to stdout")?;
    // The process ends right after this: freeing tens of thousands of small strings of a
    // 1000-disk guest's tree one by one cost ~25% of the run (callgrind) for nothing.
    std::mem::forget(g);
    Ok(0)
}

fn exec_admin(args: Vec<OsString>) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let admin = virt_aa_hook::caps::admin_binary();
    if !admin.exists() {
        bail!(
            "'{}' needs {} (the libvirt-linked half of virt-aa-hook), which is not installed",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            admin.display()
        );
    }
    let err = std::process::Command::new(&admin).args(&args).exec();
    bail!("cannot run {}: {err}", admin.display())
}
