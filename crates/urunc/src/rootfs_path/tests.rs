use super::*;
use std::fs;
use std::os::unix::fs::symlink;

fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    fs::create_dir_all(r.join("boot/sub")).unwrap();
    fs::write(r.join("boot/vmlinux"), b"kernel").unwrap();
    symlink("vmlinux", r.join("boot/rel-link")).unwrap();
    symlink("/boot/vmlinux", r.join("boot/abs-link")).unwrap();
    symlink("../../../../../etc/passwd", r.join("boot/escape-link")).unwrap();
    symlink("/etc/hostname", r.join("host-file")).unwrap();
    symlink("loop-b", r.join("loop-a")).unwrap();
    symlink("loop-a", r.join("loop-b")).unwrap();
    symlink("/", r.join("rootlink")).unwrap();
    d
}

fn ok(root: &Path, p: &str) -> PathBuf {
    resolve(root, p, "kernel").unwrap_or_else(|e| panic!("{p}: {e:?}"))
}

fn err(root: &Path, p: &str) -> String {
    match open_in_root(root, p, "kernel") {
        Ok(_) => panic!("{p} should be refused"),
        Err(OpenError::NotFound) => "not found".into(),
        Err(OpenError::Other(e)) => e.to_string(),
    }
}

#[test]
fn resolves_plain_and_symlinked_paths_inside() {
    let d = tree();
    let r = d.path();
    assert_eq!(ok(r, "/boot/vmlinux"), PathBuf::from("boot/vmlinux"));
    assert_eq!(ok(r, "boot/vmlinux"), PathBuf::from("boot/vmlinux"));
    assert_eq!(ok(r, "/boot/rel-link"), PathBuf::from("boot/vmlinux"));
    assert_eq!(ok(r, "/boot/abs-link"), PathBuf::from("boot/vmlinux"));
    assert_eq!(ok(r, "/boot/sub/../vmlinux"), PathBuf::from("boot/vmlinux"));
    assert_eq!(
        ok(r, "/rootlink/boot/vmlinux"),
        PathBuf::from("boot/vmlinux")
    );
    let mut s = String::new();
    open_in_root(r, "/boot/abs-link", "kernel")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "kernel");
}

use std::io::Read;

#[test]
fn dotdot_escape_is_refused() {
    let d = tree();
    let e = err(d.path(), "/../../etc/passwd");
    assert!(e.contains("escapes the container rootfs"), "{e}");
    let e = err(d.path(), "/boot/../../x");
    assert!(e.contains("escapes"), "{e}");
}

#[test]
fn symlink_escape_is_refused() {
    let d = tree();
    let e = err(d.path(), "/boot/escape-link");
    assert!(e.contains("escapes"), "{e}");
}

#[test]
fn absolute_symlink_stays_inside() {
    // /etc/hostname exists on the host but not in the rootfs: not found, never the host file.
    let d = tree();
    assert_eq!(err(d.path(), "/host-file"), "not found");
}

#[test]
fn loops_dirs_and_fifos_are_refused() {
    let d = tree();
    assert!(err(d.path(), "/loop-a").contains("too many levels"));
    assert!(err(d.path(), "/boot").contains("a directory"));
    nix::unistd::mkfifo(
        &d.path().join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert!(err(d.path(), "/fifo").contains("a FIFO"));
    assert!(err(d.path(), "").contains("empty path"));
}
