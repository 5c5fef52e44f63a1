//! The task service: one shim serves every container of a pod, so all state is keyed by
//! container id (and exec id).
//!
//! Locking: one mutex over all tasks, never held while a `urunc` command runs. Exits
//! arrive on a thread subscribed to the crate's exit monitor; an exit whose pid is not
//! (yet) known is kept for a while, because a process can exit between the runtime
//! writing its pid file and the shim reading it.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::monitor::{monitor_subscribe, Subject, Subscription, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{api, ExitSignal, Task, TtrpcContext, TtrpcResult};

use crate::error::{Context, Error, Result};
use crate::events::{to_any, Events};
use crate::io::{Prepared, ProcessIo, StdioPaths};
use crate::options::RuntimeOptions;
use crate::rootfs::{mount_rootfs, unmount_rootfs};
use crate::runtime::Urunc;
use crate::stats;

/// The protobuf package of `ProcessDetails` (exec ids in Pids).
pub const DETAILS_PACKAGE: &str = "containerd.runc.v1";

/// Exits nobody claimed yet, kept for late registration.
const UNCLAIMED_KEEP: usize = 256;
/// How long Delete waits for a killed process's exit, and for its console output.
const DELETE_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    fn status(self) -> Status {
        match self {
            State::Created => Status::CREATED,
            State::Running => Status::RUNNING,
            State::Paused => Status::PAUSED,
            State::Stopped => Status::STOPPED,
        }
    }
}

/// The init process of a container or one exec'd process.
struct Proc {
    exec_id: String,
    pid: i32,
    state: State,
    exit_status: u32,
    exited_at: Option<Timestamp>,
    stdio: StdioPaths,
    io: Option<ProcessIo>,
    /// Exec only: the process spec (JSON) to hand to the runtime.
    spec: Vec<u8>,
    /// Start is running: an exit that arrives now is published after TaskStart.
    starting: bool,
    exit_deferred: bool,
}

impl Proc {
    fn new(exec_id: &str, stdio: StdioPaths) -> Proc {
        Proc {
            exec_id: exec_id.to_string(),
            pid: 0,
            state: State::Created,
            exit_status: 0,
            exited_at: None,
            stdio,
            io: None,
            spec: Vec::new(),
            starting: false,
            exit_deferred: false,
        }
    }

    fn exited(&self) -> bool {
        self.exited_at.is_some()
    }
}

struct Container {
    bundle: PathBuf,
    urunc: Urunc,
    /// Where we mounted the rootfs, to unmount it on delete.
    rootfs: Option<PathBuf>,
    /// A urunc (VM) container, as opposed to an ordinary one delegated to runc.
    unikernel: bool,
    init: Proc,
    execs: HashMap<String, Proc>,
}

impl Container {
    fn proc(&self, exec_id: &str) -> Result<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| Error::not_found(format!("exec {exec_id:?} does not exist")))
    }

    fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::not_found(format!("exec {exec_id:?} does not exist")))
    }
}

struct Unclaimed {
    pid: i32,
    status: i32,
    at: Timestamp,
    seq: u64,
}

#[derive(Default)]
struct Tasks {
    containers: HashMap<String, Container>,
    /// pid -> (container id, exec id; empty for init)
    pids: HashMap<i32, (String, String)>,
    unclaimed: VecDeque<Unclaimed>,
    /// Counts exits, so a registration only claims exits that came after its spawn.
    seq: u64,
}

impl Tasks {
    fn get(&self, id: &str) -> Result<&Container> {
        self.containers
            .get(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} does not exist")))
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Container> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} does not exist")))
    }
}

struct Inner {
    namespace: String,
    exit: Arc<ExitSignal>,
    events: Events,
    tasks: Mutex<Tasks>,
    changed: Condvar,
}

