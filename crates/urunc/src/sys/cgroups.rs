//! Cgroup placement of the monitor process with the cgroupfs layout (v1, v2 and the
//! hybrid of both). The directory is created in every mounted hierarchy, the spec's
//! memory/CPU/pids limits are written where the controller is present, and the pid is
//! moved in before the monitor starts, so the limits cover the whole VM.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    mount: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

/// The mounted hierarchies, read once per process: `create` asks three times.
fn hierarchies() -> &'static [Hierarchy] {
    static CACHE: std::sync::OnceLock<Vec<Hierarchy>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        let info = super::read_small(Path::new("/proc/self/mountinfo")).unwrap_or_default();
        parse_mountinfo(&info)
    })
}

/// The hierarchy `dir` (a container's cgroup directory) lives in.
fn hierarchy_of(dir: &Path) -> Option<&'static Hierarchy> {
    hierarchies()
        .iter()
        .filter(|h| dir.starts_with(&h.mount))
        .max_by_key(|h| h.mount.as_os_str().len())
}

fn parse_mountinfo(info: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (fstype, opts) = (r[0], r[2]);
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            vec![]
        } else {
            opts.split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime"))
                .map(String::from)
                .collect()
        };
        let mount = PathBuf::from(l[4]);
        if !out.iter().any(|h| h.mount == mount) {
            out.push(Hierarchy {
                mount,
                v2,
                controllers,
            });
        }
    }
    out
}

/// The cgroup path for a container: the spec's `cgroupsPath`, converted from the
/// systemd `slice:prefix:name` form when asked, or `/urunc/<id>` by default.
pub fn container_path(spec_path: Option<&str>, id: &str, systemd: bool) -> String {
    match spec_path {
        Some(p) if systemd && p.split(':').count() == 3 => {
            let parts: Vec<&str> = p.split(':').collect();
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            format!("/{}/{}-{}.scope", expand_slice(slice), parts[1], parts[2])
        }
        Some(p) if !p.is_empty() => format!("/{}", p.trim_start_matches('/')),
        _ => format!("/urunc/{id}"),
    }
}

/// `a-b-c.slice` lives at `a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> String {
    let name = slice.trim_end_matches(".slice");
    let mut parts = Vec::new();
    let mut prefix = String::new();
    for word in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(word);
        parts.push(format!("{prefix}.slice"));
    }
    parts.join("/")
}

/// The directories [`create`] makes for `rel`: recorded before they exist, so a
/// `create` killed while making them leaves none that `delete` does not know of.
pub fn dirs(rel: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .map(|h| h.mount.join(rel.trim_start_matches('/')))
        .collect()
}

/// Creates the cgroup in every hierarchy and applies the limits. Returns the
/// directories made, to record in the container state for removal.
pub fn create(rel: &str, limits: &Limits) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for h in hierarchies() {
        let dir = h.mount.join(rel.trim_start_matches('/'));
        if let Err(e) = make_dirs(h, &dir) {
            remove(&dirs);
            return Err(e);
        }
        dirs.push(dir.clone());
        if let Err(e) = apply(h, &dir, limits) {
            remove(&dirs);
            return Err(e);
        }
    }
    Ok(dirs)
}

/// Creates each missing level; a v1 cpuset level starts with no CPUs or memory nodes
/// and accepts no process until it inherits its parent's.
fn make_dirs(h: &Hierarchy, dir: &Path) -> Result<()> {
    // Usually only the last level is missing: one mkdir, no walk.
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut missing = Vec::new();
            let mut p = dir;
            while !p.exists() && p.starts_with(&h.mount) {
                missing.push(p.to_path_buf());
                p = p.parent().unwrap_or(&h.mount);
            }
            for level in missing.iter().rev() {
                // Another container being created at the same time may make a shared parent.
                match std::fs::create_dir(level) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    r => r.ctx(|| format!("create cgroup {level:?}"))?,
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        r => r.ctx(|| format!("create cgroup {dir:?}"))?,
    }
    if h.controllers.iter().any(|c| c == "cpuset") {
        // Levels made earlier (by us or others) may still be empty too.
        let levels: Vec<&Path> = dir.ancestors().take_while(|p| *p != h.mount).collect();
        for level in levels.into_iter().rev() {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = level.join(file);
                let empty = super::read_small(&own)
                    .map(|v| v.trim().is_empty())
                    .unwrap_or(false);
                let parent = level.parent().unwrap_or(&h.mount).join(file);
                if let (true, Ok(v)) = (empty, super::read_small(&parent)) {
                    std::fs::write(&own, v.trim()).ctx(|| format!("initialise {own:?}"))?;
                }
            }
        }
    }
    Ok(())
}

