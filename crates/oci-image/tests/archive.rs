//! Reads back archives written by `oci_image` and checks their contents.

use flate2::read::GzDecoder;
use oci_image::{sha256_digest, ImageBuilder};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};

/// Entry of a tar: (type byte, mode, size, link target), keyed by path.
type Listing = Vec<(String, char, u32, u64, Option<String>)>;

fn list_tar(bytes: &[u8]) -> (Listing, BTreeMap<String, Vec<u8>>) {
    let mut listing = Vec::new();
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        let path = entry.path().unwrap().to_str().unwrap().to_string();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_str().unwrap().to_string());
        let kind = header.entry_type().as_byte() as char;
        listing.push((
            path.clone(),
            kind,
            header.mode().unwrap(),
            header.size().unwrap(),
            link,
        ));
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    (listing, files)
}

fn sample() -> ImageBuilder {
    let mut b = ImageBuilder::new();
    b.add_bytes("/bin/hello", "#!/bin/sh\necho hi\n", 0o755)
        .unwrap()
        .add_symlink("/bin/sh", "hello")
        .unwrap()
        .add_dir_with_mode("/tmp", 0o1777)
        .unwrap()
        .add_bytes("etc/deep/nested/file.txt", vec![7u8; 1000], 0o600)
        .unwrap();
    b.entrypoint(["/bin/sh"])
        .cmd(["-c", "echo hi"])
        .env("PATH", "/bin")
        .working_dir("/tmp")
        .label("org.example.kind", "test")
        .annotation("org.opencontainers.image.title", "sample");
    b
}

fn archive_bytes(b: &ImageBuilder, reference: &str) -> Vec<u8> {
    let mut out = Vec::new();
    b.build()
        .unwrap()
        .write_oci_archive_to(&mut out, reference)
        .unwrap();
    out
}

#[test]
fn same_input_gives_identical_bytes() {
    let a = archive_bytes(&sample(), "example.com/demo:1");
    let b = archive_bytes(&sample(), "example.com/demo:1");
    assert_eq!(sha256_digest(&a), sha256_digest(&b));
    assert_eq!(a, b);

    // Insertion order does not matter either.
    let mut c = ImageBuilder::new();
    c.add_bytes("etc/deep/nested/file.txt", vec![7u8; 1000], 0o600)
        .unwrap()
        .add_dir_with_mode("/tmp", 0o1777)
        .unwrap()
        .add_symlink("/bin/sh", "hello")
        .unwrap()
        .add_bytes("/bin/hello", "#!/bin/sh\necho hi\n", 0o755)
        .unwrap();
    c.annotation("org.opencontainers.image.title", "sample")
        .label("org.example.kind", "test")
        .working_dir("/tmp")
        .env("PATH", "/bin")
        .cmd(["-c", "echo hi"])
        .entrypoint(["/bin/sh"]);
    assert_eq!(archive_bytes(&c, "example.com/demo:1"), a);

    // Files written to disk are the same bytes too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.tar");
    sample()
        .write_oci_archive(&path, "example.com/demo:1")
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), a);
}

#[test]
fn archive_has_layout_files_and_matching_digests() {
    let bytes = archive_bytes(&sample(), "example.com/demo:1");
    let (listing, files) = list_tar(&bytes);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(names[5..], ["index.json", "manifest.json", "oci-layout"]);

    // Every blob is named after its digest.
    for (name, data) in &files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(sha256_digest(data), format!("sha256:{hex}"));
        }
    }
    let blob = |digest: &str| files[&format!("blobs/sha256/{}", &digest[7..])].clone();
    let json = |data: &[u8]| serde_json::from_slice::<Value>(data).unwrap();

    assert_eq!(json(&files["oci-layout"])["imageLayoutVersion"], "1.0.0");
    let index = json(&files["index.json"]);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        desc["annotations"]["io.containerd.image.name"],
        "example.com/demo:1"
    );
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(desc["platform"]["architecture"], "amd64");
    assert_eq!(desc["platform"]["os"], "linux");
    let manifest_bytes = blob(desc["digest"].as_str().unwrap());
    assert_eq!(desc["size"], manifest_bytes.len());

    let manifest = json(&manifest_bytes);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "sample"
    );
    let config_desc = &manifest["config"];
    assert_eq!(
        config_desc["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config_bytes = blob(config_desc["digest"].as_str().unwrap());
    assert_eq!(config_desc["size"], config_bytes.len());
    let layer_desc = &manifest["layers"][0];
    assert_eq!(
        layer_desc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(layer_desc["digest"].as_str().unwrap());
    assert_eq!(layer_desc["size"], layer.len());

    let config = json(&config_bytes);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["-c", "echo hi"])
    );
    assert_eq!(config["config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(config["config"]["WorkingDir"], "/tmp");
    assert_eq!(config["config"]["Labels"]["org.example.kind"], "test");

    // diff_id is the digest of the uncompressed layer tar.
    let mut tar = Vec::new();
    GzDecoder::new(&layer[..]).read_to_end(&mut tar).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));

    // Docker's manifest.json points at the same blobs.
    let docker = json(&files["manifest.json"]);
    assert_eq!(
        docker,
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", &config_desc["digest"].as_str().unwrap()[7..]),
            "RepoTags": ["example.com/demo:1"],
            "Layers": [format!("blobs/sha256/{}", &layer_desc["digest"].as_str().unwrap()[7..])],
        }])
    );

    // The Image struct reports the same digests.
    let image = sample().build().unwrap();
    assert_eq!(image.manifest.digest, desc["digest"].as_str().unwrap());
    assert_eq!(image.diff_id, sha256_digest(&tar));
}

