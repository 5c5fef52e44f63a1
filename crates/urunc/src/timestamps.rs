//! Start-up timestamps: when enabled, each phase of a container's start (in the shim,
//! `urunc create`, the container process, `urunc start`) appends one line to
//! `<dir>/<id>`: `<phase code> <CLOCK_MONOTONIC ns> <pid>`. CLOCK_MONOTONIC is
//! system-wide, so lines from different processes compare. `urunc timestamps <id>`
//! prints the breakdown.
//!
//! Enabled by `[timestamps] enabled = true` in urunc's configuration file (the CLI calls
//! [`init`]) or by `URUNC_TIMESTAMPS=1` in the environment. Disabled, [`mark`] reads a
//! process-wide flag and returns: no file is opened, no system call is made.
//!
//! The directory (`[timestamps] dir`, `URUNC_TIMESTAMPS_DIR`, default
//! [`DEFAULT_DIR`], a tmpfs) outlives `delete` so a finished container can still be
//! looked at; it keeps the [`KEEP`] most recent logs and removes older ones.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::error::{Context, Error, Result};

pub const ENV: &str = "URUNC_TIMESTAMPS";
pub const DIR_ENV: &str = "URUNC_TIMESTAMPS_DIR";
pub const DEFAULT_DIR: &str = "/run/urunc-timestamps";
/// Logs kept in the directory; starting a new one removes the oldest beyond this.
pub const KEEP: usize = 512;

/// The phases, in the order a container goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    ShimCreate,
    Create,
    SpecParsed,
    CgroupsReady,
    NamespacesReady,
    Created,
    ShimStart,
    Start,
    NetworkReady,
    StorageReady,
    MonitorExec,
    Started,
    ShimExit,
    ShimDelete,
    Deleted,
}

impl Phase {
    pub const ALL: [Phase; 15] = [
        Phase::ShimCreate,
        Phase::Create,
        Phase::SpecParsed,
        Phase::CgroupsReady,
        Phase::NamespacesReady,
        Phase::Created,
        Phase::ShimStart,
        Phase::Start,
        Phase::NetworkReady,
        Phase::StorageReady,
        Phase::MonitorExec,
        Phase::Started,
        Phase::ShimExit,
        Phase::ShimDelete,
        Phase::Deleted,
    ];

    /// `TS00`..: the code written to the log.
    pub fn code(self) -> String {
        let i = Phase::ALL.iter().position(|p| *p == self).expect("listed");
        format!("TS{i:02}")
    }

    pub fn describe(self) -> &'static str {
        match self {
            Phase::ShimCreate => "shim: task create received",
            Phase::Create => "create invoked",
            Phase::SpecParsed => "spec and unikernel config parsed",
            Phase::CgroupsReady => "cgroups ready",
            Phase::NamespacesReady => "namespaces and monitor root ready",
            Phase::Created => "create done",
            Phase::ShimStart => "shim: task start received",
            Phase::Start => "start invoked",
            Phase::NetworkReady => "network ready",
            Phase::StorageReady => "storage ready",
            Phase::MonitorExec => "monitor exec'd",
            Phase::Started => "start done",
            Phase::ShimExit => "shim: monitor exit seen",
            Phase::ShimDelete => "shim: task delete received",
            Phase::Deleted => "delete done",
        }
    }

    fn from_code(code: &str) -> Option<Phase> {
        let i: usize = code.strip_prefix("TS")?.parse().ok()?;
        Phase::ALL.get(i).copied()
    }

    /// A phase that begins a new log for the id (a re-used id starts afresh).
    fn begins_run(self) -> bool {
        matches!(self, Phase::ShimCreate | Phase::Create)
    }
}

/// One line of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub phase: Phase,
    pub nanos: u64,
    pub pid: u32,
}

static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
/// The open log of the last id marked: the container process keeps writing to it after
/// it has moved into the monitor's root, where the directory is out of reach.
static OPEN: Mutex<Option<(String, File)>> = Mutex::new(None);
/// (getpid(), pid as the host sees it): they differ in a new pid namespace.
static PID: Mutex<Option<(u32, u32)>> = Mutex::new(None);

/// Settles whether timestamps are on for this process, from the configuration file's
/// section and the environment. Without a call, the environment alone decides.
pub fn init(cfg: &crate::config::Timestamps) {
    let _ = DIR.set(enabled_dir(cfg));
}

