//! Storage of Linux guests booted by urunit, with real QEMU under TCG (see
//! `docs/storage.md`):
//!
//! - a block image inside the image (`com.urunc.unikernel.block`, an ext4 image made by
//!   `mkfs.ext4 -d`) is readable at `blkMntPoint`, and read-only when the spec's root is;
//! - the container's rootfs (a busybox image, no initrd files of its own) shared over
//!   9p (`mountRootfs=true`) is the guest's root: the image's own `/bin/sh -c` writes a
//!   file that is afterwards in the rootfs on the host;
//! - the spec's bind mounts are shared over 9p and mounted at their destinations,
//!   read-only when `ro`;
//! - the last two again over virtio-fs (`com.urunc.sharedfs=virtiofs`, Debian's C
//!   `virtiofsd` started by the container process), leaving no `virtiofsd` behind,
//!   also when the monitor is killed with SIGKILL;
//! - single-file bind mounts reach the guest at their destination, read-only when `ro`;
//! - the block-backed rootfs (`useDMBlock`) boots from a loop device under `ctr run
//!   --rootfs` while the host's mount of it is read-only, and its bad inputs fail with
//!   one line;
//! - a busybox image run by `ctr` with the shared rootfs leaves the guest's write in the
//!   container's snapshot;
//! - sharing is refused on monitors that cannot share.
//!
//! urunit: `URUNC_URUNIT`, else built statically by this test into `target/urunit/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::json;
use test_harness::bundle::{TestBundle, Urunc};
use test_harness::{fixtures, output_text, require_root_and_tools, skip_or_fail};
use urunc::guest_init::Newc;

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &["qemu-system-x86_64", "mkfs.ext4"];
const VIRTIO: &[&str] = &[
    "virtio_ring",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio",
    "virtio_pci",
];
const BLOCK: &[&str] = &[
    "virtio_blk",
    "crc32c_generic",
    "jbd2",
    "mbcache",
    "crc16",
    "ext4",
];
const NINEP: &[&str] = &["9pnet", "9pnet_virtio", "netfs", "fscache", "9p"];
const VIRTIOFS: &[&str] = &["fuse", "virtiofs"];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Shared with the other Linux-guest tests.
fn urunit() -> Option<PathBuf> {
    test_harness::fixtures::urunit()
}

/// An archive with `modules` (from the fixtures) and their `load-order.txt`.
fn modules_archive(modules: &[&[&str]]) -> Vec<u8> {
    let all: Vec<&str> = modules.iter().flat_map(|m| m.iter().copied()).collect();
    let mut a = Newc::new();
    fixtures::add_modules(&mut a, &all);
    a.finish()
}

/// Kernel, the fixture's busybox initrd plus `modules`, urunit.
fn linux_guest(modules: &[&[&str]]) -> Option<(PathBuf, Vec<u8>, PathBuf)> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    let (vmlinux, initrd) = fixtures::linux_guest()?;
    let urunit = urunit()?;
    let mut bytes = fs::read(initrd).expect("initrd fixture");
    bytes.resize(bytes.len().next_multiple_of(512), 0);
    bytes.extend_from_slice(&modules_archive(modules));
    Some((vmlinux, bytes, urunit))
}

fn linux_bundle(name: &str, vmlinux: &Path, initrd: &[u8], args: &[&str]) -> TestBundle {
    let mut b = TestBundle::new(name);
    b.link_file("/boot/vmlinux", vmlinux)
        .write_file("/boot/initrd", initrd, 0o644);
    b.unikernel("linux", "/boot/vmlinux", Some("/boot/initrd"))
        .args(args)
        .env(&["PATH=/bin"]);
    b
}

/// The guest's console lines, without kernel messages (`[    0.028000] ...`: a loaded
/// TCG host sometimes makes the kernel complain about its timer despite `quiet`).
fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty() && !is_kernel_message(l))
        .collect()
}

