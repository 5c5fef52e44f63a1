use super::*;
use std::fs;

fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const FULL: &[(&str, &str)] = &[
    (KEY_TYPE, "linux"),
    (KEY_HYPERVISOR, "qemu"),
    (KEY_BINARY, "/boot/vmlinux"),
];

#[test]
fn no_keys_means_not_a_unikernel() {
    let dir = tempfile::tempdir().unwrap();
    let other = ann(&[("io.kubernetes.cri.sandbox-id", "x")]);
    assert_eq!(UnikernelConfig::load(&other, dir.path()).unwrap(), None);
}

#[test]
fn a_pod_sandbox_is_never_a_unikernel() {
    let dir = tempfile::tempdir().unwrap();
    for key in [
        "io.kubernetes.cri.container-type",
        "io.kubernetes.cri-o.ContainerType",
    ] {
        let mut a = ann(FULL);
        a.insert(key.into(), "sandbox".into());
        assert_eq!(UnikernelConfig::load(&a, dir.path()).unwrap(), None);
        a.insert(key.into(), "container".into());
        assert!(UnikernelConfig::load(&a, dir.path()).unwrap().is_some());
    }
}

#[test]
fn annotations_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = ann(FULL);
    a.insert(KEY_INITRD.into(), "/boot/initrd".into());
    let c = UnikernelConfig::load(&a, dir.path()).unwrap().unwrap();
    assert_eq!(c.unikernel_type, "linux");
    assert_eq!(c.hypervisor, "qemu");
    assert_eq!(c.binary, "/boot/vmlinux");
    assert_eq!(c.initrd.as_deref(), Some("/boot/initrd"));
    assert_eq!(c.cmdline, None);
}

#[test]
fn urunc_json_plain_and_base64() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("urunc.json"),
        r#"{"com.urunc.unikernel.unikernelType":"dW5pa3JhZnQ=",
            "com.urunc.unikernel.hypervisor":"b64:cWVtdQ==",
            "com.urunc.unikernel.binary":"/unikernel/app",
            "com.urunc.unikernel.cmdline":"aGVsbG8gd29ybGQ="}"#,
    )
    .unwrap();
    let c = UnikernelConfig::load(&HashMap::new(), dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(c.unikernel_type, "unikraft");
    assert_eq!(c.hypervisor, "qemu");
    assert_eq!(c.binary, "/unikernel/app");
    assert_eq!(c.cmdline.as_deref(), Some("hello world"));
}

#[test]
fn annotations_override_urunc_json() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("urunc.json"),
        r#"{"com.urunc.unikernel.unikernelType":"linux","com.urunc.unikernel.hypervisor":"qemu","com.urunc.unikernel.binary":"/a"}"#,
    )
    .unwrap();
    let a = ann(&[(KEY_BINARY, "/b")]);
    let c = UnikernelConfig::load(&a, dir.path()).unwrap().unwrap();
    assert_eq!(c.binary, "/b");
}

#[test]
fn missing_keys_are_named_with_typos_hinted() {
    let dir = tempfile::tempdir().unwrap();
    let a = ann(&[
        (KEY_TYPE, "linux"),
        ("com.urunc.unikernel.hypervisr", "qemu"),
    ]);
    let e = UnikernelConfig::load(&a, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing com.urunc.unikernel.hypervisor, com.urunc.unikernel.binary"),
        "{e}"
    );
    assert!(
        e.contains("unrecognised keys: com.urunc.unikernel.hypervisr"),
        "{e}"
    );
}

#[test]
fn invalid_json_and_wrong_types() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("urunc.json"), "{not json").unwrap();
    let e = UnikernelConfig::load(&HashMap::new(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("urunc.json in the image is not a JSON object"),
        "{e}"
    );
    fs::write(
        dir.path().join("urunc.json"),
        r#"{"com.urunc.unikernel.binary": 3}"#,
    )
    .unwrap();
    let e = UnikernelConfig::load(&HashMap::new(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected a string"), "{e}");
}

#[test]
fn urunc_json_symlink_cannot_leave_rootfs() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(
        outside.path().join("evil.json"),
        r#"{"com.urunc.unikernel.unikernelType":"linux","com.urunc.unikernel.hypervisor":"qemu","com.urunc.unikernel.binary":"/a"}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("evil.json"),
        dir.path().join("urunc.json"),
    )
    .unwrap();
    // The absolute target is read as a path inside the rootfs, where it does not exist.
    assert_eq!(
        UnikernelConfig::load(&HashMap::new(), dir.path()).unwrap(),
        None
    );
}

#[test]
fn nul_bytes_and_bad_bools_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = ann(FULL);
    a.insert(KEY_CMDLINE.into(), "a\0b".into());
    assert!(UnikernelConfig::load(&a, dir.path())
        .unwrap_err()
        .to_string()
        .contains("NUL"));
    let mut a = ann(FULL);
    a.insert(KEY_USE_DM_BLOCK.into(), "maybe".into());
    let e = UnikernelConfig::load(&a, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("useDMBlock: expected true or false"), "{e}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn qemu_machine_from_the_image_overridden_by_an_annotation() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("urunc.json"),
        r#"{"com.urunc.unikernel.unikernelType":"unikraft","com.urunc.unikernel.hypervisor":"qemu",
            "com.urunc.unikernel.binary":"/k","com.urunc.unikernel.qemuMachine":"microvm"}"#,
    )
    .unwrap();
    let load = |a: &[(&str, &str)]| UnikernelConfig::load(&ann(a), dir.path());
    let c = load(&[]).unwrap().unwrap();
    assert_eq!(c.qemu_machine.as_deref(), Some("microvm"));
    assert_eq!(c.to_map()[KEY_QEMU_MACHINE], "microvm");
    let c = load(&[(KEY_QEMU_MACHINE, "pc")]).unwrap().unwrap();
    assert_eq!(c.qemu_machine.as_deref(), Some("pc"));
    // An empty annotation unsets the image's choice: the host's configuration decides.
    let c = load(&[(KEY_QEMU_MACHINE, "")]).unwrap().unwrap();
    assert_eq!(c.qemu_machine, None);
    let e = load(&[(KEY_QEMU_MACHINE, "q35")]).unwrap_err().to_string();
    assert!(
        e.contains(r#"com.urunc.unikernel.qemuMachine: machine "q35" is not supported"#)
            && e.contains("pc, microvm"),
        "{e}"
    );
}
