//! `urunc-pack build -f Containerfile`: the binary's errors, reproducibility, building on
//! an existing image (OCI archive, OCI layout directory, docker archive), and that the
//! result is accepted by `ctr images import`, `docker load`, `podman load` and
//! `skopeo copy`, and boots under containerd + urunc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::read::GzDecoder;
use serde_json::Value;
use test_harness::{
    busybox_image, find_tool, fixtures, output_text, require_root_and_tools, Containerd, Dockerd,
    Podman, PODMAN_RUN_ULIMITS,
};

fn pack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_urunc-pack"))
        .args(args)
        .output()
        .expect("run urunc-pack")
}

fn build(dir: &Path, containerfile: &str, out: &str) -> Output {
    let file = dir.join("Containerfile");
    fs::write(&file, containerfile).unwrap();
    pack(&[
        "build",
        "-f",
        file.to_str().unwrap(),
        "--name",
        "urunc.local/test/built:1",
        "-o",
        dir.join(out).to_str().unwrap(),
    ])
}

fn build_ok(dir: &Path, containerfile: &str, out: &str) -> PathBuf {
    let o = build(dir, containerfile, out);
    assert!(o.status.success(), "{}", output_text(&o));
    dir.join(out)
}

fn error(dir: &Path, containerfile: &str) -> String {
    let o = build(dir, containerfile, "x.tar");
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(!dir.join("x.tar").exists());
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

/// The archive's files.
fn files(tar: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(tar).unwrap());
    let mut out = std::collections::BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.insert(name, data);
    }
    out
}

/// The image config and the names in the top layer.
fn inspect(tar: &Path) -> (Value, Vec<Value>, Vec<String>) {
    let f = files(tar);
    let index: Value = serde_json::from_slice(&f["index.json"]).unwrap();
    let blob = |d: &str| f[&format!("blobs/{}", d.replacen(':', "/", 1))].clone();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap().clone();
    let top = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let mut names = Vec::new();
    for e in tar::Archive::new(GzDecoder::new(&top[..]))
        .entries()
        .unwrap()
    {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    (config, layers, names)
}

fn kernel_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("kernel"), b"\x7fELF not a real kernel").unwrap();
    dir
}

const SCRATCH: &str = "FROM scratch
# the kernel
COPY kernel /boot/kernel
LABEL com.urunc.unikernel.unikernelType=unikraft \\
      com.urunc.unikernel.binary=/boot/kernel
ENV GREETING=hi
CMD [\"hello\", \"world\"]
";

#[test]
fn scratch_build_is_reproducible_and_has_the_keys() {
    let dir = kernel_dir();
    let a = build_ok(dir.path(), SCRATCH, "a.tar");
    let b = build_ok(dir.path(), SCRATCH, "b.tar");
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "not reproducible"
    );
    let (config, layers, names) = inspect(&a);
    assert_eq!(layers.len(), 1);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["hello", "world"])
    );
    assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi"]));
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["com.urunc.unikernel.hypervisor"], "qemu");
    assert_eq!(labels["com.urunc.unikernel.binary"], "/boot/kernel");
    assert!(names.contains(&"urunc.json".to_string()), "{names:?}");
}

