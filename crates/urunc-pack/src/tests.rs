use super::*;
use std::collections::HashMap;
use std::io::Read;

use urunc::unikernel::UnikernelConfig;

/// A directory with a fake kernel (an amd64 ELF header) and initrd.
struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(18, 0);
        elf.extend_from_slice(&0x3eu16.to_le_bytes());
        elf.extend_from_slice(b"rest of the kernel");
        fs::write(dir.path().join("vmlinux"), &elf).unwrap();
        fs::write(dir.path().join("initrd.cpio"), b"070701 fake cpio").unwrap();
        Inputs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn linux(&self) -> PackOptions {
        PackOptions {
            initrd: Some(self.path("initrd.cpio")),
            cmd: vec!["/bin/report".into(), "hello".into()],
            env: vec!["GREETING=hi there".into()],
            name: Some("urunc.local/demo/hello:v1".into()),
            ..PackOptions::new(self.path("vmlinux"), "linux")
        }
    }
}

/// The files of the image's layer: path → (mode, content).
fn layer_files(image: &Image) -> BTreeMap<String, (u32, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(&image.layer.data[..]);
    let mut tar = tar::Archive::new(gz);
    let mut files = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, (mode, data));
    }
    files
}

fn json(blob: &oci_image::Blob) -> serde_json::Value {
    serde_json::from_slice(&blob.data).unwrap()
}

#[test]
fn urunc_json_holds_bare_base64_of_every_key() {
    let inputs = Inputs::new();
    let mut opts = inputs.linux();
    opts.cmdline = Some("/bin/report from cmdline".into());
    opts.version = Some("6.1".into());
    let packed = opts.build().unwrap();
    let files = layer_files(&packed.image);
    let (mode, raw) = &files["urunc.json"];
    assert_eq!(*mode, 0o644);
    let text = std::str::from_utf8(raw).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"com.urunc.unikernel.binary":"L2Jvb3Qvdm1saW51eA==","#,
            r#""com.urunc.unikernel.cmdline":"L2Jpbi9yZXBvcnQgZnJvbSBjbWRsaW5l","#,
            r#""com.urunc.unikernel.hypervisor":"cWVtdQ==","#,
            r#""com.urunc.unikernel.initrd":"L2Jvb3QvaW5pdHJkLmNwaW8=","#,
            r#""com.urunc.unikernel.unikernelType":"bGludXg=","#,
            r#""com.urunc.unikernel.unikernelVersion":"Ni4x"}"#
        )
    );
    let decoded = uruncjson::decode(raw).unwrap();
    assert_eq!(decoded, packed.config);
    assert_eq!(decoded[KEY_BINARY], "/boot/vmlinux");
    assert_eq!(decoded[KEY_INITRD], "/boot/initrd.cpio");
    assert_eq!(decoded[KEY_CMDLINE], "/bin/report from cmdline");
}

#[test]
fn urunc_reads_what_the_packer_writes() {
    let inputs = Inputs::new();
    let packed = inputs.linux().build().unwrap();
    // Unpack the layer into a rootfs and let urunc's own reader load it.
    let rootfs = tempfile::tempdir().unwrap();
    for (path, (_, data)) in layer_files(&packed.image) {
        let dest = rootfs.path().join(&path);
        if path.ends_with('/') {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::write(&dest, data).unwrap();
        }
    }
    let cfg = UnikernelConfig::load(&HashMap::new(), rootfs.path())
        .unwrap()
        .expect("urunc.json is found");
    assert_eq!(cfg.unikernel_type, "linux");
    assert_eq!(cfg.hypervisor, "qemu");
    assert_eq!(cfg.binary, "/boot/vmlinux");
    assert_eq!(cfg.initrd.as_deref(), Some("/boot/initrd.cpio"));
    assert_eq!(cfg.cmdline, None);
    assert_eq!(
        fs::read(rootfs.path().join("boot/vmlinux")).unwrap(),
        fs::read(inputs.path("vmlinux")).unwrap()
    );

    // The labels, as annotations, are read the same way (plain values).
    let labels: HashMap<String, String> = packed.config.clone().into_iter().collect();
    let empty = tempfile::tempdir().unwrap();
    let from_labels = UnikernelConfig::load(&labels, empty.path())
        .unwrap()
        .unwrap();
    assert_eq!(from_labels, cfg);
}