fn is_kernel_message(l: &str) -> bool {
    l.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(t, _)| {
            let t = t.trim();
            !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
}

fn mkfs_ext4(dir: &Path, image: &Path) {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(dir)
        .arg(image)
        .arg("8M")
        .output()
        .expect("mkfs.ext4");
    assert!(out.status.success(), "mkfs.ext4: {}", output_text(&out));
}

#[test]
fn block_image_in_the_image_is_mounted_at_its_mount_point() {
    let Some((vmlinux, initrd, urunit)) = linux_guest(&[VIRTIO, BLOCK]) else {
        return;
    };
    let mut b = linux_bundle(
        "blk",
        &vmlinux,
        &initrd,
        &[
            "/bin/sh",
            "-c",
            "cat /data/hello.txt; (echo x > /data/new) 2>/dev/null || echo write-refused",
        ],
    );
    let content = tempfile::tempdir().unwrap();
    fs::write(
        content.path().join("hello.txt"),
        "hello from the block image\n",
    )
    .unwrap();
    mkfs_ext4(content.path(), &b.path_in_rootfs("/disk/data.ext4"));
    b.annotation("com.urunc.unikernel.block", "/disk/data.ext4")
        .annotation("com.urunc.unikernel.blkMntPoint", "/data");
    // The default spec's root is read-only: so is the disk.
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = unique("blk");
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!("block run took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        lines(&out),
        ["hello from the block image", "write-refused"],
        "{}",
        output_text(&out)
    );
    urunc.assert_clean(&b, &id);

    // With a writable root, the guest writes to the disk.
    b.set("/root/readonly", json!(false));
    b.args(&[
        "/bin/sh",
        "-c",
        "echo written > /data/new && cat /data/new /data/hello.txt",
    ]);
    let id = unique("blk-rw");
    let out = urunc.run(&b, &id);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        lines(&out),
        ["written", "hello from the block image"],
        "{}",
        output_text(&out)
    );
    urunc.assert_clean(&b, &id);
    // The write reached the image in the container's rootfs.
    if let Some(debugfs) = test_harness::find_tool("debugfs") {
        let out = Command::new(debugfs)
            .args(["-R", "cat /new"])
            .arg(b.path_in_rootfs("/disk/data.ext4"))
            .output()
            .expect("debugfs");
        assert_eq!(text(&out.stdout), "written\n", "{}", output_text(&out));
    }
}

#[test]
fn shared_rootfs_is_the_guest_root_and_keeps_its_writes() {
    shared_rootfs("9p", NINEP);
}

#[test]
fn shared_rootfs_over_virtiofs() {
    if !Path::new("/usr/lib/qemu/virtiofsd").is_file() {
        skip_or_fail("/usr/lib/qemu/virtiofsd is missing (apt-get install qemu-system-common)");
        return;
    }
    shared_rootfs("virtiofs", VIRTIOFS);
}

