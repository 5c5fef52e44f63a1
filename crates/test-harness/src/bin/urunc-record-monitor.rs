//! A recording monitor: installed under a monitor's name (`firecracker`,
//! `cloud-hypervisor`, `solo5-hvt`, `solo5-spt`, ...) it records how urunc executed it
//! and exits 0. The record is one JSON line on stdout (the container's stdout, which
//! the tests capture), between the markers [`BEGIN`] and [`END`]:
//! argv, env, uid/gid, its namespaces, its seccomp and no_new_privs status, its root
//! directory listing (with `/dev` and `/guest`), the files named on its command line
//! (Firecracker's `--config-file`) and the size of the kernel it was given.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

const BEGIN: &str = "URUNC-RECORD-BEGIN";
const END: &str = "URUNC-RECORD-END";

fn list(dir: &str) -> Value {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return json!(format!("error: {e}")),
    };
    names.sort();
    json!(names)
}

fn status_field(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let mut ns = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/ns") {
        for e in rd.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                ns.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    target.display().to_string(),
                );
            }
        }
    }
    // Files the monitor was told to read.
    let mut files = BTreeMap::new();
    for w in argv.windows(2) {
        if w[0] == "--config-file" {
            files.insert(
                w[1].clone(),
                std::fs::read_to_string(&w[1]).unwrap_or_else(|e| format!("error: {e}")),
            );
        }
    }
    let mut sizes = BTreeMap::new();
    for f in ["/guest/kernel", "/guest/initrd", "/guest/block"] {
        if let Ok(m) = std::fs::metadata(f) {
            sizes.insert(f.to_string(), m.len());
        }
    }
    let record = json!({
        "argv": argv,
        "env": env,
        // SAFETY: plain getters.
        "uid": unsafe { libc::getuid() },
        "gid": unsafe { libc::getgid() },
        "pid": std::process::id(),
        "namespaces": ns,
        "seccomp": status_field("Seccomp"),
        "no_new_privs": status_field("NoNewPrivs"),
        "cap_eff": status_field("CapEff"),
        "root": list("/"),
        "dev": list("/dev"),
        "dev_net": if Path::new("/dev/net").exists() { list("/dev/net") } else { json!([]) },
        "guest": list("/guest"),
        "root_writable": std::fs::write("/urunc-record-probe", b"x").is_ok(),
        "files": files,
        "sizes": sizes,
    });
    println!("{BEGIN}{record}{END}");
}
