//! Any datagram on port 67 or 4011: decoded the way the server decodes it (dhcproto,
//! behind `policy::decode`'s guards), matched to the server's own link or a relayed
//! subnet (`policy::select`), then answered by the full and the proxy policy.
//! Must never panic, whatever the bytes.
#![no_main]
use bootplane_dhcp::policy::{decode, handle, select, Request};
use bootplane_dhcp::{BootFiles, LeasePool, Mode, Settings};
use libfuzzer_sys::fuzz_target;

fn settings(mode: Mode) -> Settings {
    Settings {
        mode,
        server_ip: "198.18.0.1".parse().unwrap(),
        network: "198.18.0.1".parse().unwrap(),
        netmask: "255.255.255.0".parse().unwrap(),
        router: Some("198.18.0.1".parse().unwrap()),
        dns: vec!["198.18.0.1".parse().unwrap()],
        domain: Some("lab.internal".into()),
        lease_time: 3600,
        boot_files: BootFiles::default(),
        server_url: "http://198.18.0.1:8080".into(),
        offer_hold: 10,
        decline_hold: 600,
        relays: vec!["198.18.0.254".parse().unwrap()],
        shim: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(msg) = decode(data) else { return };
    let mut pools = [
        LeasePool::new("198.18.0.50".parse().unwrap(), "198.18.0.60".parse().unwrap()),
        LeasePool::new("198.18.7.100".parse().unwrap(), "198.18.7.110".parse().unwrap()),
    ];
    for mode in [Mode::Full, Mode::Proxy] {
        let local = settings(mode);
        let rack = Settings { network: "198.18.7.100".parse().unwrap(), relays: vec!["198.18.7.1".parse().unwrap()], ..settings(mode) };
        let subnets = [&local, &rack];
        let i = select(&msg, &subnets).unwrap_or(0);
        // Both first stages: iPXE and the Secure Boot chain (shim).
        for (port, shim) in [(67, None), (4011, None), (67, Some("shimx64.efi")), (4011, Some("artifacts/os@2/shimx64.efi"))] {
            let out = handle(&Request { src: msg.giaddr(), msg: &msg, port, hostname: Some("node1".into()), shim: shim.map(str::to_string), now: 1000 }, subnets[i], &mut pools[i]);
            if let Some((reply, _)) = out.reply {
                // Whatever we answer must encode.
                let _ = dhcproto::Encodable::to_vec(&reply);
            }
        }
    }
});
