//! Golden argv (and configuration files) for every supported (guest, monitor) pair,
//! with and without network, with an initrd where both support one and a block device
//! where the guest supports one. The expected output is `tests/golden/argv.txt`,
//! reviewed against each project's documentation; regenerate it with
//! `URUNC_UPDATE_GOLDEN=1 cargo test -p urunc --test golden` and review the diff.
//!
//! Also checks the support matrix in README.md against the registries.

use std::fmt::Write;
use std::path::PathBuf;

use urunc::guest::{self, GuestSetup};
use urunc::monitor::{self, Accel, VmConfig};
use urunc::network::{NetConfig, NetMode};

fn net() -> NetConfig {
    NetConfig {
        mode: NetMode::Dynamic,
        tap: "urunc0a1b2c3d4e".into(),
        mac: "02:42:0a:58:00:07".into(),
        address: "10.88.0.7".parse().unwrap(),
        prefix: 16,
        gateway: Some("10.88.0.1".parse().unwrap()),
        mtu: 1500,
        dns: vec!["10.88.0.53".parse().unwrap()],
        interface: Some("eth0".into()),
    }
}

fn render_all() -> String {
    let mut out = String::new();
    for g in guest::ALL {
        for m in monitor::ALL {
            if !g.monitors().contains(&m.name()) {
                continue;
            }
            let initrd = g.supports_initrd() && m.supports_initrd();
            let block = g.supports_block();
            for with_net in [false, true] {
                let setup = GuestSetup {
                    args: vec!["/app".into(), "hello world".into()],
                    env: vec!["GREETING=hi".into()],
                    initrd,
                    version: None,
                    block_mount: block.then(|| "/data".into()),
                };
                let n = with_net.then(net);
                let cmdline = g.cmdline_net(&setup, n.as_ref()).unwrap();
                let vm = VmConfig {
                    name: "urunc-c1".into(),
                    binary: PathBuf::from(format!("/usr/bin/{}", m.default_binary())),
                    memory_mib: 256,
                    vcpus: 1,
                    kernel: "/guest/kernel".into(),
                    initrd: initrd.then(|| "/guest/initrd".into()),
                    cmdline,
                    accel: Accel::Kvm,
                    seccomp: false,
                    tender_seccomp: false,
                    status_file: None,
                    machine: if m.name() == "qemu" {
                        "pc".into()
                    } else {
                        String::new()
                    },
                    block: block.then(|| "/guest/block".into()),
                    block_readonly: false,
                    shares: vec![],
                    devices: g.devices(m.name()),
                    extra_args: vec![],
                    config_file: m
                        .config_file(&dummy(), None)
                        .map(|(name, _)| PathBuf::from("/guest").join(name)),
                };
                let argv = m.argv(&vm, n.as_ref());
                writeln!(
                    out,
                    "## {} on {}, network {}, initrd {}, block {}",
                    g.name(),
                    m.name(),
                    onoff(with_net),
                    onoff(initrd),
                    onoff(block)
                )
                .unwrap();
                for a in argv {
                    writeln!(out, "  {a}").unwrap();
                }
                if let Some((name, text)) = m.config_file(&vm, n.as_ref()) {
                    writeln!(out, "  [{name}]").unwrap();
                    for l in text.lines() {
                        writeln!(out, "  | {l}").unwrap();
                    }
                }
            }
        }
    }
    out
}

fn dummy() -> VmConfig {
    VmConfig {
        name: String::new(),
        binary: PathBuf::new(),
        memory_mib: 1,
        vcpus: 1,
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: String::new(),
        accel: Accel::Kvm,
        seccomp: false,
        tender_seccomp: false,
        status_file: None,
        machine: String::new(),
        block: None,
        block_readonly: false,
        shares: vec![],
        devices: Default::default(),
        extra_args: vec![],
        config_file: None,
    }
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[test]
fn golden_argv_for_every_supported_pair() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/argv.txt");
    let got = render_all();
    if std::env::var_os("URUNC_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "argv differs from {} at line {} (URUNC_UPDATE_GOLDEN=1 regenerates):\n got: {:?}\nwant: {:?}",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn readme_support_matrix_matches_the_code() {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let begin = "<!-- support-matrix:begin (generated by urunc::guest::support_matrix) -->\n";
    let end = "<!-- support-matrix:end -->";
    let start = text
        .find(begin)
        .expect("README has the matrix's begin marker")
        + begin.len();
    let stop = text.find(end).expect("README has the matrix's end marker");
    let want = guest::support_matrix();
    assert_eq!(
        &text[start..stop],
        want,
        "README.md's support matrix is out of date; replace it with:\n{want}"
    );
}
