//! The `urunc-pack` binary: exit status, its one summary line, one-line errors.

use std::fs;
use std::process::{Command, Output};

fn pack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_urunc-pack"))
        .args(args)
        .output()
        .expect("run urunc-pack")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn packs_and_reports_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel.elf");
    fs::write(&kernel, b"not really a kernel").unwrap();
    let output = dir.path().join("out.tar");
    let out = pack(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--type",
        "unikraft",
        "--cmdline",
        "hello",
        "--name",
        "urunc.local/demo/k:1",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("urunc.local/demo/k:1 (unikraft guest on qemu, kernel /boot/kernel.elf, manifest sha256:"), "{stdout}");
    assert!(fs::metadata(&output).unwrap().len() > 0);
}

#[test]
fn errors_are_one_line_with_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.tar");
    let out = pack(&[
        "--kernel",
        "/nonexistent/kernel",
        "--type",
        "linux",
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("urunc-pack: error: --kernel /nonexistent/kernel: No such file"),
        "{err}"
    );
    assert!(!output.exists());

    let kernel = dir.path().join("k");
    fs::write(&kernel, b"k").unwrap();
    let out = pack(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--type",
        "nosuchguest",
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The list of known types grows with urunc; its start is stable.
    assert!(
        stderr(&out).starts_with(
            "urunc-pack: error: unknown unikernel type \"nosuchguest\" (known: linux, "
        ),
        "{}",
        stderr(&out)
    );

    let out = pack(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--type",
        "linux",
        "--env",
        "JUSTAWORD",
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "urunc-pack: error: --env \"JUSTAWORD\": expected KEY=VALUE\n"
    );
}
