//! The container process, from `clone` to `exec` of the monitor. It runs in the new
//! namespaces, builds the monitor's root, waits for `urunc start` on the exec FIFO,
//! sets up the guest's network (known only now: CNI may configure the namespace after
//! `create`), renders the monitor's argv and then *becomes* the monitor, so the
//! container's pid is the VMM's.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::fcntl::{openat, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup2, execve, setgid, setgroups, sethostname, setsid, setuid, Gid, Uid};
use oci_spec::runtime::Spec;

use super::hooks::{self, Kind};
use super::sync;
use super::vmroot::{self, VmRootSpec};
use crate::error::{Context, Error, Result};
use crate::guest_init;
use crate::network::{self, NetConfig};
use crate::plan::{GuestFile, Plan};
use crate::sys::capabilities::{self, CapSets};
use crate::timestamps::{mark, Phase};

pub struct ChildSetup {
    /// The container id, for its start-up timestamps.
    pub id: String,
    pub sock: UnixStream,
    pub join: Vec<(CloneFlags, File)>,
    pub unshare_mount: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    pub hostname: Option<String>,
    pub tty: Option<OwnedFd>,
    pub vm_root: PathBuf,
    pub devices: Vec<String>,
    pub rootfs: PathBuf,
    pub files: Vec<GuestFile>,
    pub host_files: Vec<(PathBuf, PathBuf, bool)>,
    pub binary: PathBuf,
    /// Rendered into the monitor's argv at start, with the network.
    pub plan: Plan,
    pub env: Vec<CString>,
    pub state_dir: OwnedFd,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub no_new_privs: bool,
    pub caps: Option<CapSets>,
    pub preserve_fds: i32,
    pub spec: Spec,
}

/// Entry point after clone. Never returns on success (the monitor replaces us).
pub fn run(mut c: ChildSetup) -> isize {
    let err = match main(&mut c) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Before COMMIT the parent reports the error; after it, nobody listens but the
    // container's own stderr, which is where the user will look.
    if sync::send(&mut c.sock, sync::ERROR, &err.to_string()).is_err() {
        let _ = writeln!(std::io::stderr(), "urunc: {err}");
    }
    1
}

fn main(c: &mut ChildSetup) -> Result<std::convert::Infallible> {
    // Die with `urunc create` until it commits: a half-created container must not linger.
    set_pdeathsig(libc::SIGKILL)?;
    sync::expect(&mut c.sock, sync::GO, "urunc create")?;

    for (flag, file) in &c.join {
        setns(file, *flag).ctx(|| format!("join namespace {flag:?}"))?;
    }
    if c.unshare_mount {
        unshare(CloneFlags::CLONE_NEWNS).ctx(|| "unshare the mount namespace".into())?;
    }
    setsid().ctx(|| "setsid".into())?;
    if let Some(tty) = &c.tty {
        // SAFETY: TIOCSCTTY on a pty slave we own.
        if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| "set the controlling terminal".into());
        }
        for fd in 0..3 {
            // SAFETY: duplicating onto the standard descriptors we are replacing.
            let mut target = unsafe { OwnedFd::from_raw_fd(fd) };
            dup2(tty, &mut target).ctx(|| "attach the terminal".into())?;
            std::mem::forget(target);
        }
    }
    if let (true, Some(h)) = (c.new_uts, &c.hostname) {
        sethostname(h).ctx(|| format!("set hostname {h:?}"))?;
    }
    vmroot::build(&VmRootSpec {
        root: &c.vm_root,
        devices: &c.devices,
        rootfs: &c.rootfs,
        files: &c.files,
        host_files: &c.host_files,
        shares: &c.plan.shares,
        binary: &c.binary,
        new_pid_ns: c.new_pid,
    })?;
    mark(&c.id, Phase::NamespacesReady);
    sync::send(&mut c.sock, sync::READY, "").ctx(|| "report ready".into())?;

    let creating = sync::expect(&mut c.sock, sync::HOOKS_DONE, "urunc create")?;
    hooks::run(&c.spec, Kind::CreateContainer, creating.as_bytes())?;
    vmroot::enter(&c.vm_root)?;
    sync::send(&mut c.sock, sync::CREATED, "").ctx(|| "report created".into())?;
    let created = sync::expect(&mut c.sock, sync::COMMIT, "urunc create")?;
    set_pdeathsig(0)?;
    // Until this arrives `urunc create` must not exit: its exit would still kill us.
    sync::send(&mut c.sock, sync::DETACHED, "").ctx(|| "report detached".into())?;

    // Blocks until `urunc start` opens the FIFO for reading. The write end then stays
    // open (close-on-exec) until the monitor replaces us: `start` waits for that EOF,
    // so its poststart hooks run after the startContainer hooks and the exec (OCI order).
    let fifo = openat(
        &c.state_dir,
        super::state::EXEC_FIFO,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open the exec FIFO".into())?;
    let mut fifo = File::from(fifo);
    // Failing here, before the byte, makes `urunc start` fail too, with this message.
    let argv = prepare_guest(c)
        .and_then(|argv| start_virtiofsd(c).map(|()| argv))
        .inspect_err(|e| {
            if let Ok(fd) = openat(
                &c.state_dir,
                super::state::START_ERROR,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                let _ = File::from(fd).write_all(e.to_string().as_bytes());
            }
        })?;
    mark(&c.id, Phase::StorageReady);
    fifo.write_all(b"0").ctx(|| "signal start".into())?;

    hooks::run(&c.spec, Kind::StartContainer, created.as_bytes())?;
    drop_privileges(c)?;
    close_other_fds(3 + c.preserve_fds);
    let path = CString::new(c.binary.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Other("monitor path contains NUL".into()))?;
    mark(&c.id, Phase::MonitorExec);
    // Last: a seccomp filter installed here must only allow what the monitor needs.
    crate::monitor::by_name(&c.plan.monitor)
        .map_or(Ok(()), |m| m.before_exec(&c.plan.vm))
        .map_err(Error::Other)?;
    execve(&path, &argv, &c.env).ctx(|| format!("exec {:?}", c.binary))?;
    unreachable!("execve returned without an error")
}

