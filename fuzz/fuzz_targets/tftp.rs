//! Any datagram to the TFTP port: parsed, and a read request's options negotiated and
//! its file name normalised and read as the server's generated names are (PXELINUX and
//! GRUB configs). Must never panic.
#![no_main]
use bootplane_tftp::options::{negotiate, Limits};
use bootplane_tftp::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Rrq { filename, options, .. }) = Packet::parse(data) {
        let n = negotiate(&options, Some(1_000_000), &Limits::default());
        assert!(n.timeout <= Limits::default().max_timeout.max(Limits::default().default_timeout));
        if let Some(rel) = bootplane_tftp::path::normalise(&filename).ok().and_then(|r| r.to_str().map(str::to_string)) {
            let _ = bootplane_core::grub::parse(&rel);
            if let Some(name) = rel.strip_prefix("pxelinux.cfg/") {
                let _ = bootplane_core::pxelinux::parse(name);
            }
        }
    }
});
