//! A hostile monitor for the confinement tests: installed under a monitor's name, it
//! does what a compromised VMM (or a guest that broke out into it) would try, and
//! prints one JSON line between `URUNC-PROBE-BEGIN` and `URUNC-PROBE-END`.
//!
//! What to try is read from the "kernel" it was given (`/guest/kernel`), one command
//! per line, since urunc passes a monitor neither arguments nor environment of the
//! test's choosing:
//! - `write PATH`: open PATH for writing (a host binary as seen from its root);
//! - `find DEV:INO`: walk its root for files with that device and inode (the host's
//!   urunc and monitor binaries), try to open each one for writing and tell whether
//!   it is on a read-only mount;
//! - `hog MIB`: allocate and touch MIB MiB, printing `hog: N MiB` as it goes and
//!   `hog: done` at the end (a memory limit ends it first).
//!
//! Always tried: writing `/proc/self/exe` directly, and through a read-only
//! descriptor reopened as `/proc/self/fd/N` (the CVE-2019-5736 route).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};

/// Tries to open `path` for writing; "ok" (the probe got through) or the error.
fn try_write(path: &Path) -> String {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// Whether `path` is on a read-only mount: what still protects a binary once it no
/// longer runs (its "text file busy" ends with the last process executing it).
fn read_only_mount(path: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; c is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_flag & libc::ST_RDONLY != 0)
}

/// Files under `dir` (not crossing into /proc or /sys) whose (dev, ino) is one of
/// `wanted`, added to that one's list. One walk for all: on a machine whose page
/// cache is cold (a fresh CI machine) a walk of /usr alone takes seconds.
fn find(dir: &Path, wanted: &mut [((u64, u64), Vec<String>)], depth: usize) {
    if depth > 12 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == Path::new("/proc") || p == Path::new("/sys") {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            find(&p, wanted, depth + 1);
        } else if let Some((_, hits)) = wanted.iter_mut().find(|(w, _)| *w == (m.dev(), m.ino())) {
            hits.push(p.display().to_string());
        }
    }
}

fn hog(mib: usize) {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for n in 1..=mib {
        // Touch every page so it is really charged to the cgroup.
        chunks.push(vec![0x5a; 1 << 20]);
        if n % 8 == 0 {
            println!("hog: {n} MiB");
            let _ = std::io::stdout().flush();
        }
    }
    println!("hog: done ({} chunks)", chunks.len());
}

fn main() {
    // The file may start with a real kernel's bytes: only the text lines matter.
    let script =
        String::from_utf8_lossy(&std::fs::read("/guest/kernel").unwrap_or_default()).into_owned();
    let mut writes = BTreeMap::new();
    writes.insert(
        "/proc/self/exe".to_string(),
        try_write(Path::new("/proc/self/exe")),
    );
    let reopened = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => {
            use std::os::fd::AsRawFd;
            let via = format!("/proc/self/fd/{}", f.as_raw_fd());
            try_write(Path::new(&via))
        }
        Err(e) => format!("open read-only: {e}"),
    };
    writes.insert("/proc/self/fd/<exe>".to_string(), reopened);
    let mut wanted: Vec<((u64, u64), Vec<String>)> = Vec::new();
    let mut names = Vec::new();
    let mut hog_mib = None;
    for line in script.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("write"), Some(p)) => {
                writes.insert(p.to_string(), try_write(Path::new(p)));
            }
            (Some("find"), Some(id)) => {
                let mut it = id.split(':').map(|n| n.parse::<u64>().unwrap_or(0));
                wanted.push(((it.next().unwrap_or(0), it.next().unwrap_or(0)), Vec::new()));
                names.push(id.to_string());
            }
            (Some("hog"), Some(n)) => hog_mib = n.parse::<usize>().ok(),
            _ => {}
        }
    }
    if !wanted.is_empty() {
        find(Path::new("/"), &mut wanted, 0);
    }
    let found: BTreeMap<String, Value> = names
        .into_iter()
        .zip(wanted)
        .map(|(id, (_, hits))| {
            let tried: BTreeMap<String, Value> = hits
                .iter()
                .map(|h| {
                    let p = Path::new(h);
                    (
                        h.clone(),
                        json!({"write": try_write(p), "read_only_mount": read_only_mount(p)}),
                    )
                })
                .collect();
            (id, json!(tried))
        })
        .collect();
    let root: Vec<String> = std::fs::read_dir("/")
        .map(|rd| {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let report = json!({
        "exe": std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).ok(),
        "writes": writes,
        "found": found,
        "root": root,
    });
    println!("URUNC-PROBE-BEGIN{report}URUNC-PROBE-END");
    let _ = std::io::stdout().flush();
    if let Some(mib) = hog_mib {
        hog(mib);
    }
}
