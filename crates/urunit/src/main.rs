//! urunit, PID 1 of a Linux guest started by urunc (see the library docs for how it gets
//! there). In order:
//!
//! 1. mounts `/proc`, `/sys`, `/dev` (devtmpfs, with `/dev/pts` and `/dev/shm`), `/tmp`
//!    and `/run`, and makes sure stdin/stdout/stderr are the console;
//! 2. reads and removes `/urunit.json`;
//! 3. loads the kernel modules the image lists in `/lib/modules/<release>/load-order.txt`
//!    or `/lib/modules/load-order.txt` (one module per line, `#` comments; a name is
//!    looked up as `<name>.ko` in that directory) with `finit_module`;
//! 4. with a shared root (`root`), mounts it and switches into it (moving `/dev`,
//!    `/proc`, `/sys` along); then mounts the configured `mounts` (a block device, shared
//!    volumes, single shared files bound onto their destination), each a hard error
//!    when it fails;
//! 5. brings `lo` up and configures the NIC with the configured MAC (address, prefix,
//!    gateway, MTU, `/etc/resolv.conf`); sets the hostname;
//! 6. runs the container's process (argv, env, cwd, uid/gid/groups) in its own session,
//!    forwards the signals it receives to it and reaps every orphan;
//! 7. when the process exits, writes its exit status to the status port, syncs and
//!    powers the VM off.
//!
//! It prints nothing of its own except errors, unless `debug` is set in its configuration
//! (urunc sets it when the container's environment has `URUNIT_DEBUG=1`).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use urunit::config::{self, Config, GuestFile, GuestNet, Mount, DEFAULT_PATH};
use urunit::netlink::{self, Netlink};

static DEBUG: AtomicBool = AtomicBool::new(false);
/// Set once the configuration is read; [`shutdown`] reports there.
static STATUS_PORT: OnceLock<String> = OnceLock::new();

macro_rules! debug {
    ($($t:tt)*) => {
        if DEBUG.load(Ordering::Relaxed) {
            let _ = writeln!(std::io::stderr(), "urunit: {}", format!($($t)*));
        }
    };
}

fn error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "urunit: error: {msg}");
}

/// Signals urunit passes on to the container's process.
const FORWARDED: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

fn main() {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--version") | Some("-V")) {
        println!("urunit {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        error("urunit is the init of a urunc guest and must run as PID 1");
        std::process::exit(2);
    }
    let code = match boot() {
        Ok(code) => code,
        Err(e) => {
            error(&e);
            // The status says urunit itself failed, as a shell does for "cannot run".
            127
        }
    };
    shutdown(code);
}

/// Everything up to the process's exit; returns its exit status.
fn boot() -> Result<i32, String> {
    mount_basics();
    fix_stdio();
    let text = fs::read_to_string(urunit::CONFIG_PATH)
        .map_err(|e| format!("read {}: {e}", urunit::CONFIG_PATH))?;
    let _ = fs::remove_file(urunit::CONFIG_PATH);
    let cfg = Config::from_json(&text)?;
    DEBUG.store(cfg.debug, Ordering::Relaxed);
    if let Some(port) = &cfg.status_port {
        let _ = STATUS_PORT.set(port.clone());
    }
    debug!("configuration: {}", text.replace('\n', " "));

    load_modules();
    if let Some(root) = &cfg.root {
        switch_root(root)?;
    }
    for m in &cfg.mounts {
        match &m.file {
            Some(file) => mount_file(m, file)?,
            None => mount_fs(m, &m.target)?,
        }
    }
    for (i, f) in cfg.files.iter().enumerate() {
        // The engine's housekeeping files: a failure is reported, the process still runs.
        if let Err(e) = place_file(i, f) {
            error(&e);
        }
    }
    // A resolv.conf from the host (the engine's) already names the servers.
    let resolv_bound = cfg.mounts.iter().any(|m| m.target == "/etc/resolv.conf")
        || cfg.files.iter().any(|f| f.path == "/etc/resolv.conf");
    if let Err(e) = configure_network(cfg.net.as_ref(), !resolv_bound) {
        // The process still runs: it may not need the network, and its output says more.
        error(&format!("network: {e}"));
    }
    if let Some(h) = &cfg.hostname {
        // SAFETY: h points to h.len() valid bytes.
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } < 0 {
            error(&format!(
                "sethostname {h:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    run(&cfg)
}

fn cstr(s: &str) -> CString {
    CString::new(s.as_bytes().to_vec()).unwrap_or_else(|_| CString::new("?").unwrap())
}

fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) {
    let _ = fs::create_dir_all(target);
    let (s, t, f, d) = (cstr(src), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Already mounted (e.g. by the kernel with CONFIG_DEVTMPFS_MOUNT) is fine.
        if e.raw_os_error() != Some(libc::EBUSY) {
            error(&format!("mount {fstype} on {target}: {e}"));
        }
    } else {
        debug!("mounted {fstype} on {target}");
    }
}

fn mount_basics() {
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount("proc", "/proc", "proc", nosuid_nodev_noexec, "");
    mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, "");
    mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755");
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    );
    mount("shm", "/dev/shm", "tmpfs", nosuid_nodev_noexec, "mode=1777");
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    );
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    );
}

