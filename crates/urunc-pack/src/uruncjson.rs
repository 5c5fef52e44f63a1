//! `/urunc.json`: the unikernel keys as the reference image builders write them — one
//! flat JSON object, keys sorted, every value standard base64 with no prefix. urunc
//! (and the reference urunc) decode such bare values; `b64:`-prefixed values are the
//! newer explicit form, which older readers do not know, so the bare form is written.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Where the file lives in the image.
pub const PATH: &str = "/urunc.json";

/// The file's bytes for the plain `config` values.
pub fn encode(config: &BTreeMap<String, String>) -> Vec<u8> {
    let encoded: BTreeMap<&str, String> = config
        .iter()
        .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
        .collect();
    serde_json::to_vec(&encoded).expect("a map of strings serialises")
}

/// The plain values of a `urunc.json` written by [`encode`] (or by the reference
/// tooling): every value must be bare base64 of UTF-8 text.
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let raw: BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object of strings: {e}"))?;
    raw.into_iter()
        .map(|(k, v)| {
            let bytes = STANDARD
                .decode(&v)
                .map_err(|e| format!("{k}: not base64: {e}"))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{k}: not UTF-8 text"))?;
            Ok((k, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_base64_sorted_compact() {
        let mut c = BTreeMap::new();
        c.insert(
            "com.urunc.unikernel.hypervisor".to_string(),
            "qemu".to_string(),
        );
        c.insert(
            "com.urunc.unikernel.binary".to_string(),
            "/boot/vmlinux".to_string(),
        );
        let text = String::from_utf8(encode(&c)).unwrap();
        assert_eq!(
            text,
            r#"{"com.urunc.unikernel.binary":"L2Jvb3Qvdm1saW51eA==","com.urunc.unikernel.hypervisor":"cWVtdQ=="}"#
        );
        assert_eq!(decode(text.as_bytes()).unwrap(), c);
    }
}
