//! The JSON documents of an OCI image, with a fixed field order.

use serde::Serialize;
use std::collections::BTreeMap;

/// The runtime part (`config` section) of an image config.
///
/// Field names follow the OCI image spec; unset fields are omitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerConfig {
    /// User (and optionally group) the process runs as.
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment as `KEY=value` strings.
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Entrypoint argv prefix.
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (appended to the entrypoint).
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory of the process.
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Image labels.
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Signal that stops the container.
    #[serde(rename = "StopSignal", skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Platform<'a> {
    pub architecture: &'a str,
    pub os: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    pub media_type: &'a str,
    pub digest: &'a str,
    pub size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform<'a>>,
}

#[derive(Serialize)]
pub(crate) struct RootFs<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct ImageConfig<'a> {
    pub created: &'a str,
    pub architecture: &'a str,
    pub os: &'a str,
    pub config: &'a ContainerConfig,
    pub rootfs: RootFs<'a>,
}

#[derive(Serialize)]
pub(crate) struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: &'a str,
    pub config: Descriptor<'a>,
    pub layers: Vec<Descriptor<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: &'a str,
    pub manifests: Vec<Descriptor<'a>>,
}

/// One entry of docker's `manifest.json` (the `docker save` format).
#[derive(Serialize)]
pub(crate) struct DockerManifest<'a> {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<&'a str>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("image JSON documents always serialise")
}
