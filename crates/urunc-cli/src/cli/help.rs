//! What `urunc --help` and `urunc <command> --help` print, and the table of
//! subcommands the parser checks names and usage lines against.

pub const VERSION: &str = concat!("urunc version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2");

/// One subcommand: its name, a line about it, its arguments and options.
pub struct Spec {
    pub name: &'static str,
    about: &'static str,
    pub usage: &'static str,
    options: &'static [(&'static str, &'static str)],
}

const GLOBAL_OPTIONS: &[(&str, &str)] = &[
    (
        "--root <dir>",
        "directory for container state (default /run/urunc)",
    ),
    (
        "--log <file>",
        "write log lines to this file (default: stderr)",
    ),
    (
        "--log-format text|json",
        "log line format (default: the configuration file's, else text)",
    ),
    (
        "--config <file>",
        "configuration file (default: $URUNC_CONFIG, else /etc/urunc/config.toml)",
    ),
    ("--debug", "log debug lines too"),
    (
        "--systemd-cgroup",
        "read cgroupsPath in systemd's slice:prefix:name form",
    ),
    ("--rootless[=value]", "accepted for compatibility"),
    ("-h, --help", "print help"),
    ("-v, --version", "print the version"),
];

const CREATE_OPTIONS: &[(&str, &str)] = &[
    (
        "-b, --bundle <dir>",
        "bundle directory (default: the current one)",
    ),
    (
        "--pid-file <file>",
        "write the container process's pid to this file",
    ),
    (
        "--console-socket <socket>",
        "unix socket that receives the pty master when process.terminal is set",
    ),
    (
        "--preserve-fds <n>",
        "pass this many extra file descriptors (from 3) to the container process",
    ),
    ("--no-pivot, --no-new-keyring", "accepted for compatibility"),
];

pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "create",
        about: "create a container (its process waits for `start`)",
        usage: "create [options] <container-id>",
        options: CREATE_OPTIONS,
    },
    Spec {
        name: "start",
        about: "start a created container",
        usage: "start <container-id>",
        options: &[],
    },
    Spec {
        name: "state",
        about: "print the state of a container as JSON",
        usage: "state <container-id>",
        options: &[],
    },
    Spec {
        name: "kill",
        about: "send a signal (default SIGTERM) to a container's process",
        usage: "kill [-a] <container-id> [signal]",
        options: &[(
            "-a, --all",
            "signal all processes in the container's cgroup",
        )],
    },
    Spec {
        name: "delete",
        about: "delete a container and everything urunc made for it",
        usage: "delete [-f] <container-id>",
        options: &[("-f, --force", "kill the container first if it is running")],
    },
    Spec {
        name: "run",
        about: "create and start a container, wait for it, and delete it",
        usage: "run [options] <container-id>",
        options: &[
            ("(create's options)", ""),
            ("-d, --detach", "return after starting instead of waiting"),
            ("--keep", "do not delete the container after it exits"),
        ],
    },
    Spec {
        name: "list",
        about: "list containers",
        usage: "list [-f table|json] [-q]",
        options: &[
            ("-f, --format table|json", "output format (default table)"),
            ("-q, --quiet", "print only ids"),
        ],
    },
    Spec {
        name: "ps",
        about: "list the processes of a container",
        usage: "ps [-f table|json] <container-id> [ps options]",
        options: &[("-f, --format table|json", "output format (default table)")],
    },
    Spec {
        name: "pause",
        about: "freeze a container's VM",
        usage: "pause <container-id>",
        options: &[],
    },
    Spec {
        name: "resume",
        about: "thaw a paused container's VM",
        usage: "resume <container-id>",
        options: &[],
    },
    Spec {
        name: "features",
        about: "print the features this runtime supports as JSON",
        usage: "features",
        options: &[],
    },
    Spec {
        name: "timestamps",
        about: "print a container's start-up timestamps (see docs/performance.md)",
        usage: "timestamps <container-id>",
        options: &[],
    },
    Spec {
        name: "spec",
        about: "write a template config.json for a unikernel container",
        usage: "spec [-b <dir>]",
        options: &[(
            "-b, --bundle <dir>",
            "where to write config.json (default: the current directory)",
        )],
    },
];

fn options_text(out: &mut String, title: &str, options: &[(&str, &str)]) {
    if options.is_empty() {
        return;
    }
    out.push_str(title);
    out.push_str(":\n");
    for (flag, about) in options {
        out.push_str(&format!("  {flag:<30} {about}\n"));
    }
}

pub fn help(command: Option<&str>) -> String {
    let mut out = String::new();
    match command.and_then(|c| COMMANDS.iter().find(|s| s.name == c)) {
        Some(s) => {
            out.push_str(&format!(
                "{}\n\nUsage: urunc [global options] {}\n\n",
                s.about, s.usage
            ));
            options_text(&mut out, "Options", s.options);
        }
        None => {
            out.push_str(
                "runc-compatible OCI runtime that runs unikernels and Linux guests in virtual machines\n\n\
                 Usage: urunc [global options] <command> [options] [arguments]\n\nCommands:\n",
            );
            for s in COMMANDS {
                out.push_str(&format!("  {:<12} {}\n", s.name, s.about));
            }
            out.push_str(
                "  (others)     exec, update, ...: ordinary containers only, handed to runc\n\n",
            );
            options_text(&mut out, "Global options", GLOBAL_OPTIONS);
        }
    }
    out
}
