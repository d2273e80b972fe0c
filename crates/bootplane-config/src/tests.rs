use super::*;

const SPEC_EXAMPLE: &str = include_str!("../tests/spec-example.yaml");

#[test]
fn spec_example_is_accepted_as_written() {
    let cfg = Config::from_str_named(Path::new("bootplane.yaml"), SPEC_EXAMPLE).unwrap();
    assert_eq!(cfg.machines[0].name, "lenovo1");
    assert_eq!(cfg.dhcp.mode, DhcpMode::Off);
    assert_eq!(cfg.dhcp.lease_time.unwrap().0.as_secs(), 1800);
    assert_eq!(cfg.bundles.len(), 2);
    assert!(cfg.machines[0].provision);
}

#[test]
fn starter_is_valid_and_lint_clean_of_errors() {
    let cfg = Config::from_str_named(Path::new("bootplane.yaml"), STARTER).unwrap();
    assert!(cfg.server.listen.ip().is_loopback());
    assert_eq!(cfg.dhcp.mode, DhcpMode::Off);
}

fn err(text: &str) -> String {
    Config::from_str_named(Path::new("x.yaml"), text).unwrap_err().to_string()
}

#[test]
fn broken_yaml_names_line_and_column() {
    let e = err("machines:\n  - name: a\n    macs: [52:54:00:00:00:01\n");
    assert!(e.starts_with("x.yaml:"), "{e}");
    let e = err("server:\n  listen: 127.0.0.1:8080\n\tadvertise: x\n");
    assert!(e.contains("x.yaml:3:"), "{e}");
}

#[test]
fn unknown_keys_are_errors_with_the_expected_shape() {
    let e = err("machines:\n  - name: a\n    macs: [\"52:54:00:00:00:01\"]\n    hostnme: a.lab\n");
    assert!(e.contains("x.yaml:4:5:") && e.contains("unknown field `hostnme`") && e.contains("`hostname`"), "{e}");
    let e = err("serverr: {}\n");
    assert!(e.contains("unknown field `serverr`"), "{e}");
}

#[test]
fn bad_values_are_errors() {
    assert!(err("machines:\n  - name: a\n    macs: [\"zz\"]\n").contains("not a MAC"));
    assert!(err("dhcp:\n  lease_time: 5w\n").contains("unknown unit"));
    assert!(err("dhcp:\n  range: 10.0.0.9-10.0.0.1\n").contains("ends before"));
    assert!(err("dhcp:\n  mode: sometimes\n").contains("unknown variant"));
}

#[test]
fn duplicates_name_both_entries() {
    let e = err(
        "machines:\n  - {name: a, hostname: a, macs: [\"52:54:00:00:00:01\"], ip: 198.18.0.5}\n  - {name: b, hostname: b, macs: [\"52-54-00-00-00-01\"], ip: 198.18.0.5}\n  - {name: a, hostname: c, macs: [\"52:54:00:00:00:03\"]}\n",
    );
    assert!(e.contains("duplicate MAC 52:54:00:00:00:01: x.yaml:2:5: machines[0] (a) and x.yaml:3:5: machines[1] (b)"), "{e}");
    assert!(e.contains("duplicate IP 198.18.0.5"), "{e}");
    assert!(e.contains("duplicate machine name a"), "{e}");
}

#[test]
fn unstable_disks_are_refused_unless_allowed() {
    let base = "bundles:\n  - {name: g, os: generic, kernel: {url: http://k}, initrd: {url: http://i}}\nmachines:\n  - name: a\n    hostname: a\n    macs: [\"52:54:00:00:00:01\"]\n    bundle: g\n    install_disk: /dev/sda\n";
    assert!(err(base).contains("can name another disk"));
    Config::from_str_named(Path::new("x"), &format!("{base}    allow_unstable_install_disk: true\n")).unwrap();
}

fn args_finding(args: &str) -> Option<String> {
    let text = format!("bundles:\n  - {{name: g, os: generic, kernel: {{url: http://k}}, args: \"{args}\"}}\n");
    Config::from_str_named(Path::new("x.yaml"), &text).err().map(|e| e.to_string())
}

#[test]
fn secrets_in_kernel_args_are_refused() {
    for (args, word) in [
        ("k3s.token=abc", "k3s.token="),
        ("console=ttyS0 rootpw=hunter2", "rootpw="),
        ("api_key=abc123", "api_key="),
        ("inst.password=x", "inst.password="),
        ("auth-key=x", "auth-key="),
        ("join=K10e3b0c44298fc1c149afbf4c8996fb924::server:abc", "join=<secret value>"),
    ] {
        let e = args_finding(args).unwrap_or_else(|| panic!("`{args}` accepted"));
        assert!(e.contains(&format!("args contain `{word}`")), "{args}: {e}");
    }
}

