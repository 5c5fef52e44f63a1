//! Shared helpers for urunc integration tests that drive a private containerd.
//!
//! * [`Containerd`] starts a throw-away containerd 1.6 with its own root,
//!   state, sockets and `opt` directory in a temporary directory, runs `ctr`
//!   against it and cleans everything up again on drop (also when the test
//!   panics).
//! * [`busybox_image`] fills an [`oci_image::ImageBuilder`] with Debian's
//!   static busybox, giving a minimal runnable container image.
//! * [`require_root_and_tools`] lets a test skip with a visible `SKIP:` line
//!   when it cannot run here.
//! * [`bundle`] drives the `urunc` binary directly, as runc is driven: temporary
//!   OCI bundles ([`bundle::TestBundle`]), a runner with a private `--root`
//!   ([`bundle::Urunc`]) and a check for what a container left behind.
//!
//! ```no_run
//! use test_harness::{busybox_image, require_root_and_tools, Containerd};
//!
//! #[test]
//! fn runs_a_container() {
//!     if !require_root_and_tools(&["containerd", "ctr", "runc"]) {
//!         return;
//!     }
//!     let containerd = Containerd::start().unwrap();
//!     let mut image = oci_image::ImageBuilder::new();
//!     busybox_image(&mut image).unwrap();
//!     let tar = containerd.dir().join("busybox.tar");
//!     image.write_oci_archive(&tar, "docker.io/library/busybox:test").unwrap();
//!     let name = containerd.import(&tar).unwrap();
//!     let id = containerd.unique_id("t");
//!     let out = containerd.run(&[], &name, &id, &["/bin/sh", "-c", "echo hi"]);
//!     assert!(out.status.success());
//! }
//! ```

pub mod bundle;
mod cleanup;
pub mod cni;
mod command;
mod containerd;
#[cfg(feature = "cri")]
pub mod cri;
mod docker;
pub mod fixtures;
mod podman;
pub mod recorder;
mod skip;

pub use cleanup::{mounts_under, pids_with_arg, wait_until};
pub use command::{assert_ok, output_text, wait_or_kill};
pub use containerd::{Containerd, ContainerdBuilder, DEFAULT_NAMESPACE};
pub use docker::{Dockerd, DOCKER, DOCKERD};
pub use podman::{Podman, PODMAN_RUN_ULIMITS};
pub use skip::{find_tool, is_root, require_root_and_tools, skip_or_fail, REQUIRE_ENV};

use anyhow::{ensure, Result};
use oci_image::ImageBuilder;
use std::path::Path;

/// Where Debian's `busybox-static` package installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Adds Debian's static busybox as `/bin/busybox` plus `/bin/sh -> busybox`
/// and a world-writable `/tmp`, and sets `Cmd` to `/bin/sh` and `PATH=/bin`.
/// Everything else (entrypoint, more files) can still be changed afterwards.
pub fn busybox_image(image: &mut ImageBuilder) -> Result<&mut ImageBuilder> {
    ensure!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing (apt-get install busybox-static)"
    );
    image
        .add_file("/bin/busybox", BUSYBOX, 0o755)?
        .add_symlink("/bin/sh", "busybox")?
        .add_dir_with_mode("/tmp", 0o1777)?;
    image.cmd(["/bin/sh"]).env("PATH", "/bin");
    Ok(image)
}

/// Adds a Linux guest (the [`fixtures::linux_guest`] files) as `/boot/vmlinux` and
/// `/boot/initrd`, and sets `Cmd` to the initrd's `/init`.
pub fn linux_guest_image<'a>(
    image: &'a mut ImageBuilder,
    vmlinux: &Path,
    initrd: &Path,
) -> Result<&'a mut ImageBuilder> {
    image
        .add_file("/boot/vmlinux", vmlinux, 0o644)?
        .add_file("/boot/initrd", initrd, 0o644)?;
    image.cmd(["/init"]);
    Ok(image)
}
