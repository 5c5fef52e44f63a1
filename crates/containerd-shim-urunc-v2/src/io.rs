//! A process's standard streams.
//!
//! Without a terminal the container process gets the streams directly: `urunc create`
//! (or `exec`) runs with them as its stdio and the container process inherits them, so
//! no byte of guest output passes through the shim.
//! - stdin: the FIFO opened read-only (non-blocking for the open, blocking after). The
//!   shim also holds a write end until CloseIO, so the container never sees a spurious
//!   end of file before containerd's client has connected.
//! - stdout/stderr: FIFOs opened read-write, so opening never blocks; or a file
//!   (`file://` URI); or pipes to a logging binary (`binary://` URI).
//!
//! With a terminal the runtime sends the pty master to a console socket; the shim copies
//! stdin to the master and the master to stdout with one thread each, and ResizePty
//! sets the master's window size.

use std::fs::{File, OpenOptions};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{Context, Error, Result};
use crate::runtime::ChildIo;

/// How long the runtime may take to send the pty master once it has returned.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a logging binary may take to say it is ready.
const LOGGER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The stream names containerd sends with Create and Exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Streams opened before the runtime runs.
pub struct Prepared {
    /// The runtime command's stdio (empty with a terminal).
    pub child: ChildIo,
    /// With a terminal: where the runtime sends the pty master.
    pub console: Option<ConsoleSocket>,
    stdin_keeper: Option<File>,
    term_stdin: Option<File>,
    term_stdout: Option<File>,
}

/// Streams of a running process, kept by the shim.
#[derive(Default)]
pub struct ProcessIo {
    stdin_keeper: Option<File>,
    console: Option<File>,
    output_done: Option<mpsc::Receiver<()>>,
}

impl Prepared {
    pub fn open(paths: &StdioPaths, id: &str, namespace: &str) -> Result<Prepared> {
        let (stdin, stdin_keeper) = open_stdin(&paths.stdin)?;
        let (stdout, stderr) = open_outputs(paths, id, namespace)?;
        if paths.terminal {
            Ok(Prepared {
                child: ChildIo::default(),
                console: Some(ConsoleSocket::new()?),
                stdin_keeper,
                term_stdin: stdin,
                term_stdout: stdout,
            })
        } else {
            Ok(Prepared {
                child: ChildIo {
                    stdin,
                    stdout,
                    stderr,
                },
                console: None,
                stdin_keeper,
                term_stdin: None,
                term_stdout: None,
            })
        }
    }

    pub fn console_path(&self) -> Option<&Path> {
        self.console.as_ref().map(|c| c.path.as_path())
    }

    /// The runtime command's streams; our copies close when it has been spawned.
    pub fn take_child_io(&mut self) -> ChildIo {
        std::mem::take(&mut self.child)
    }

    /// After the runtime succeeded: receives the pty master (terminal mode) and starts
    /// copying.
    pub fn finish(self) -> Result<ProcessIo> {
        let mut io = ProcessIo {
            stdin_keeper: self.stdin_keeper,
            ..Default::default()
        };
        let Some(console) = self.console else {
            return Ok(io);
        };
        let master = console.receive(CONSOLE_TIMEOUT)?;
        if let Some(mut input) = self.term_stdin {
            let mut to_master = master
                .try_clone()
                .ctx(|| "duplicate the pty master".into())?;
            std::thread::Builder::new()
                .name("stdin-copy".into())
                .spawn(move || {
                    let _ = copy(&mut input, &mut to_master);
                })
                .ctx(|| "start the stdin copy thread".into())?;
        }
        let (tx, rx) = mpsc::channel::<()>();
        let mut from_master = master
            .try_clone()
            .ctx(|| "duplicate the pty master".into())?;
        let mut output = self.term_stdout;
        std::thread::Builder::new()
            .name("console-copy".into())
            .spawn(move || {
                let _tx = tx;
                match output.as_mut() {
                    Some(out) => {
                        let _ = copy(&mut from_master, out);
                    }
                    None => {
                        let _ = copy(&mut from_master, &mut std::io::sink());
                    }
                }
            })
            .ctx(|| "start the console copy thread".into())?;
        io.console = Some(master);
        io.output_done = Some(rx);
        Ok(io)
    }
}

