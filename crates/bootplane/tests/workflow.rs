//! A newcomer's day with the CLI, step by step as README's "Using it" describes it,
//! against the real binary: `init`, `serve`, then `apply -f` of small files that name only
//! what they change. Nothing stored may be lost on the way.

mod common;
use common::*;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIWorkflowTestKey admin@lab";

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let o = bootplane(dir).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn newcomer_applies_small_files_against_a_running_server() {
    let top = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(top.path(), &["init", "demo"]);
    assert!(ok, "{err}");
    let demo = top.path().join("demo");
    let starter = std::fs::read_to_string(demo.join("bootplane.yaml")).unwrap();
    // The newcomer edits the starter bundle (its mirror, and where the OS reads its config)
    // and adds their key.
    let edited = starter
        .replace("http://mirror.example/rescue", "http://198.18.0.9/rescue")
        .replace("args: \"console=ttyS0 ip=dhcp\"", "args: \"console=ttyS0 ip=dhcp ignition.config.url={{ ignition_url }}\"");
    assert_ne!(edited, starter, "the starter's bundle changed shape; update this walk");
    std::fs::write(demo.join("bootplane.yaml"), format!("{edited}\nssh_authorized_keys: [\"{KEY}\"]\n")).unwrap();
    let s = Server::start(&demo);

    // A file elsewhere naming one machine, which uses the stored bundle `rescue`.
    std::fs::create_dir(top.path().join("other")).unwrap();
    let m3 = "machines:\n  - name: m3\n    hostname: m3.lab.internal\n    macs: [\"52:54:00:00:00:03\"]\n    bundle: rescue\n    provision: true\n";
    std::fs::write(top.path().join("other/m3.yaml"), m3).unwrap();
    let (ok, out, err) = run(&demo, &["apply", "-f", "../other/m3.yaml"]);
    assert!(ok, "apply of a file naming one machine: {err}");
    assert!(out.contains("1 machine(s) created"), "{out}");
    assert!(!top.path().join("other/data").exists(), "apply wrote a second store beside the file");
    assert_eq!(s.machine("m3")["state"], "provision");
    assert_eq!(s.machine("example1")["state"], "ready", "the starter's machine is untouched");

    // The stored ssh keys survived a file without any: the served Ignition still has them.
    let (_, code, ign) = s.boot_and_fetch("m3", "52-54-00-00-00-03");
    assert_eq!(code, 200, "{ign}");
    assert!(ign.contains("WorkflowTestKey"), "ssh_authorized_keys lost by an apply that did not name them: {ign}");

    // --dry-run says what would change and writes nothing.
    let changed = m3.replace("m3.lab.internal", "m3b.lab.internal");
    std::fs::write(top.path().join("other/m3.yaml"), &changed).unwrap();
    let (ok, out, err) = run(&demo, &["apply", "-f", "../other/m3.yaml", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains("~ machine m3") && out.contains("dry run: nothing written"), "{out}");
    assert_eq!(s.machine("m3")["hostname"], "m3.lab.internal");
    let (ok, out, _) = run(&demo, &["apply", "-f", "bootplane.yaml", "--dry-run"]);
    assert!(ok && out.contains("= bundle rescue") && out.contains("= machine example1"), "{out}");

    // A reference to something neither the file nor the store has is still an error.
    std::fs::write(top.path().join("other/bad.yaml"), m3.replace("m3", "m4").replace(":03", ":04").replace("rescue", "nosuch")).unwrap();
    let (ok, _, err) = run(&demo, &["apply", "-f", "../other/bad.yaml"]);
    assert!(!ok && err.contains("bundle `nosuch` is not defined"), "{err}");
    s.kill9();

    // Editing the starter bundle after the first serve: the restart takes it as a new
    // revision instead of refusing to start, and keeps what `apply` added.
    let text = std::fs::read_to_string(demo.join("bootplane.yaml")).unwrap();
    std::fs::write(demo.join("bootplane.yaml"), text.replace("console=ttyS0 ip=dhcp", "console=ttyS1 ip=dhcp")).unwrap();
    let s = Server::start(&demo);
    assert_eq!(s.machine("m3")["state"], "installing");
    let (script, _, _) = s.boot_and_fetch("m3", "52-54-00-00-00-03");
    assert!(script.contains("console=ttyS1 ip=dhcp"), "the next install takes the new revision: {script}");
    let (ok, out, _) = run(&demo, &["bundle", "list"]);
    assert!(ok && out.contains("rescue") && out.contains(" 2 "), "{out}");

    // An air-gapped bundle by `bundle import`, then a machine using it by name.
    let files = top.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("kernel"), b"kernel bytes").unwrap();
    std::fs::write(files.join("initrd"), b"initrd bytes").unwrap();
    let args = "console=ttyS0 ignition.config.url={{ ignition_url }}";
    let (ok, _, err) = run(&demo, &["bundle", "import", "../files", "--name", "airgap", "--os", "generic", "--args", args]);
    assert!(ok, "{err}");
    let m5 = "machines:\n  - name: m5\n    hostname: m5.lab.internal\n    macs: [\"52:54:00:00:00:05\"]\n    bundle: airgap\n    provision: true\n";
    std::fs::write(top.path().join("other/m5.yaml"), m5).unwrap();
    let (ok, out, err) = run(&demo, &["apply", "-f", "../other/m5.yaml", "--dry-run"]);
    assert!(ok && out.contains("+ machine m5"), "{out}{err}");
    let (ok, _, err) = run(&demo, &["apply", "-f", "../other/m5.yaml"]);
    assert!(ok, "{err}");
    let (script, code, _) = s.boot_and_fetch("m5", "52-54-00-00-00-05");
    assert!(code == 200 && script.contains("/artifacts/airgap@1/kernel"), "{script}");
    assert_eq!(s.get("/artifacts/airgap@1/kernel"), (200, "kernel bytes".to_string()));

    // The site as one directory, then --prune: what it no longer names goes.
    let site = top.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::copy(demo.join("bootplane.yaml"), site.join("bootplane.yaml")).unwrap();
    std::fs::write(site.join("m5.yaml"), m5).unwrap();
    let (ok, out, err) = run(&demo, &["apply", "-f", "../site", "--prune", "--dry-run"]);
    assert!(ok && out.contains("- machine m3") && !out.contains("- machine m5") && !out.contains("- bundle airgap"), "{out}{err}");
    let (ok, out, err) = run(&demo, &["apply", "-f", "../site", "--prune"]);
    assert!(ok && out.contains("pruned machine m3: retired"), "{out}{err}");
    assert_eq!(s.machine("m3")["state"], "retired");
    assert_eq!(s.machine("m5")["state"], "installing", "nothing else changed");
    s.kill9();
}