/// A busybox image shared as the guest's root over `fs`.
fn shared_rootfs(fs: &str, modules: &[&str]) {
    if !require_root_and_tools(TOOLS) || !require_root_and_tools(&[test_harness::BUSYBOX]) {
        return;
    }
    let Some((vmlinux, _)) = fixtures::linux_guest() else {
        return;
    };
    let Some(urunit) = urunit() else { return };
    // An ordinary busybox image plus the kernel; the initrd holds only modules (urunc
    // adds urunit).
    let mut b = TestBundle::new(&format!("sharedroot-{fs}"));
    b.copy_file("/bin/busybox", test_harness::BUSYBOX);
    std::os::unix::fs::symlink("busybox", b.rootfs().join("bin/sh")).unwrap();
    b.write_file("/etc/motd", b"from the image\n", 0o644);
    b.link_file("/boot/vmlinux", &vmlinux).write_file(
        "/boot/initrd",
        &modules_archive(&[VIRTIO, modules]),
        0o644,
    );
    b.unikernel("linux", "/boot/vmlinux", Some("/boot/initrd"))
        .annotation("com.urunc.unikernel.mountRootfs", "true")
        .annotation("com.urunc.sharedfs", fs)
        .set("/root/readonly", json!(false))
        .env(&["PATH=/bin"])
        .args(&["/bin/sh", "-c", "cat /etc/motd; echo hi > /written"]);
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = unique(&format!("sharedroot-{fs}"));
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!("shared-rootfs run over {fs} took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(lines(&out), ["from the image"], "{}", output_text(&out));
    assert_eq!(
        fs::read_to_string(b.rootfs().join("written")).unwrap(),
        "hi\n"
    );
    urunc.assert_clean(&b, &id);
}

#[test]
fn bind_mounts_are_shared_and_honour_ro() {
    bind_mounts("9p", NINEP);
}

#[test]
fn bind_mounts_over_virtiofs() {
    if !Path::new("/usr/lib/qemu/virtiofsd").is_file() {
        skip_or_fail("/usr/lib/qemu/virtiofsd is missing (apt-get install qemu-system-common)");
        return;
    }
    bind_mounts("virtiofs", VIRTIOFS);
}

fn bind_mounts(fs: &str, modules: &[&str]) {
    let Some((vmlinux, initrd, urunit)) = linux_guest(&[VIRTIO, modules]) else {
        return;
    };
    let mut b = linux_bundle(
        &format!("vols-{fs}"),
        &vmlinux,
        &initrd,
        &[
            "/bin/sh",
            "-c",
            "cat /in/msg; echo out > /out/result; \
             (echo x > /in/x) 2>/dev/null || echo ro-refused; \
             cat /etc/greeting; (echo x > /etc/greeting) 2>/dev/null || echo file-ro-refused; \
             echo 2 >> /data/counter; ls /data",
        ],
    );
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("msg"), "from the host\n").unwrap();
    // Single files (configMap items, /etc/hosts-like): one read-only, one writable
    // whose destination directory the guest lacks.
    let files = tempfile::tempdir().unwrap();
    let greeting = files.path().join("greeting");
    let counter = files.path().join("counter");
    fs::write(&greeting, "hello file\n").unwrap();
    fs::write(&counter, "1\n").unwrap();
    fs::write(files.path().join("other"), "not shared\n").unwrap();
    let mut mounts = b.config()["mounts"].as_array().unwrap().clone();
    mounts.push(json!({"destination": "/in", "type": "bind",
        "source": ro.path(), "options": ["rbind", "ro"]}));
    mounts.push(json!({"destination": "/out", "type": "none",
        "source": rw.path(), "options": ["bind", "rw"]}));
    mounts.push(json!({"destination": "/etc/greeting", "type": "bind",
        "source": greeting, "options": ["rbind", "ro"]}));
    mounts.push(json!({"destination": "/data/counter", "type": "bind",
        "source": counter, "options": ["rbind"]}));
    b.set("/mounts", json!(mounts));
    b.annotation("com.urunc.sharedfs", fs);
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = unique(&format!("vols-{fs}"));
    let out = urunc.run(&b, &id);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        lines(&out),
        [
            "from the host",
            "ro-refused",
            "hello file",
            "file-ro-refused",
            "counter"
        ],
        "{}",
        output_text(&out)
    );
    assert_eq!(
        fs::read_to_string(rw.path().join("result")).unwrap(),
        "out\n"
    );
    assert!(!ro.path().join("x").exists());
    assert_eq!(fs::read_to_string(&greeting).unwrap(), "hello file\n");
    assert_eq!(fs::read_to_string(&counter).unwrap(), "1\n2\n");
    urunc.assert_clean(&b, &id);
}

