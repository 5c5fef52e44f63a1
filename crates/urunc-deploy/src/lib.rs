//! Adds the urunc runtime handler to containerd's configuration, and takes it out again.
//!
//! containerd's CRI plugin finds a Kubernetes RuntimeClass handler under
//!
//! - `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<handler>]` in a
//!   `version = 2` configuration (containerd 1.6 and 1.7, which containerd 2.x still reads),
//! - `[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.<handler>]` in a
//!   `version = 3` configuration (containerd 2.x).
//!
//! [`configure`] edits the file's text with `toml_edit`, so comments, ordering, quoting and
//! indentation of everything else are kept, and it is idempotent: given its own output it
//! returns the same bytes and says nothing changed. [`unconfigure`] removes what
//! [`configure`] added (recognised by the [`MARKER`] comment it leaves), and deletes a file
//! that [`configure`] created from nothing.
//!
//! What [`configure`] writes, for handler `urunc` in a version 2 file:
//!
//! ```toml
//! # urunc-deploy: added
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.urunc]
//!   runtime_type = "io.containerd.urunc.v2"
//!   pod_annotations = ["com.urunc.*"]
//!   container_annotations = ["com.urunc.*"]
//! ```
//!
//! plus, when the file declares no `runtimes.runc`, a `runtimes.runc` table with
//! `runtime_type = "io.containerd.runc.v2"`: once a file declares any runtime, containerd's
//! CRI plugin also needs the default runtime declared. With
//! [`Options::restrict_oom_score_adj`] it also sets the CRI plugin's
//! `restrict_oom_score_adj = true` (needed where containerd runs without
//! `CAP_SYS_RESOURCE`), remembering the previous value for [`unconfigure`].

use std::fmt;

use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// The comment that marks what urunc-deploy added.
pub const MARKER: &str = "urunc-deploy: added";
/// The first line of a file urunc-deploy created because containerd had none.
pub const CREATED_HEADER: &str =
    "# Written by urunc-deploy: containerd's defaults plus the urunc runtime handler.";
const OOM_KEY: &str = "restrict_oom_score_adj";
/// Suffix comment on a `restrict_oom_score_adj` that urunc-deploy set; the previous value
/// follows (`absent`, `true` or `false`).
const OOM_MARKER: &str = "# urunc-deploy: was ";

/// containerd's configuration format, the file's `version` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// `version = 2`: containerd 1.6 and 1.7 (containerd 2.x reads and migrates it).
    V2,
    /// `version = 3`: containerd 2.x.
    V3,
}

impl ConfigVersion {
    /// The CRI plugin table that holds `containerd.runtimes`.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => "io.containerd.grpc.v1.cri",
            ConfigVersion::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    fn number(self) -> i64 {
        match self {
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
        }
    }

    /// The format a containerd release writes by default: `1.6.20`, `v2.0.5`,
    /// `containerd://1.7.2-k3s1`, or `containerd --version`'s whole line
    /// (`containerd github.com/containerd/containerd 1.6.20~ds1 ...`).
    pub fn for_containerd(version: &str) -> Result<Self, Error> {
        let v = version.trim();
        let v = v.strip_prefix("containerd://").unwrap_or(v);
        // `containerd --version`: the third word is the version.
        let words: Vec<&str> = v.split_whitespace().collect();
        let v = match words.as_slice() {
            [one] => *one,
            [_, _, ver, ..] => ver,
            _ => "",
        };
        let v = v.strip_prefix('v').unwrap_or(v);
        let major = v.split('.').next().and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(1) => Ok(ConfigVersion::V2),
            Some(n) if n >= 2 => Ok(ConfigVersion::V3),
            _ => Err(Error(format!(
                "cannot tell containerd's major version from {version:?} \
                 (expected e.g. 1.7.2, v2.0.5 or containerd --version's output)"
            ))),
        }
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {}", self.number())
    }
}

/// An error, with a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// What to configure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The CRI runtime handler, the RuntimeClass's `handler` (default `urunc`).
    pub handler: String,
    /// The shim (default `io.containerd.urunc.v2`).
    pub runtime_type: String,
    /// Annotations the CRI plugin passes to the runtime (default `com.urunc.*`), as both
    /// `pod_annotations` and `container_annotations`.
    pub annotations: Vec<String>,
    /// Also set the CRI plugin's `restrict_oom_score_adj = true`.
    pub restrict_oom_score_adj: bool,
    /// The format of a file that does not exist yet (or has no `version` and no
    /// `plugins`): from the node's containerd version. An existing file's own `version`
    /// always wins.
    pub new_file_version: Option<ConfigVersion>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            handler: "urunc".into(),
            runtime_type: "io.containerd.urunc.v2".into(),
            annotations: vec!["com.urunc.*".into()],
            restrict_oom_score_adj: false,
            new_file_version: None,
        }
    }
}