#[test]
fn ordinary_kernel_args_are_not_secrets() {
    for args in [
        "modprobe.blacklist=k10temp console=ttyS0,115200",
        "iommu.passthrough=1 ssh.key=/etc/x ignition.config.url=http://x/y",
        "coreos.inst.install_dev=/dev/disk/by-id/x rd.luks.key=/keyfile",
    ] {
        assert_eq!(args_finding(args), None, "{args}");
    }
}

#[test]
fn directory_merges_and_refuses_two_server_sections() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.yaml"), "server: {listen: 127.0.0.1:9000}\nbundles:\n  - {name: g, os: generic, kernel: {url: http://k}}\n").unwrap();
    std::fs::write(d.path().join("b.yml"), "machines:\n  - {name: m, hostname: m, macs: [\"52:54:00:00:00:01\"], bundle: g}\n").unwrap();
    std::fs::write(d.path().join("notes.txt"), "ignored").unwrap();
    let cfg = Config::load(d.path()).unwrap();
    assert_eq!(cfg.server.listen.port(), 9000);
    assert_eq!(cfg.machines.len(), 1);
    std::fs::write(d.path().join("c.yaml"), "server: {}\n").unwrap();
    assert!(Config::load(d.path()).unwrap_err().to_string().contains("already set"));
}

#[test]
fn lint_warns_without_failing() {
    let cfg = Config::from_str_named(Path::new("bootplane.yaml"), SPEC_EXAMPLE).unwrap();
    let f = lint(&cfg);
    assert!(f.iter().all(|f| f.severity == Severity::Warning), "{f:?}");
    assert!(f.iter().any(|f| f.message.contains("sha256 `...`")), "{f:?}");
}

#[test]
fn a_short_and_a_qualified_hostname_are_one_host() {
    let e = err("machines:\n  - {name: a, hostname: lenovo1, macs: [\"52:54:00:00:00:01\"]}\n  - {name: b, hostname: lenovo1.lab.internal, macs: [\"52:54:00:00:00:02\"]}\n");
    assert!(e.contains("duplicate hostname lenovo1:") && e.contains("name the same host"), "{e}");
    // A machine without a hostname is called by its name.
    let e = err("machines:\n  - {name: lenovo1, macs: [\"52:54:00:00:00:01\"]}\n  - {name: b, hostname: LENOVO1.lab, macs: [\"52:54:00:00:00:02\"]}\n");
    assert!(e.contains("duplicate hostname lenovo1"), "{e}");
    // One short name in two domains is two hosts.
    Config::from_str_named(
        Path::new("x"),
        "machines:\n  - {name: a, hostname: web1.dc1.example, macs: [\"52:54:00:00:00:01\"]}\n  - {name: b, hostname: web1.dc2.example, macs: [\"52:54:00:00:00:02\"]}\n",
    )
    .unwrap();
}

#[test]
fn unknown_butane_version_is_an_error_not_the_default() {
    let e = err("bundles:\n  - {name: f, os: fcos, kernel: {url: http://k}, butane_version: fcos 1.5}\n");
    assert!(e.contains("butane_version `fcos 1.5` is not a Butane variant and version"), "{e}");
    let cfg = Config::from_str_named(Path::new("x"), "bundles:\n  - {name: f, os: fcos, kernel: {url: http://k}, butane_version: flatcar 1.1.0}\n").unwrap();
    assert!(lint(&cfg).iter().any(|f| f.severity == Severity::Warning && f.message.contains("is for flatcar")));
}

#[test]
fn loopback_advertise_with_dhcp_on_is_refused() {
    let base = "dhcp: {mode: proxy, interface: br0}\nserver:\n  listen: 0.0.0.0:8080\n";
    for adv in ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080"] {
        let e = err(&format!("{base}  advertise: {adv}\n"));
        assert!(e.contains("is a loopback address"), "{adv}: {e}");
    }
    Config::from_str_named(Path::new("x"), &format!("{base}  advertise: http://198.18.0.1:8080\n")).unwrap();
    // Without DHCP, loopback is a fine choice (the starter config's).
    Config::from_str_named(Path::new("x"), "server:\n  advertise: http://127.0.0.1:8080\n").unwrap();
}

#[test]
fn a_missing_config_points_at_init() {
    let d = tempfile::tempdir().unwrap();
    let e = Config::load(&d.path().join("bootplane.yaml")).unwrap_err().to_string();
    assert!(e.contains("bootplane.yaml: no such file") && e.contains("`bootplane init`"), "{e}");
}

#[test]
fn a_digest_with_proxy_off_is_flagged() {
    let sum = "a".repeat(64);
    let text = format!("bundles:\n  - {{name: g, os: generic, kernel: {{url: http://k, sha256: {sum}, proxy: false}}}}\n");
    let cfg = Config::from_str_named(Path::new("x"), &text).unwrap();
    assert!(lint(&cfg).iter().any(|f| f.severity == Severity::Warning && f.message.contains("`proxy: false`")));
    let cfg = Config::from_str_named(Path::new("x"), &text.replace(", proxy: false", "")).unwrap();
    assert!(!lint(&cfg).iter().any(|f| f.message.contains("proxy")));
}