/// Where the shared root is mounted before urunit switches into it.
const NEW_ROOT: &str = "/sysroot";

/// Mounts `m` on `target` (made if missing). A device source is waited for: its driver
/// probes it asynchronously once its module is loaded.
fn mount_fs(m: &Mount, target: &str) -> Result<(), String> {
    if m.source.starts_with("/dev/") {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&m.source).exists() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "mount {} on {target}: no such device (is its driver built in or listed in load-order.txt?)",
                    m.source
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    let flags = if m.readonly { libc::MS_RDONLY } else { 0 };
    let (s, t, f, d) = (
        cstr(&m.source),
        cstr(target),
        cstr(&m.fstype),
        cstr(&m.data),
    );
    // SAFETY: all pointers are valid NUL-terminated strings.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    if rc < 0 {
        return Err(format!(
            "mount {} ({}{}) on {target}: {}",
            m.source,
            m.fstype,
            if m.readonly { ", read-only" } else { "" },
            std::io::Error::last_os_error()
        ));
    }
    debug!("mounted {} ({}) on {target}", m.source, m.fstype);
    Ok(())
}

/// Where single-file shares are mounted before their file is bound into place (a
/// writable place that exists with a read-only root too).
const FILE_STAGING: &str = "/dev/.urunc-files";

/// Binds `file` of the share `m` onto `m.target` (a file, made if missing), read-only
/// when `m.readonly`, then detaches the share: only the file stays visible.
fn mount_file(m: &Mount, file: &str) -> Result<(), String> {
    if file.is_empty() || file.contains('/') || file == "." || file == ".." {
        return Err(format!(
            "mount {} on {}: bad file name {file:?}",
            m.source, m.target
        ));
    }
    let stage = format!("{FILE_STAGING}/{}", m.source.replace('/', "_"));
    mount_fs(m, &stage)?;
    make_file(&m.target)?;
    let src = format!("{stage}/{file}");
    let result = bind_file(&src, &m.target, m.readonly)
        .map_err(|e| format!("bind {} of {} on {}: {e}", file, m.source, m.target));
    if result.is_ok() {
        debug!("bound {file} of {} on {}", m.source, m.target);
    }
    let st = cstr(&stage);
    // SAFETY: valid string; the bind above keeps the file reachable.
    unsafe { libc::umount2(st.as_ptr(), libc::MNT_DETACH) };
    let _ = fs::remove_dir(&stage);
    result
}

/// `path` as an (empty) file if missing, with its parent directories.
fn make_file(path: &str) -> Result<(), String> {
    let target = Path::new(path);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    if !target.exists() {
        fs::File::create(target).map_err(|e| format!("create {path}: {e}"))?;
    }
    Ok(())
}