#[test]
fn labels_annotations_env_cmd_and_platform() {
    let inputs = Inputs::new();
    let packed = inputs.linux().build().unwrap();
    assert_eq!(packed.reference, "urunc.local/demo/hello:v1");
    let config = json(&packed.image.config);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/report", "hello"]));
    assert_eq!(c["Env"], serde_json::json!(["GREETING=hi there"]));
    assert!(c.get("Entrypoint").is_none_or(|e| e.is_null()));
    let manifest = json(&packed.image.manifest);
    for (k, v) in &packed.config {
        assert_eq!(c["Labels"][k], *v, "label {k}");
        assert_eq!(manifest["annotations"][k], *v, "annotation {k}");
    }
    assert_eq!(c["Labels"][KEY_TYPE], "linux");
    assert_eq!(c["Labels"].as_object().unwrap().len(), packed.config.len());
}

#[test]
fn layer_has_kernel_initrd_rootfs_and_urunc_json() {
    let inputs = Inputs::new();
    let extra = tempfile::tempdir().unwrap();
    fs::create_dir(extra.path().join("etc")).unwrap();
    fs::write(extra.path().join("etc/motd"), b"hi\n").unwrap();
    fs::create_dir(extra.path().join("boot")).unwrap();
    fs::write(extra.path().join("boot/README"), b"kernel lives here\n").unwrap();
    let mut opts = inputs.linux();
    opts.rootfs = Some(extra.path().to_path_buf());
    let files = layer_files(&opts.build().unwrap().image);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "boot/",
            "boot/README",
            "boot/initrd.cpio",
            "boot/vmlinux",
            "etc/",
            "etc/motd",
            "urunc.json"
        ]
    );
    assert_eq!(files["boot/vmlinux"].0, 0o644);
    assert_eq!(files["boot/initrd.cpio"].1, b"070701 fake cpio");
    assert_eq!(files["etc/motd"].1, b"hi\n");
}

#[test]
fn unikraft_without_initrd_or_cmd() {
    let inputs = Inputs::new();
    let mut opts = PackOptions::new(inputs.path("vmlinux"), "unikraft");
    opts.cmdline = Some("hello world".into());
    let packed = opts.build().unwrap();
    assert_eq!(packed.reference, "urunc.local/vmlinux:latest");
    assert!(!packed.config.contains_key(KEY_INITRD));
    assert_eq!(packed.config[KEY_CMDLINE], "hello world");
    // Without --cmd the image's Cmd is the cmdline's words: Docker refuses to run an
    // image that has no command, and urunc uses those words for an argless container.
    let config = json(&packed.image.config);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["hello", "world"])
    );
}

#[test]
fn output_is_deterministic_and_independent_of_host_paths() {
    let a = Inputs::new();
    let b = Inputs::new();
    let out = tempfile::tempdir().unwrap();
    let (pa, pb) = (out.path().join("a.tar"), out.path().join("b.tar"));
    a.linux().pack(&pa).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    b.linux().pack(&pb).unwrap();
    let (da, db) = (fs::read(&pa).unwrap(), fs::read(&pb).unwrap());
    assert!(!da.is_empty());
    assert!(da == db, "two packs of the same inputs differ");
    // Packing again over an existing output replaces it and leaves no temp file.
    a.linux().pack(&pa).unwrap();
    assert_eq!(fs::read(&pa).unwrap(), da);
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

fn err(opts: &PackOptions) -> String {
    let e = opts.build().expect_err("packing should fail");
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "one-line error: {msg:?}");
    msg
}

#[test]
fn errors_name_what_is_wrong() {
    let inputs = Inputs::new();
    let base = inputs.linux();

    let mut o = base.clone();
    o.kernel = inputs.path("missing");
    let m = err(&o);
    assert!(
        m.starts_with("--kernel ") && m.contains("missing") && m.contains("No such file"),
        "{m}"
    );

    let mut o = base.clone();
    o.initrd = Some(inputs.dir.path().to_path_buf());
    assert!(err(&o).contains("--initrd") && err(&o).contains("not a regular file"));

    let mut o = base.clone();
    o.unikernel_type = "nosuchguest".into();
    assert!(
        err(&o).starts_with("unknown unikernel type \"nosuchguest\" (known: linux, "),
        "{}",
        err(&o)
    );

    let mut o = base.clone();
    o.monitor = "nosuchmonitor".into();
    assert!(
        err(&o).starts_with("unknown monitor \"nosuchmonitor\" (known: "),
        "{}",
        err(&o)
    );

    for bad in ["NOEQUALS", "=value", "A B=1"] {
        let mut o = base.clone();
        o.env = vec![bad.into()];
        let m = err(&o);
        assert!(m.starts_with(&format!("--env {bad:?}")), "{m}");
    }

    // The Linux guest refuses an environment variable its kernel would act on.
    let mut o = base.clone();
    o.env = vec!["rdinit=/evil".into()];
    assert!(err(&o).contains("boot parameter"), "{}", err(&o));

    let mut o = base.clone();
    o.cmdline = Some("a\nb".into());
    assert!(err(&o).starts_with("--cmdline"), "{}", err(&o));

    let mut o = base.clone();
    o.name = Some("bad name".into());
    assert!(err(&o).starts_with("--name"), "{}", err(&o));

    let mut o = base.clone();
    o.initrd = Some(inputs.path("vmlinux"));
    assert!(err(&o).contains("same file name"), "{}", err(&o));
}