/// [`init`] from urunc's configuration file (for the shim, which reads it once; a bad
/// file means the defaults here, urunc itself reports it).
pub fn init_from_config_file() {
    init(
        &crate::config::Config::load(None)
            .unwrap_or_default()
            .timestamps,
    );
}

/// Records `phase` for container `id` now, when enabled. Never fails the caller.
pub fn mark(id: &str, phase: Phase) {
    let dir = DIR.get_or_init(|| enabled_dir(&Default::default()));
    if let Some(dir) = dir {
        let nanos = now_nanos();
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{} {nanos} {}\n", phase.code(), host_pid());
        if let Some((_, f)) = open
            .as_mut()
            .filter(|(i, _)| i == id && !phase.begins_run())
        {
            let _ = f.write_all(line.as_bytes());
        } else if let Ok(f) = Log::new(dir).record(id, phase, nanos, host_pid()) {
            *open = Some((id.to_string(), f));
        }
    }
}

/// Our pid in the host's pid namespace (read from the host's /proc while it is there).
fn host_pid() -> u32 {
    let own = std::process::id();
    let mut cached = PID.lock().unwrap_or_else(|e| e.into_inner());
    match *cached {
        Some((p, host)) if p == own => host,
        _ => {
            let host = std::fs::read_link("/proc/self")
                .ok()
                .and_then(|l| l.to_str()?.parse().ok())
                .unwrap_or(own);
            *cached = Some((own, host));
            host
        }
    }
}

fn enabled_dir(cfg: &crate::config::Timestamps) -> Option<PathBuf> {
    let env_on = std::env::var(ENV).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    (cfg.enabled || env_on).then(|| directory(cfg))
}

/// Where the logs are, enabled or not (for reading them back).
pub fn directory(cfg: &crate::config::Timestamps) -> PathBuf {
    std::env::var_os(DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| cfg.dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call).
pub fn now_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The logs in one directory.
pub struct Log {
    dir: PathBuf,
}

impl Log {
    pub fn new(dir: impl Into<PathBuf>) -> Log {
        Log { dir: dir.into() }
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        crate::container::state::validate_id(id)?;
        if id.contains('/') || id.len() > 255 {
            return Err(Error::InvalidId {
                id: id.into(),
                msg: "not usable as a file name".into(),
            });
        }
        Ok(self.dir.join(id))
    }

    /// Appends one line (or starts the log afresh for a phase that begins a run) and
    /// returns the open log.
    pub fn record(&self, id: &str, phase: Phase, nanos: u64, pid: u32) -> Result<File> {
        let path = self.path(id)?;
        let line = format!("{} {nanos} {pid}\n", phase.code());
        // The shim's create opens the run; urunc's create continues it when it follows.
        let fresh = phase.begins_run()
            && !(phase == Phase::Create
                && self.read(id).ok().and_then(|e| e.last().map(|e| e.phase))
                    == Some(Phase::ShimCreate));
        if fresh {
            std::fs::create_dir_all(&self.dir).ctx(|| format!("create {:?}", self.dir))?;
            self.prune(id);
        }
        // Always O_APPEND: processes holding the log open (create's clone) must not
        // overwrite what others (start) added.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("open {path:?}"))?;
        if fresh {
            f.set_len(0).ctx(|| format!("truncate {path:?}"))?;
        }
        // One write of a short line: concurrent appends from other processes stay whole.
        f.write_all(line.as_bytes())
            .ctx(|| format!("write {path:?}"))?;
        Ok(f)
    }

    /// Keeps the newest [`KEEP`] - 1 logs other than `id`'s.
    fn prune(&self, id: &str) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        // Names only (no stat) until there is something to remove.
        let names: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name() != id)
            .map(|e| e.path())
            .collect();
        if names.len() < KEEP {
            return;
        }
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> = names
            .into_iter()
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .collect();
        logs.sort();
        for (_, p) in &logs[..logs.len().saturating_sub(KEEP - 1)] {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The entries of `id`'s log, in time order.
    pub fn read(&self, id: &str) -> Result<Vec<Entry>> {
        let path = self.path(id)?;
        let text = std::fs::read_to_string(&path).ctx(|| format!("read {path:?}"))?;
        let mut entries = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Entry {
                    phase: Phase::from_code(f.next()?)?,
                    nanos: f.next()?.parse().ok()?,
                    pid: f.next()?.parse().ok()?,
                })
            })
            .collect::<Vec<_>>();
        entries.sort_by_key(|e| e.nanos);
        Ok(entries)
    }
}