/// Binds file `src` onto `target`, read-only when asked.
fn bind_file(src: &str, target: &str, readonly: bool) -> std::io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    let (s, t) = (cstr(src), cstr(target));
    // SAFETY: valid strings; a bind ignores the type and data.
    let mut rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), null, libc::MS_BIND, null.cast()) };
    if rc == 0 && readonly {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        // SAFETY: as above.
        rc = unsafe { libc::mount(null, t.as_ptr(), null, flags, null.cast()) };
    }
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes a copied-in file to the staging directory (in `/dev`, writable even when
/// the root is not) and binds it onto its path, so a read-only root still gets it.
fn place_file(i: usize, f: &GuestFile) -> Result<(), String> {
    if !f.path.starts_with('/') {
        return Err(format!("file {:?}: not an absolute path", f.path));
    }
    fs::create_dir_all(FILE_STAGING).map_err(|e| format!("mkdir {FILE_STAGING}: {e}"))?;
    let staged = format!("{FILE_STAGING}/copy{i}");
    fs::write(&staged, &f.content).map_err(|e| format!("write {staged}: {e}"))?;
    make_file(&f.path)?;
    bind_file(&staged, &f.path, f.readonly)
        .map_err(|e| format!("bind {staged} on {}: {e}", f.path))?;
    debug!("placed {} ({} bytes)", f.path, f.content.len());
    Ok(())
}

/// Mounts the shared root, moves `/dev`, `/proc` and `/sys` into it and makes it `/`
/// (what `switch_root` does; the initramfs stays in memory, unreachable).
fn switch_root(root: &Mount) -> Result<(), String> {
    mount_fs(root, NEW_ROOT)?;
    let null = std::ptr::null::<libc::c_char>();
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("{NEW_ROOT}{dir}");
        fs::create_dir_all(&target).map_err(|e| format!("mkdir {target} in the root: {e}"))?;
        let (s, t) = (cstr(dir), cstr(&target));
        // SAFETY: valid strings; MS_MOVE ignores the type and data.
        if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), null, libc::MS_MOVE, null.cast()) } < 0 {
            return Err(format!(
                "move {dir} into the root: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let (new, dot, slash) = (cstr(NEW_ROOT), cstr("."), cstr("/"));
    // SAFETY: valid strings; the calls are checked.
    unsafe {
        if libc::chdir(new.as_ptr()) < 0
            || libc::mount(
                dot.as_ptr(),
                slash.as_ptr(),
                null,
                libc::MS_MOVE,
                null.cast(),
            ) < 0
            || libc::chroot(dot.as_ptr()) < 0
            || libc::chdir(slash.as_ptr()) < 0
        {
            return Err(format!(
                "switch to the shared root: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    debug!(
        "switched to the shared root ({} {})",
        root.fstype, root.source
    );
    Ok(())
}

/// Without `/dev/console` in the initramfs the kernel starts init with no stdio; then
/// the console from devtmpfs is opened now.
fn fix_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let path = cstr("/dev/console");
        // SAFETY: valid path; the result is checked.
        let c = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
        if c >= 0 && c != fd {
            // SAFETY: both descriptors are valid.
            unsafe {
                libc::dup2(c, fd);
                libc::close(c);
            }
        }
    }
}

fn kernel_release() -> String {
    // SAFETY: a zeroed utsname is valid output space for uname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is valid.
    if unsafe { libc::uname(&mut u) } < 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The module files listed in `<dir>/load-order.txt`, in order. Names cannot leave `dir`.
fn module_list(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(dir.join("load-order.txt")) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.split('/').any(|c| c == ".."))
        .map(|l| {
            let file = if l.ends_with(".ko") {
                l.to_string()
            } else {
                format!("{l}.ko")
            };
            dir.join(file.trim_start_matches('/'))
        })
        .collect()
}

fn load_modules() {
    let release = kernel_release();
    let base = Path::new("/lib/modules");
    let dirs = [base.join(&release), base.to_path_buf()];
    let Some((dir, list)) = dirs
        .iter()
        .map(|d| (d, module_list(d)))
        .find(|(_, l)| !l.is_empty())
    else {
        debug!("no load-order.txt under /lib/modules: no modules to load");
        return;
    };
    debug!("loading {} modules from {}", list.len(), dir.display());
    for path in list {
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                error(&format!("module {}: {e}", path.display()));
                continue;
            }
        };
        let params = cstr("");
        // SAFETY: finit_module with a valid fd, an empty parameter string and no flags.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                error(&format!("load module {}: {e}", path.display()));
            }
        } else {
            debug!("loaded {}", path.display());
        }
    }
}