#[test]
fn rootfs_cannot_shadow_what_the_packer_writes() {
    let inputs = Inputs::new();
    let extra = tempfile::tempdir().unwrap();
    fs::write(extra.path().join("urunc.json"), b"{}").unwrap();
    let mut o = inputs.linux();
    o.rootfs = Some(extra.path().to_path_buf());
    assert!(err(&o).contains("has /urunc.json"), "{}", err(&o));

    fs::remove_file(extra.path().join("urunc.json")).unwrap();
    fs::create_dir(extra.path().join("boot")).unwrap();
    fs::write(extra.path().join("boot/vmlinux"), b"other").unwrap();
    assert!(err(&o).contains("has /boot/vmlinux"), "{}", err(&o));

    o.rootfs = Some(inputs.path("vmlinux"));
    assert!(err(&o).contains("not a directory"), "{}", err(&o));
}

#[test]
fn failed_pack_leaves_no_output() {
    let inputs = Inputs::new();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("no-such-dir").join("x.tar");
    let e = inputs.linux().pack(&target).unwrap_err();
    assert!(format!("{e:#}").starts_with("--output"), "{e:#}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn env_parsing() {
    assert_eq!(parse_env("A=1").unwrap(), ("A".into(), "1".into()));
    assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
    assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
    assert!(parse_env("A").is_err());
    assert!(parse_env("=1").is_err());
    assert!(parse_env("A\t=1").is_err());
    assert!(parse_env("A=\0").is_err());
}

#[test]
fn references_are_checked() {
    for ok in [
        "urunc.local/demo/hello:latest",
        "localhost:5000/a_b/c-d:v1.2",
        "hello:1",
        "docker.io/library/busybox:1.36",
        "UPPER.example/ok:Tag_1",
    ] {
        check_reference(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "urunc.local/Demo:latest",
        "a/-b:1",
        "a/b.:1",
        "a:.tag",
        "a/b c:1",
        "a/b:t@g",
    ] {
        assert!(check_reference(bad).is_err(), "{bad} accepted");
    }
    let inputs = Inputs::new();
    let mut o = inputs.linux();
    o.name = Some("urunc.local/Demo/Hello".into());
    let m = err(&o);
    assert!(
        m.starts_with(
            "--name \"urunc.local/Demo/Hello:latest\": invalid repository name component \"Demo\""
        ),
        "{m}"
    );
}

#[test]
fn default_names_are_valid_references() {
    assert_eq!(default_name("vmlinux"), "urunc.local/vmlinux:latest");
    assert_eq!(
        default_name("Hello World.elf"),
        "urunc.local/hello-world.elf:latest"
    );
    assert_eq!(default_name("@@@"), "urunc.local/unikernel:latest");
    assert_eq!(default_name("_a..b___c-"), "urunc.local/a-b-c:latest");
    for n in [
        "vmlinux",
        "Hello World.elf",
        "@@@",
        "testkernel.elf",
        "a..b",
        "x___y",
    ] {
        ImageRef::parse(&default_name(n)).unwrap();
        check_reference(&default_name(n)).unwrap();
    }
}

#[test]
fn qemu_machine_is_written_and_checked() {
    let inputs = Inputs::new();
    let mut opts = inputs.linux();
    opts.qemu_machine = Some("microvm".into());
    let packed = opts.build().unwrap();
    assert_eq!(packed.config[KEY_QEMU_MACHINE], "microvm");
    let decoded = uruncjson::decode(&layer_files(&packed.image)["urunc.json"].1).unwrap();
    assert_eq!(decoded[KEY_QEMU_MACHINE], "microvm");

    // The fake kernel is an amd64 ELF: an aarch64 machine is refused for it.
    opts.qemu_machine = Some("virt".into());
    let e = opts.build().unwrap_err().to_string();
    assert_eq!(
        e,
        r#"com.urunc.unikernel.qemuMachine: machine "virt" is not supported on x86_64; expected one of: pc, microvm"#
    );
    let firecracker = PackOptions {
        monitor: "firecracker".into(),
        qemu_machine: Some("microvm".into()),
        ..inputs.linux()
    };
    let e = firecracker.build().unwrap_err().to_string();
    assert_eq!(
        e,
        r#"com.urunc.unikernel.qemuMachine=microvm: a QEMU setting, but the monitor is "firecracker""#
    );
}
