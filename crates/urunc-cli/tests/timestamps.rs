//! Start-up timestamps (`[timestamps]`, `URUNC_TIMESTAMPS`, `urunc timestamps ID`)
//! over a real lifecycle: the test kernel under QEMU (TCG), driven like runc.
//!
//! Skips (with a `SKIP:` line) when not root or QEMU or the fixtures are missing.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use test_harness::bundle::{TestBundle, Urunc};
use test_harness::{fixtures, output_text, require_root_and_tools};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const DONE: &str = "URUNC-TESTKERNEL-DONE";

/// The phases `urunc create`, `start` and `delete` record, in order (no shim here).
const PHASES: &[&str] = &[
    "TS01", "TS02", "TS03", "TS04", "TS05", "TS07", "TS08", "TS09", "TS10", "TS11", "TS14",
];

fn bundle(name: &str, args: &[&str]) -> Option<TestBundle> {
    if !require_root_and_tools(&["qemu-system-x86_64"]) {
        return None;
    }
    let kernel = fixtures::testkernel()?;
    let mut b = TestBundle::new(name);
    b.link_file("/boot/kernel", kernel);
    b.unikernel("unikraft", "/boot/kernel", None).args(args);
    Some(b)
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", output_text(out));
}

/// The rows of `urunc timestamps`: (code, offset ms, delta ms, pid).
fn rows(stdout: &str) -> Vec<(String, f64, f64, i32)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("TS"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.len();
            (
                f[0].to_string(),
                f[n - 3].parse().expect("offset"),
                f[n - 2].parse().expect("delta"),
                f[n - 1].parse().expect("pid"),
            )
        })
        .collect()
}

/// The codes of `rows`, TS03 before TS04: `create` moves the process into its cgroups
/// (TS03) while the process builds its namespaces (TS04), so either may come first.
fn in_order(rows: &[(String, f64, f64, i32)]) -> Vec<&str> {
    let mut codes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    if let Some(i) = codes.windows(2).position(|w| w == ["TS04", "TS03"]) {
        codes.swap(i, i + 1);
    }
    codes
}

fn files_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_phase_is_recorded_in_order_and_printed_after_delete() {
    let Some(b) = bundle("ts-phases", &["hello"]) else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let urunc = Urunc::new(URUNC);
    urunc.write_config(&format!(
        "[timestamps]\nenabled = true\ndir = {:?}\n",
        logs.path().join("ts")
    ));
    let id = format!("ts-phases-{}", std::process::id());
    let pid_file = b.dir().join("pid");
    assert_ok(
        &urunc.create_with(&b, &id, &["--pid-file", pid_file.to_str().unwrap()]),
        "create",
    );
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ok(&urunc.start(&id), "start");
    assert!(
        urunc.wait_console(&id, DONE, Duration::from_secs(20)),
        "guest did not finish:\n{}",
        urunc.console(&id)
    );
    assert_ok(&urunc.delete_force(&id), "delete");

    // Kept after delete, and printed by the subcommand.
    let out = urunc.cmd(&["timestamps", &id]);
    assert_ok(&out, "urunc timestamps");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = rows(&text);
    assert_eq!(in_order(&rows), PHASES, "{text}");
    assert_eq!(rows[0].1, 0.0, "{text}");
    for w in rows.windows(2) {
        assert!(w[1].1 >= w[0].1, "offsets go back:\n{text}");
        assert!(
            (w[1].1 - w[0].1 - w[1].2).abs() < 0.002,
            "bad delta:\n{text}"
        );
    }
    assert!(text.contains("monitor exec'd"), "{text}");
    // The monitor's exec is recorded by the container process, whose pid the VMM kept;
    // create runs in another process.
    let exec = rows.iter().find(|r| r.0 == "TS10").unwrap();
    assert_eq!(exec.3, pid, "{text}");
    assert_ne!(rows[0].3, pid, "{text}");
    eprintln!("{text}");
    urunc.assert_clean(&b, &id);
}

#[test]
fn the_environment_enables_them_and_disabled_means_no_file() {
    let Some(b) = bundle("ts-env", &["hello"]) else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("ts");
    let dir_str = dir.to_str().unwrap();

    // The directory setting alone does not enable anything.
    let off = Urunc::new(URUNC).env("URUNC_TIMESTAMPS_DIR", dir_str);
    let id = format!("ts-off-{}", std::process::id());
    let out = off.run(&b, &id);
    assert_ok(&out, "run");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    let out = off.cmd(&["timestamps", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&id) && err.contains("URUNC_TIMESTAMPS"),
        "{err}"
    );
    off.assert_clean(&b, &id);

    let on = Urunc::new(URUNC)
        .env("URUNC_TIMESTAMPS_DIR", dir_str)
        .env("URUNC_TIMESTAMPS", "1");
    let id = format!("ts-on-{}", std::process::id());
    assert_ok(&on.run(&b, &id), "run");
    assert_eq!(files_in(&dir), std::slice::from_ref(&id));
    let out = on.cmd(&["timestamps", &id]);
    assert_ok(&out, "urunc timestamps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(in_order(&rows(&text)), PHASES, "{text}");
    on.assert_clean(&b, &id);
}
