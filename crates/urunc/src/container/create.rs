//! `create`: validate everything, then clone the container process into its
//! namespaces and cgroup, and leave it waiting for `start`. Any failure undoes what was
//! done (process, cgroups, state directory) before the error is returned.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{clone, setns, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

use super::hooks::{self, Kind};
use super::init::{self, ChildSetup};
use super::state::{now_rfc3339, write_atomic, LateHooks, State, StateDir, Status};
use super::{sync, Runtime};
use crate::bundle::Bundle;
use crate::error::{Context, Error, Result};
use crate::guest_init;
use crate::plan::{self, Plan};
use crate::sys::{capabilities, cgroups, console, namespaces::Namespaces, process};
use crate::timestamps::{self, Phase};
use crate::unikernel::UnikernelConfig;

#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// Not a unikernel bundle: the caller hands the command to runc.
    Delegate,
    Container {
        pid: i32,
    },
}

/// Undoes a half-made container unless disarmed.
struct Undo<'a> {
    dir: &'a StateDir,
    cgroups: Vec<PathBuf>,
    pid: Option<(i32, u64)>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((pid, start)) = self.pid {
            if process::is_alive(pid, start) {
                let _ = process::signal(pid, Signal::SIGKILL);
            }
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        cgroups::remove(&self.cgroups);
        let _ = self.dir.remove();
    }
}

