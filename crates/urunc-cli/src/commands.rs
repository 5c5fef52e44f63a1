//! One function per subcommand. Containers urunc does not own (ordinary bundles, or
//! ids it has no state for) are handed to runc unchanged.

use std::io::Write;

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use urunc::container::{CreateOptions, Created, Runtime};
use urunc::sys::process;

use crate::cli::{Cli, Command, CreateArgs};
use crate::logging::Logger;
use crate::runc;

pub fn dispatch(cli: &Cli, config: &urunc::config::Config, log: &Logger) -> Result<i32> {
    let rt = Runtime {
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
        config: config.clone(),
    };
    let name = cli.command.name();
    log.timestamp(&format!("{name} begins"));
    let result = dispatch_command(cli, &rt, log);
    log.timestamp(&format!("{name} ends"));
    result
}

fn dispatch_command(cli: &Cli, rt: &Runtime, log: &Logger) -> Result<i32> {
    let rt = rt.clone();
    // Commands on runc's containers go to runc as they are. An id nobody has is
    // answered here, as runc would: handed to runc, a command racing a `create` that
    // has not reserved the id yet could act on it (runc's `delete` removes the
    // directory of an id it does not know).
    if let Some(id) = target_id(&cli.command) {
        if !rt.owns(id) {
            // Asked again after the directory test: a `create` may have reserved the
            // id in between (its directory appears holding our state).
            if runc::has_container(&rt.root, id) && !rt.owns(id) {
                log.debug(&format!("{id}: not a urunc container, handing to runc"));
                return Err(runc::exec_delegate());
            }
            if matches!(cli.command, Command::Delete { force: true, .. }) {
                // runc's `delete --force` of an unknown id succeeds too; what a killed
                // `delete` of it may have left goes.
                urunc::container::state::sweep(&rt.root);
                return Ok(0);
            }
        }
    }
    match &cli.command {
        Command::Create(a) => {
            create(&rt, a, log)?;
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(id)?;
            Ok(0)
        }
        Command::State { id } => {
            print_json(&rt.state(id)?)?;
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = process::parse_signal(signal).map_err(anyhow::Error::msg)?;
            rt.kill(id, sig, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            rt.delete(id, *force)?;
            Ok(0)
        }
        Command::Run {
            create: a,
            detach,
            keep,
        } => run(&rt, a, *detach, *keep, log),
        Command::List { format, quiet } => list(&rt, format, *quiet),
        Command::Ps { format, id, .. } => {
            let pids = rt.pids(id)?;
            if format == "json" {
                print_json(&pids)?;
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(0)
        }
        Command::Pause { id } => {
            rt.pause(id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt.resume(id)?;
            Ok(0)
        }
        Command::Timestamps { id } => {
            let dir = urunc::timestamps::directory(&rt.config.timestamps);
            let entries = urunc::timestamps::Log::new(&dir).read(id).with_context(|| {
                format!("no start-up timestamps for {id:?} (enable them with [timestamps] enabled = true or {}=1)", urunc::timestamps::ENV)
            })?;
            println!("container {id}");
            print!("{}", urunc::timestamps::report(&entries));
            Ok(0)
        }
        Command::Features => {
            print_json(&features())?;
            Ok(0)
        }
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists", path.display());
            }
            std::fs::write(&path, serde_json::to_string_pretty(&template_spec())?)
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
        Command::Other(args) => {
            // exec, update, checkpoint, ...: meaningful for ordinary containers only.
            if let Some(id) = args
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-') && rt.owns(a))
            {
                bail!(
                    "{} is not supported for unikernel containers ({id} runs a virtual machine)",
                    args[0]
                );
            }
            log.debug(&format!("{:?}: handled by runc", args.first()));
            Err(runc::exec_delegate())
        }
    }
}

fn target_id(c: &Command) -> Option<&str> {
    match c {
        Command::Start { id }
        | Command::State { id }
        | Command::Kill { id, .. }
        | Command::Delete { id, .. }
        | Command::Ps { id, .. }
        | Command::Pause { id }
        | Command::Resume { id } => Some(id),
        _ => None,
    }
}

fn options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    }
}

fn create(rt: &Runtime, a: &CreateArgs, log: &Logger) -> Result<i32> {
    match rt.create(&options(a))? {
        Created::Delegate => {
            log.debug(&format!(
                "{}: no unikernel configuration, handing to runc",
                a.id
            ));
            Err(runc::exec_delegate())
        }
        Created::Container { pid } => {
            log.debug(&format!("{}: created, monitor pid {pid}", a.id));
            Ok(pid)
        }
    }
}

fn run(rt: &Runtime, a: &CreateArgs, detach: bool, keep: bool, log: &Logger) -> Result<i32> {
    let pid = create(rt, a, log)?;
    if let Err(e) = rt.start(&a.id) {
        let _ = rt.delete(&a.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    // The container process is our child: its exit status is the VMM's.
    let code = loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("wait for the container process"),
        }
    };
    // A guest init reports the application's own status; the monitor's is the VM's.
    let code = rt.guest_exit_status(&a.id).unwrap_or(code);
    if !keep {
        if let Err(e) = rt.delete(&a.id, true) {
            log.warn(&format!("delete after run: {e}"));
        }
    }
    Ok(code)
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<i32> {
    let mut all: Vec<serde_json::Value> = rt
        .list()
        .iter()
        .map(|s| serde_json::to_value(s).expect("state serialises"))
        .collect();
    // runc's containers under the same root, so one listing covers a mixed host.
    let root = rt.root.to_string_lossy().to_string();
    if let Some(out) = runc::output(&["--root", &root, "list", "--format", "json"]) {
        if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&out) {
            all.extend(items);
        }
    }
    if quiet {
        for s in &all {
            println!("{}", s["id"].as_str().unwrap_or(""));
        }
    } else if format == "json" {
        print_json(&all)?;
    } else {
        println!(
            "{:<24} {:<8} {:<10} {:<40} CREATED",
            "ID", "PID", "STATUS", "BUNDLE"
        );
        for s in &all {
            println!(
                "{:<24} {:<8} {:<10} {:<40} {}",
                s["id"].as_str().unwrap_or(""),
                // serde_json's Display ignores the width: format the number itself.
                s["pid"].as_i64().unwrap_or(0),
                s["status"].as_str().unwrap_or(""),
                s["bundle"].as_str().unwrap_or(""),
                s["created"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
        },
        "annotations": {
            "io.urunc.guests": urunc::guest::names().join(","),
            "io.urunc.monitors": urunc::monitor::names().join(","),
        },
    })
}

fn template_spec() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/init"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "urunc",
        "annotations": {
            "com.urunc.unikernel.unikernelType": "linux",
            "com.urunc.unikernel.hypervisor": "qemu",
            "com.urunc.unikernel.binary": "/boot/vmlinux",
            "com.urunc.unikernel.initrd": "/boot/initrd",
        },
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"},
            ],
        },
    })
}
