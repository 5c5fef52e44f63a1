//! Solo5's tenders: `solo5-hvt` (KVM) and `solo5-spt` (a seccomp-confined process, no
//! KVM). Usage: `solo5-hvt [TENDER OPTIONS] [--] KERNEL [APPLICATION ARGUMENTS]`, with
//! `--mem=<MB>`, `--net:<name>=<tap>`, `--net-mac:<name>=<mac>` and
//! `--block:<name>=<path>`, where the device names are the ones in the unikernel's
//! manifest (given by the guest type, see [`super::GuestDevices`]). Solo5 cannot load an
//! initrd. The application's command line is one argument after the kernel.
//!
//! Seccomp: `solo5-spt` always confines itself, and `solo5-hvt` does since Solo5
//! 0.11.0. For an older `solo5-hvt`, when the spec asks for seccomp, urunc installs
//! the allow-list [`HVT_SYSCALLS`] right before exec'ing it, as the reference
//! implementation does; on a self-confining one it adds nothing (two stacked filters
//! would kill the tender while it installs its own). `tender_seccomp` in
//! `[monitors.solo5-hvt]` says which it is; unset, the binary is searched for
//! libseccomp (the self-confining tenders link it, older ones never did).

use std::io::Read;
use std::path::Path;

use libc::c_long;

use super::{Accel, Monitor, MonitorSettings, NetConfig, VmConfig};
use crate::sys::seccomp;

/// What `solo5-hvt` (before 0.11.0, dynamically linked against glibc) calls from
/// `execve` to its exit; anything else kills it with SIGSYS.
#[rustfmt::skip]
pub const HVT_SYSCALLS: &[c_long] = &[
    // Loading the tender: the exec itself, the dynamic loader and libc start-up.
    libc::SYS_execve, libc::SYS_brk, libc::SYS_mmap, libc::SYS_mprotect, libc::SYS_munmap,
    libc::SYS_openat, libc::SYS_read, libc::SYS_close, libc::SYS_fstat, libc::SYS_newfstatat,
    libc::SYS_lseek, libc::SYS_pread64, libc::SYS_set_tid_address, libc::SYS_set_robust_list,
    libc::SYS_rseq, libc::SYS_prlimit64, libc::SYS_getrandom,
    // It refuses to run if READ_IMPLIES_EXEC is set (personality), installs
    // SIGINT/SIGTERM handlers.
    libc::SYS_personality, libc::SYS_rt_sigaction, libc::SYS_rt_sigreturn,
    // KVM (/dev/kvm and the VM and vCPU fds) and the tap's TUNSETIFF are ioctls;
    // the guest's console goes to stdout.
    libc::SYS_ioctl, libc::SYS_write,
    // The network module (frames are read and written on the tap) and the guest's
    // yield hypercall: epoll and a timerfd for its deadline.
    libc::SYS_epoll_create1, libc::SYS_epoll_ctl, libc::SYS_epoll_pwait,
    libc::SYS_timerfd_create, libc::SYS_timerfd_settime, libc::SYS_nanosleep,
    // In the reference implementation's list, which was traced on its hosts (the tender's
    // source shows no use of them): kept so that what ran there runs here.
    libc::SYS_socket, libc::SYS_bind, libc::SYS_getsockname, libc::SYS_sendto,
    libc::SYS_recvmsg,
    // The block module: positioned reads and writes.
    libc::SYS_pwrite64,
    // The wall-clock hypercall, when the vDSO falls back to the system call.
    libc::SYS_clock_gettime,
    // Exits, abort() (getpid + tgkill) and glibc's locks.
    libc::SYS_exit, libc::SYS_exit_group, libc::SYS_getpid, libc::SYS_tgkill, libc::SYS_futex,
    // x86_64 only: TLS set-up and the legacy calls its glibc start-up still uses.
    #[cfg(target_arch = "x86_64")] libc::SYS_arch_prctl,
    #[cfg(target_arch = "x86_64")] libc::SYS_open,
    #[cfg(target_arch = "x86_64")] libc::SYS_stat,
    #[cfg(target_arch = "x86_64")] libc::SYS_access,
    #[cfg(target_arch = "aarch64")] libc::SYS_faccessat,
];