impl Runtime {
    pub fn create(&self, o: &CreateOptions) -> Result<Created> {
        super::state::validate_id(&o.id)?;
        timestamps::mark(&o.id, Phase::Create);
        // The id is reserved first, before anything slow: from here on every other
        // command on it finds our state ("creating"), never an empty directory.
        let me = std::process::id() as i32;
        let mut state = State {
            id: o.id.clone(),
            bundle: o.bundle.clone(),
            rootfs: PathBuf::new(),
            pid: 0,
            pid_start: 0,
            created: now_rfc3339(),
            annotations: Default::default(),
            cgroup_dirs: vec![],
            plan: None,
            created_ok: false,
            creator: me,
            creator_start: process::start_time(me).unwrap_or(0),
            late_hooks: None,
        };
        let (dir, lock) = StateDir::reserve(&self.root, &o.id, &state)?;
        let mut undo = Undo {
            dir: &dir,
            cgroups: vec![],
            pid: None,
            armed: true,
        };
        let bundle = Bundle::load(&o.bundle)?;
        let Some(cfg) = UnikernelConfig::load(&bundle.annotations(), &bundle.rootfs)? else {
            // runc makes it; the reservation goes (the Undo) before runc is exec'd.
            return Ok(Created::Delegate);
        };
        let plan = plan::build(&o.id, &bundle, &cfg, &self.config)?;
        let ns = Namespaces::from_spec(&bundle.spec)?;
        timestamps::mark(&o.id, Phase::SpecParsed);
        let tty = match (bundle.terminal(), &o.console_socket) {
            (true, None) => {
                return Err(Error::Other(
                    "process.terminal is true but no --console-socket was given".into(),
                ))
            }
            (false, _) => None,
            (true, Some(sock)) => Some(sock.clone()),
        };

        let mut annotations = bundle
            .annotations()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>();
        annotations.extend(cfg.to_map());
        state.bundle = bundle.dir.clone();
        state.rootfs = bundle.rootfs.clone();
        state.annotations = annotations;
        state.plan = Some(plan.clone());
        state.late_hooks = Some(LateHooks {
            poststart: hooks::list(&bundle.spec, Kind::Poststart),
            poststop: hooks::list(&bundle.spec, Kind::Poststop),
        });
        let linux = bundle.spec.linux().as_ref();
        let cg_path = cgroups::container_path(
            linux
                .and_then(|l| l.cgroups_path().as_ref())
                .and_then(|p| p.to_str()),
            &o.id,
            self.systemd_cgroup,
        );
        let limits = limits_of(&bundle);
        // The cgroup directories are recorded before they exist, so a `create` killed
        // while making them leaves none that `delete` does not know of. They, the plan
        // and the pid go in one save, once the process exists: until then nothing
        // outside the state directory was made, and a `create` killed earlier leaves a
        // reservation that `delete` removes (each save is a new file, which costs).
        state.cgroup_dirs = cgroups::dirs(&cg_path);
        mkfifo(&dir.fifo(), Mode::from_bits_truncate(0o622))
            .ctx(|| "create the exec FIFO".into())?;
        std::fs::create_dir(dir.vm_root()).ctx(|| "create the monitor root".into())?;
        // The monitor's configuration file (Firecracker), bound into its root; `start`
        // rewrites it with the network.
        if let Some((name, text)) = plan.render_config_file(None)? {
            write_atomic(&dir.path.join(&name), text.as_bytes())?;
        }
        if let Some(init) = &plan.urunit {
            let user = bundle
                .spec
                .process()
                .as_ref()
                .map(|p| p.user().clone())
                .unwrap_or_default();
            guest_init::prepare(&dir.path, &bundle.rootfs, init, user.uid(), user.gid())?;
        }

        // If `create` fails half-way, the undo removes whatever of these it left.
        undo.cgroups = state.cgroup_dirs.clone();

        let tty = match tty {
            Some(sock) => Some(console::setup(&sock)?),
            None => None,
        };
        let (mut parent_sock, child_sock) = UnixStream::pair().ctx(|| "socketpair".into())?;
        let child = self.child_setup(o, &bundle, &plan, &dir, &ns, tty, child_sock)?;

        let pid = spawn(child, &ns, [lock.as_raw_fd(), parent_sock.as_raw_fd()])?;
        let start = process::start_time(pid).unwrap_or(0);
        undo.pid = Some((pid, start));
        // The process builds its namespaces and monitor root while we make its cgroups
        // and move it in (a cgroup v1 migration can wait 5-15 ms for an RCU grace
        // period); it runs nothing of the container's before it is in them.
        sync::send(&mut parent_sock, sync::GO, "").ctx(|| "start the container process".into())?;
        state.pid = pid;
        state.pid_start = start;
        dir.save(&state)?;
        let made = cgroups::create(&cg_path, &limits)?;
        if made != state.cgroup_dirs {
            state.cgroup_dirs = made.clone();
            undo.cgroups = made;
            dir.save(&state)?;
        }
        cgroups::add_pid(&undo.cgroups, pid)?;
        timestamps::mark(&o.id, Phase::CgroupsReady);
        sync::expect(&mut parent_sock, sync::READY, "container process")?;
        let creating = serde_json::to_vec(&dir.oci_state(&state)).expect("state serialises");
        hooks::run(&bundle.spec, Kind::Prestart, &creating)?;
        hooks::run(&bundle.spec, Kind::CreateRuntime, &creating)?;
        // The hooks in the container process get the same state, pid included.
        let creating_text = String::from_utf8_lossy(&creating).into_owned();
        sync::send(&mut parent_sock, sync::HOOKS_DONE, &creating_text)
            .ctx(|| "resume the container process".into())?;
        sync::expect(&mut parent_sock, sync::CREATED, "container process")?;

        state.created_ok = true;
        dir.save(&state)?;
        if let Some(p) = &o.pid_file {
            write_atomic(p, pid.to_string().as_bytes())?;
        }
        let created = serde_json::to_string(&dir.oci_state(&state)).expect("state serialises");
        sync::send(&mut parent_sock, sync::COMMIT, &created)
            .ctx(|| "commit the container".into())?;
        // Exiting before the process has cleared its parent-death signal would kill it.
        sync::expect(&mut parent_sock, sync::DETACHED, "container process")?;
        undo.armed = false;
        debug_assert_eq!(dir.status(&state), Status::Created);
        timestamps::mark(&o.id, Phase::Created);
        Ok(Created::Container { pid })
    }