#[test]
fn relayed_subnets_are_checked() {
    let base = "server: {advertise: http://198.18.0.1:8080}\ndhcp:\n  mode: full\n  interface: br0\n  range: 198.18.0.50-198.18.0.60\n  netmask: 255.255.255.0\n  subnets:\n";
    let ok = format!("{base}    - {{range: 198.18.7.100-198.18.7.110, netmask: 255.255.255.0, relays: [198.18.7.1]}}\n");
    Config::from_str_named(Path::new("x"), &ok).unwrap();
    let e = err(&format!("{base}    - {{range: 198.18.7.100-198.18.8.10, netmask: 255.255.255.0, relays: []}}\n"));
    assert!(e.contains("no `relays`") && e.contains("does not fit in one subnet"), "{e}");
    let e = err(&format!("{base}    - {{range: 198.18.0.100-198.18.0.110, netmask: 255.255.255.0, relays: [198.18.0.9]}}\n"));
    assert!(e.contains("the same subnet as dhcp.range"), "{e}");
    let e = err(&ok.replace("mode: full", "mode: proxy"));
    assert!(e.contains("need dhcp.mode full"), "{e}");
}

#[test]
fn a_database_password_in_the_config_is_refused() {
    let base = "server:\n  listen: 127.0.0.1:8080\n  database: ";
    for (url, bad) in [
        ("postgres://bootplane:hunter2@db.lab/bootplane", true),
        ("postgresql://bootplane@db.lab/bootplane?password=hunter2", true),
        ("postgres://bootplane@db.lab/bootplane", false),
        ("sqlite:/var/lib/bootplane/b.db", false),
        ("mysql://x@y/z", true),
    ] {
        let r = Config::from_str_named(std::path::Path::new("t.yaml"), &format!("{base}{url}\n"));
        assert_eq!(r.is_err(), bad, "{url}: {:?}", r.err());
        if let Err(e) = r {
            assert!(!e.to_string().contains("hunter2"), "the password is never echoed: {e}");
        }
    }
}

#[test]
fn power_declarations_are_linted_and_inline_passwords_refused() {
    let base = "bundles:\n  - {name: g, os: generic, kernel: {url: http://k}, initrd: {url: http://i}}\nmachines:\n  - name: a\n    hostname: a\n    macs: [\"52:54:00:00:00:01\"]\n    bundle: g\n";
    let with = |power: &str| Config::from_str_named(Path::new("x"), &format!("{base}    power: {power}\n"));
    with("{ ipmi: { address: 10.0.0.5, username: admin, password_file: /etc/bootplane/bmc/a } }").unwrap();
    let e = with("{ ipmi: { address: 10.0.0.5, username: admin, password: hunter2, password_file: /etc/bmc } }").unwrap_err().to_string();
    assert!(e.contains("clear-text passwords are refused") && !e.contains("hunter2"), "{e}");
    let e = with("{ command: { on: [], off: [/bin/pdu] } }").unwrap_err().to_string();
    assert!(e.contains("power.command.on"), "{e}");
    let e = with("{ telnet: {} }").unwrap_err().to_string();
    assert!(e.contains("telnet"), "{e}");
}

#[test]
fn the_shim_loader_needs_bundle_files_bootplane_holds() {
    let sum = "a".repeat(64);
    let text = |loader_line: &str, kernel: &str| {
        format!(
            "{loader_line}bundles:\n  - {{name: g, os: generic, kernel: {kernel}, initrd: {{sha256: {sum}}}}}\n\
             machines:\n  - {{name: m1, hostname: m1, macs: [\"52:54:00:00:00:01\"], bundle: g}}\n"
        )
    };
    let findings = |t: String| lint(&Config::from_str_named(Path::new("x"), &t).unwrap());
    let url_only = "{url: http://mirror/k}";
    let held = format!("{{sha256: {sum}}}");
    // iPXE fetches the URL itself: fine.
    assert!(!findings(text("", url_only)).iter().any(|f| f.message.contains("loader shim")));
    // Site default shim: GRUB cannot fetch it.
    let e = err(&text("dhcp: {loader: shim}\n", url_only));
    assert!(e.contains("machines[0] (m1): loader shim loads kernel of bundle g over TFTP"), "{e}");
    assert!(!findings(text("dhcp: {loader: shim}\n", &held)).iter().any(|f| f.message.contains("loader shim")));
    // The machine's own setting wins over the site's.
    let t = text("dhcp: {loader: shim}\n", url_only).replace("bundle: g}", "bundle: g, loader: ipxe}");
    assert!(!findings(t).iter().any(|f| f.message.contains("loader shim")));
    let t = text("", url_only).replace("bundle: g}", "bundle: g, loader: shim}");
    assert!(err(&t).contains("loader shim loads kernel"));
    let e = err(&text("dhcp: {loader: grub}\n", &held));
    assert!(e.contains("loader"), "{e}");
    // The OS's own shim comes with its own GRUB, both held by bootplane.
    let own = |files: &str| text("dhcp: {loader: shim}\n", &held).replace("initrd: {", &format!("{files}initrd: {{"));
    let e = err(&own(&format!("shim: {{sha256: {sum}}}, ")));
    assert!(e.contains("bundle g: `shim` and `grub` go together"), "{e}");
    let e = err(&own(&format!("shim: {{sha256: {sum}}}, grub: {{url: http://mirror/grubx64.efi}}, ")));
    assert!(e.contains("loader shim loads grub of bundle g over TFTP"), "{e}");
    assert!(!findings(own(&format!("shim: {{sha256: {sum}}}, grub: {{sha256: {sum}}}, "))).iter().any(|f| f.message.contains("shim")));
}