/// Strings only a self-confining tender contains: its link to libseccomp, or
/// libseccomp's own symbols and messages when linked statically.
const SELF_SECCOMP_MARKERS: &[&[u8]] = &[b"libseccomp", b"seccomp_"];

/// At most this much of a binary is searched.
const MAX_SCAN: u64 = 64 << 20;

/// True when `r` contains one of [`SELF_SECCOMP_MARKERS`] (read in chunks).
fn has_marker(mut r: impl Read) -> std::io::Result<bool> {
    let keep = SELF_SECCOMP_MARKERS
        .iter()
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let mut buf = vec![0u8; 1 << 16];
    let mut filled = 0;
    loop {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(false);
        }
        filled += n;
        let window = &buf[..filled];
        if SELF_SECCOMP_MARKERS
            .iter()
            .any(|m| window.windows(m.len()).any(|w| w == *m))
        {
            return Ok(true);
        }
        // Keep the tail so a marker across two reads is still seen.
        let tail = filled.saturating_sub(keep);
        buf.copy_within(tail..filled, 0);
        filled -= tail;
    }
}

/// Whether the tender at `binary` installs its own seccomp filter. Unreadable counts
/// as not: urunc then confines it (the reference implementation's behaviour).
fn binary_confines_itself(binary: &Path) -> bool {
    std::fs::File::open(binary)
        .and_then(|f| has_marker(f.take(MAX_SCAN)))
        .unwrap_or(false)
}

pub struct Solo5 {
    tender: &'static str,
}

impl Solo5 {
    pub const HVT: Solo5 = Solo5 { tender: "hvt" };
    pub const SPT: Solo5 = Solo5 { tender: "spt" };

    /// urunc installs its filter: hvt, the spec asks for seccomp, and the tender
    /// does not confine itself.
    fn urunc_filter(&self, vm: &VmConfig) -> bool {
        self.tender == "hvt" && vm.seccomp && !vm.tender_seccomp
    }
}

