//! The command line, shaped like runc's so that containerd, Docker, podman and CRI-O
//! can drive urunc unchanged.
//!
//! Parsed by hand rather than with an argument-parsing crate: every container start
//! runs urunc three times, and building a derive-generated command tree cost about a
//! quarter of a millisecond per run (half of it page faults), a fifth of a whole
//! `urunc start`. The rules are runc's (Go flag style): long options
//! take one or two dashes (`--root X`, `-root=X`), a value-taking option consumes the
//! next argument whatever it looks like, booleans accept `=true`/`=false`, `--` ends
//! the options. As before, global options are also accepted after the subcommand.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::logging::Format;

mod help;
#[cfg(test)]
mod tests;

pub use help::{help, VERSION};
use help::{Spec, COMMANDS};

#[derive(Debug)]
pub struct Cli {
    /// Directory for container state
    pub root: PathBuf,
    /// Write log lines to this file (default: stderr)
    pub log: Option<PathBuf>,
    /// Log line format (default: the configuration file's, else text)
    pub log_format: Option<Format>,
    /// urunc's configuration file (default: $URUNC_CONFIG, else /etc/urunc/config.toml)
    pub config: Option<PathBuf>,
    /// Log debug lines too
    pub debug: bool,
    /// Read cgroupsPath in systemd's slice:prefix:name form
    pub systemd_cgroup: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateArgs {
    /// Path to the bundle directory
    pub bundle: PathBuf,
    /// File to write the container process pid to
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra file descriptors (from 3) to the container process
    pub preserve_fds: i32,
    /// Container id
    pub id: String,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Create(CreateArgs),
    Start {
        id: String,
    },
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: String,
    },
    Delete {
        force: bool,
        id: String,
    },
    Run {
        create: CreateArgs,
        detach: bool,
        keep: bool,
    },
    List {
        format: String,
        quiet: bool,
    },
    Ps {
        format: String,
        id: String,
        ps_args: Vec<String>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Features,
    Timestamps {
        id: String,
    },
    Spec {
        bundle: PathBuf,
    },
    /// exec, update, checkpoint, ...: ordinary containers only, handed to runc.
    Other(Vec<String>),
}

impl Command {
    pub fn name(&self) -> &str {
        match self {
            Command::Create(_) => "create",
            Command::Start { .. } => "start",
            Command::State { .. } => "state",
            Command::Kill { .. } => "kill",
            Command::Delete { .. } => "delete",
            Command::Run { .. } => "run",
            Command::List { .. } => "list",
            Command::Ps { .. } => "ps",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Features => "features",
            Command::Timestamps { .. } => "timestamps",
            Command::Spec { .. } => "spec",
            Command::Other(args) => args.first().map(String::as_str).unwrap_or(""),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Run(Cli),
    /// `--help`, `help [command]`, `<command> --help`: the text to print.
    Help(String),
    Version,
}

/// A command line that cannot be understood, with the logging options seen before
/// the problem so that the error reaches the caller's log file (containerd reads it).
#[derive(Debug)]
pub struct UsageError {
    pub msg: String,
    pub log: Option<PathBuf>,
    pub log_format: Option<Format>,
}

/// The argument list being read, and what was understood so far.
struct Reader {
    args: std::vec::IntoIter<OsString>,
    cli: Cli,
}

/// One option as written: its name without dashes and a value given with `=`.
struct Opt {
    name: String,
    inline: Option<OsString>,
    text: String,
}

impl Reader {
    fn error(&self, msg: String) -> UsageError {
        UsageError {
            msg,
            log: self.cli.log.clone(),
            log_format: self.cli.log_format,
        }
    }

    fn text(&self, arg: OsString) -> Result<String, UsageError> {
        arg.into_string()
            .map_err(|a| self.error(format!("argument {a:?} is not valid UTF-8")))
    }

    /// The option's value: after `=`, else the next argument (whatever it looks like).
    fn value(&mut self, opt: &mut Opt) -> Result<OsString, UsageError> {
        if let Some(v) = opt.inline.take() {
            return Ok(v);
        }
        self.args
            .next()
            .ok_or_else(|| self.error(format!("option {} needs a value", opt.text)))
    }

    fn value_text(&mut self, opt: &mut Opt) -> Result<String, UsageError> {
        let v = self.value(opt)?;
        self.text(v)
    }

    fn flag(&self, opt: &Opt) -> Result<bool, UsageError> {
        match opt.inline.as_ref().map(|v| v.to_str()) {
            None => Ok(true),
            Some(Some("true")) => Ok(true),
            Some(Some("false")) => Ok(false),
            Some(v) => Err(self.error(format!(
                "option {} takes no value or true/false, not {v:?}",
                opt.text
            ))),
        }
    }

    /// Applies `opt` when it is a global option; false when it is not one.
    fn global(&mut self, opt: &mut Opt) -> Result<bool, UsageError> {
        match opt.name.as_str() {
            "root" => self.cli.root = self.value(opt)?.into(),
            "log" => self.cli.log = Some(self.value(opt)?.into()),
            "log-format" => {
                self.cli.log_format = Some(match self.value_text(opt)?.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    other => {
                        return Err(self.error(format!(
                            "option --log-format: expected text or json, not {other:?}"
                        )))
                    }
                })
            }
            "config" => self.cli.config = Some(self.value(opt)?.into()),
            "debug" => self.cli.debug = self.flag(opt)?,
            "systemd-cgroup" => self.cli.systemd_cgroup = self.flag(opt)?,
            // runc's rootless mode is a no-op here (urunc runs as root); its value is
            // optional, so only a recognisable one is taken from the next argument.
            "rootless" => {
                if opt.inline.is_none() {
                    let next = self.args.as_slice().first().and_then(|a| a.to_str());
                    if matches!(next, Some("true" | "false" | "auto")) {
                        self.args.next();
                    }
                }
            }
            "criu" => {
                self.value(opt)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Splits `--name=value`, `-name`, `-x`; None for a positional argument.
fn option(arg: &OsString) -> Option<Opt> {
    let s = arg.to_string_lossy();
    if s.len() < 2 || !s.starts_with('-') {
        return None;
    }
    let body = s.strip_prefix("--").unwrap_or(&s[1..]);
    let (name, inline) = match body.split_once('=') {
        Some((n, _)) => {
            // The value keeps its exact bytes (a path need not be UTF-8).
            let bytes = arg.as_bytes();
            let at = bytes.iter().position(|&b| b == b'=').expect("found above");
            let v = std::ffi::OsStr::from_bytes(&bytes[at + 1..]);
            (n.to_string(), Some(v.to_os_string()))
        }
        None => (body.to_string(), None),
    };
    Some(Opt {
        name,
        inline,
        text: s.split('=').next().unwrap_or_default().to_string(),
    })
}

/// Parses urunc's arguments (without the program name).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Parsed, UsageError> {
    let mut r = Reader {
        args: args.into_iter().collect::<Vec<_>>().into_iter(),
        cli: Cli {
            root: PathBuf::from(urunc::container::DEFAULT_ROOT),
            log: None,
            log_format: None,
            config: None,
            debug: false,
            systemd_cgroup: false,
            command: Command::Features,
        },
    };
    // Global options, up to the subcommand.
    let name = loop {
        let Some(arg) = r.args.next() else {
            return Ok(Parsed::Help(help(None)));
        };
        let Some(mut opt) = option(&arg) else {
            break r.text(arg)?;
        };
        match opt.name.as_str() {
            "h" | "help" => return Ok(Parsed::Help(help(None))),
            "v" | "V" | "version" => return Ok(Parsed::Version),
            _ => {}
        }
        if !r.global(&mut opt)? {
            return Err(r.error(format!("unknown global option {}", opt.text)));
        }
    };
    if name == "help" {
        let topic = r.args.next().and_then(|a| a.into_string().ok());
        return Ok(Parsed::Help(help(topic.as_deref())));
    }
    let Some(spec) = COMMANDS.iter().find(|s| s.name == name) else {
        // Not ours (exec, update, checkpoint, ...): handed to runc as written.
        let mut all = vec![name];
        for a in r.args.by_ref() {
            all.push(a.to_string_lossy().into_owned());
        }
        r.cli.command = Command::Other(all);
        return Ok(Parsed::Run(r.cli));
    };
    let mut c = CommandArgs::default();
    let mut positional: Vec<String> = Vec::new();
    let mut options_done = false;
    while let Some(arg) = r.args.next() {
        // ps: what follows the id is ps's own arguments.
        if name == "ps" && positional.len() == 1 {
            let mut rest = vec![arg];
            rest.extend(r.args.by_ref());
            if rest.first().is_some_and(|a| a == "--") {
                rest.remove(0);
            }
            for a in rest {
                let a = r.text(a)?;
                positional.push(a);
            }
            break;
        }
        let opt = if options_done { None } else { option(&arg) };
        let Some(mut opt) = opt else {
            if arg == "--" && !options_done {
                options_done = true;
                continue;
            }
            let a = r.text(arg)?;
            positional.push(a);
            continue;
        };
        if matches!(opt.name.as_str(), "h" | "help") {
            return Ok(Parsed::Help(help(Some(spec.name))));
        }
        if !c.option(&mut r, name.as_str(), &mut opt)? && !r.global(&mut opt)? {
            return Err(r.error(format!(
                "{name}: unknown option {} (usage: urunc {})",
                opt.text, spec.usage
            )));
        }
    }
    r.cli.command = c.command(&r, spec, positional)?;
    Ok(Parsed::Run(r.cli))
}

/// Every subcommand option, filled in as seen.
#[derive(Default)]
struct CommandArgs {
    bundle: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    preserve_fds: i32,
    all: bool,
    force: bool,
    detach: bool,
    keep: bool,
    quiet: bool,
    format: Option<String>,
}

impl CommandArgs {
    /// Applies `opt` when `command` has it; false when it does not.
    fn option(&mut self, r: &mut Reader, command: &str, opt: &mut Opt) -> Result<bool, UsageError> {
        let creates = matches!(command, "create" | "run");
        match (opt.name.as_str(), command) {
            ("b" | "bundle", _) if creates || command == "spec" => {
                self.bundle = Some(r.value(opt)?.into())
            }
            ("pid-file", _) if creates => self.pid_file = Some(r.value(opt)?.into()),
            ("console-socket", _) if creates => self.console_socket = Some(r.value(opt)?.into()),
            ("preserve-fds", _) if creates => {
                let v = r.value_text(opt)?;
                self.preserve_fds = v.parse().ok().filter(|n: &i32| *n >= 0).ok_or_else(|| {
                    r.error(format!(
                        "option --preserve-fds: expected a count, not {v:?}"
                    ))
                })?;
            }
            ("no-pivot" | "no-new-keyring", _) if creates => {
                r.flag(opt)?;
            }
            ("d" | "detach", "run") => self.detach = r.flag(opt)?,
            ("keep", "run") => self.keep = r.flag(opt)?,
            ("a" | "all", "kill") => self.all = r.flag(opt)?,
            ("f" | "force", "delete") => self.force = r.flag(opt)?,
            ("f" | "format", "list" | "ps") => self.format = Some(r.value_text(opt)?),
            ("q" | "quiet", "list") => self.quiet = r.flag(opt)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn command(self, r: &Reader, spec: &Spec, mut pos: Vec<String>) -> Result<Command, UsageError> {
        let usage = |what: &str| {
            r.error(format!(
                "{}: {what} (usage: urunc {})",
                spec.name, spec.usage
            ))
        };
        // Positionals: (required, optional) counts; ps keeps any extra as ps's arguments.
        let (required, optional) = match spec.name {
            "features" | "list" | "spec" => (0, 0),
            "kill" => (1, 1),
            "ps" => (1, usize::MAX),
            _ => (1, 0),
        };
        if pos.len() < required {
            return Err(usage("missing container id"));
        }
        if pos.len() > required.saturating_add(optional) {
            return Err(usage(&format!(
                "unexpected argument {:?}",
                pos[required + optional]
            )));
        }
        let mut pos = pos.drain(..);
        let id = pos.next().unwrap_or_default();
        let format = self.format.unwrap_or_else(|| "table".into());
        let create = || CreateArgs {
            bundle: self.bundle.clone().unwrap_or_else(|| PathBuf::from(".")),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            id: id.clone(),
        };
        Ok(match spec.name {
            "create" => Command::Create(create()),
            "run" => Command::Run {
                create: create(),
                detach: self.detach,
                keep: self.keep,
            },
            "start" => Command::Start { id },
            "state" => Command::State { id },
            "kill" => Command::Kill {
                all: self.all,
                signal: pos.next().unwrap_or_else(|| "SIGTERM".into()),
                id,
            },
            "delete" => Command::Delete {
                force: self.force,
                id,
            },
            "list" => Command::List {
                format,
                quiet: self.quiet,
            },
            "ps" => Command::Ps {
                format,
                id,
                ps_args: pos.collect(),
            },
            "pause" => Command::Pause { id },
            "resume" => Command::Resume { id },
            "features" => Command::Features,
            "timestamps" => Command::Timestamps { id },
            "spec" => Command::Spec {
                bundle: self.bundle.unwrap_or_else(|| PathBuf::from(".")),
            },
            other => unreachable!("{other} is in COMMANDS"),
        })
    }
}