    #[allow(clippy::too_many_arguments)]
    fn child_setup(
        &self,
        o: &CreateOptions,
        bundle: &Bundle,
        plan: &Plan,
        dir: &StateDir,
        ns: &Namespaces,
        tty: Option<OwnedFd>,
        sock: UnixStream,
    ) -> Result<ChildSetup> {
        let cstr =
            |s: &str| CString::new(s).map_err(|_| Error::Other(format!("{s:?} contains NUL")));
        let env = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/tmp",
        ]
        .iter()
        .map(|e| cstr(e))
        .collect::<Result<Vec<_>>>()?;
        let state_dir: OwnedFd = open(
            &dir.path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {:?}", dir.path))?;
        let process = bundle.spec.process().as_ref();
        let user = process.map(|p| p.user().clone()).unwrap_or_default();
        Ok(ChildSetup {
            id: o.id.clone(),
            sock,
            join: ns
                .join
                .iter()
                .map(|(f, file)| Ok((*f, file.try_clone().ctx(|| "dup namespace fd".into())?)))
                .collect::<Result<_>>()?,
            unshare_mount: ns.joins_mount(),
            new_uts: ns.create.contains(CloneFlags::CLONE_NEWUTS),
            new_pid: ns.create.contains(CloneFlags::CLONE_NEWPID),
            hostname: bundle.spec.hostname().clone(),
            tty,
            vm_root: dir.vm_root(),
            devices: plan.devices.clone(),
            rootfs: bundle.rootfs.clone(),
            files: plan.files.clone(),
            host_files: plan
                .state_files
                .iter()
                .map(|f| (dir.path.join(&f.name), f.target.clone(), f.writable))
                .collect(),
            binary: plan.binary().to_path_buf(),
            plan: plan.clone(),
            env,
            state_dir,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            no_new_privs: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
            caps: capabilities::from_spec(process),
            preserve_fds: o.preserve_fds,
            spec: bundle.spec.clone(),
        })
    }
}

fn limits_of(bundle: &Bundle) -> cgroups::Limits {
    let res = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let cpu = res.and_then(|r| r.cpu().as_ref());
    cgroups::Limits {
        memory_bytes: res
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0),
        cpu_quota: cpu.and_then(|c| c.quota()).filter(|q| *q > 0),
        cpu_period: cpu.and_then(|c| c.period()),
        pids: res
            .and_then(|r| r.pids().as_ref())
            .map(|p| p.limit())
            .filter(|l| *l > 0),
    }
}

/// Clones the container process. Joining a pid namespace only affects children, so the
/// parent joins it just around the clone and returns to its own afterwards.
/// `parent_fds` are closed in the child: its copy of the container's lock would keep
/// it held until the monitor's exec (and `start` waits for that lock), and its copy of
/// our end of the sync socket would hide our death from it (a `create` killed before
/// the child set its parent-death signal must still end the child: it reads EOF).
fn spawn(child: ChildSetup, ns: &Namespaces, parent_fds: [RawFd; 2]) -> Result<i32> {
    let own_pid_ns = match &ns.join_pid {
        Some(target) => {
            let own = File::open("/proc/self/ns/pid").ctx(|| "open own pid namespace".into())?;
            setns(target, CloneFlags::CLONE_NEWPID).ctx(|| "join the pid namespace".into())?;
            Some(own)
        }
        None => None,
    };
    let mut stack = vec![0u8; 1 << 20];
    let mut child = Some(child);
    let cb = Box::new(move || {
        for fd in parent_fds {
            // SAFETY: closes the child's copy of a descriptor the parent keeps.
            unsafe { libc::close(fd) };
        }
        match child.take() {
            Some(c) => init::run(c),
            None => 1,
        }
    });
    // SAFETY: urunc is single-threaded here; the child gets a copy of our memory (no
    // CLONE_VM) and only runs `init::run`, which ends in exec or exit.
    let res = unsafe { clone(cb, &mut stack, ns.create, Some(libc::SIGCHLD)) };
    if let Some(own) = own_pid_ns {
        setns(own, CloneFlags::CLONE_NEWPID).ctx(|| "return to own pid namespace".into())?;
    }
    Ok(res
        .ctx(|| format!("clone the container process ({:?})", ns.create))?
        .as_raw())
}