/// The result of an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The new file contents; `None`: delete the file.
    pub text: Option<String>,
    /// Whether anything differs from the input.
    pub changed: bool,
    /// The format the file is in.
    pub version: ConfigVersion,
    /// What was done, one line each (empty when nothing changed).
    pub actions: Vec<String>,
}

/// Adds the runtime handler to `existing` (the file's text, or `None` when there is no
/// file: then containerd uses its defaults, and the new file holds only what urunc
/// needs on top of them).
pub fn configure(existing: Option<&str>, opts: &Options) -> Result<Outcome, Error> {
    check_options(opts)?;
    let mut actions = Vec::new();
    let (mut doc, version) = match existing {
        None => {
            let v = opts.new_file_version.ok_or_else(|| {
                Error(
                    "there is no containerd configuration file: say which containerd \
                     runs on the node (--containerd-version) to choose its format"
                        .into(),
                )
            })?;
            let mut doc = DocumentMut::new();
            let mut item = toml_edit::value(v.number());
            if let Some(kv) = item.as_value_mut() {
                kv.decor_mut().set_suffix("");
            }
            doc.insert("version", item);
            if let Some(mut key) = doc.as_table_mut().key_mut("version") {
                key.leaf_decor_mut()
                    .set_prefix(format!("{CREATED_HEADER}\n"));
            }
            actions.push(format!("created the file ({v})"));
            (doc, v)
        }
        Some(text) => {
            let mut doc = parse(text)?;
            let v = file_version(&mut doc, opts, &mut actions)?;
            (doc, v)
        }
    };

    let plugin = version.cri_plugin();
    let runtimes = runtimes_table(&mut doc, plugin)?;
    let handler = opts.handler.as_str();

    // The handler itself.
    if !runtimes.contains_key(handler) {
        runtimes.insert(handler, Item::Table(marked_table()));
        actions.push(format!(
            "added [plugins.\"{plugin}\".containerd.runtimes.{handler}]"
        ));
    }
    let table = runtimes
        .get_mut(handler)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| {
            Error(format!(
                "plugins.\"{plugin}\".containerd.runtimes.{handler} is not a table"
            ))
        })?;
    let wanted: [(&str, Value); 3] = [
        ("runtime_type", Value::from(opts.runtime_type.as_str())),
        ("pod_annotations", string_array(&opts.annotations)),
        ("container_annotations", string_array(&opts.annotations)),
    ];
    for (key, value) in wanted {
        let same = table
            .get(key)
            .and_then(Item::as_value)
            .is_some_and(|v| same_value(v, &value));
        if !same {
            set_value(table, key, value);
        }
    }
    indent_new_keys(table);

    // Declaring one runtime means the default one must be declared too.
    if !runtimes.contains_key("runc") {
        let mut t = marked_table();
        t.insert("runtime_type", toml_edit::value("io.containerd.runc.v2"));
        indent_new_keys(&mut t);
        runtimes.insert("runc", Item::Table(t));
        actions.push(format!(
            "added [plugins.\"{plugin}\".containerd.runtimes.runc] (containerd needs the default runtime declared)"
        ));
    }

    if opts.restrict_oom_score_adj {
        let cri = plugin_table(&mut doc, plugin)?;
        let previous = cri
            .get(OOM_KEY)
            .and_then(Item::as_value)
            .map(|v| v.as_bool());
        if previous != Some(Some(true)) {
            let was = match previous {
                None => "absent".to_string(),
                Some(Some(b)) => b.to_string(),
                Some(None) => {
                    return Err(Error(format!(
                        "plugins.\"{plugin}\".{OOM_KEY} is not a boolean"
                    )))
                }
            };
            let new_key = !cri.contains_key(OOM_KEY);
            let indent = sibling_indent(cri);
            set_value(cri, OOM_KEY, Value::from(true));
            if let Some(v) = cri.get_mut(OOM_KEY).and_then(Item::as_value_mut) {
                v.decor_mut().set_suffix(format!(" {OOM_MARKER}{was}"));
            }
            if new_key {
                if let Some(mut k) = cri.key_mut(OOM_KEY) {
                    k.leaf_decor_mut().set_prefix(indent);
                }
            }
            actions.push(format!(
                "set plugins.\"{plugin}\".{OOM_KEY} = true (was {was})"
            ));
        }
    }

    finish(existing, doc, version, actions)
}

