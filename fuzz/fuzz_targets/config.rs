//! A `bootplane.yaml` as an operator (or anyone who can write it) may write it: parsed
//! and, when it parses, linted. Must end in a value or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = bootplane_config::Config::parse_sources([(std::path::Path::new("fuzz.yaml"), text)]) {
        let _ = bootplane_config::lint(&cfg);
    }
});