impl ProcessIo {
    /// CloseIO: the process sees end of file once containerd's writer is closed too.
    pub fn close_stdin(&mut self) {
        self.stdin_keeper = None;
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(master) = &self.console else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(Error::from(std::io::Error::last_os_error()).context("resize the pty"));
        }
        Ok(())
    }

    /// Waits (bounded) until the console output has been copied out completely.
    pub fn wait_output(&self, timeout: Duration) {
        if let Some(rx) = &self.output_done {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// Copies until end of file or an error (EIO on a pty master whose slave is closed).
fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut buf = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn clear_nonblock(f: &File) -> Result<()> {
    let flags = fcntl(f, FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(f, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

fn strip_fifo_scheme(s: &str) -> &str {
    s.strip_prefix("fifo://").unwrap_or(s)
}

/// The read end for the process and the write end the shim keeps until CloseIO.
fn open_stdin(path: &str) -> Result<(Option<File>, Option<File>)> {
    if path.is_empty() {
        return Ok((None, None));
    }
    let path = strip_fifo_scheme(path);
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("open stdin {path}"))?;
    clear_nonblock(&reader)?;
    // Cannot block: there is a reader now.
    let keeper = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("open stdin {path} for writing"))?;
    Ok((Some(reader), Some(keeper)))
}

fn open_fifo_rw(path: &str) -> Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = strip_fifo_scheme(path);
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(Some)
        .ctx(|| format!("open {path}"))
}

/// stdout and stderr: FIFOs, a `file://` log file, or pipes to a `binary://` logger.
fn open_outputs(paths: &StdioPaths, id: &str, ns: &str) -> Result<(Option<File>, Option<File>)> {
    let out = paths.stdout.as_str();
    if let Some(rest) = out.strip_prefix("binary://") {
        let (o, e) = spawn_logger(rest, id, ns)?;
        return Ok((Some(o), Some(e)));
    }
    if let Some(rest) = out.strip_prefix("file://") {
        let (path, _) = split_query(rest);
        let path = percent_decode(path);
        if let Some(dir) = Path::new(&path).parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("open log file {path}"))?;
        let e = f.try_clone()?;
        return Ok((Some(f), Some(e)));
    }
    if let Some(scheme) = out
        .split_once("://")
        .map(|(s, _)| s)
        .filter(|s| *s != "fifo")
    {
        return Err(Error::invalid(format!(
            "unsupported stdout URI scheme {scheme:?} (supported: fifo, file, binary)"
        )));
    }
    Ok((open_fifo_rw(out)?, open_fifo_rw(&paths.stderr)?))
}

fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// `%XX` decoding; `+` is a space in query strings (Go's `url.QueryUnescape`).
fn percent_decode_with(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_decode(s: &str) -> String {
    percent_decode_with(s, false)
}

fn query_decode(s: &str) -> String {
    percent_decode_with(s, true)
}

/// `binary:///path/to/logger?key=value&flag`: the argv containerd's shims build for a
/// logging binary (each query key, then its first value if any).
pub fn logger_command(uri_rest: &str) -> (String, Vec<String>) {
    let (path, query) = split_query(uri_rest);
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) => {
                args.push(query_decode(k));
                args.push(query_decode(v));
            }
            None => args.push(query_decode(pair)),
        }
    }
    (percent_decode(path), args)
}

/// Starts a logging binary the way containerd's shims do: its fd 3 reads stdout, fd 4
/// stderr, and it writes to (or closes) fd 5 when it is ready. Environment:
/// CONTAINER_ID, CONTAINER_NAMESPACE. Returns the write ends for the process.
fn spawn_logger(uri_rest: &str, id: &str, ns: &str) -> Result<(File, File)> {
    let (path, args) = logger_command(uri_rest);
    if crate::options::find_executable(&path).is_none() || !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "logging binary {path:?} is not an absolute path to an executable"
        )));
    }
    let pipe = || -> Result<(OwnedFd, OwnedFd)> { Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?) };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    // Move the child's ends above 9 first, so the dup2 to 3, 4, 5 cannot clobber one.
    let high = |fd: &OwnedFd| -> Result<OwnedFd> {
        let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    };
    let child_fds = [high(&out_r)?, high(&err_r)?, high(&ready_w)?];
    drop((out_r, err_r, ready_w));
    let raw: [RawFd; 3] = [
        child_fds[0].as_raw_fd(),
        child_fds[1].as_raw_fd(),
        child_fds[2].as_raw_fd(),
    ];
    let mut cmd = Command::new(&path);
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2(2) and sigprocmask(2), which are async-signal-safe, run between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Not the signals the shim blocks for its reaper (see crate::reaper).
            urunc::sys::entry::clear_signal_mask();
            Ok(())
        });
    }
    // Never waited for: the shim's reaper collects it when it exits.
    let child = cmd.spawn().ctx(|| format!("start logging binary {path}"))?;
    drop(child);
    drop(child_fds);
    let mut ready = File::from(ready_r);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&ready),
        PollFlags::POLLIN,
    )];
    let ms = LOGGER_READY_TIMEOUT.as_millis() as i32;
    let n = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    )?;
    if n == 0 {
        return Err(Error::other(format!(
            "logging binary {path} did not become ready within {LOGGER_READY_TIMEOUT:?}"
        )));
    }
    let mut b = [0u8; 1];
    let _ = ready.read(&mut b);
    Ok((File::from(out_w), File::from(err_w)))
}