/// Removes what [`configure`] added: the handler's table (whoever wrote it), the `runc`
/// table and the `restrict_oom_score_adj` value if urunc-deploy added them, and parent
/// tables left empty that urunc-deploy created; deletes the file if urunc-deploy created
/// it and nothing else is left in it.
pub fn unconfigure(existing: Option<&str>, opts: &Options) -> Result<Outcome, Error> {
    check_options(opts)?;
    let Some(text) = existing else {
        return Ok(Outcome {
            text: None,
            changed: false,
            version: opts.new_file_version.unwrap_or(ConfigVersion::V2),
            actions: Vec::new(),
        });
    };
    let mut doc = parse(text)?;
    let mut actions = Vec::new();
    let version = match declared_version(&doc)? {
        Some(v) => v,
        None => {
            // No version: nothing of ours can be in it.
            return Ok(Outcome {
                text: Some(text.to_string()),
                changed: false,
                version: opts.new_file_version.unwrap_or(ConfigVersion::V2),
                actions,
            });
        }
    };
    let plugin = version.cri_plugin();
    let handler = opts.handler.as_str();
    if let Some(runtimes) = find_table(&mut doc, &["plugins", plugin, "containerd", "runtimes"]) {
        if runtimes.remove(handler).is_some() {
            actions.push(format!(
                "removed [plugins.\"{plugin}\".containerd.runtimes.{handler}]"
            ));
        }
        let ours = runtimes
            .get("runc")
            .and_then(Item::as_table)
            .is_some_and(is_marked);
        if ours {
            runtimes.remove("runc");
            actions.push(format!(
                "removed [plugins.\"{plugin}\".containerd.runtimes.runc] (added by urunc-deploy)"
            ));
        }
    }
    if let Some(cri) = find_table(&mut doc, &["plugins", plugin]) {
        let was = cri
            .get(OOM_KEY)
            .and_then(Item::as_value)
            .and_then(|v| v.decor().suffix())
            .and_then(|s| s.as_str())
            .and_then(|s| s.trim().strip_prefix(OOM_MARKER).map(str::to_string));
        match was.as_deref() {
            Some("absent") => {
                cri.remove(OOM_KEY);
                actions.push(format!("removed plugins.\"{plugin}\".{OOM_KEY}"));
            }
            Some(b @ ("true" | "false")) => {
                set_value(cri, OOM_KEY, Value::from(b == "true"));
                if let Some(v) = cri.get_mut(OOM_KEY).and_then(Item::as_value_mut) {
                    v.decor_mut().set_suffix("");
                }
                actions.push(format!("restored plugins.\"{plugin}\".{OOM_KEY} = {b}"));
            }
            _ => {}
        }
    }
    // Implicit parents that are now empty were made for our tables.
    prune_empty_implicit(doc.as_table_mut());

    let created = doc
        .as_table()
        .key("version")
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .is_some_and(|p| p.contains(CREATED_HEADER));
    let only_version = doc.as_table().iter().all(|(k, _)| k == "version");
    if created && only_version {
        actions.push("deleted the file (urunc-deploy created it)".into());
        return Ok(Outcome {
            text: None,
            changed: true,
            version,
            actions,
        });
    }
    finish(Some(text), doc, version, actions)
}

fn check_options(opts: &Options) -> Result<(), Error> {
    let ok = !opts.handler.is_empty()
        && opts
            .handler
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(Error(format!(
            "invalid runtime handler {:?}: use letters, digits, '-' and '_'",
            opts.handler
        )));
    }
    if opts.runtime_type.is_empty() {
        return Err(Error("the runtime type is empty".into()));
    }
    Ok(())
}

fn parse(text: &str) -> Result<DocumentMut, Error> {
    text.parse::<DocumentMut>()
        .map_err(|e| Error(format!("containerd's configuration is not valid TOML: {e}")))
}

fn finish(
    existing: Option<&str>,
    doc: DocumentMut,
    version: ConfigVersion,
    actions: Vec<String>,
) -> Result<Outcome, Error> {
    let mut text = doc.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let changed = existing != Some(text.as_str());
    Ok(Outcome {
        text: Some(text),
        changed,
        version,
        actions: if changed { actions } else { Vec::new() },
    })
}

/// The file's `version`, if it has one (2 or 3; anything else is an error).
fn declared_version(doc: &DocumentMut) -> Result<Option<ConfigVersion>, Error> {
    match doc.get("version") {
        None => Ok(None),
        Some(item) => match item.as_integer() {
            Some(2) => Ok(Some(ConfigVersion::V2)),
            Some(3) => Ok(Some(ConfigVersion::V3)),
            _ => Err(Error(format!(
                "containerd configuration version {} is not supported: expected version = 2 \
                 (containerd 1.6/1.7) or version = 3 (containerd 2.x)",
                item.to_string().trim()
            ))),
        },
    }
}

