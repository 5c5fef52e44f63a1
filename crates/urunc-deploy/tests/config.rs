//! `configure` / `unconfigure` on the sample containerd configurations in tests/data/:
//! the exact result (tests/data/expected/, regenerate with URUNC_DEPLOY_BLESS=1), what
//! containerd will read from it, idempotence (a second run returns the same bytes and
//! reports no change), and that `unconfigure` gives back the original file.

use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item};
use urunc_deploy::{configure, unconfigure, ConfigVersion, Options, Outcome};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> String {
    fs::read_to_string(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares with tests/data/expected/<name> (or writes it with URUNC_DEPLOY_BLESS=1).
fn golden(name: &str, text: &str) {
    let path = data("expected").join(name);
    if std::env::var_os("URUNC_DEPLOY_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        return;
    }
    let want = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (URUNC_DEPLOY_BLESS=1 writes it)", path.display()));
    assert_eq!(text, want, "{name} differs from {}", path.display());
}

fn opts() -> Options {
    Options::default()
}

fn text(o: &Outcome) -> &str {
    o.text.as_deref().expect("a file")
}

/// The value at a dotted path of keys.
fn get<'a>(doc: &'a DocumentMut, path: &[&str]) -> Option<&'a Item> {
    let mut item = doc.as_item();
    for k in path {
        item = item.get(k)?;
    }
    Some(item)
}

fn strings(item: Option<&Item>) -> Vec<String> {
    item.and_then(Item::as_array)
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// What containerd reads: the urunc handler and runc are declared in `plugin`.
fn assert_semantics(out: &str, version: ConfigVersion) {
    let doc: DocumentMut = out.parse().expect("valid TOML");
    let plugin = version.cri_plugin();
    let runtimes = ["plugins", plugin, "containerd", "runtimes"];
    let at = |rest: &[&str]| {
        let mut p = runtimes.to_vec();
        p.extend_from_slice(rest);
        get(&doc, &p).cloned()
    };
    assert_eq!(
        at(&["urunc", "runtime_type"]).and_then(|i| i.as_str().map(String::from)),
        Some("io.containerd.urunc.v2".into()),
        "{out}"
    );
    for key in ["pod_annotations", "container_annotations"] {
        assert_eq!(
            strings(at(&["urunc", key]).as_ref()),
            ["com.urunc.*"],
            "{out}"
        );
    }
    assert_eq!(
        at(&["runc", "runtime_type"]).and_then(|i| i.as_str().map(String::from)),
        Some("io.containerd.runc.v2".into()),
        "{out}"
    );
    let n = match version {
        ConfigVersion::V2 => 2,
        ConfigVersion::V3 => 3,
    };
    assert_eq!(doc.get("version").and_then(Item::as_integer), Some(n));
}

/// configure -> golden, semantics, idempotence; unconfigure -> the original bytes.
fn round_trip(name: &str, version: ConfigVersion, o: &Options) -> String {
    let original = read(name);
    let out = configure(Some(&original), o).unwrap();
    assert!(out.changed, "{name}: nothing changed");
    assert_eq!(out.version, version);
    assert!(!out.actions.is_empty());
    let patched = text(&out).to_string();
    assert_semantics(&patched, version);
    golden(name, &patched);

    let again = configure(Some(&patched), o).unwrap();
    assert!(
        !again.changed,
        "{name}: second run changed {:?}",
        again.actions
    );
    assert!(again.actions.is_empty());
    assert_eq!(text(&again), patched, "{name}: second run differs");

    let back = unconfigure(Some(&patched), o).unwrap();
    assert!(back.changed);
    assert_eq!(
        text(&back),
        original,
        "{name}: unconfigure did not restore it"
    );
    let back2 = unconfigure(Some(text(&back)), o).unwrap();
    assert!(!back2.changed);
    patched
}

#[test]
fn containerd_1_6_default_config() {
    let out = round_trip("v2-containerd-1.6-default.toml", ConfigVersion::V2, &opts());
    // The handler goes right after the existing runtimes, the rest is untouched.
    assert!(out.contains(
        "# urunc-deploy: added\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.urunc]\n  runtime_type = \"io.containerd.urunc.v2\"\n"
    ));
    // runc was declared already: not added again.
    assert_eq!(out.matches("containerd.runtimes.runc]").count(), 1, "{out}");
}

#[test]
fn debian_config_without_runtimes_gets_runc_too() {
    let out = round_trip("v2-debian-bookworm.toml", ConfigVersion::V2, &opts());
    assert!(out.starts_with(&read("v2-debian-bookworm.toml")[..60]));
    assert!(out.contains("bin_dir = \"/usr/lib/cni\""));
}

#[test]
fn containerd_2_default_config_v3() {
    let out = round_trip("v3-containerd-2.0-default.toml", ConfigVersion::V3, &opts());
    assert!(
        out.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.urunc]"),
        "the file's quoting is kept for the new header:\n{out}"
    );
    assert!(
        !out.contains("io.containerd.grpc.v1.cri\".containerd"),
        "{out}"
    );
}