pub struct Service {
    inner: Arc<Inner>,
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

fn exit_event(container_id: &str, p: &Proc) -> TaskExit {
    TaskExit {
        container_id: container_id.to_string(),
        id: if p.exec_id.is_empty() {
            container_id.to_string()
        } else {
            p.exec_id.clone()
        },
        pid: p.pid as u32,
        exit_status: p.exit_status,
        exited_at: p.exited_at.clone().into(),
        ..Default::default()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exit_loop(self: Arc<Self>, sub: Subscription) {
        for ev in sub.rx.iter() {
            if let Subject::Pid(pid) = ev.subject {
                self.on_exit(pid, ev.exit_code);
            }
        }
    }

    fn on_exit(&self, pid: i32, status: i32) {
        let at = now();
        let mut t = self.lock();
        t.seq += 1;
        match t.pids.remove(&pid) {
            Some((cid, eid)) => self.record_exit(&mut t, &cid, &eid, status, at),
            None => {
                let seq = t.seq;
                t.unclaimed.push_back(Unclaimed {
                    pid,
                    status,
                    at,
                    seq,
                });
                if t.unclaimed.len() > UNCLAIMED_KEEP {
                    t.unclaimed.pop_front();
                }
            }
        }
    }

    fn record_exit(&self, t: &mut Tasks, cid: &str, eid: &str, status: i32, at: Timestamp) {
        let Ok(c) = t.get_mut(cid) else {
            return;
        };
        // A VM's init is its monitor: the application's status, when the guest init
        // reported one, is the container's.
        let guest = (eid.is_empty() && c.unikernel)
            .then(|| c.urunc.guest_exit_status(cid))
            .flatten();
        let Ok(p) = c.proc_mut(eid) else {
            return;
        };
        log::info!("{cid} {eid}: pid {} exited with status {status}", p.pid);
        if eid.is_empty() {
            urunc::timestamps::mark(cid, urunc::timestamps::Phase::ShimExit);
        }
        let status = match guest {
            Some(code) => {
                log::info!("{cid}: the guest's application exited with status {code}");
                code
            }
            None => status,
        };
        p.state = State::Stopped;
        p.exit_status = status as u32;
        p.exited_at = Some(at);
        if p.starting {
            p.exit_deferred = true;
        } else {
            self.events.send(exit_event(cid, p));
        }
        self.changed.notify_all();
    }

    /// Starts following `pid`, or records its exit if it already happened after `since`.
    fn register(&self, t: &mut Tasks, cid: &str, eid: &str, pid: i32, since: u64) {
        if let Some(pos) = t
            .unclaimed
            .iter()
            .position(|e| e.pid == pid && e.seq > since)
        {
            let e = t.unclaimed.remove(pos).expect("position is valid");
            self.record_exit(t, cid, eid, e.status, e.at);
        } else {
            t.pids.insert(pid, (cid.to_string(), eid.to_string()));
        }
    }
}

impl Service {
    pub fn new(namespace: &str, exit: Arc<ExitSignal>, events: Events) -> Service {
        urunc::timestamps::init_from_config_file();
        let inner = Arc::new(Inner {
            namespace: namespace.to_string(),
            exit,
            events,
            tasks: Mutex::new(Tasks::default()),
            changed: Condvar::new(),
        });
        // Subscribed before any process is started, so no exit can be missed.
        let sub = monitor_subscribe(Topic::All).expect("subscribe to exits");
        let exits = inner.clone();
        std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || exits.exit_loop(sub))
            .expect("start the exit thread");
        Service { inner }
    }

    fn ns(&self) -> &str {
        &self.inner.namespace
    }

    fn do_create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        urunc::timestamps::mark(&req.id, urunc::timestamps::Phase::ShimCreate);
        let id = req.id.clone();
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(Error::unimplemented(
                "restoring from a checkpoint is not supported by urunc",
            ));
        }
        if self.inner.lock().containers.contains_key(&id) {
            return Err(Error::exists(format!("container {id:?} already exists")));
        }
        let opts = RuntimeOptions::from_any(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let urunc = Urunc {
            binary: opts.binary()?,
            root: opts.root_for(self.ns()),
            systemd_cgroup: opts.systemd_cgroup,
            bundle: bundle.clone(),
        };
        opts.save(&bundle)?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let rootfs = mount_rootfs(&bundle, &req.rootfs)?;
        let created = (|| {
            let mut prepared = Prepared::open(&stdio, &id, self.ns())?;
            let since = self.inner.lock().seq;
            let child_io = prepared.take_child_io();
            let pid = urunc.create(&id, prepared.console_path(), child_io)?;
            match prepared.finish() {
                Ok(io) => Ok((pid, io, since)),
                Err(e) => {
                    let _ = urunc.delete_force(&id);
                    Err(e)
                }
            }
        })();
        let (pid, io, since) = match created {
            Ok(v) => v,
            Err(e) => {
                if let Some(r) = &rootfs {
                    unmount_rootfs(r);
                }
                return Err(e);
            }
        };
        let unikernel = urunc::container::Runtime::new(&urunc.root).owns(&id);
        log::info!("{id}: created, pid {pid}, unikernel {unikernel}");
        let mut init = Proc::new("", stdio.clone());
        init.pid = pid;
        init.io = Some(io);
        let mut t = self.inner.lock();
        t.containers.insert(
            id.clone(),
            Container {
                bundle,
                urunc,
                rootfs,
                unikernel,
                init,
                execs: HashMap::new(),
            },
        );
        self.inner.events.send(TaskCreate {
            container_id: id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: Some(TaskIO {
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: stdio.terminal,
                ..Default::default()
            })
            .into(),
            checkpoint: req.checkpoint.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        self.inner.register(&mut t, &id, "", pid, since);
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start_init(&self, id: &str) -> Result<StartResponse> {
        urunc::timestamps::mark(id, urunc::timestamps::Phase::ShimStart);
        let urunc = {
            let mut t = self.inner.lock();
            let c = t.get_mut(id)?;
            if c.init.state != State::Created {
                return Err(Error::precondition(format!(
                    "container {id:?} cannot be started: it is {:?}",
                    c.init.state
                )));
            }
            c.init.starting = true;
            c.urunc.clone()
        };
        let result = urunc.start(id);
        let mut t = self.inner.lock();
        let c = t.get_mut(id)?;
        let p = &mut c.init;
        p.starting = false;
        if result.is_ok() {
            if p.state == State::Created {
                p.state = State::Running;
            }
            self.inner.events.send(TaskStart {
                container_id: id.to_string(),
                pid: p.pid as u32,
                ..Default::default()
            });
        }
        if std::mem::take(&mut p.exit_deferred) {
            self.inner.events.send(exit_event(id, p));
        }
        result?;
        Ok(StartResponse {
            pid: p.pid as u32,
            ..Default::default()
        })
    }

    fn start_exec(&self, id: &str, eid: &str) -> Result<StartResponse> {
        let (urunc, spec, stdio) = {
            let mut t = self.inner.lock();
            let c = t.get_mut(id)?;
            if c.init.exited() {
                return Err(Error::precondition(format!(
                    "container {id:?} is not running"
                )));
            }
            let urunc = c.urunc.clone();
            let p = c.proc_mut(eid)?;
            if p.state != State::Created {
                return Err(Error::precondition(format!(
                    "exec {eid:?} cannot be started: it is {:?}",
                    p.state
                )));
            }
            p.starting = true;
            (urunc, p.spec.clone(), p.stdio.clone())
        };
        let started = (|| {
            let mut prepared = Prepared::open(&stdio, id, self.ns())?;
            let mut spec_file = tempfile::Builder::new()
                .prefix(".exec-process-")
                .tempfile_in(&urunc.bundle)
                .ctx(|| "create the exec process file".into())?;
            spec_file
                .write_all(&spec)
                .ctx(|| "write the exec process file".into())?;
            let pid_file = urunc.bundle.join(format!("{eid}.pid"));
            let since = self.inner.lock().seq;
            let child_io = prepared.take_child_io();
            let pid = urunc.exec(
                id,
                spec_file.path(),
                &pid_file,
                prepared.console_path(),
                child_io,
            )?;
            match prepared.finish() {
                Ok(io) => Ok((pid, io, since)),
                Err(e) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    Err(e)
                }
            }
        })();
        let mut t = self.inner.lock();
        let p = t.get_mut(id)?.proc_mut(eid)?;
        p.starting = false;
        match started {
            Err(e) => {
                p.state = State::Stopped;
                p.exit_status = 255;
                p.exited_at = Some(now());
                self.inner.changed.notify_all();
                Err(e)
            }
            Ok((pid, io, since)) => {
                p.pid = pid;
                p.io = Some(io);
                p.state = State::Running;
                self.inner.events.send(TaskExecStarted {
                    container_id: id.to_string(),
                    exec_id: eid.to_string(),
                    pid: pid as u32,
                    ..Default::default()
                });
                self.inner.register(&mut t, id, eid, pid, since);
                Ok(StartResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
        }
    }

    fn delete_exec(&self, id: &str, eid: &str) -> Result<DeleteResponse> {
        let (p, bundle) = {
            let mut t = self.inner.lock();
            let c = t.get_mut(id)?;
            let p = c.proc(eid)?;
            if matches!(p.state, State::Running | State::Paused) && !p.exited() {
                return Err(Error::precondition(format!(
                    "exec {eid:?} is running: kill it first"
                )));
            }
            let p = c.execs.remove(eid).expect("checked above");
            let bundle = c.bundle.clone();
            if p.pid > 0 && t.pids.get(&p.pid).is_some_and(|(c, e)| c == id && e == eid) {
                t.pids.remove(&p.pid);
            }
            (p, bundle)
        };
        if let Some(io) = &p.io {
            io.wait_output(DELETE_WAIT);
        }
        let _ = std::fs::remove_file(bundle.join(format!("{eid}.pid")));
        Ok(DeleteResponse {
            pid: p.pid.max(0) as u32,
            exit_status: p.exit_status,
            exited_at: Some(p.exited_at.unwrap_or_else(now)).into(),
            ..Default::default()
        })
    }

    fn delete_init(&self, id: &str) -> Result<DeleteResponse> {
        urunc::timestamps::mark(id, urunc::timestamps::Phase::ShimDelete);
        let (urunc, exited) = {
            let t = self.inner.lock();
            let c = t.get(id)?;
            if matches!(c.init.state, State::Running | State::Paused) && !c.init.exited() {
                return Err(Error::precondition(format!(
                    "container {id:?} is running: kill it first"
                )));
            }
            (c.urunc.clone(), c.init.exited())
        };
        if let Err(e) = urunc.delete_force(id) {
            if !is_not_exist(&e.msg) {
                return Err(e);
            }
        }
        let mut t = self.inner.lock();
        if !exited {
            // A created process killed by `delete --force`: its exit is on its way.
            let deadline = Instant::now() + DELETE_WAIT;
            while t.get(id).is_ok_and(|c| !c.init.exited()) && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                t = self
                    .inner
                    .changed
                    .wait_timeout(t, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let c = t
            .containers
            .remove(id)
            .ok_or_else(|| Error::not_found(format!("container {id:?} does not exist")))?;
        t.pids.retain(|_, (cid, _)| cid != id);
        drop(t);
        self.inner.changed.notify_all();
        if let Some(io) = &c.init.io {
            io.wait_output(DELETE_WAIT);
        }
        if let Some(r) = &c.rootfs {
            unmount_rootfs(r);
        }
        let _ = std::fs::remove_file(c.bundle.join(crate::runtime::INIT_PID_FILE));
        let exited_at = c.init.exited_at.clone().unwrap_or_else(now);
        self.inner.events.send(TaskDelete {
            container_id: id.to_string(),
            pid: c.init.pid.max(0) as u32,
            exit_status: c.init.exit_status,
            exited_at: Some(exited_at.clone()).into(),
            ..Default::default()
        });
        log::info!("{id}: deleted");
        Ok(DeleteResponse {
            pid: c.init.pid.max(0) as u32,
            exit_status: c.init.exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    fn do_state(&self, req: &StateRequest) -> Result<StateResponse> {
        let (mut resp, query) = {
            let t = self.inner.lock();
            let c = t.get(&req.id)?;
            let p = c.proc(&req.exec_id)?;
            let resp = StateResponse {
                id: req.id.clone(),
                bundle: c.bundle.to_string_lossy().into_owned(),
                pid: p.pid.max(0) as u32,
                status: p.state.status().into(),
                stdin: p.stdio.stdin.clone(),
                stdout: p.stdio.stdout.clone(),
                stderr: p.stdio.stderr.clone(),
                terminal: p.stdio.terminal,
                exit_status: p.exit_status,
                exited_at: p.exited_at.clone().into(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            };
            // A running container may have been paused or resumed behind our back.
            let live = req.exec_id.is_empty()
                && matches!(p.state, State::Running | State::Paused)
                && !p.exited();
            (resp, live.then(|| c.urunc.clone()))
        };
        if let Some(urunc) = query {
            if let Ok(st) = urunc.state(&req.id) {
                match st.status.as_str() {
                    "paused" => resp.status = Status::PAUSED.into(),
                    "running" => resp.status = Status::RUNNING.into(),
                    _ => {}
                }
            }
        }
        Ok(resp)
    }

    fn do_kill(&self, req: &KillRequest) -> Result<()> {
        let urunc = {
            let t = self.inner.lock();
            let c = t.get(&req.id)?;
            if !req.exec_id.is_empty() {
                let p = c.proc(&req.exec_id)?;
                if p.exited() {
                    return Err(Error::not_found("process already finished"));
                }
                if p.pid <= 0 {
                    return Err(Error::precondition(format!(
                        "exec {:?} has not been started",
                        req.exec_id
                    )));
                }
                let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                    .map_err(|_| Error::invalid(format!("invalid signal {}", req.signal)))?;
                return match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), sig) {
                    Ok(()) => Ok(()),
                    Err(nix::errno::Errno::ESRCH) => {
                        Err(Error::not_found("process already finished"))
                    }
                    Err(e) => Err(Error::from(e).context("kill")),
                };
            }
            c.urunc.clone()
        };
        urunc.kill(&req.id, req.signal, req.all).map_err(kill_error)
    }

    fn do_exec(&self, req: ExecProcessRequest) -> Result<()> {
        let mut t = self.inner.lock();
        let c = t.get_mut(&req.id)?;
        if c.unikernel {
            return Err(Error::unimplemented(
                "exec is not supported for unikernel containers (the container's process is a virtual machine)",
            ));
        }
        if c.init.exited() {
            return Err(Error::precondition(format!(
                "container {:?} is not running",
                req.id
            )));
        }
        if req.exec_id.is_empty() || c.execs.contains_key(&req.exec_id) {
            return Err(Error::exists(format!(
                "exec {:?} already exists",
                req.exec_id
            )));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid("exec without a process spec"))?;
        let mut p = Proc::new(
            &req.exec_id,
            StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
        );
        p.spec = spec;
        c.execs.insert(req.exec_id.clone(), p);
        self.inner.events.send(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn do_pids(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let (urunc, execs) = {
            let t = self.inner.lock();
            let c = t.get(&req.id)?;
            let execs: HashMap<i32, String> = c
                .execs
                .values()
                .filter(|p| p.pid > 0)
                .map(|p| (p.pid, p.exec_id.clone()))
                .collect();
            (c.urunc.clone(), execs)
        };
        let pids = urunc.ps(&req.id)?;
        let mut processes = Vec::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            };
            if let Some(eid) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: eid.clone(),
                    ..Default::default()
                };
                if let Ok(any) = to_any(&details, DETAILS_PACKAGE) {
                    info.info = Some(any).into();
                }
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause_or_resume(&self, id: &str, pause: bool) -> Result<()> {
        let urunc = {
            let t = self.inner.lock();
            let c = t.get(id)?;
            if c.init.exited() || c.init.state == State::Created {
                return Err(Error::precondition(format!(
                    "container {id:?} is not running"
                )));
            }
            c.urunc.clone()
        };
        if pause {
            urunc.pause(id)?;
        } else {
            urunc.resume(id)?;
        }
        let mut t = self.inner.lock();
        if let Ok(c) = t.get_mut(id) {
            if !c.init.exited() {
                c.init.state = if pause { State::Paused } else { State::Running };
            }
        }
        if pause {
            self.inner.events.send(TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            });
        } else {
            self.inner.events.send(TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            });
        }
        Ok(())
    }

    fn do_update(&self, req: &UpdateTaskRequest) -> Result<()> {
        let (urunc, unikernel) = {
            let t = self.inner.lock();
            let c = t.get(&req.id)?;
            (c.urunc.clone(), c.unikernel)
        };
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let mut file = tempfile::Builder::new()
            .prefix(".resources-")
            .tempfile_in(&urunc.bundle)
            .ctx(|| "create the resources file".into())?;
        file.write_all(&resources)
            .ctx(|| "write the resources file".into())?;
        urunc.update(&req.id, file.path()).map_err(|e| {
            // A urunc without `update` hands it to runc, which does not know the id.
            if unikernel && is_not_exist(&e.msg) {
                Error::unimplemented(format!(
                    "updating the resources of a unikernel container is not supported by this urunc ({})",
                    e.msg
                ))
            } else {
                e
            }
        })
    }

    fn do_wait(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let mut t = self.inner.lock();
        loop {
            let p = t.get(&req.id)?.proc(&req.exec_id)?;
            if let Some(at) = &p.exited_at {
                return Ok(WaitResponse {
                    exit_status: p.exit_status,
                    exited_at: Some(at.clone()).into(),
                    ..Default::default()
                });
            }
            t = self
                .inner
                .changed
                .wait(t)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// containerd's runc shim turns these runtime messages into NotFound.
fn kill_error(e: Error) -> Error {
    let m = e.msg.to_lowercase();
    if m.contains("container not running")
        || m.contains("process already finished")
        || m.contains("no such process")
    {
        Error::not_found(format!("process already finished: {}", e.msg))
    } else if m.contains("does not exist") {
        Error::not_found(format!("no such container: {}", e.msg))
    } else {
        e
    }
}

fn is_not_exist(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such container")
}

/// Cleans up after a shim that is gone (`containerd-shim-urunc-v2 delete`): the
/// container is removed with `delete --force` and its rootfs unmounted.
pub fn cleanup_after_shim(namespace: &str, id: &str, bundle: &Path) -> Result<DeleteResponse> {
    let opts = RuntimeOptions::load(bundle);
    match opts.binary() {
        Ok(binary) => {
            let urunc = Urunc {
                binary,
                root: opts.root_for(namespace),
                systemd_cgroup: opts.systemd_cgroup,
                bundle: bundle.to_path_buf(),
            };
            // Usually the task was deleted before the shim exited, and neither urunc nor
            // the runc it hands other containers to (same root) has it: no need to run
            // a process to be told so.
            let known =
                urunc::container::state::validate_id(id).is_err() || urunc.root.join(id).exists();
            if known {
                if let Err(e) = urunc.delete_force(id) {
                    if !is_not_exist(&e.msg) {
                        log::warn!("{id}: delete --force: {e}");
                    }
                }
            }
        }
        Err(e) => log::warn!("{id}: {e}"),
    }
    let rootfs = bundle.join("rootfs");
    if rootfs.exists() {
        unmount_rootfs(&rootfs);
    }
    Ok(DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(now()).into(),
        ..Default::default()
    })
}

impl Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let id = req.id.clone();
        self.do_create(req).map_err(|e| {
            log::error!("{id}: create: {e}");
            e.into()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let r = if req.exec_id.is_empty() {
            self.start_init(&req.id)
        } else {
            self.start_exec(&req.id, &req.exec_id)
        };
        Ok(r?)
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        Ok(self.do_state(&req)?)
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let r = if req.exec_id.is_empty() {
            self.delete_init(&req.id)
        } else {
            self.delete_exec(&req.id, &req.exec_id)
        };
        Ok(r?)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        Ok(self.do_pids(&req)?)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.pause_or_resume(&req.id, true)?;
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.pause_or_resume(&req.id, false)?;
        Ok(Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(Error::unimplemented("checkpoint is not supported by urunc").into())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.do_kill(&req)?;
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.do_exec(req)?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let t = self.inner.lock();
        let p = t.get(&req.id)?.proc(&req.exec_id)?;
        if let Some(io) = &p.io {
            io.resize(req.width, req.height)?;
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let mut t = self.inner.lock();
        let p = t.get_mut(&req.id)?.proc_mut(&req.exec_id)?;
        if req.stdin {
            if let Some(io) = p.io.as_mut() {
                io.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.do_update(&req)?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        Ok(self.do_wait(&req)?)
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let pid = {
            let t = self.inner.lock();
            let c = t.get(&req.id)?;
            if c.init.exited() {
                return Err(
                    Error::precondition(format!("container {:?} is not running", req.id)).into(),
                );
            }
            c.init.pid
        };
        let metrics = stats::metrics(pid)?;
        let any = to_any(&metrics, stats::METRICS_PACKAGE)
            .map_err(|e| Error::other(format!("encode metrics: {e}")))?;
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let t = self.inner.lock();
        let task_pid = t
            .get(&req.id)
            .map(|c| c.init.pid.max(0) as u32)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        let t = self.inner.lock();
        if t.containers.is_empty() {
            drop(t);
            log::info!("no containers left: shutting down");
            // The server flushes the events before it exits (shim::serve): containerd
            // waits for this answer, not for the events.
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }
}