#[test]
fn virtiofsd_dies_with_a_killed_monitor() {
    if !Path::new("/usr/lib/qemu/virtiofsd").is_file() {
        skip_or_fail("/usr/lib/qemu/virtiofsd is missing (apt-get install qemu-system-common)");
        return;
    }
    let Some((vmlinux, initrd, urunit)) = linux_guest(&[VIRTIO, VIRTIOFS]) else {
        return;
    };
    let mut b = linux_bundle(
        "vfs-kill",
        &vmlinux,
        &initrd,
        &["/bin/sh", "-c", "sleep 600"],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut mounts = b.config()["mounts"].as_array().unwrap().clone();
    mounts.push(json!({"destination": "/data", "type": "bind",
        "source": dir.path(), "options": ["rbind"]}));
    b.set("/mounts", json!(mounts));
    b.annotation("com.urunc.sharedfs", "virtiofs");
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = unique("vfs-kill");
    let out = urunc.create(&b, &id);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = urunc.start(&id);
    assert!(out.status.success(), "{}", output_text(&out));
    let pid = urunc.state_json(&id).expect("state")["pid"]
        .as_i64()
        .unwrap();
    // The monitor's children: the virtiofsd it was started with.
    let children = |pid: i64| -> Vec<i64> {
        let mut v = Vec::new();
        for task in fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
        {
            let path = task.unwrap().path().join("children");
            let text = fs::read_to_string(path).unwrap_or_default();
            v.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i64>().ok()),
            );
        }
        v
    };
    let helpers: Vec<i64> = children(pid)
        .into_iter()
        .filter(|c| {
            fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|a| text(&a).starts_with("/usr/lib/qemu/virtiofsd"))
        })
        .collect();
    assert_eq!(helpers.len(), 1, "virtiofsd children of {pid}: {helpers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", helpers[0])).exists()
        && fs::read_to_string(format!("/proc/{}/stat", helpers[0]))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "virtiofsd outlived its monitor");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = urunc.delete_force(&id);
    assert!(out.status.success(), "{}", output_text(&out));
    urunc.assert_clean(&b, &id);
}

// The block-backed rootfs (`useDMBlock`), with a loop device standing in for
// devmapper (this kernel has none), and single-file bind mounts.

const KEY_USE_DM_BLOCK: &str = "com.urunc.unikernel.useDMBlock";

/// An ext filesystem made from `content` (`mkfs.<fs> -d`), on a loop device mounted at
/// a directory of its own outside any bundle; unmounted and detached on drop, also
/// when the test fails.
struct LoopRoot {
    dir: tempfile::TempDir,
    device: String,
    mnt: PathBuf,
    mounted: bool,
}

impl LoopRoot {
    fn new(fs: &str, content: &Path, size: &str) -> Option<LoopRoot> {
        let mkfs = format!("mkfs.{fs}");
        if !require_root_and_tools(&["losetup", "mount", "umount", &mkfs]) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("urunc-loop-")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("root.img");
        let out = Command::new(&mkfs)
            .args(["-q", "-F", "-d"])
            .arg(content)
            .arg(&image)
            .arg(size)
            .output()
            .expect("mkfs");
        assert!(out.status.success(), "{mkfs}: {}", output_text(&out));
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .expect("losetup");
        if !out.status.success() {
            skip_or_fail(&format!("no loop device: {}", output_text(&out)));
            return None;
        }
        let mnt = dir.path().canonicalize().unwrap().join("rootfs");
        fs::create_dir(&mnt).unwrap();
        let mut root = LoopRoot {
            dir,
            device: text(&out.stdout).trim().to_string(),
            mnt,
            mounted: false,
        };
        // nosuid,nodev: the hand-over's remount must keep the mount's own flags.
        let out = Command::new("mount")
            .args(["-o", "nosuid,nodev"])
            .arg(&root.device)
            .arg(&root.mnt)
            .output()
            .expect("mount");
        assert!(out.status.success(), "mount: {}", output_text(&out));
        root.mounted = true;
        Some(root)
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("root.img")
    }

    /// The visible mount at the mount point, from this process's mountinfo.
    fn mount_entry(&self) -> Option<urunc::storage::block_root::MountEntry> {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let entries = urunc::storage::block_root::parse_mountinfo(&info);
        urunc::storage::block_root::mount_at(&entries, &self.mnt)
    }

    fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        self.mounted = false;
    }
}

