//! What urunc tells urunit, as JSON in the initrd (never on the kernel command line, so
//! no value from the image can add kernel parameters), and the exit-status line urunit
//! sends back.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The default `PATH` for looking up the program when the container's environment
/// has none (the same list runc and Docker use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The container's process: `args[0]` is looked up in the `PATH` of `env` when it
    /// has no `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries, exactly the container's `process.env`.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default = "root_dir")]
    pub cwd: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// The NIC to configure; none means the guest has no network.
    #[serde(default)]
    pub net: Option<GuestNet>,
    /// A character device (e.g. `/dev/ttyS1`) connected to a host file, where urunit
    /// writes [`status_line`] when the process exits.
    #[serde(default)]
    pub status_port: Option<String>,
    /// Print what urunit does on the console (otherwise it prints only errors).
    #[serde(default)]
    pub debug: bool,
    /// A filesystem to mount and switch into before running the process (the
    /// container's shared rootfs); its `target` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Mount>,
    /// Filesystems mounted (in order, after the root switch) before the process runs:
    /// a block device, shared volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Small files the engine manages (`/etc/hosts`, `/etc/hostname`,
    /// `/etc/resolv.conf`), copied in rather than shared: urunit places each on its
    /// path after the mounts, read-only when asked. Works on every monitor and needs
    /// no 9p or virtio-fs in the guest kernel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GuestFile>,
}

/// One file urunit writes into the guest (see [`Config::files`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFile {
    /// An absolute path in the guest.
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub readonly: bool,
}

/// One filesystem urunit mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// A device (`/dev/vda`, waited for) or a 9p/virtio-fs tag.
    pub source: String,
    /// An absolute path in the guest.
    pub target: String,
    /// `ext4`, `9p`, `virtiofs`, ...
    pub fstype: String,
    /// Filesystem-specific data (e.g. `trans=virtio,version=9p2000.L`).
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub readonly: bool,
    /// Set for a single file shared in a directory of its own: urunit mounts the share
    /// aside, binds this file of it onto `target` (made as an empty file if missing)
    /// and detaches the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

fn root_dir() -> String {
    "/".into()
}

/// The guest's interface, identified by its MAC address (the one urunc gave the
/// monitor's NIC), and the IPv4 configuration it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestNet {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Written to `/etc/resolv.conf` when not empty.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

impl Config {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the configuration serialises")
    }

    pub fn from_json(text: &str) -> Result<Config, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid urunit configuration: {e}"))
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What urunit writes to the status port: the exit status as a decimal number and a
/// newline. A process killed by signal N is reported as 128+N, as shells do.
pub fn status_line(code: i32) -> String {
    format!("{code}\n")
}

/// Reads what the status port received. The guest controls these bytes, so anything
/// but one number in 0..=255 (surrounded by whitespace, as a tty may add `\r`) is
/// refused.
pub fn parse_status(bytes: &[u8]) -> Option<i32> {
    if bytes.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok().filter(|c| (0..=255).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let cfg = Config {
            args: vec!["/bin/httpd".into(), "-f".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/www".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            hostname: Some("web".into()),
            net: Some(GuestNet {
                mac: "02:00:00:00:00:01".into(),
                address: Ipv4Addr::new(10, 0, 0, 2),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                mtu: Some(1500),
                dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
            }),
            status_port: Some("/dev/ttyS1".into()),
            debug: false,
            root: Some(Mount {
                source: "rootfs".into(),
                target: "/".into(),
                fstype: "9p".into(),
                data: "trans=virtio,version=9p2000.L".into(),
                readonly: false,
                file: None,
            }),
            mounts: vec![
                Mount {
                    source: "/dev/vda".into(),
                    target: "/data".into(),
                    fstype: "ext4".into(),
                    data: String::new(),
                    readonly: true,
                    file: None,
                },
                Mount {
                    source: "urunc-vol1".into(),
                    target: "/etc/hosts".into(),
                    fstype: "9p".into(),
                    data: String::new(),
                    readonly: true,
                    file: Some("file".into()),
                },
            ],
            files: vec![GuestFile {
                path: "/etc/hostname".into(),
                content: "web\n".into(),
                readonly: true,
            }],
        };
        assert_eq!(Config::from_json(&cfg.to_json()).unwrap(), cfg);
        let min = Config::from_json(r#"{"args":["/app"]}"#).unwrap();
        assert_eq!(min.cwd, "/");
        assert_eq!(min.net, None);
        assert!(min.files.is_empty());
        assert!(Config::from_json(r#"{"args":[],"bogus":1}"#).is_err());
    }

    #[test]
    fn macs() {
        let m = parse_mac("02:AB:cd:00:10:ff").unwrap();
        assert_eq!(m, [2, 0xab, 0xcd, 0, 0x10, 0xff]);
        assert_eq!(format_mac(&m), "02:ab:cd:00:10:ff");
        for bad in [
            "",
            "02:ab:cd:00:10",
            "02:ab:cd:00:10:ff:00",
            "2:ab:cd:00:10:ff",
            "zz:ab:cd:00:10:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(status_line(7).as_bytes()), Some(7));
        assert_eq!(parse_status(b"0\r\n"), Some(0));
        assert_eq!(parse_status(b"255"), Some(255));
        for bad in [&b""[..], b"\n", b"256", b"-1", b"7 8", b"x7", b"7\x00"] {
            assert_eq!(parse_status(bad), None, "{bad:?}");
        }
    }
}