/// The breakdown: phase, offset from the first entry, delta from the previous, pid.
pub fn report(entries: &[Entry]) -> String {
    let mut out = format!(
        "{:<4} {:<36} {:>12} {:>11} {:>8}\n",
        "", "phase", "offset (ms)", "delta (ms)", "pid"
    );
    let first = entries.first().map_or(0, |e| e.nanos);
    let mut prev = first;
    for e in entries {
        let ms = |n: u64| n as f64 / 1e6;
        out.push_str(&format!(
            "{:<4} {:<36} {:>12.3} {:>11.3} {:>8}\n",
            e.phase.code(),
            e.phase.describe(),
            ms(e.nanos - first),
            ms(e.nanos - prev),
            e.pid
        ));
        prev = e.nanos;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn codes_round_trip_and_are_ordered() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.code(), format!("TS{i:02}"));
            assert_eq!(Phase::from_code(&p.code()), Some(*p));
        }
        assert_eq!(Phase::from_code("TS99"), None);
        assert_eq!(Phase::from_code("XX01"), None);
    }

    #[test]
    fn records_read_back_sorted_and_a_new_run_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::new(dir.path().join("ts"));
        log.record("c1", Phase::ShimCreate, 100, 1).unwrap();
        log.record("c1", Phase::Create, 200, 2).unwrap();
        // Written late by another process: still read in time order.
        log.record("c1", Phase::NamespacesReady, 400, 3).unwrap();
        log.record("c1", Phase::SpecParsed, 300, 2).unwrap();
        let e = log.read("c1").unwrap();
        let phases: Vec<Phase> = e.iter().map(|e| e.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::ShimCreate,
                Phase::Create,
                Phase::SpecParsed,
                Phase::NamespacesReady
            ]
        );
        // The id used again, without a shim: the old entries are gone.
        log.record("c1", Phase::Create, 1000, 9).unwrap();
        assert_eq!(
            log.read("c1").unwrap(),
            [Entry {
                phase: Phase::Create,
                nanos: 1000,
                pid: 9
            }]
        );
    }

    #[test]
    fn ids_that_are_not_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::new(dir.path());
        for id in ["", "..", "a/b", "../x"] {
            assert!(log.record(id, Phase::Create, 1, 1).is_err(), "{id:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn old_logs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::new(dir.path());
        for i in 0..KEEP + 3 {
            log.record(&format!("c{i}"), Phase::Create, 1, 1).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), KEEP);
        assert!(dir.path().join(format!("c{}", KEEP + 2)).exists());
    }

    #[test]
    fn report_has_offsets_and_deltas() {
        let e = [
            Entry {
                phase: Phase::Create,
                nanos: 5_000_000,
                pid: 10,
            },
            Entry {
                phase: Phase::SpecParsed,
                nanos: 6_500_000,
                pid: 10,
            },
            Entry {
                phase: Phase::MonitorExec,
                nanos: 9_000_000,
                pid: 11,
            },
        ];
        let r = report(&e);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), 4, "{r}");
        assert!(lines[1].starts_with("TS01 create invoked"), "{r}");
        assert!(lines[2].contains("1.500       1.500"), "{r}");
        assert!(lines[3].contains("4.000       2.500"), "{r}");
    }

    #[test]
    fn directory_prefers_the_environment_then_the_file() {
        let cfg = crate::config::Timestamps {
            enabled: false,
            dir: Some("/var/tmp/ts".into()),
        };
        // The variable is only read here, by this test.
        if std::env::var_os(DIR_ENV).is_none() {
            assert_eq!(directory(&cfg), Path::new("/var/tmp/ts"));
            assert_eq!(directory(&Default::default()), Path::new(DEFAULT_DIR));
        }
    }

    #[test]
    fn the_config_file_section_is_checked() {
        let cfg = crate::config::Config::parse("[timestamps]\nenabled = true\ndir = \"/run/ts\"\n")
            .unwrap();
        assert!(cfg.timestamps.enabled);
        assert_eq!(cfg.timestamps.dir.as_deref(), Some(Path::new("/run/ts")));
        let e = crate::config::Config::parse("[timestamps]\ndir = \"ts\"\n").unwrap_err();
        assert!(
            e.contains("[timestamps] dir") && e.contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_nanos();
        let b = now_nanos();
        assert!(a > 0 && b >= a);
    }
}
