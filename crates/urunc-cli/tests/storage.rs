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
//!   also when the monitor is killed with SIGKILL.
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
             (echo x > /in/x) 2>/dev/null || echo ro-refused",
        ],
    );
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("msg"), "from the host\n").unwrap();
    let mut mounts = b.config()["mounts"].as_array().unwrap().clone();
    mounts.push(json!({"destination": "/in", "type": "bind",
        "source": ro.path(), "options": ["rbind", "ro"]}));
    mounts.push(json!({"destination": "/out", "type": "none",
        "source": rw.path(), "options": ["bind", "rw"]}));
    b.set("/mounts", json!(mounts));
    b.annotation("com.urunc.sharedfs", fs);
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = unique(&format!("vols-{fs}"));
    let out = urunc.run(&b, &id);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(
        lines(&out),
        ["from the host", "ro-refused"],
        "{}",
        output_text(&out)
    );
    assert_eq!(
        fs::read_to_string(rw.path().join("result")).unwrap(),
        "out\n"
    );
    assert!(!ro.path().join("x").exists());
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