impl Monitor for Solo5 {
    fn name(&self) -> &'static str {
        match self.tender {
            "hvt" => "solo5-hvt",
            _ => "solo5-spt",
        }
    }

    fn default_binary(&self) -> String {
        self.name().into()
    }

    fn uses_kvm(&self, _accel: Accel) -> bool {
        self.tender == "hvt"
    }

    fn supports_initrd(&self) -> bool {
        false
    }

    fn tender_seccomp(&self, settings: &MonitorSettings, binary: &Path) -> bool {
        match self.tender {
            "hvt" => settings
                .tender_seccomp
                .unwrap_or_else(|| binary_confines_itself(binary)),
            _ => true,
        }
    }

    fn before_exec(&self, vm: &VmConfig) -> Result<(), String> {
        if self.urunc_filter(vm) {
            seccomp::install(HVT_SYSCALLS)
                .map_err(|e| format!("install the seccomp filter for solo5-hvt: {e}"))?;
        }
        Ok(())
    }

    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String> {
        let mut a = vec![
            vm.binary.display().to_string(),
            format!("--mem={}", vm.memory_mib),
        ];
        let d = &vm.devices;
        if let Some(n) = net {
            a.push(format!("--net:{}={}", d.solo5_net, n.tap));
            a.push(format!("--net-mac:{}={}", d.solo5_net, n.mac));
        }
        if let Some(b) = &vm.block {
            a.push(format!("--block:{}={}", d.solo5_block, b.display()));
        }
        a.extend(d.monitor_args.iter().cloned());
        a.extend(vm.extra_args.iter().cloned());
        a.push("--".into());
        a.push(vm.kernel.display().to_string());
        if !vm.cmdline.is_empty() {
            a.push(vm.cmdline.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{net, vm as base};
    use super::*;
    use std::path::PathBuf;

    fn vm(bin: &str) -> VmConfig {
        let mut v = base(bin);
        v.cmdline = "--hello=world".into();
        v.devices.solo5_net = "service".into();
        v.devices.solo5_block = "storage".into();
        v
    }

    #[test]
    fn golden_hvt() {
        let v = vm("/usr/bin/solo5-hvt");
        assert_eq!(
            Solo5::HVT.argv(&v, None),
            [
                "/usr/bin/solo5-hvt",
                "--mem=256",
                "--",
                "/guest/kernel",
                "--hello=world"
            ]
        );
        assert_eq!(Solo5::HVT.devices(&v), vec!["/dev/kvm"]);
        let mut v = v;
        v.block = Some(PathBuf::from("/guest/block"));
        v.memory_mib = 64;
        assert_eq!(
            Solo5::HVT.argv(&v, Some(&net())).join(" "),
            "/usr/bin/solo5-hvt --mem=64 --net:service=urunc0a1b2c3d4e \
             --net-mac:service=02:42:0a:58:00:07 --block:storage=/guest/block \
             -- /guest/kernel --hello=world"
        );
    }

    #[test]
    fn filter_only_for_hvt_with_seccomp_and_an_older_tender() {
        let mut v = vm("/usr/bin/solo5-hvt");
        assert!(!Solo5::HVT.urunc_filter(&v), "the spec has no seccomp");
        v.seccomp = true;
        assert!(Solo5::HVT.urunc_filter(&v));
        v.tender_seccomp = true;
        assert!(
            !Solo5::HVT.urunc_filter(&v),
            "never stacked on the tender's own"
        );
        v.tender_seccomp = false;
        assert!(!Solo5::SPT.urunc_filter(&v), "spt confines itself");
        // The filter changes nothing in the arguments.
        let mut plain = v.clone();
        plain.seccomp = false;
        assert_eq!(Solo5::HVT.argv(&v, None), Solo5::HVT.argv(&plain, None));
    }

    #[test]
    fn tender_seccomp_from_the_config_else_the_binary() {
        let dir = std::env::temp_dir().join(format!("urunc-solo5-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("old-hvt");
        let new = dir.join("new-hvt");
        std::fs::write(&old, b"\x7fELF no filter here").unwrap();
        // A marker straddling the 64 KiB read boundary is still found.
        let mut bytes = vec![b'x'; (1 << 16) - 4];
        bytes.extend_from_slice(b"\0libseccomp.so.2\0");
        std::fs::write(&new, &bytes).unwrap();
        let unset = MonitorSettings::default();
        assert!(!Solo5::HVT.tender_seccomp(&unset, &old));
        assert!(Solo5::HVT.tender_seccomp(&unset, &new));
        assert!(!Solo5::HVT.tender_seccomp(&unset, &dir.join("missing")));
        let said = |b| MonitorSettings {
            tender_seccomp: Some(b),
            ..Default::default()
        };
        assert!(Solo5::HVT.tender_seccomp(&said(true), &old));
        assert!(!Solo5::HVT.tender_seccomp(&said(false), &new));
        assert!(Solo5::SPT.tender_seccomp(&unset, &old));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tender_seccomp_is_a_solo5_hvt_setting() {
        use crate::config::Config;
        let ok = Config::parse("[monitors.solo5-hvt]\ntender_seccomp = false\n").unwrap();
        assert_eq!(ok.monitor("solo5-hvt").tender_seccomp, Some(false));
        let err = Config::parse("[monitors.qemu]\ntender_seccomp = true\n").unwrap_err();
        assert!(
            err.contains("tender_seccomp is a solo5-hvt setting"),
            "{err}"
        );
    }

    #[test]
    fn the_hvt_list_builds_a_filter() {
        let p = seccomp::program(HVT_SYSCALLS).unwrap();
        assert!(p.len() > HVT_SYSCALLS.len());
        let mut sorted = HVT_SYSCALLS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), HVT_SYSCALLS.len(), "duplicates in the list");
    }

    #[test]
    fn golden_spt() {
        let mut v = vm("/usr/bin/solo5-spt");
        v.cmdline = String::new();
        assert_eq!(
            Solo5::SPT.argv(&v, Some(&net())).join(" "),
            "/usr/bin/solo5-spt --mem=256 --net:service=urunc0a1b2c3d4e \
             --net-mac:service=02:42:0a:58:00:07 -- /guest/kernel"
        );
        assert!(Solo5::SPT.devices(&v).is_empty());
        assert!(!Solo5::SPT.supports_initrd());
    }
}
