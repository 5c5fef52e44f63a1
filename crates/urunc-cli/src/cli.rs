//! The command line, shaped like runc's so that containerd, Docker and podman can
//! drive urunc unchanged.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::Format;

#[derive(Parser, Debug)]
#[command(name = "urunc", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2"),
    about = "runc-compatible OCI runtime that runs unikernels and Linux guests in virtual machines")]
pub struct Cli {
    /// Directory for container state
    #[arg(long, global = true, default_value = urunc::container::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write log lines to this file (default: stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format (default: the configuration file's, else text)
    #[arg(long = "log-format", global = true, value_enum)]
    pub log_format: Option<Format>,
    /// urunc's configuration file (default: $URUNC_CONFIG, else /etc/urunc/config.toml)
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log debug lines too
    #[arg(long, global = true)]
    pub debug: bool,
    /// Read cgroupsPath in systemd's slice:prefix:name form
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility (criu path)
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container process pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for compatibility (urunc always pivots into a root of its own)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for compatibility
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (from 3) to the container process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (its process waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Print the state of a container as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's process
    Kill {
        /// Signal all processes in the container's cgroup
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything urunc made for it
    Delete {
        /// Kill the container first if it is running
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it, and delete it
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after starting instead of waiting
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits
        #[arg(long)]
        keep: bool,
    },
    /// List containers
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes of a container
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container's VM
    Pause { id: String },
    /// Thaw a paused container's VM
    Resume { id: String },
    /// Print the features this runtime supports as JSON
    Features,
    /// Print a container's start-up timestamps (kept after delete; see docs/performance.md)
    Timestamps { id: String },
    /// Write a template config.json for a unikernel container
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Ordinary containers only: handed to runc
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_what_containerd_sends() {
        let cli = Cli::try_parse_from([
            "urunc",
            "--root",
            "/run/containerd/runc/default",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.log_format, Some(Format::Json));
        match cli.command {
            Command::Create(a) => {
                assert_eq!(a.id, "c1");
                assert_eq!(a.pid_file.unwrap(), PathBuf::from("/b/init.pid"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["urunc", "kill", "--all", "c1", "9"]).unwrap();
        assert!(matches!(cli.command, Command::Kill { all: true, .. }));
        let cli =
            Cli::try_parse_from(["urunc", "--systemd-cgroup", "delete", "--force", "c1"]).unwrap();
        assert!(cli.systemd_cgroup);
        let cli = Cli::try_parse_from(["urunc", "exec", "--tty", "c1", "sh"]).unwrap();
        assert!(matches!(cli.command, Command::Other(_)));
    }
}