/// The format of an existing file; adds a `version` to a file that has none and no
/// plugin settings (containerd reads such a file as version 1, whose only difference
/// is the plugin names).
fn file_version(
    doc: &mut DocumentMut,
    opts: &Options,
    actions: &mut Vec<String>,
) -> Result<ConfigVersion, Error> {
    if let Some(v) = declared_version(doc)? {
        return Ok(v);
    }
    if doc.contains_key("plugins") {
        return Err(Error(
            "containerd's configuration has no `version` key, so containerd reads it as \
             version 1 (plugins named like [plugins.cri]), which urunc-deploy does not edit: \
             convert it to version = 2 (containerd 1.6/1.7; `containerd config default` shows \
             the format) or version = 3 (containerd 2.x: `containerd config migrate`)"
                .into(),
        ));
    }
    let v = opts.new_file_version.ok_or_else(|| {
        Error(
            "containerd's configuration has no `version` key: say which containerd runs on \
             the node (--containerd-version) to choose its format"
                .into(),
        )
    })?;
    doc.insert("version", toml_edit::value(v.number()));
    actions.push(format!("added `version = {}`", v.number()));
    Ok(v)
}

/// A table whose header is preceded by the [`MARKER`] comment.
fn marked_table() -> Table {
    let mut t = Table::new();
    t.decor_mut().set_prefix(format!("\n# {MARKER}\n"));
    t
}

fn is_marked(t: &Table) -> bool {
    t.decor()
        .prefix()
        .and_then(|p| p.as_str())
        .is_some_and(|p| p.contains(MARKER))
}

/// Two-space indentation for keys that have no formatting yet (as in containerd's
/// `config default` output, which indents nested tables' keys).
fn indent_new_keys(table: &mut dyn toml_edit::TableLike) {
    if table.is_dotted() {
        return;
    }
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    for k in keys {
        if let Some(mut key) = table.key_mut(&k) {
            if key.leaf_decor().prefix().is_none() {
                key.leaf_decor_mut().set_prefix("  ");
            }
        }
    }
}

/// The indentation of the table's other values, or its header's plus two spaces.
fn sibling_indent(table: &Table) -> String {
    let last_line = |p: &str| p.rsplit('\n').next().unwrap_or("").to_string();
    table
        .iter()
        .filter(|(_, item)| item.is_value())
        .filter_map(|(k, _)| table.key(k))
        .filter_map(|k| k.leaf_decor().prefix().and_then(|p| p.as_str()))
        .map(last_line)
        .next()
        .unwrap_or_else(|| {
            let header = table
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .map(last_line)
                .unwrap_or_default();
            format!("{header}  ")
        })
}

/// Sets `key` to `value`, keeping the key's formatting and the value's surrounding
/// whitespace and comment when the key exists.
fn set_value(table: &mut dyn toml_edit::TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn string_array(items: &[String]) -> Value {
    let mut a = Array::new();
    for s in items {
        a.push(s.as_str());
    }
    Value::Array(a)
}

/// Value equality ignoring formatting.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q))
        }
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        _ => false,
    }
}

/// `plugins.<plugin>`, created (implicitly) if missing.
fn plugin_table<'a>(doc: &'a mut DocumentMut, plugin: &str) -> Result<&'a mut Table, Error> {
    descend(doc.as_table_mut(), &["plugins", plugin])
}

/// `plugins.<plugin>.containerd.runtimes`, created (implicitly) if missing.
fn runtimes_table<'a>(doc: &'a mut DocumentMut, plugin: &str) -> Result<&'a mut Table, Error> {
    descend(
        doc.as_table_mut(),
        &["plugins", plugin, "containerd", "runtimes"],
    )
}

fn descend<'a>(mut table: &'a mut Table, path: &[&str]) -> Result<&'a mut Table, Error> {
    for (i, name) in path.iter().enumerate() {
        let item = table.entry(name).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = match item {
            Item::Table(t) => t,
            _ => {
                return Err(Error(format!(
                    "{} is not a [table] in containerd's configuration (an inline table or a \
                     value): urunc-deploy does not edit that layout; add the runtime by hand \
                     (see docs/kubernetes.md)",
                    dotted(&path[..=i])
                )))
            }
        };
    }
    Ok(table)
}

fn find_table<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Option<&'a mut Table> {
    let mut table = doc.as_table_mut();
    for name in path {
        table = table.get_mut(name)?.as_table_mut()?;
    }
    Some(table)
}

/// Removes empty implicit tables (headers that were never written).
fn prune_empty_implicit(table: &mut Table) {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    for k in keys {
        if let Some(Item::Table(t)) = table.get_mut(&k) {
            prune_empty_implicit(t);
            if t.is_implicit() && t.is_empty() {
                table.remove(&k);
            }
        }
    }
}

fn dotted(path: &[&str]) -> String {
    path.iter()
        .map(|p| {
            if p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                p.to_string()
            } else {
                format!("\"{p}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}