fn configure_network(net: Option<&GuestNet>, write_resolv: bool) -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let links = nl.links().map_err(|e| format!("list links: {e}"))?;
    if let Some(lo) = links.iter().find(|l| l.is_loopback()) {
        nl.set_link(lo.index, true, None)
            .map_err(|e| format!("bring lo up: {e}"))?;
    }
    let Some(net) = net else {
        debug!("no network configured");
        return Ok(());
    };
    let mac = config::parse_mac(&net.mac).ok_or_else(|| format!("bad MAC {:?}", net.mac))?;
    // The driver was probed when its module loaded; allow a little time regardless.
    let deadline = Instant::now() + Duration::from_secs(5);
    let link = loop {
        let links = nl.links().map_err(|e| format!("list links: {e}"))?;
        if let Some(l) = links.into_iter().find(|l| l.mac == Some(mac)) {
            break l;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no interface with MAC {} (is the virtio_net driver built in or listed in load-order.txt?)",
                net.mac
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    nl.set_link(link.index, true, net.mtu)
        .map_err(|e| format!("bring {} up: {e}", link.name))?;
    nl.add_ipv4_addr(link.index, net.address, net.prefix)
        .map_err(|e| format!("add {}/{} to {}: {e}", net.address, net.prefix, link.name))?;
    if let Some(gw) = net.gateway {
        let on_link =
            netlink::network_of(gw, net.prefix) == netlink::network_of(net.address, net.prefix);
        if !on_link {
            nl.add_ipv4_route(gw, 32, None, link.index)
                .map_err(|e| format!("route to gateway {gw}: {e}"))?;
        }
        nl.add_ipv4_route(std::net::Ipv4Addr::UNSPECIFIED, 0, Some(gw), link.index)
            .map_err(|e| format!("default route via {gw}: {e}"))?;
    }
    if write_resolv && !net.dns.is_empty() {
        let _ = fs::create_dir_all("/etc");
        let text: String = net
            .dns
            .iter()
            .map(|d| format!("nameserver {d}\n"))
            .collect();
        fs::write("/etc/resolv.conf", text).map_err(|e| format!("write /etc/resolv.conf: {e}"))?;
    }
    debug!(
        "{}: {}/{} gateway {:?} mtu {:?}",
        link.name, net.address, net.prefix, net.gateway, net.mtu
    );
    Ok(())
}

/// `args[0]` as a path: as given when it has a `/`, else the first executable match in
/// the `PATH` of the container's environment.
fn resolve(program: &str, env: &[String]) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(program);
        if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
            // SAFETY: c is a valid path.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                return p;
            }
        }
    }
    PathBuf::from(program)
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