impl Drop for LoopRoot {
    fn drop(&mut self) {
        self.unmount();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// urunc's stderr is one line holding every one of `want`.
fn assert_one_error_line(out: &Output, want: &[&str]) {
    assert!(!out.status.success(), "{}", output_text(out));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{err}");
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {:?}", lines[0]);
    }
}

#[test]
fn dm_block_refuses_a_rootfs_that_is_not_a_block_device() {
    if !require_root_and_tools(&["qemu-system-x86_64"]) {
        return;
    }
    let mut b = TestBundle::new("dm-dir");
    b.write_file("/boot/kernel", b"not booted", 0o644);
    b.unikernel("linux", "/boot/kernel", None)
        .annotation(KEY_USE_DM_BLOCK, "true");
    let urunc = Urunc::new(URUNC);
    let id = unique("dm-dir");
    let out = urunc.create(&b, &id);
    assert_one_error_line(
        &out,
        &[
            "useDMBlock=true",
            &format!("{:?}", b.rootfs()),
            "is not a mount of a whole block device",
        ],
    );
    urunc.assert_clean(&b, &id);
}

#[test]
fn dm_block_refuses_ext4_for_rumprun() {
    let content = tempfile::tempdir().unwrap();
    fs::write(content.path().join("kernel"), b"not booted").unwrap();
    let Some(root) = LoopRoot::new("ext4", content.path(), "8M") else {
        return;
    };
    let mut b = TestBundle::new("dm-rump");
    b.set("/root/path", json!(root.mnt));
    b.unikernel("rumprun", "/kernel", None)
        .annotation("com.urunc.unikernel.hypervisor", "solo5-spt")
        .annotation(KEY_USE_DM_BLOCK, "true");
    // Solo5 is not installed here: any executable stands in, nothing is executed.
    let urunc = Urunc::new(URUNC);
    urunc.write_config("[monitors.solo5-spt]\nbinary_path = \"/bin/true\"\n");
    let id = unique("dm-rump");
    let out = urunc.create(&b, &id);
    assert_one_error_line(
        &out,
        &[
            "useDMBlock=true",
            &root.device,
            "holds ext4",
            "\"rumprun\" reads only ext2",
        ],
    );
    urunc.assert_clean(&b, &id);
    // The host's mount was not touched.
    let m = root.mount_entry().expect("still mounted");
    assert!(!m.super_readonly(), "{m:?}");

    // The same with an ext2 rootfs passes create (and would boot from the device).
    drop(root);
    let Some(root) = LoopRoot::new("ext2", content.path(), "8M") else {
        return;
    };
    b.set("/root/path", json!(root.mnt));
    let id = unique("dm-rump2");
    let out = urunc.create(&b, &id);
    assert!(out.status.success(), "{}", output_text(&out));
    let state =
        fs::read_to_string(urunc.root().join(&id).join("urunc-state.json")).unwrap_or_default();
    assert!(
        state.contains(&root.device),
        "no device in the plan: {state}"
    );
    let out = urunc.delete_force(&id);
    assert!(out.status.success(), "{}", output_text(&out));
    urunc.assert_clean(&b, &id);
}

/// A private containerd whose shims run urunc with TCG and this test's urunit.
fn containerd_for_vms(urunit: &Path) -> Option<test_harness::Containerd> {
    if !require_root_and_tools(&["containerd", "ctr", "runc", "containerd-shim-runc-v2"]) {
        return None;
    }
    let c = test_harness::Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .env("URUNC_URUNIT", urunit.to_str().expect("UTF-8 urunit path"))
        .ctr_timeout(std::time::Duration::from_secs(120))
        .start()
        .expect("starting containerd");
    Some(c)
}

/// containerd's Go runc shim driving urunc, with `annotations` for a Linux guest.
fn ctr_flags(extra: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<String> = ["--runtime", "io.containerd.runc.v2", "--runc-binary", URUNC]
        .map(String::from)
        .to_vec();
    let keys = [
        ("com.urunc.unikernel.unikernelType", "linux"),
        ("com.urunc.unikernel.hypervisor", "qemu"),
        ("com.urunc.unikernel.binary", "/boot/vmlinux"),
        ("com.urunc.unikernel.initrd", "/boot/initrd"),
    ];
    for (k, v) in keys.iter().chain(extra) {
        flags.push("--annotation".into());
        flags.push(format!("{k}={v}"));
    }
    flags
}

/// True while a QEMU started for container `id` runs.
fn qemu_running(id: &str) -> bool {
    test_harness::pids_with_arg(&format!("urunc-{id}"))
        .iter()
        .any(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| text(c.split(|b| *b == 0).next().unwrap_or(&[])).contains("qemu"))
        })
}

