//! The command lines containerd, Docker, podman and people send, and bad ones.

use super::*;

fn run(args: &[&str]) -> Cli {
    match parse(args.iter().map(OsString::from)) {
        Ok(Parsed::Run(cli)) => cli,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match parse(args.iter().map(OsString::from)) {
        Err(e) => e.msg,
        other => panic!("{args:?} parsed: {other:?}"),
    }
}

#[test]
fn parses_what_containerd_sends() {
    let cli = run(&[
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
    ]);
    assert_eq!(cli.root, PathBuf::from("/run/containerd/runc/default"));
    assert_eq!(cli.log, Some(PathBuf::from("/b/log.json")));
    assert_eq!(cli.log_format, Some(Format::Json));
    assert_eq!(
        cli.command,
        Command::Create(CreateArgs {
            bundle: "/b".into(),
            pid_file: Some("/b/init.pid".into()),
            console_socket: None,
            preserve_fds: 0,
            id: "c1".into(),
        })
    );
    let cli = run(&["kill", "--all", "c1", "9"]);
    assert_eq!(
        cli.command,
        Command::Kill {
            all: true,
            id: "c1".into(),
            signal: "9".into()
        }
    );
    let cli = run(&["--systemd-cgroup", "delete", "--force", "c1"]);
    assert!(cli.systemd_cgroup);
    assert_eq!(
        cli.command,
        Command::Delete {
            force: true,
            id: "c1".into()
        }
    );
}

#[test]
fn go_flag_forms_and_globals_after_the_command() {
    // Single-dash long names, `=` values, `=false` booleans, as Go's flag package.
    let cli = run(&[
        "-root=/r",
        "-log-format=text",
        "create",
        "-b",
        "/b",
        "-pid-file=/p",
        "--no-new-keyring",
        "--preserve-fds",
        "2",
        "c1",
        "--debug",
    ]);
    assert_eq!(cli.root, PathBuf::from("/r"));
    assert_eq!(cli.log_format, Some(Format::Text));
    assert!(cli.debug);
    let Command::Create(a) = cli.command else {
        panic!()
    };
    assert_eq!(
        (a.bundle, a.pid_file, a.preserve_fds),
        ("/b".into(), Some("/p".into()), 2)
    );
    let cli = run(&["delete", "--force=false", "c1"]);
    assert_eq!(
        cli.command,
        Command::Delete {
            force: false,
            id: "c1".into()
        }
    );
    // --rootless takes an optional value.
    let cli = run(&["--rootless", "false", "state", "c1"]);
    assert_eq!(cli.command, Command::State { id: "c1".into() });
    let cli = run(&["--rootless", "state", "c1"]);
    assert_eq!(cli.command, Command::State { id: "c1".into() });
    // A value-taking option consumes the next argument even when it looks like one.
    let cli = run(&["--log", "-odd-name", "start", "c1"]);
    assert_eq!(cli.log, Some(PathBuf::from("-odd-name")));
}

#[test]
fn defaults_and_subcommands() {
    let cli = run(&["create", "c1"]);
    assert_eq!(cli.root, PathBuf::from(urunc::container::DEFAULT_ROOT));
    let Command::Create(a) = cli.command else {
        panic!()
    };
    assert_eq!(a.bundle, PathBuf::from("."));
    assert_eq!(
        run(&["kill", "c1"]).command,
        Command::Kill {
            all: false,
            id: "c1".into(),
            signal: "SIGTERM".into()
        }
    );
    assert_eq!(
        run(&["list", "-q"]).command,
        Command::List {
            format: "table".into(),
            quiet: true
        }
    );
    assert_eq!(
        run(&["ps", "--format", "json", "c1", "-ef", "x"]).command,
        Command::Ps {
            format: "json".into(),
            id: "c1".into(),
            ps_args: vec!["-ef".into(), "x".into()]
        }
    );
    assert_eq!(
        run(&["run", "-d", "--keep", "-b", "/b", "c1"]).command,
        Command::Run {
            create: CreateArgs {
                bundle: "/b".into(),
                pid_file: None,
                console_socket: None,
                preserve_fds: 0,
                id: "c1".into()
            },
            detach: true,
            keep: true
        }
    );
    assert_eq!(
        run(&["spec", "--bundle", "/b"]).command,
        Command::Spec {
            bundle: "/b".into()
        }
    );
    // Not ours: handed to runc with its arguments.
    assert_eq!(
        run(&["exec", "--tty", "c1", "sh"]).command,
        Command::Other(vec![
            "exec".into(),
            "--tty".into(),
            "c1".into(),
            "sh".into()
        ])
    );
}

#[test]
fn help_and_version() {
    assert!(matches!(
        parse([OsString::from("--version")]),
        Ok(Parsed::Version)
    ));
    assert!(matches!(parse([OsString::from("-v")]), Ok(Parsed::Version)));
    let Ok(Parsed::Help(h)) = parse([OsString::from("--help")]) else {
        panic!()
    };
    assert!(
        h.contains("create") && h.contains("--systemd-cgroup"),
        "{h}"
    );
    let Ok(Parsed::Help(h)) = parse(["create", "-h"].map(OsString::from)) else {
        panic!()
    };
    assert!(
        h.contains("--pid-file") && h.contains("<container-id>"),
        "{h}"
    );
    let Ok(Parsed::Help(h)) = parse(["help", "kill"].map(OsString::from)) else {
        panic!()
    };
    assert!(h.contains("--all"), "{h}");
}

#[test]
fn bad_command_lines_name_the_problem() {
    assert_eq!(
        error(&["start"]),
        "start: missing container id (usage: urunc start <container-id>)"
    );
    assert!(error(&["start", "a", "b"]).contains("unexpected argument \"b\""));
    assert!(error(&["delete", "--bogus", "c1"]).contains("unknown option --bogus"));
    assert_eq!(
        error(&["--bogus", "state", "c1"]),
        "unknown global option --bogus"
    );
    assert!(error(&["--log-format", "xml", "state", "c1"]).contains("expected text or json"));
    assert!(error(&["create", "--preserve-fds", "-1", "c1"]).contains("expected a count"));
    assert!(error(&["create", "--pid-file"]).contains("option --pid-file needs a value"));
    assert!(error(&["delete", "--force=yes", "c1"]).contains("true/false"));
    // The log options seen before the problem come back with it.
    match parse(["--log", "/l", "--log-format", "json", "kill"].map(OsString::from)) {
        Err(e) => assert_eq!(
            (e.log, e.log_format),
            (Some("/l".into()), Some(Format::Json))
        ),
        other => panic!("{other:?}"),
    }
}
