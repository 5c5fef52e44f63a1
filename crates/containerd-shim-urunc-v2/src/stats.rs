//! Stats: the cgroup metrics of the container process (the VMM for a unikernel
//! container), in containerd's `io.containerd.cgroups.v1.Metrics` shape.
//!
//! The crate's `collect_metrics` fills memory, pids and (cgroup v2) CPU usage; on a v1
//! or hybrid host the CPU usage lives in the `cpuacct` controller, read here.

use std::path::PathBuf;

use containerd_shim::cgroup::{collect_metrics, get_cgroup};
use containerd_shim::protos::cgroups::metrics::{CPUStat, CPUUsage, Metrics};

use crate::error::{Error, Result};

/// The protobuf package of containerd's cgroup v1 metrics.
pub const METRICS_PACKAGE: &str = "io.containerd.cgroups.v1";

pub fn metrics(pid: i32) -> Result<Metrics> {
    if pid <= 0 {
        return Err(Error::precondition("the task has no process"));
    }
    let cgroup = get_cgroup(pid as u32).map_err(Error::from)?;
    let mut m = collect_metrics(&cgroup).map_err(Error::from)?;
    if let Some(usage) = cpuacct_usage(pid) {
        let mut cpu = m.cpu.take().unwrap_or_else(CPUStat::new);
        let mut u = cpu.usage.take().unwrap_or_else(CPUUsage::new);
        if u.total == 0 {
            u.total = usage.total;
            u.user = usage.user;
            u.kernel = usage.kernel;
            u.per_cpu = usage.per_cpu;
        }
        cpu.usage = Some(u).into();
        m.cpu = Some(cpu).into();
    }
    Ok(m)
}

/// The v1 `cpuacct` directory of `pid`, from /proc/PID/cgroup.
fn cpuacct_dir(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if !controllers.split(',').any(|c| c == "cpuacct") {
            return None;
        }
        let mount = ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("cpuacct.usage").exists())?;
        Some(mount.join(path.trim_start_matches('/')))
    })
}

/// cpuacct usage in nanoseconds (user/kernel converted from USER_HZ ticks).
fn cpuacct_usage(pid: i32) -> Option<CPUUsage> {
    let dir = cpuacct_dir(pid)?;
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let mut u = CPUUsage::new();
    u.total = read("cpuacct.usage")?.trim().parse().ok()?;
    if let Some(per) = read("cpuacct.usage_percpu") {
        u.per_cpu = per
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    if let Some(stat) = read("cpuacct.stat") {
        for line in stat.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            let ns = v.saturating_mul(1_000_000_000 / hz);
            match k {
                "user" => u.user = ns,
                "system" => u.kernel = ns,
                _ => {}
            }
        }
    }
    Some(u)
}
