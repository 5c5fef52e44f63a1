//! Every guest's kernel command-line builder (`urunc::guest`), with and without a
//! network, on arbitrary args, environment, version and block mount point. Whatever a
//! builder accepts must carry no raw control character (which could end or split the
//! line) and respect the command-line length limit.
//!
//! Input: fields separated by `\u{1}`: args (`\u{2}`-separated), env entries
//! (`\u{2}`-separated), version, block mount point, and a byte choosing the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use urunc::guest::{self, GuestSetup, MAX_CMDLINE};
use urunc::network::{NetConfig, NetMode};

fn list(s: Option<&str>) -> Vec<String> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.split('\u{2}').map(String::from).collect())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\u{1}');
    let args = list(f.next());
    let env = list(f.next());
    let version = f.next().map(String::from).filter(|v| !v.is_empty());
    let block_mount = f.next().map(String::from).filter(|v| !v.is_empty());
    let net_byte = f.next().and_then(|s| s.bytes().next()).unwrap_or(0);
    let setup = GuestSetup {
        args,
        env,
        initrd: net_byte & 1 == 1,
        version,
        block_mount,
    };
    let net = (net_byte & 2 == 2).then(|| NetConfig {
        mode: NetMode::Static,
        tap: "tap0".into(),
        mac: "02:00:00:00:00:01".into(),
        address: [10, 0, 0, net_byte].into(),
        prefix: net_byte % 33,
        gateway: (net_byte & 4 == 4).then(|| [10, 0, 0, 1].into()),
        mtu: 1500,
        dns: if net_byte & 8 == 8 {
            vec![[1, 1, 1, 1].into()]
        } else {
            vec![]
        },
        interface: Some("eth0".into()),
    });
    for g in guest::ALL {
        if let Ok(line) = g.cmdline_net(&setup, net.as_ref()) {
            assert!(
                !line.chars().any(|c| c < ' '),
                "{}: control character in {line:?}",
                g.name()
            );
            assert!(
                line.len() <= MAX_CMDLINE,
                "{}: {} bytes",
                g.name(),
                line.len()
            );
        }
    }
});