fn apply(h: &Hierarchy, dir: &Path, l: &Limits) -> Result<()> {
    let has = |c: &str| h.controllers.iter().any(|x| x == c);
    let mut writes: Vec<(&str, String)> = Vec::new();
    if h.v2 {
        if let Some(m) = l.memory_bytes {
            writes.push(("memory.max", m.to_string()));
        }
        if let Some(q) = l.cpu_quota {
            writes.push((
                "cpu.max",
                format!("{q} {}", l.cpu_period.unwrap_or(100_000)),
            ));
        }
        if let Some(p) = l.pids {
            writes.push(("pids.max", p.to_string()));
        }
    } else {
        if let (true, Some(m)) = (has("memory"), l.memory_bytes) {
            writes.push(("memory.limit_in_bytes", m.to_string()));
        }
        if has("cpu") {
            if let Some(p) = l.cpu_period {
                writes.push(("cpu.cfs_period_us", p.to_string()));
            }
            if let Some(q) = l.cpu_quota {
                writes.push(("cpu.cfs_quota_us", q.to_string()));
            }
        }
        if let (true, Some(p)) = (has("pids"), l.pids) {
            writes.push(("pids.max", p.to_string()));
        }
    }
    for (file, value) in writes {
        let path = dir.join(file);
        // On hybrid hosts the v2 tree has no controllers enabled: skip absent files.
        if path.exists() {
            std::fs::write(&path, &value).ctx(|| format!("write {value} to {path:?}"))?;
        }
    }
    Ok(())
}

pub fn add_pid(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for d in dirs {
        let procs = d.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).ctx(|| format!("move pid {pid} into {procs:?}"))?;
    }
    Ok(())
}

/// Pids in the container's cgroup, from the first hierarchy that can be read: the
/// process was moved into every one, and its children start where it is.
pub fn pids(dirs: &[PathBuf]) -> Vec<i32> {
    dirs.iter()
        .find_map(|d| super::read_small(&d.join("cgroup.procs")).ok())
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Freezes (or thaws) every process in the cgroup: the v1 freezer where mounted, else
/// cgroup v2's `cgroup.freeze`. Returns false when neither is available.
pub fn freeze(dirs: &[PathBuf], frozen: bool) -> Result<bool> {
    for d in dirs {
        let v1 = d.join("freezer.state");
        if v1.exists() {
            let want = if frozen { "FROZEN" } else { "THAWED" };
            std::fs::write(&v1, want).ctx(|| format!("write {want} to {v1:?}"))?;
            // Freezing is asynchronous: wait until the kernel reports it done.
            for _ in 0..500 {
                let now = std::fs::read_to_string(&v1).unwrap_or_default();
                if now.trim() == want {
                    return Ok(true);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            return Err(crate::error::Error::Other(format!(
                "{v1:?} did not reach {want}"
            )));
        }
        let v2 = d.join("cgroup.freeze");
        if v2.exists() {
            std::fs::write(&v2, if frozen { "1" } else { "0" }).ctx(|| format!("write {v2:?}"))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// True when the container's cgroup is frozen.
/// Only the v1 freezer hierarchy and v2 ones are asked (`state` asks this of every
/// running container).
pub fn is_frozen(dirs: &[PathBuf]) -> bool {
    let read = |p: PathBuf| super::read_small(&p).unwrap_or_default();
    dirs.iter().any(|d| match hierarchy_of(d) {
        Some(h) if h.v2 => read(d.join("cgroup.freeze")).trim() == "1",
        Some(h) if h.controllers.iter().any(|c| c == "freezer") => {
            read(d.join("freezer.state")).trim() == "FROZEN"
        }
        Some(_) => false,
        // Not under a hierarchy mounted here (another mount namespace): ask both.
        None => {
            read(d.join("freezer.state")).trim() == "FROZEN"
                || read(d.join("cgroup.freeze")).trim() == "1"
        }
    })
}

/// Removes the directories (best effort; a cgroup still holding a process stays).
pub fn remove(dirs: &[PathBuf]) {
    for d in dirs {
        for _ in 0..50 {
            match std::fs::remove_dir(d) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo() {
        let info = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
38 35 0:33 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
39 35 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";
        let h = parse_mountinfo(info);
        assert_eq!(h.len(), 3);
        assert!(h[0].v2);
        assert_eq!(h[1].controllers, vec!["memory"]);
        assert_eq!(h[2].mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(h[2].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn paths() {
        assert_eq!(
            container_path(Some("/default/c1"), "c1", false),
            "/default/c1"
        );
        assert_eq!(container_path(Some("k8s/x"), "c1", false), "/k8s/x");
        assert_eq!(container_path(None, "c1", false), "/urunc/c1");
        assert_eq!(
            container_path(
                Some("kubepods-burstable.slice:cri-containerd:abc"),
                "c",
                true
            ),
            "/kubepods.slice/kubepods-burstable.slice/cri-containerd-abc.scope"
        );
    }
}
