//! A recording monitor: installed under a monitor's name (`firecracker`,
//! `cloud-hypervisor`, `solo5-hvt`, `solo5-spt`, ...) it records how urunc executed it
//! and exits 0. The record is one JSON line on stdout (the container's stdout, which
//! the tests capture), between the markers [`BEGIN`] and [`END`]:
//! argv, env, pid, uid/gid, its namespaces, its `/proc/self/status` confinement
//! fields (`Seccomp`, `Seccomp_filters`, `NoNewPrivs`, `CapEff`), its root directory
//! listing (with `/dev` and `/guest`), the files named on its command line
//! (Firecracker's `--config-file`) and the sizes of the guest files it was given.
//!
//! It may run under the seccomp allow-list urunc installs for an old `solo5-hvt`,
//! which kills it on any other system call. So it has no Rust runtime start-up
//! (`no_main`: std's start-up polls the standard descriptors and sets up a signal
//! stack, neither in that list), and when its status says it is filtered it records
//! only what the list lets it read (`openat`, `read`, `write`, `close`, `getpid`):
//! then `"filtered": true` and no namespaces, ids, listings or sizes.
//!
//! With `--urunc-record-forbidden-syscall` in an argument it then calls `getppid`,
//! which no filter allows, and prints [`SURVIVED`] if it was not killed.
//!
//! It must not contain the strings urunc looks for to tell a self-confining tender
//! (see `urunc::monitor::solo5`); the tests check that.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

const BEGIN: &str = "URUNC-RECORD-BEGIN";
const END: &str = "URUNC-RECORD-END";
/// In an argument: after recording, try a system call no filter allows.
const FORBIDDEN_PROBE: &str = "--urunc-record-forbidden-syscall";
const SURVIVED: &str = "URUNC-RECORD-SURVIVED-FORBIDDEN-SYSCALL";
const STATUS_FIELDS: &[&str] = &["Seccomp", "Seccomp_filters", "NoNewPrivs", "CapEff"];

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

/// A file's text with `openat`, `read` and `close` only (std's `File` also asks for
/// sizes, positions and, in debug builds, descriptor flags: not in the filter).
fn read_text(path: &str) -> String {
    let Ok(c) = std::ffi::CString::new(path) else {
        return "error: NUL in path".into();
    };
    // SAFETY: a valid C string; the descriptor is closed below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return format!("error: {}", std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a buffer we own, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    String::from_utf8_lossy(&out).into_owned()
}

fn status() -> Map<String, Value> {
    let text = read_text("/proc/self/status");
    let mut m = Map::new();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once(':') {
            if STATUS_FIELDS.contains(&k) {
                m.insert(k.to_string(), json!(v.trim()));
            }
        }
    }
    m
}

fn namespaces() -> BTreeMap<String, String> {
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
    ns
}

#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let argv: Vec<String> = std::env::args().collect();
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let status = status();
    let filtered = status.get("Seccomp").and_then(Value::as_str) != Some("0");
    // Files the monitor was told to read.
    let mut files = BTreeMap::new();
    for w in argv.windows(2) {
        if w[0] == "--config-file" {
            files.insert(w[1].clone(), read_text(&w[1]));
        }
    }
    let mut record = json!({
        "argv": argv,
        "env": env,
        "pid": std::process::id(),
        "status": status,
        "filtered": filtered,
        "files": files,
    });
    if !filtered {
        let mut sizes = BTreeMap::new();
        for f in ["/guest/kernel", "/guest/initrd", "/guest/block"] {
            if let Ok(m) = std::fs::metadata(f) {
                sizes.insert(f.to_string(), m.len());
            }
        }
        let more = json!({
            // SAFETY: plain getters.
            "uid": unsafe { libc::getuid() },
            "gid": unsafe { libc::getgid() },
            "namespaces": namespaces(),
            "root": list("/"),
            "dev": list("/dev"),
            "dev_net": if Path::new("/dev/net").exists() { list("/dev/net") } else { json!([]) },
            "guest": list("/guest"),
            "root_writable": std::fs::write("/urunc-record-probe", b"x").is_ok(),
            "sizes": sizes,
        });
        if let (Some(r), Value::Object(m)) = (record.as_object_mut(), more) {
            r.extend(m);
        }
    }
    println!("{BEGIN}{record}{END}");
    if argv.iter().any(|a| a.contains(FORBIDDEN_PROBE)) {
        // Not in any tender's list: a filter that is really enforced kills us here.
        // SAFETY: a system call without arguments or side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
        println!("{SURVIVED}");
    }
    0
}
