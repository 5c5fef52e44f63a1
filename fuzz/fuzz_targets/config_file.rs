//! urunc's configuration file (`urunc::config`, TOML): parsing, validation and the
//! line/column in error messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use urunc::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(cfg) => {
            for name in cfg.monitors.keys() {
                // Validation accepted it: every monitor named is a known one.
                assert!(urunc::monitor::by_name(name).is_some(), "{name}");
                let _ = cfg.monitor(name);
            }
        }
        Err(msg) => assert!(!msg.is_empty()),
    }
});
