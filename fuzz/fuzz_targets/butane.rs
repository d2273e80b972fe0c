//! A machine's Butane snippet: translated to Ignition, and the result validated. Must end
//! in a config or an error (alias bombs included), never a panic or an allocation failure.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = bootplane_butane::translate(text, &Default::default()) {
        let _ = bootplane_butane::ignition::validate(&bootplane_butane::to_json(&t.config, false));
    }
});