#[test]
fn store_flags_work_in_every_position_and_the_store_keeps_its_files_together() {
    let d = workdir("bundles:\n  - {name: g, os: generic, kernel: {url: http://198.18.0.9/k}}\n");
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("kernel"), b"kernel").unwrap();
    std::fs::write(files.join("initrd"), b"initrd").unwrap();
    let store = d.path().join("elsewhere");
    // The data directory after the subcommand's own arguments.
    let (ok, _, err) = run(d.path(), &["bundle", "import", "files", "--name", "rescue2", "--os", "generic", "--data-dir", store.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("store in {}", store.display())), "{err}");
    let (ok, out, err) = run(d.path(), &["bundle", "list", "--json", "--data-dir", store.to_str().unwrap()]);
    assert!(ok && out.contains("rescue2"), "{out}{err}");
    assert!(!d.path().join("data").exists(), "a second store appeared in ./data");

    // `serve --database sqlite:PATH`: the key and token live beside that database.
    let s = Server::start_with(d.path(), &["--config", "bootplane.yaml", "--database", "sqlite:site/bootplane.db"]);
    assert_eq!(s.get("/healthz").0, 200);
    s.kill9();
    assert!(d.path().join("site/bootplane.db").exists() && d.path().join("site/secret.key").exists());
    assert!(!d.path().join("data").exists(), "serve wrote into ./data although the database is elsewhere");
}

#[test]
fn prune_retires_machines_and_drops_unused_bundles_the_files_no_longer_name() {
    let all = "bundles:\n  - {name: g1, os: generic, kernel: {url: http://198.18.0.9/k}}\n  - {name: g2, os: generic, kernel: {url: http://198.18.0.9/k2}}\n\
               clusters:\n  - {name: lab, k3s: {version: v1.30.2+k3s1}}\n\
               machines:\n  - {name: a, hostname: a, macs: [\"52:54:00:00:00:0a\"], bundle: g1}\n  - {name: b, hostname: b, macs: [\"52:54:00:00:00:0b\"], bundle: g1}\n  \
               - {name: c, hostname: c, macs: [\"52:54:00:00:00:0c\"], bundle: g1, role: server, cluster: lab, provision: true}\n";
    let fewer = "bundles:\n  - {name: g1, os: generic, kernel: {url: http://198.18.0.9/k}}\nmachines:\n  - {name: a, hostname: a, macs: [\"52:54:00:00:00:0a\"], bundle: g1}\n";
    // bootplane.yaml (what `serve` reads below) is the site after the change.
    let d = workdir(fewer);
    std::fs::write(d.path().join("all.yaml"), all).unwrap();
    let (ok, _, err) = run(d.path(), &["apply", "-f", "all.yaml"]);
    assert!(ok, "{err}");
    std::fs::write(d.path().join("site.yaml"), fewer).unwrap();
    let (ok, out, err) = run(d.path(), &["apply", "-f", "site.yaml", "--prune", "--dry-run"]);
    assert!(ok && out.contains("- machine b") && out.contains("- bundle g2") && !out.contains("- machine a"), "{out}{err}");
    // Without --prune nothing is removed.
    let (ok, out, _) = run(d.path(), &["apply", "-f", "site.yaml"]);
    assert!(ok && !out.contains("pruned"), "{out}");
    let (ok, out, err) = run(d.path(), &["apply", "-f", "site.yaml", "--prune"]);
    assert!(ok, "{err}");
    assert!(out.contains("pruned machine b: retired") && out.contains("pruned bundle g2: removed"), "{out}");
    // A k3s node is retired through the server, which takes it out of its cluster first.
    assert!(out.contains("kept machine c: it is a node of cluster lab; `bootplane machines retire c`"), "{out}");
    let (_, out, _) = run(d.path(), &["bundle", "list", "--json"]);
    assert!(out.contains("\"g1\"") && !out.contains("\"g2\""), "{out}");
    let s = Server::start(d.path());
    assert_eq!(s.machine("b")["state"], "retired");
    assert_eq!(s.machine("a")["state"], "ready");
    assert_eq!(s.machine("c")["state"], "provision");
    s.kill9();
}