/// Nothing of `id` is left: no process, no mount below containerd's directory.
fn assert_ctr_clean(containerd: &test_harness::Containerd, id: &str) {
    let gone = test_harness::bundle::wait_for(std::time::Duration::from_secs(10), || {
        test_harness::pids_with_arg(id).is_empty()
    });
    assert!(
        gone,
        "processes of {id} left: {:?}",
        test_harness::pids_with_arg(id)
    );
    let mounts = test_harness::mounts_under(containerd.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

#[test]
fn dm_block_rootfs_boots_from_a_loop_device_under_ctr() {
    if !require_root_and_tools(TOOLS)
        || !require_root_and_tools(&[test_harness::BUSYBOX, "debugfs"])
    {
        return;
    }
    let Some((vmlinux, _)) = fixtures::linux_guest() else {
        return;
    };
    let Some(urunit) = urunit() else { return };
    // The image on the disk: busybox, the kernel and an initrd with the disk's modules.
    let content = tempfile::tempdir().unwrap();
    let c = content.path();
    for d in ["bin", "etc", "boot"] {
        fs::create_dir(c.join(d)).unwrap();
    }
    fs::copy(test_harness::BUSYBOX, c.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", c.join("bin/sh")).unwrap();
    fs::write(c.join("etc/motd"), "from the disk\n").unwrap();
    fs::copy(&vmlinux, c.join("boot/vmlinux")).unwrap();
    fs::write(c.join("boot/initrd"), modules_archive(&[VIRTIO, BLOCK])).unwrap();
    let Some(mut root) = LoopRoot::new("ext4", c, "160M") else {
        return;
    };
    drop(content);
    let Some(containerd) = containerd_for_vms(&urunit) else {
        return;
    };
    let mut flags = ctr_flags(&[(KEY_USE_DM_BLOCK, "true")]);
    flags.extend(["--rootfs".into(), "--env".into(), "PATH=/bin".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let id = containerd.unique_id("dmblock");
    let mnt = root.mnt.to_str().unwrap().to_string();
    let t = Instant::now();
    // ctr run returns when the guest is done; meanwhile the host's mount is watched.
    let (out, observed) = std::thread::scope(|s| {
        let run = s.spawn(|| {
            containerd.run(
                &flags,
                &mnt,
                &id,
                &[
                    "/bin/sh",
                    "-c",
                    "cat /etc/motd; ls -1 /boot; echo from-guest > /written; sleep 1",
                ],
            )
        });
        let mut observed = 0;
        while !run.is_finished() {
            if qemu_running(&id) {
                let m = root.mount_entry().expect("the rootfs mount");
                assert!(
                    m.super_readonly(),
                    "the host has the rootfs read-write while the guest runs: {m:?}"
                );
                observed += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (run.join().unwrap(), observed)
    });
    eprintln!(
        "useDMBlock ctr run took {:?}; the host mount was read-only in {observed} checks while QEMU ran",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(observed > 0, "QEMU was never seen running");
    assert_eq!(
        lines(&out),
        ["from the disk", "initrd", "vmlinux"],
        "{}",
        output_text(&out)
    );
    // The host's mount stays read-only (its cache is stale); a fresh look at the disk
    // finds the guest's write.
    let entry = root.mount_entry().expect("still mounted");
    assert!(entry.super_readonly(), "{entry:?}");
    let opts: Vec<&str> = entry.mount_options.split(',').collect();
    assert!(
        opts.contains(&"nosuid") && opts.contains(&"nodev"),
        "the remount dropped the mount's flags: {entry:?}"
    );
    assert_ctr_clean(&containerd, &id);
    root.unmount();
    let out = Command::new("debugfs")
        .args(["-R", "cat /written"])
        .arg(root.image())
        .output()
        .expect("debugfs");
    assert_eq!(text(&out.stdout), "from-guest\n", "{}", output_text(&out));
    if let Some(fsck) = test_harness::find_tool("e2fsck") {
        let out = Command::new(fsck)
            .arg("-fn")
            .arg(root.image())
            .output()
            .expect("e2fsck");
        assert!(
            out.status.success(),
            "the disk is inconsistent: {}",
            output_text(&out)
        );
    }
}

#[test]
fn shared_rootfs_of_a_ctr_snapshot_keeps_the_guests_write() {
    if !require_root_and_tools(TOOLS) || !require_root_and_tools(&[test_harness::BUSYBOX]) {
        return;
    }
    let Some((vmlinux, _)) = fixtures::linux_guest() else {
        return;
    };
    let Some(urunit) = urunit() else { return };
    let Some(containerd) = containerd_for_vms(&urunit) else {
        return;
    };
    // An ordinary busybox image plus the kernel and the 9p modules; its own command.
    let mut image = oci_image::ImageBuilder::new();
    test_harness::busybox_image(&mut image).unwrap();
    image
        .add_file("/boot/vmlinux", &vmlinux, 0o644)
        .unwrap()
        .add_bytes("/boot/initrd", modules_archive(&[VIRTIO, NINEP]), 0o644)
        .unwrap()
        .add_bytes("/etc/motd", b"from the image\n".to_vec(), 0o644)
        .unwrap();
    image.cmd(["/bin/sh", "-c", "cat /etc/motd; echo from-guest > /written"]);
    let tar = containerd.dir().join("shared-root.tar");
    image
        .write_oci_archive(&tar, "example.com/urunc/busybox-vm:1")
        .unwrap();
    let name = containerd.import(&tar).expect("import");
    let _ = fs::remove_file(&tar);
    let flags = ctr_flags(&[("com.urunc.unikernel.mountRootfs", "true")]);
    let id = containerd.unique_id("sharedsnap");
    let fifo = containerd.dir().join("fifo");
    let mut args = vec!["run", "--fifo-dir", fifo.to_str().unwrap()];
    args.extend(flags.iter().map(String::as_str));
    args.extend([name.as_str(), id.as_str()]);
    // Without --rm: the container and its snapshot stay for the check.
    let t = Instant::now();
    let out = containerd.ctr(&args);
    eprintln!("shared-rootfs ctr run took {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(lines(&out), ["from the image"], "{}", output_text(&out));
    // `mount -t overlay overlay <target> -o ...,upperdir=<dir>,...`
    let mounts = containerd.ctr_ok(&["snapshots", "mounts", "/mnt", &id]);
    let upper = text(&mounts.stdout)
        .split([',', ' '])
        .find_map(|o| o.strip_prefix("upperdir=").map(String::from))
        .unwrap_or_else(|| panic!("no upperdir in {}", output_text(&mounts)));
    let written = fs::read_to_string(Path::new(&upper).join("written"));
    containerd.ctr_ok(&["containers", "rm", &id]);
    assert_eq!(written.ok().as_deref(), Some("from-guest\n"), "in {upper}");
    assert_ctr_clean(&containerd, &id);
}

#[test]
fn sharing_is_refused_where_the_monitor_cannot_share() {
    let Some(urunit) = urunit() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Neither monitor is installed here: any executable stands in, nothing runs.
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    urunc.write_config(
        "[monitors.firecracker]\nbinary_path = \"/bin/true\"\n\
         [monitors.cloud-hypervisor]\nbinary_path = \"/bin/true\"\n",
    );
    for (monitor, sharedfs, want) in [
        (
            "firecracker",
            "virtiofs",
            "\"firecracker\" cannot share directories",
        ),
        (
            "cloud-hypervisor",
            "9p",
            "\"cloud-hypervisor\" cannot share directories with the guest over 9p",
        ),
    ] {
        let mut b = TestBundle::new("noshare");
        b.write_file("/boot/kernel", b"not booted", 0o644)
            .write_file("/boot/initrd", b"", 0o644);
        b.unikernel("linux", "/boot/kernel", Some("/boot/initrd"))
            .annotation("com.urunc.unikernel.hypervisor", monitor)
            .annotation("com.urunc.sharedfs", sharedfs);
        let mut mounts = b.config()["mounts"].as_array().unwrap().clone();
        mounts.push(json!({"destination": "/data", "type": "bind",
            "source": dir.path(), "options": ["rbind"]}));
        b.set("/mounts", json!(mounts));
        let id = unique(&format!("noshare-{monitor}"));
        let out = urunc.create(&b, &id);
        assert_one_error_line(
            &out,
            &[
                "bind mount /data",
                want,
                "supported: qemu (9p, virtiofs), cloud-hypervisor (virtiofs)",
            ],
        );
        urunc.assert_clean(&b, &id);
    }
}
