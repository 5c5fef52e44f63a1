//! How a configuration value is decoded.
//!
//! The rule (documented in docs/configuration.md):
//! - a value starting with `b64:` is standard base64 after the prefix, and must decode
//!   to UTF-8 text, otherwise it is an error naming the key;
//! - in `urunc.json` only, a value without the prefix that is valid padded standard
//!   base64 and decodes to printable UTF-8 text is taken as base64 (images built by the
//!   reference tooling store every value that way);
//! - anything else is the plain value.
//!
//! Annotations are never guessed: they come from users typing `--annotation`, where a
//! short plain word such as `qemu` must not be mistaken for base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const B64_PREFIX: &str = "b64:";

/// Where a value came from, which decides whether bare base64 is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Annotation,
    UruncJson,
}

pub fn decode_value(key: &str, raw: &str, source: Source) -> Result<String, String> {
    if let Some(encoded) = raw.strip_prefix(B64_PREFIX) {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("{key}: invalid base64 after \"b64:\": {e}"))?;
        return String::from_utf8(bytes)
            .map_err(|_| format!("{key}: base64 value does not decode to UTF-8 text"));
    }
    if source == Source::UruncJson {
        if let Some(text) = legacy_base64(raw) {
            return Ok(text);
        }
    }
    Ok(raw.to_string())
}

/// Bare base64 as written by the reference image builders. Only accepted when the
/// decoded bytes are printable text, so plain words rarely qualify by accident.
fn legacy_base64(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() % 4 != 0 {
        return None;
    }
    let bytes = STANDARD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let printable = !text.is_empty() && text.chars().all(|c| !c.is_control() || c == '\t');
    printable.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_values_decode_everywhere() {
        for src in [Source::Annotation, Source::UruncJson] {
            assert_eq!(decode_value("k", "b64:cWVtdQ==", src).unwrap(), "qemu");
        }
    }

    #[test]
    fn invalid_prefixed_base64_is_an_error_naming_the_key() {
        let err =
            decode_value("com.urunc.unikernel.binary", "b64:@@@", Source::Annotation).unwrap_err();
        assert!(
            err.starts_with("com.urunc.unikernel.binary: invalid base64"),
            "{err}"
        );
    }

    #[test]
    fn bare_base64_only_in_urunc_json() {
        // "L2Jvb3Qvdm1saW51eA==" is "/boot/vmlinux".
        let enc = "L2Jvb3Qvdm1saW51eA==";
        assert_eq!(
            decode_value("k", enc, Source::UruncJson).unwrap(),
            "/boot/vmlinux"
        );
        assert_eq!(decode_value("k", enc, Source::Annotation).unwrap(), enc);
    }

    #[test]
    fn plain_words_stay_plain() {
        // "qemu" is valid base64 but decodes to non-UTF-8 bytes.
        assert_eq!(
            decode_value("k", "qemu", Source::UruncJson).unwrap(),
            "qemu"
        );
        assert_eq!(
            decode_value("k", "linux", Source::UruncJson).unwrap(),
            "linux"
        );
        assert_eq!(
            decode_value("k", "/boot/vmlinuz", Source::UruncJson).unwrap(),
            "/boot/vmlinuz"
        );
    }
}