/// Runs the process and waits for it; returns its exit status.
fn run(cfg: &Config) -> Result<i32, String> {
    let args: Vec<String> = if cfg.args.is_empty() {
        vec!["/init".into()]
    } else {
        cfg.args.clone()
    };
    let program = resolve(&args[0], &cfg.env);
    let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| "NUL in program")?;
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect();
    let envp: Vec<CString> = cfg.env.iter().map(|e| cstr(e)).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let cwd = cstr(&cfg.cwd);
    let groups: Vec<libc::gid_t> = cfg.additional_gids.clone();

    let mut all = FORWARDED.to_vec();
    all.push(libc::SIGCHLD);
    let set = sigset(&all);
    // SAFETY: blocking signals in this single-threaded process.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    debug!(
        "running {:?} as {}:{} in {}",
        args, cfg.uid, cfg.gid, cfg.cwd
    );
    // SAFETY: urunit is single-threaded; the child only calls async-signal-safe
    // functions before execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer was prepared before fork.
        unsafe {
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::setsid();
            let fail = |what: &[u8], code: i32| -> ! {
                let e = *libc::__errno_location();
                let msg = format!(
                    "urunit: error: {}: {}\n",
                    String::from_utf8_lossy(what),
                    std::io::Error::from_raw_os_error(e)
                );
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(code)
            };
            if libc::chdir(cwd.as_ptr()) < 0 {
                fail(b"chdir to the working directory", 127);
            }
            if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                fail(b"setgroups", 127);
            }
            if libc::setgid(cfg.gid) < 0 {
                fail(b"setgid", 127);
            }
            if libc::setuid(cfg.uid) < 0 {
                fail(b"setuid", 127);
            }
            libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
            let code = if *libc::__errno_location() == libc::ENOENT {
                127
            } else {
                126
            };
            fail(path.as_bytes(), code);
        }
    }

    // SAFETY: a zeroed siginfo_t is valid output space.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let timeout = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: set, info and timeout are valid.
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &timeout) };
        if sig > 0 && sig != libc::SIGCHLD {
            debug!("forwarding signal {sig} to {pid}");
            // SAFETY: kill with a pid we started.
            unsafe { libc::kill(pid, sig) };
            continue;
        }
        // SIGCHLD or the periodic timeout: reap everything that exited.
        loop {
            let mut status = 0;
            // SAFETY: status is valid output space.
            let got = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if got <= 0 {
                break;
            }
            if got == pid {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    continue;
                };
                debug!("process {pid} exited with status {code}");
                return Ok(code);
            }
            debug!("reaped orphan {got}");
        }
    }
}

/// Reports `code` on the status port, then powers off. Never returns.
fn shutdown(code: i32) -> ! {
    if let Some(port) = STATUS_PORT.get() {
        if let Err(e) = report_status(port, code) {
            error(&format!("report the exit status on {port}: {e}"));
        }
    }
    if !DEBUG.load(Ordering::Relaxed) {
        // Console log level 0: keeps even the kernel's "reboot: Power down" (an
        // emergency-level message) off the container's output.
        let _ = fs::write("/proc/sys/kernel/printk", "0 4 0 7");
    }
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // Powering off failed: exiting makes the kernel panic, and with panic=-1 and
    // QEMU's -no-reboot that ends the VM too.
    std::process::exit(code)
}

fn report_status(port: &str, code: i32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .custom_flags_noctty()
        .open(port)?;
    let fd = f.as_raw_fd();
    // SAFETY: termios calls on a descriptor we own; t is valid output space.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
    f.write_all(config::status_line(code).as_bytes())?;
    // SAFETY: waits until the UART sent everything.
    unsafe { libc::tcdrain(fd) };
    debug!("reported exit status {code} on {port}");
    Ok(())
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_stay_in_their_directory() {
        let dir = std::env::temp_dir().join(format!("urunit-mods-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("load-order.txt"),
            "virtio_ring\n# comment\n\nvirtio_net.ko  # trailing\n../../etc/evil\nkernel/fs/9p\n",
        )
        .unwrap();
        let list = module_list(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            list,
            vec![
                dir.join("virtio_ring.ko"),
                dir.join("virtio_net.ko"),
                dir.join("kernel/fs/9p.ko"),
            ]
        );
        assert!(module_list(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn program_lookup_uses_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(resolve("sh", &env), PathBuf::from("/bin/sh"));
        assert_eq!(resolve("/x/y", &env), PathBuf::from("/x/y"));
        assert_eq!(
            resolve("no-such-program", &env),
            PathBuf::from("no-such-program")
        );
    }
}
