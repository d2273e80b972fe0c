//! The query string of `/v1/boot/ipxe`, as any client may send it: parsed, turned into
//! an observed identity, and (when it parses) matched and decided for. Must never panic.
#![no_main]
use bootplane_core::{decide, resolve_identity, DecisionContext, Observed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(q) = bootplane_core::boot_query::parse(raw) else { return };
    let g = |k: &str| q.get(k).map(String::as_str);
    let Ok(observed) = Observed::from_raw(g("mac"), g("uuid"), g("serial"), g("arch"), g("platform")) else { return };
    let identity = resolve_identity(&observed, None, None);
    let d = decide(&DecisionContext {
        observed: &observed,
        identity: &identity,
        machine: None,
        bundle: None,
        server: "http://198.18.0.1:8080",
        max_install_attempts: 3,
        nonce: "0123456789abcdef0123456789abcdef",
    });
    let _ = bootplane_core::ipxe::render(&d, &observed);
});
