//! `urunc-deploy configure|unconfigure --config FILE`: adds the urunc runtime handler to
//! containerd's configuration file, or removes it. Used by
//! deploy/kubernetes/install.sh; see docs/kubernetes.md.
//!
//! The first line of the output is `changed` or `unchanged` (then one line per edit);
//! the file is only written when it changes (a temporary file beside it, then renamed,
//! keeping its permissions). Exit status 1 and one `urunc-deploy: ...` line on error.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use urunc_deploy::{configure, unconfigure, ConfigVersion, Options, Outcome};

#[derive(Parser)]
#[command(
    name = "urunc-deploy",
    version,
    about = "Adds the urunc runtime handler to containerd's configuration, or removes it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add the runtime handler (idempotent: a second run changes nothing).
    Configure(Common),
    /// Remove what `configure` added (the handler; the runc table and
    /// restrict_oom_score_adj if configure added them; the file if configure created it).
    Unconfigure(Common),
}

#[derive(Args)]
struct Common {
    /// containerd's configuration file.
    #[arg(long, default_value = "/etc/containerd/config.toml")]
    config: PathBuf,
    /// The node's containerd version (`1.7.2`, `v2.0.5`, `containerd://2.0.5-k3s1`, or
    /// `containerd --version`'s output): chooses the format of a file that does not
    /// exist yet. An existing file's `version` always wins.
    #[arg(long, value_name = "VERSION")]
    containerd_version: Option<String>,
    /// The runtime handler (the RuntimeClass's `handler`).
    #[arg(long, default_value = "urunc")]
    handler: String,
    /// The containerd runtime (shim) name.
    #[arg(long, default_value = "io.containerd.urunc.v2")]
    runtime_type: String,
    /// Annotation patterns passed through to the runtime (repeatable).
    #[arg(long = "annotation", value_name = "PATTERN", default_values_t = vec!["com.urunc.*".to_string()])]
    annotations: Vec<String>,
    /// Also set the CRI plugin's restrict_oom_score_adj = true (for containerd running
    /// without CAP_SYS_RESOURCE, e.g. inside a VM or container).
    #[arg(long)]
    restrict_oom_score_adj: bool,
    /// Print the result instead of writing it.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("urunc-deploy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let (common, add) = match cli.command {
        Command::Configure(c) => (c, true),
        Command::Unconfigure(c) => (c, false),
    };
    let new_file_version = common
        .containerd_version
        .as_deref()
        .map(ConfigVersion::for_containerd)
        .transpose()
        .map_err(|e| e.to_string())?;
    let opts = Options {
        handler: common.handler,
        runtime_type: common.runtime_type,
        annotations: common.annotations,
        restrict_oom_score_adj: common.restrict_oom_score_adj,
        new_file_version,
    };
    let path = common.config.as_path();
    let existing = match fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let result = if add {
        configure(existing.as_deref(), &opts)
    } else {
        unconfigure(existing.as_deref(), &opts)
    };
    let outcome = result.map_err(|e| format!("{}: {e}", path.display()))?;
    report(path, &outcome);
    if common.dry_run {
        if let Some(text) = &outcome.text {
            print!("{text}");
        }
        return Ok(());
    }
    if outcome.changed {
        write(path, outcome.text.as_deref()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn report(path: &Path, outcome: &Outcome) {
    if outcome.changed {
        println!("changed {} ({})", path.display(), outcome.version);
        for a in &outcome.actions {
            println!("  {a}");
        }
    } else {
        println!("unchanged {} ({})", path.display(), outcome.version);
    }
}

/// Replaces (or removes) the file atomically, keeping its permissions.
fn write(path: &Path, text: Option<&str>) -> std::io::Result<()> {
    let Some(text) = text else {
        return match fs::remove_file(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            r => r,
        };
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir)?;
        }
    }
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".urunc-deploy.tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}