/// Starts one `virtiofsd` per virtio-fs share, inside the monitor's root and before
/// privileges are dropped (it needs root to serve the files and chroot), and waits
/// for its socket. Each dies with the monitor (parent-death signal) or when the
/// monitor closes its connection.
fn start_virtiofsd(c: &ChildSetup) -> Result<()> {
    for share in &c.plan.shares {
        let Some(socket) = &share.socket else {
            continue;
        };
        let argv = crate::storage::virtiofsd_argv(share)
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| Error::Other(format!("{a:?} contains NUL")))
            })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: this process is single-threaded; the child only calls
        // async-signal-safe functions before execve or _exit.
        let pid = match unsafe { nix::unistd::fork() }.ctx(|| "fork virtiofsd".into())? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl/close_range/execv/_exit with valid arguments.
                unsafe {
                    libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    );
                    close_other_fds(3);
                    let mut p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                    p.push(std::ptr::null());
                    libc::execv(p[0], p.as_ptr());
                    libc::_exit(127)
                }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(nix::sys::wait::WaitStatus::Exited(_, code)) =
                nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                return Err(Error::Other(format!(
                    "virtiofsd for {} exited with status {code} before serving",
                    share.tag
                )));
            }
            if std::time::Instant::now() >= deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(Error::Other(format!(
                    "virtiofsd for {} made no socket within 10 s",
                    share.tag
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The monitor connects as the container's user.
        nix::unistd::chown(
            socket,
            Some(Uid::from_raw(c.uid)),
            Some(Gid::from_raw(c.gid)),
        )
        .ctx(|| format!("chown {socket:?}"))?;
    }
    Ok(())
}

/// In the container's network namespace, at start: sets up the network, completes the
/// guest init's configuration and renders the monitor's argv.
fn prepare_guest(c: &ChildSetup) -> Result<Vec<CString>> {
    let net = network::setup(&c.plan.network).map_err(|e| Error::Other(format!("network: {e}")))?;
    mark(&c.id, Phase::NetworkReady);
    let rendered = render(c, net.as_ref());
    if rendered.is_err() {
        if let Some(n) = &net {
            let _ = network::teardown(&n.tap, n.mode == network::NetMode::Static);
        }
    }
    rendered
}

fn render(c: &ChildSetup, net: Option<&NetConfig>) -> Result<Vec<CString>> {
    if let Some(cfg) = c.plan.urunit_config(net) {
        guest_init::append_config(&c.state_dir, &cfg)?;
    }
    if let Some(n) = net {
        // What the guest got, for people and tools looking at the state directory.
        let json = serde_json::to_vec_pretty(n).expect("the network serialises");
        let fd = openat(
            &c.state_dir,
            network::STATE_FILE,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .ctx(|| format!("create {}", network::STATE_FILE))?;
        File::from(fd)
            .write_all(&json)
            .ctx(|| format!("write {}", network::STATE_FILE))?;
    }
    if let Some((name, text)) = c.plan.render_config_file(net)? {
        // Rewritten in place: the monitor's root has it bound read-only.
        let fd = openat(
            &c.state_dir,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {name}"))?;
        File::from(fd)
            .write_all(text.as_bytes())
            .ctx(|| format!("write {name}"))?;
    }
    c.plan
        .render(net)?
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| Error::Other(format!("{a:?} contains NUL"))))
        .collect()
}

fn set_pdeathsig(sig: libc::c_int) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "prctl(PR_SET_PDEATHSIG)".into());
    }
    Ok(())
}

fn drop_privileges(c: &ChildSetup) -> Result<()> {
    if c.no_new_privs {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "set no_new_privs".into());
        }
    }
    if let Some(caps) = &c.caps {
        capabilities::drop_bounding(caps)?;
        capabilities::keep_across_setuid()?;
    }
    if c.uid != 0 || c.gid != 0 || !c.additional_gids.is_empty() {
        let gids: Vec<Gid> = c
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&gids).ctx(|| "setgroups".into())?;
        setgid(Gid::from_raw(c.gid)).ctx(|| format!("setgid {}", c.gid))?;
        setuid(Uid::from_raw(c.uid)).ctx(|| format!("setuid {}", c.uid))?;
    }
    if let Some(caps) = &c.caps {
        capabilities::apply(caps)?;
    }
    Ok(())
}

/// Everything above the preserved descriptors closes at exec.
fn close_other_fds(first: i32) {
    // SAFETY: close_range only flips close-on-exec flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}