fn layer_listing(b: &ImageBuilder) -> (Listing, BTreeMap<String, Vec<u8>>) {
    let image = b.build().unwrap();
    let mut tar = Vec::new();
    GzDecoder::new(&image.layer.data[..])
        .read_to_end(&mut tar)
        .unwrap();
    list_tar(&tar)
}

#[test]
fn layer_lists_sorted_entries_with_parents() {
    let (listing, files) = layer_listing(&sample());
    let expected: Listing = vec![
        ("bin/".into(), '5', 0o755, 0, None),
        ("bin/hello".into(), '0', 0o755, 18, None),
        ("bin/sh".into(), '2', 0o777, 0, Some("hello".into())),
        ("etc/".into(), '5', 0o755, 0, None),
        ("etc/deep/".into(), '5', 0o755, 0, None),
        ("etc/deep/nested/".into(), '5', 0o755, 0, None),
        ("etc/deep/nested/file.txt".into(), '0', 0o600, 1000, None),
        ("tmp/".into(), '5', 0o1777, 0, None),
    ];
    assert_eq!(listing, expected);
    assert_eq!(files["bin/hello"], b"#!/bin/sh\necho hi\n");
}

#[test]
fn add_tree_keeps_modes_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("usr/lib/data"), "abc").unwrap();
    std::fs::set_permissions(root.join("usr/lib/data"), PermissionsExt::from_mode(0o640)).unwrap();
    std::fs::write(root.join("run.sh"), "x").unwrap();
    std::fs::set_permissions(root.join("run.sh"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(root.join("usr"), PermissionsExt::from_mode(0o750)).unwrap();
    symlink("../run.sh", root.join("usr/run")).unwrap();

    let mut b = ImageBuilder::new();
    b.add_tree(root, "/opt/app").unwrap();
    let (listing, _) = layer_listing(&b);
    let got: Vec<(&str, char, u32)> = listing.iter().map(|e| (e.0.as_str(), e.1, e.2)).collect();
    let root_mode = std::fs::metadata(root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        got,
        [
            ("opt/", '5', 0o755),
            ("opt/app/", '5', root_mode),
            ("opt/app/run.sh", '0', 0o4755),
            ("opt/app/usr/", '5', 0o750),
            ("opt/app/usr/lib/", '5', 0o755),
            ("opt/app/usr/lib/data", '0', 0o640),
            ("opt/app/usr/run", '2', 0o777),
        ]
    );
    assert_eq!(listing[6].4.as_deref(), Some("../run.sh"));

    // At the image root no entry for the root itself is made.
    let mut b = ImageBuilder::new();
    b.add_tree(root, "/").unwrap();
    let (listing, _) = layer_listing(&b);
    assert_eq!(listing[0].0, "run.sh");
}

#[test]
fn long_paths_and_host_files() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("payload");
    std::fs::write(&host, vec![1u8; 70_000]).unwrap();
    let long = format!("/{}/file", "d".repeat(150));
    let mut b = ImageBuilder::new();
    b.add_file(&long, &host, 0o644).unwrap();
    let (listing, files) = layer_listing(&b);
    assert_eq!(listing.last().unwrap().0, &long[1..]);
    assert_eq!(files[&long[1..]].len(), 70_000);
}

#[test]
fn rejects_bad_input() {
    let mut b = ImageBuilder::new();
    assert!(b.add_bytes("/../x", "", 0o644).is_err());
    assert!(b.add_dir("/").is_err());
    assert!(b.add_file("/x", "/nonexistent/file", 0o644).is_err());
    assert!(b.add_tree("/nonexistent/dir", "/").is_err());

    b.add_bytes("/a", "file", 0o644).unwrap();
    b.add_bytes("/a/b", "below a file", 0o644).unwrap();
    assert!(matches!(b.build(), Err(oci_image::Error::NotADirectory(p)) if p == "a"));

    let image = ImageBuilder::new().build().unwrap();
    assert!(image
        .write_oci_archive_to(Vec::new(), "bad@sha256:00")
        .is_err());
}

#[test]
fn untagged_reference_gets_latest_and_layout_dir_matches() {
    let image = sample().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    image.write_oci_layout_dir(dir.path(), "demo").unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let ann = &index["manifests"][0]["annotations"];
    assert_eq!(ann["io.containerd.image.name"], "demo:latest");
    assert_eq!(ann["org.opencontainers.image.ref.name"], "latest");
    let manifest_path = dir.path().join(image.manifest.layout_path());
    assert_eq!(std::fs::read(manifest_path).unwrap(), image.manifest.data);
}