#[test]
fn errors_are_clear() {
    let dir = kernel_dir();
    let d = dir.path();
    let e = error(
        d,
        "FROM scratch\nLABEL com.urunc.unikernel.unikernelTyp=linux\n",
    );
    assert!(
        e.contains(":2: unknown key com.urunc.unikernel.unikernelTyp (known: unikernelType"),
        "{e}"
    );
    let e = error(d, "FROM scratch\nCOPY nothere /boot/kernel\n");
    assert!(
        e.contains(":2: COPY nothere: ") && e.contains("No such file"),
        "{e}"
    );
    let e = error(d, "FROM scratch\nFROM scratch\n");
    assert!(
        e.contains(":2: a second FROM conflicts with the first (line 1)"),
        "{e}"
    );
    let e = error(d, "COPY kernel /k\nFROM scratch\n");
    assert!(e.contains(":1: the first instruction must be FROM"), "{e}");
    let e = error(d, "FROM missing.tar\n");
    assert!(
        e.contains("FROM missing.tar: ") && e.contains("No such file"),
        "{e}"
    );
    let e = error(
        d,
        "FROM scratch\nLABEL com.urunc.unikernel.unikernelType=unikraft com.urunc.unikernel.binary=/boot/kernel\n",
    );
    assert!(
        e.contains("com.urunc.unikernel.binary=/boot/kernel: no such file in the image"),
        "{e}"
    );
    let e = error(
        d,
        "FROM scratch\nCOPY kernel /boot/kernel\nLABEL com.urunc.unikernel.binary=/boot/kernel\n",
    );
    assert!(
        e.contains("no LABEL com.urunc.unikernel.unikernelType"),
        "{e}"
    );
    let e = error(
        d,
        "FROM scratch\nCOPY kernel /boot/kernel\nLABEL com.urunc.unikernel.unikernelType=unikraft \
         com.urunc.unikernel.binary=/boot/kernel com.urunc.unikernel.qemuMachine=q35\n",
    );
    assert!(
        e.contains(r#"com.urunc.unikernel.qemuMachine: machine "q35" is not supported on x86_64"#),
        "{e}"
    );
    let e = error(d, "FROM scratch\nRUN make\n");
    assert!(e.contains(":2: RUN is not supported"), "{e}");
    let e = error(d, "FROM scratch\nCOPY ../etc/passwd /x\n");
    assert!(e.contains("inside the context"), "{e}");
}

/// A busybox image (Debian's static busybox) as an OCI archive in `dir`.
fn busybox_tar(dir: &Path) -> Option<PathBuf> {
    if find_tool("busybox").is_none() || !Path::new(test_harness::BUSYBOX).is_file() {
        test_harness::skip_or_fail("busybox-static is not installed");
        return None;
    }
    let mut b = oci_image::ImageBuilder::new();
    busybox_image(&mut b).unwrap();
    b.entrypoint(["/bin/sh", "-c"]).env("APP", "busybox");
    let tar = dir.join("busybox.tar");
    b.write_oci_archive(&tar, "docker.io/library/busybox:test")
        .unwrap();
    Some(tar)
}

fn as_vm(base: &str) -> String {
    format!(
        "FROM {base}
COPY kernel /boot/vmlinux
COPY kernel /boot/initrd
LABEL com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.binary=/boot/vmlinux \\
      com.urunc.unikernel.initrd=/boot/initrd
"
    )
}

/// "Run an existing container image as a VM": the base's layers, entrypoint, cmd and
/// env are kept; the kernel and the keys are added on top. From an OCI archive, an OCI
/// layout directory and a docker archive (made with skopeo when installed).
#[test]
fn existing_image_keeps_its_entrypoint_cmd_env_and_layers() {
    let dir = kernel_dir();
    let d = dir.path();
    let Some(base) = busybox_tar(d) else { return };
    let base_layer = inspect(&base).1[0].clone();
    let mut bases = vec!["busybox.tar".to_string()];
    let layout = d.join("busybox-layout");
    let mut b = oci_image::ImageBuilder::new();
    busybox_image(&mut b).unwrap();
    b.entrypoint(["/bin/sh", "-c"]).env("APP", "busybox");
    b.build()
        .unwrap()
        .write_oci_layout_dir(&layout, "busybox:test")
        .unwrap();
    bases.push("busybox-layout".into());
    if find_tool("skopeo").is_some() {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}", base.display()))
            .arg(format!(
                "docker-archive:{}:busybox:docker",
                d.join("busybox-docker.tar").display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        bases.push("busybox-docker.tar".into());
    }
    for from in &bases {
        let tar = build_ok(d, &as_vm(from), &format!("vm-{from}.tar"));
        let (config, layers, names) = inspect(&tar);
        let c = &config["config"];
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c"]),
            "{from}"
        );
        assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh"]), "{from}");
        assert_eq!(
            c["Env"],
            serde_json::json!(["PATH=/bin", "APP=busybox"]),
            "{from}"
        );
        assert_eq!(
            c["Labels"]["com.urunc.unikernel.unikernelType"], "linux",
            "{from}"
        );
        assert_eq!(layers.len(), 2, "{from}");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        if from == "busybox.tar" {
            assert_eq!(
                layers[0]["digest"], base_layer["digest"],
                "base layer changed"
            );
        }
        assert!(names.contains(&"boot/vmlinux".to_string()), "{names:?}");
        assert!(names.contains(&"urunc.json".to_string()), "{names:?}");
    }
    // A file the base has can be named by a key without being copied.
    let tar = build_ok(
        d,
        "FROM busybox.tar\nLABEL com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.binary=/bin/busybox\n",
        "k.tar",
    );
    assert!(tar.is_file());
    let e = error(d, "FROM busybox.tar\nLABEL com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.binary=/bin\n");
    assert!(e.contains("not a regular file in the image"), "{e}");
}

/// The image built on busybox loads into every tool (skopeo, ctr, docker, podman).
#[test]
fn built_images_load_everywhere() {
    if !require_root_and_tools(&[
        "containerd",
        "ctr",
        "skopeo",
        "podman",
        "/usr/sbin/dockerd",
        "busybox",
    ]) {
        return;
    }
    let dir = kernel_dir();
    let d = dir.path();
    let Some(_) = busybox_tar(d) else { return };
    let tar = build_ok(d, &as_vm("busybox.tar"), "vm.tar");
    let name = "urunc.local/test/built:1";

    let out = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", tar.display()))
        .arg(format!("dir:{}", d.join("skopeo-dir").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", output_text(&out));

    let containerd = Containerd::start().unwrap();
    assert_eq!(containerd.import(&tar).unwrap(), name);
    drop(containerd);

    let docker = Dockerd::start(&[], &[]).unwrap();
    let out = docker.docker_ok(&["load", "--input", tar.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(name));
    let out = docker.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        name,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["/bin/sh","-c"]"#
    );
    drop(docker);

    let podman = Podman::new(&[]).unwrap();
    let out = podman.podman_ok(&["load", "--input", tar.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(name),
        "{}",
        output_text(&out)
    );
    // The base image's busybox is still there and runs (with runc, as an ordinary
    // container would; the VM run needs the shared-rootfs support of the storage work).
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
    ];
    args.extend_from_slice(PODMAN_RUN_ULIMITS);
    args.extend([name, "echo", "base-layer-ok"]);
    let out = podman.podman_ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("base-layer-ok"));
}

/// A Containerfile-built unikernel boots under containerd + urunc from its urunc.json.
#[test]
fn built_unikernel_boots_under_containerd() {
    if !require_root_and_tools(&[
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "qemu-system-x86_64",
    ]) {
        return;
    }
    let Some(kernel) = fixtures::testkernel() else {
        return;
    };
    let urunc = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("urunc");
    if !urunc.is_file() {
        test_harness::skip_or_fail(&format!(
            "{} is missing (cargo build -p urunc-cli)",
            urunc.display()
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::copy(kernel, dir.path().join("kernel")).unwrap();
    let tar = build_ok(
        dir.path(),
        &SCRATCH.replace("\"world\"", "\"from\", \"a\", \"Containerfile\""),
        "tk.tar",
    );
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .start()
        .unwrap();
    let name = containerd.import(&tar).unwrap();
    let id = containerd.unique_id("build");
    let flags = [
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        urunc.to_str().unwrap(),
    ];
    let out = containerd.run(&flags, &name, &id, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("URUNC-TESTKERNEL-BOOTED"), "{text}");
    assert!(text.contains(" GREETING=hi "), "{text}");
    assert!(text.contains(" -- hello from a Containerfile"), "{text}");
}