#[test]
fn v3_with_comments_keeps_them() {
    let out = round_trip("v3-minimal-with-comments.toml", ConfigVersion::V3, &opts());
    for c in [
        "# containerd 2.x, configured by hand.",
        "# Where the CNI plugins are.",
        "bin_dir = \"/usr/lib/cni\"   # Debian's plugins",
    ] {
        assert!(out.contains(c), "lost {c:?}:\n{out}");
    }
}

#[test]
fn restrict_oom_score_adj_is_set_and_restored() {
    let o = Options {
        restrict_oom_score_adj: true,
        ..opts()
    };
    // An explicit false (containerd's default output) and an absent key.
    for (name, version) in [
        ("v2-containerd-1.6-default.toml", ConfigVersion::V2),
        ("v2-debian-bookworm.toml", ConfigVersion::V2),
        ("v3-containerd-2.0-default.toml", ConfigVersion::V3),
    ] {
        let original = read(name);
        let out = configure(Some(&original), &o).unwrap();
        let patched = text(&out).to_string();
        let doc: DocumentMut = patched.parse().unwrap();
        assert_eq!(
            get(
                &doc,
                &["plugins", version.cri_plugin(), "restrict_oom_score_adj"]
            )
            .and_then(Item::as_bool),
            Some(true),
            "{name}:\n{patched}"
        );
        golden(&format!("oom-{name}"), &patched);
        let again = configure(Some(&patched), &o).unwrap();
        assert!(!again.changed, "{name}");
        let back = unconfigure(Some(&patched), &o).unwrap();
        assert_eq!(text(&back), original, "{name}");
    }
}

#[test]
fn already_configured_file_is_left_alone() {
    let original = read("v2-already-has-urunc.toml");
    let o = Options {
        restrict_oom_score_adj: true,
        ..opts()
    };
    let out = configure(Some(&original), &o).unwrap();
    assert!(!out.changed, "{:?}", out.actions);
    assert_eq!(text(&out), original);
    // unconfigure removes the handler, keeps runc and the administrator's oom setting.
    let back = unconfigure(Some(&original), &o).unwrap();
    let t = text(&back);
    assert!(!t.contains("runtimes.urunc"), "{t}");
    assert!(t.contains("runtimes.runc]"), "{t}");
    assert!(t.contains("restrict_oom_score_adj = true"), "{t}");
}

#[test]
fn stale_handler_is_updated_keeping_its_comment() {
    let original = read("v2-stale-urunc.toml");
    let out = configure(Some(&original), &opts()).unwrap();
    assert!(out.changed);
    let patched = text(&out).to_string();
    assert_semantics(&patched, ConfigVersion::V2);
    golden("v2-stale-urunc.toml", &patched);
    assert!(
        patched.contains("runtime_type = \"io.containerd.urunc.v2\" # an old setup"),
        "{patched}"
    );
    let again = configure(Some(&patched), &opts()).unwrap();
    assert!(!again.changed);
}

#[test]
fn missing_config_is_created_from_the_containerd_version() {
    let err = configure(None, &opts()).unwrap_err();
    assert!(err.0.contains("--containerd-version"), "{err}");
    for (ver, version, name) in [
        ("1.6.20", ConfigVersion::V2, "created-v2.toml"),
        (
            "containerd://2.0.5-k3s1",
            ConfigVersion::V3,
            "created-v3.toml",
        ),
    ] {
        let o = Options {
            new_file_version: Some(ConfigVersion::for_containerd(ver).unwrap()),
            ..opts()
        };
        let out = configure(None, &o).unwrap();
        assert!(out.changed);
        let created = text(&out).to_string();
        assert_semantics(&created, version);
        golden(name, &created);
        assert!(!configure(Some(&created), &o).unwrap().changed);
        // unconfigure deletes the file it created.
        let back = unconfigure(Some(&created), &o).unwrap();
        assert!(back.changed);
        assert_eq!(back.text, None, "{:?}", back.text);
    }
}

#[test]
fn created_file_edited_by_the_admin_is_kept() {
    let o = Options {
        new_file_version: Some(ConfigVersion::V2),
        ..opts()
    };
    let created = text(&configure(None, &o).unwrap()).to_string();
    let edited = format!("{created}\n[debug]\n  level = \"debug\"\n");
    let back = unconfigure(Some(&edited), &o).unwrap();
    let t = text(&back);
    assert!(t.contains("level = \"debug\""), "{t}");
    assert!(!t.contains("runtimes"), "{t}");
}

