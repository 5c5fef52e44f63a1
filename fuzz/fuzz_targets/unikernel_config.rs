//! The unikernel configuration from `urunc.json` and annotations
//! (`urunc::unikernel`): value decoding (plain, base64, `b64:`), booleans, required
//! keys. Input: a `urunc.json` document, then optionally a `\u{1}` byte and annotation
//! lines `key=value` (a key without a dot gets the `com.urunc.unikernel.` prefix).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use urunc::unikernel::{parse_urunc_json, UnikernelConfig, PREFIX};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (json, ann) = text.split_once('\u{1}').unwrap_or((&text, ""));
    let json = parse_urunc_json(json).ok();
    let annotations: HashMap<String, String> = ann
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.contains('.') {
                k.to_string()
            } else {
                format!("{PREFIX}{k}")
            };
            (k, v.to_string())
        })
        .collect();
    if let Ok(Some(cfg)) = UnikernelConfig::from_sources(json, &annotations) {
        // Whatever was accepted is usable: no NUL, required keys present.
        for (k, v) in cfg.to_map() {
            assert!(!v.contains('\0'), "{k} carries a NUL");
        }
        assert!(!cfg.unikernel_type.is_empty() && !cfg.hypervisor.is_empty());
        assert!(!cfg.binary.is_empty());
    }
});
