//! The node configuration parser on arbitrary text: a configuration or an
//! error naming the problem, never a panic.
#![no_main]

use dongting_server::config::NodeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = NodeConfig::from_toml_str(text, &[]) {
            assert!(!e.to_string().is_empty(), "an error must say something");
        }
    }
});
