//! CNI configuration for the tests that give containers a network: Debian's `bridge`
//! plugin with `host-local` addresses, a gateway on the bridge and a default route.

use std::path::Path;

use serde_json::{json, Value};

/// The `bridge` plugin's configuration: bridge `bridge`, addresses from `subnet` (a
/// CIDR) recorded in `ipam_dir`, no masquerading (tests talk only inside the host).
pub fn bridge_plugin(bridge: &str, subnet: &str, ipam_dir: &Path) -> Value {
    json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": ipam_dir,
        },
    })
}

/// A network list (`.conflist`) of that one plugin.
pub fn bridge_conflist(version: &str, name: &str, plugin: Value) -> Value {
    json!({ "cniVersion": version, "name": name, "plugins": [plugin] })
}