#[test]
fn no_version_no_plugins_gets_a_version() {
    let original = read("no-version-no-plugins.toml");
    let o = Options {
        new_file_version: Some(ConfigVersion::V3),
        ..opts()
    };
    let out = configure(Some(&original), &o).unwrap();
    let patched = text(&out).to_string();
    assert_semantics(&patched, ConfigVersion::V3);
    assert!(patched.contains("root = \"/var/lib/containerd\""));
    golden("no-version-no-plugins.toml", &patched);
    assert!(!configure(Some(&patched), &o).unwrap().changed);
}

#[test]
fn version_1_is_refused_with_an_explanation() {
    let original = read("v1-no-version.toml");
    let o = Options {
        new_file_version: Some(ConfigVersion::V2),
        ..opts()
    };
    let err = configure(Some(&original), &o).unwrap_err();
    assert!(err.0.contains("version 1"), "{err}");
    assert!(err.0.contains("version = 2"), "{err}");
}

#[test]
fn bad_input_is_an_error() {
    assert!(configure(Some("version = 2\n[plugins\n"), &opts())
        .unwrap_err()
        .0
        .contains("not valid TOML"));
    assert!(configure(Some("version = 4\n"), &opts())
        .unwrap_err()
        .0
        .contains("version 4 is not supported"));
    let inline = "version = 2\nplugins = { \"io.containerd.grpc.v1.cri\" = {} }\n";
    assert!(configure(Some(inline), &opts())
        .unwrap_err()
        .0
        .contains("not a [table]"));
    let bad_handler = Options {
        handler: "url unc".into(),
        ..opts()
    };
    assert!(configure(Some("version = 2\n"), &bad_handler).is_err());
}

#[test]
fn containerd_versions() {
    for (s, v) in [
        ("1.6.20", ConfigVersion::V2),
        ("v1.7.2", ConfigVersion::V2),
        ("containerd://1.7.27-k3s1", ConfigVersion::V2),
        (
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
            ConfigVersion::V2,
        ),
        ("2.0.5", ConfigVersion::V3),
        (
            "containerd github.com/containerd/containerd/v2 v2.1.1 cb1076646aa3740577fafbf3d914198b7fe8e3f7",
            ConfigVersion::V3,
        ),
    ] {
        assert_eq!(ConfigVersion::for_containerd(s), Ok(v), "{s}");
    }
    assert!(ConfigVersion::for_containerd("latest").is_err());
}

/// containerd itself reads the version 2 results (`containerd config dump` merges the
/// file with its defaults): the urunc handler is there with its annotations. Only
/// containerd 1.6 is installed on the project's machines, so version 3 is not checked
/// this way.
#[test]
fn containerd_reads_the_v2_results() {
    let Ok(v) = std::process::Command::new("containerd")
        .arg("--version")
        .output()
    else {
        // CI (URUNC_REQUIRE_INTEGRATION=1) installs containerd: there this must run.
        assert!(
            std::env::var_os("URUNC_REQUIRE_INTEGRATION").is_none(),
            "containerd is not installed"
        );
        eprintln!("SKIP: containerd is not installed");
        return;
    };
    if ConfigVersion::for_containerd(&String::from_utf8_lossy(&v.stdout)) != Ok(ConfigVersion::V2) {
        eprintln!("SKIP: the installed containerd does not read version 2 natively");
        return;
    }
    for name in [
        "v2-containerd-1.6-default.toml",
        "v2-debian-bookworm.toml",
        "created-v2.toml",
        "oom-v2-containerd-1.6-default.toml",
    ] {
        let path = data("expected").join(name);
        let out = std::process::Command::new("containerd")
            .arg("--config")
            .arg(&path)
            .args(["config", "dump"])
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: DocumentMut = dump.parse().expect("containerd's dump is TOML");
        let urunc = [
            "plugins",
            "io.containerd.grpc.v1.cri",
            "containerd",
            "runtimes",
            "urunc",
        ];
        let mut p = urunc.to_vec();
        p.push("runtime_type");
        assert_eq!(
            get(&doc, &p).and_then(Item::as_str),
            Some("io.containerd.urunc.v2"),
            "{name}"
        );
        p.pop();
        p.push("pod_annotations");
        assert_eq!(strings(get(&doc, &p)), ["com.urunc.*"], "{name}");
        let oom = get(
            &doc,
            &[
                "plugins",
                "io.containerd.grpc.v1.cri",
                "restrict_oom_score_adj",
            ],
        )
        .and_then(Item::as_bool);
        assert_eq!(oom, Some(name.starts_with("oom-")), "{name}");
    }
}