#[test]
fn a_vip_must_be_a_free_address_of_the_servers_lan() {
    let cfg = |vip: &str, extra: &str| {
        let text = format!(
            "server: {{ listen: 10.20.0.1:8080, advertise: \"http://10.20.0.1:8080\" }}\n\
             dhcp: {{ mode: full, interface: br0, range: 10.20.0.100-10.20.0.150, netmask: 255.255.255.0 }}\n\
             clusters:\n  - name: lab\n    k3s: {{ version: v1.30.2+k3s1{extra} }}\n    vip: {vip}\n\
             machines:\n  - {{ name: s1, macs: [\"52:54:00:00:00:01\"], ip: 10.20.0.5, role: server, cluster: lab }}\n  \
             - {{ name: a1, macs: [\"52:54:00:00:00:02\"], ip: 10.20.0.7, role: agent, cluster: lab }}\n"
        );
        // Errors refuse the whole file: its message lists them, one a line.
        match Config::from_str_named(Path::new("x.yaml"), &text) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().filter(|l| l.to_lowercase().contains("vip")).map(str::to_string).collect::<Vec<_>>(),
        }
    };
    assert_eq!(cfg("{ address: 10.20.0.10, interface: enp1s0 }", ""), Vec::<String>::new());
    // (vip, more k3s settings, the one error expected)
    let refused = [
        ("{ address: 10.30.0.10, interface: enp1s0 }", "", "outside server s1's subnet 10.20.0.0/24"),
        ("{ address: 10.20.0.7, interface: enp1s0 }", "", "machine a1's own address"),
        ("{ address: 10.20.0.120, interface: enp1s0 }", "", "inside the DHCP range"),
        ("{ address: 10.20.0.10, interface: \"a/b\" }", "", "not a network interface name"),
        ("{ address: 10.20.0.10, interface: eth0 }", ", api: \"https://10.20.0.5:6443\"", "is not the VIP"),
        // An address that merely starts like the VIP is another address.
        ("{ address: 10.20.0.1, interface: eth0 }", ", api: \"https://10.20.0.10:6443\"", "is not the VIP"),
    ];
    for (vip, extra, want) in refused {
        let e = cfg(vip, extra);
        assert!(e.len() == 1 && e[0].contains(want), "{vip}{extra}: {e:?}");
    }
    assert_eq!(cfg("{ address: 10.20.0.10, interface: eth0 }", ", api: \"https://10.20.0.10:6443\""), Vec::<String>::new());
    // A machine with a static network address (CIDR form) owns that address, not its network's.
    let with_static = |vip: &str| {
        let text = format!(
            "server: {{ listen: 10.20.0.1:8080, advertise: \"http://10.20.0.1:8080\" }}\n\
             clusters:\n  - name: lab\n    k3s: {{ version: v1.30.2+k3s1 }}\n    vip: {{ address: {vip}, interface: eth0 }}\n\
             machines:\n  - {{ name: s1, macs: [\"52:54:00:00:00:01\"], role: server, cluster: lab, network: {{ address: 10.20.0.5/24, gateway: 10.20.0.1 }} }}\n"
        );
        Config::from_str_named(Path::new("x.yaml"), &text).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(with_static("10.20.0.5").contains("machine s1's own address"), "{}", with_static("10.20.0.5"));
    assert_eq!(with_static("10.20.0.9"), "");
    // Unknown keys are refused like everywhere else.
    let text = "clusters:\n  - name: lab\n    vip: { address: 10.20.0.10, interface: eth0, arp: true }\n";
    assert!(Config::from_str_named(Path::new("x.yaml"), text).unwrap_err().to_string().contains("unknown field `arp`"));
}