/// A listening socket in a private temporary directory for `--console-socket`.
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("urunc-pty")
            .tempdir_in("/tmp")
            .ctx(|| "create the console socket directory".into())?;
        let path = dir.path().join("pty.sock");
        let listener = UnixListener::bind(&path).ctx(|| format!("listen on {}", path.display()))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    /// The pty master the runtime sent (SCM_RIGHTS), waiting at most `timeout`.
    pub fn receive(&self, timeout: Duration) -> Result<File> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::other(
                            "the runtime did not send the console (pty master) in time",
                        ));
                    }
                    let mut fds = [PollFd::new(
                        std::os::fd::AsFd::as_fd(&self.listener),
                        PollFlags::POLLIN,
                    )];
                    let ms = left.as_millis().min(1000) as u16;
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                Err(e) => return Err(Error::from(e).context("accept on the console socket")),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ctx(|| "receive the console".into())?;
        let mut got: Option<File> = None;
        for cmsg in msg.cmsgs().ctx(|| "read the console message".into())? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let f = unsafe { File::from_raw_fd(fd) };
                    if got.is_none() {
                        got = Some(f);
                    }
                }
            }
        }
        got.ok_or_else(|| Error::other("the console socket message carried no descriptor"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_uris_become_argv() {
        let (p, a) = logger_command("/usr/bin/log%20ger?tag=web&debug&x=a%2Fb");
        assert_eq!(p, "/usr/bin/log ger");
        assert_eq!(a, ["tag", "web", "debug", "x", "a/b"]);
        let (p, a) = logger_command("/bin/l");
        assert_eq!(p, "/bin/l");
        assert!(a.is_empty());
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a+b%41"), "a+bA");
        assert_eq!(query_decode("a+b"), "a b");
    }

    #[test]
    fn fifo_streams_open_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: &str| {
            let p = dir.path().join(n);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            p.to_string_lossy().into_owned()
        };
        let paths = StdioPaths {
            stdin: mk("in"),
            stdout: mk("out"),
            stderr: mk("err"),
            terminal: false,
        };
        let mut p = Prepared::open(&paths, "c", "ns").unwrap();
        let child = p.take_child_io();
        assert!(child.stdin.is_some() && child.stdout.is_some() && child.stderr.is_some());
        let mut out = child.stdout.unwrap();
        out.write_all(b"x").unwrap();
        let mut io = p.finish().unwrap();
        io.close_stdin();
    }

    #[test]
    fn file_uri_appends_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sub/c.log");
        let paths = StdioPaths {
            stdout: format!("file://{}", log.display()),
            stderr: format!("file://{}", log.display()),
            ..Default::default()
        };
        let mut p = Prepared::open(&paths, "c", "ns").unwrap();
        let child = p.take_child_io();
        child.stdout.unwrap().write_all(b"out\n").unwrap();
        child.stderr.unwrap().write_all(b"err\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
    }

    #[test]
    fn unknown_uri_schemes_are_refused() {
        let paths = StdioPaths {
            stdout: "http://example.com/x".into(),
            ..Default::default()
        };
        let err = Prepared::open(&paths, "c", "ns").err().unwrap();
        assert!(err.msg.contains("http"), "{err}");
    }

    #[test]
    fn console_socket_receives_a_descriptor() {
        let sock = ConsoleSocket::new().unwrap();
        let path = sock.path.clone();
        let sender = std::thread::spawn(move || {
            let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let f = File::open("/dev/null").unwrap();
            let fds = [f.as_raw_fd()];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let iov = [std::io::IoSlice::new(b"/dev/pts/x")];
            nix::sys::socket::sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
                .unwrap();
        });
        let f = sock.receive(Duration::from_secs(5)).unwrap();
        sender.join().unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        assert_eq!(target, PathBuf::from("/dev/null"));
    }
}
