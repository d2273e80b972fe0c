//! bootplane's Butane output against the real tools from Debian's `ignition` package:
//! `ignition-validate` (2.14) must accept every config it compiles for spec <= 3.3.0 and
//! agree with bootplane's own validator on broken ones, and the real Ignition binary's
//! files stage must apply a compiled config to a temporary root as the Butane said.

use std::path::Path;
use std::process::Command;

fn real_validate(json: &str) -> bool {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.ign");
    std::fs::write(&f, json).unwrap();
    Command::new("ignition-validate").arg(&f).output().expect("ignition-validate (apt-get install ignition)").status.success()
}

fn ours_accepts(json: &str) -> bool {
    !bootplane_butane::ignition::validate(json).iter().any(|e| e.level == bootplane_butane::Level::Error)
}

#[test]
fn ignition_validate_accepts_what_we_compile() {
    let mut checked = 0;
    let mut cases: Vec<_> = std::fs::read_dir(bootplane_testkit::require_shared!("conformance/butane", "BOOTPLANE_BUTANE_CORPUS")).expect("conformance corpus").flatten().map(|e| e.path()).collect();
    cases.sort();
    for case in cases {
        let meta = std::fs::read_to_string(case.join("meta.txt")).unwrap_or_default();
        let spec_ok = ["ignition_spec: 3.0.0", "ignition_spec: 3.1.0", "ignition_spec: 3.2.0", "ignition_spec: 3.3.0"].iter().any(|s| meta.contains(s));
        if !spec_ok || !case.join("expected.ign").exists() || meta.contains("--files-dir") {
            continue;
        }
        let input = std::fs::read_to_string(case.join("input.bu")).unwrap();
        let Ok(t) = bootplane_butane::translate(&input, &Default::default()) else { continue };
        let json = bootplane_butane::to_json(&t.config, false);
        assert!(real_validate(&json), "{}: ignition-validate rejects {json}", case.display());
        assert!(ours_accepts(&json), "{}: our validator rejects {json}", case.display());
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} cases checked");
    eprintln!("{checked} compiled configs accepted by ignition-validate and by bootplane");
}

#[test]
fn both_validators_reject_broken_configs() {
    let broken = [
        "not json",
        r#"{"ignition":{"version":"9.9.9"}}"#,
        r#"{"ignition":{}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"relative"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":"0644"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a"},{"path":"/a"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"nope"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"verification":{"hash":"sha512-xyz"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"noextension"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/x"}],"files":[{"path":"/l/f"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"ext4","path":"relative"}]}}"#,
        // Rules found missing by comparing with Ignition's own validation (issue 15).
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","dropins":[{"name":"x.txt"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","contents":"[Unit]\nfoo"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","dropins":[{"name":"x.conf","contents":"[Unit"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"data:,x","compression":"bzip2"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"ntfs"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","overwrite":true}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/a"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["a"],"shouldNotExist":["a"]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["a","a"]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"label":"a:b","number":1}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"label":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","number":1}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a/"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"directories":[{"path":"/a/../b"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"ext4","path":"/var//lib"}]}}"#,
    ];
    for b in broken {
        assert!(!real_validate(b), "ignition-validate accepts {b}");
        assert!(!ours_accepts(b), "bootplane accepts {b}");
    }
    let fine = [
        r#"{"ignition":{"version":"3.0.0"}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":420,"contents":{"source":"data:,x"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"unknownKey":1}"#,
        // What go-systemd's unit parser lets through, and the edges of the new rules.
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","contents":"Description=x\n[]\nA=b\\"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","overwrite":true,"contents":{"source":"data:,x","compression":"gzip"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"none"}],"links":[{"path":"/l","target":"/b"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"label":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","number":1}]}]}}"#,
    ];
    for f in fine {
        assert!(real_validate(f), "ignition-validate rejects {f}");
        assert!(ours_accepts(f), "bootplane rejects {f}");
    }
}

/// Ignition's own rules (config/shared/errors and the v3_3 types' Validate), one config
/// each, checked against the real ignition-validate: each broken one refused by both, each
/// edge case accepted by both.
#[test]
fn ignition_rules_agree_with_ignition_validate() {
    let broken = [
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"verification":{"hash":"sha512-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"ignition":{"version":"3.3.0","config":{"merge":[{"verification":{"hash":"sha512-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}]}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","label":"x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","path":"/x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"ext4","label":"aaaaaaaaaaaaaaaaa"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"xfs","label":"aaaaaaaaaaaaa"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"vfat","label":"aaaaaaaaaaaa"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"swap","label":"aaaaaaaaaaaaaaaa"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1},{"number":1,"label":"b"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"label":"a"},{"label":"a"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"partitions":[{"number":1}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1,"guid":"zz"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1,"typeGuid":"zz"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1,"shouldExist":false,"sizeMiB":5}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","devices":["/dev/a"]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","level":"raid1"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","level":"raid7","devices":["/dev/a"]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","level":"raid0","devices":["/dev/a"],"spares":1}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a/b","device":"/dev/sda"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","user":{"id":1,"name":"x"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"ignition":{"version":"3.3.0","proxy":{"httpProxy":"ftp://x"}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"tftp://x/y","httpHeaders":[{"name":"A","value":"b"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","httpHeaders":[{"name":"","value":"b"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","httpHeaders":[{"name":"A","value":"b"},{"name":"A","value":"c"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/d","hard":true}],"directories":[{"path":"/d"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"custom":{"config":"x"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"custom":{"pin":"tpm2"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"custom":{"pin":"foo","config":"x"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tpm2":true,"custom":{"pin":"tpm2","config":"x"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tang":[{"url":"http://t"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"compression":"gzip"}]}}}"#,
        r#"{"ignition":{"version":"3.3.0","security":{"tls":{"certificateAuthorities":[{}]}}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","groups":["x","x"]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","dropins":[{"name":"x.conf"},{"name":"x.conf"}]}]}}"#,
    ];
    for b in broken {
        assert!(!real_validate(b), "ignition-validate accepts {b}");
        assert!(!ours_accepts(b), "bootplane accepts {b}");
    }
    let fine = [
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"ext4","label":"aaaaaaaaaaaaaaaa"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","wipeFilesystem":false,"options":[]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"label":"a"},{"label":"b"},{"number":0,"label":"c"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1,"typeGuid":"01234567-89AB-CDEF-EDCB-A98765432101","guid":""}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1,"shouldExist":false,"wipePartitionEntry":true}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","level":"mirror","devices":["/dev/a"],"spares":1}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","user":{"id":1}, "group":{"name":"x"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"ignition":{"version":"3.3.0","proxy":{"httpsProxy":"http://x"}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"https://x/y","httpHeaders":[{"name":"A","value":"b"},{"name":"B","value":"c"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/d"}],"directories":[{"path":"/d"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"custom":{"pin":"sss","config":"x"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tpm2":true,"custom":{}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tang":[{"url":"http://t","thumbprint":"abc"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0","config":{"replace":{"compression":"gzip"}}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","groups":["x","y"]}]}}"#,
    ];
    for f in fine {
        assert!(real_validate(f), "ignition-validate rejects {f}");
        assert!(ours_accepts(f), "bootplane rejects {f}");
    }
}

/// `(level, path)` of every entry ignition-validate prints (`error at $.x, line..: msg`).
fn real_report(json: &str) -> Vec<(String, String)> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.ign");
    std::fs::write(&f, json).unwrap();
    let out = Command::new("ignition-validate").arg(&f).output().expect("ignition-validate (apt-get install ignition)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut r: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let (level, rest) = l.split_once(" at ")?;
            let path = rest.split([',', ':']).next()?;
            Some((level.to_string(), path.to_string()))
        })
        .collect();
    r.sort();
    r
}

fn our_report(json: &str) -> Vec<(String, String)> {
    let mut r: Vec<_> = bootplane_butane::ignition::validate(json)
        .into_iter()
        .map(|e| ((if e.level == bootplane_butane::Level::Error { "error" } else { "warning" }).to_string(), e.path))
        .collect();
    r.sort();
    r
}

/// The whole report, warnings included, entry by entry (level and path) against the real
/// ignition-validate, for the rules added from Ignition's current source that 2.14 has too.
#[test]
fn reports_agree_with_ignition_validate_entry_by_entry() {
    let cases = [
        r#"{"ignition":{"version":"3.3.0","proxy":{"httpsProxy":"http://p:3128","httpProxy":"http://p:3128"}}}"#,
        r#"{"ignition":{"version":"3.3.0","proxy":{"httpProxy":""}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"s3://b/k?versionId="}},{"path":"/b","contents":{"source":"s3://b/k?versionId=7"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:::b/k"}}]}}"#,
        r#"{"ignition":{"version":"3.1.0"},"storage":{"files":[{"path":"/a","contents":{"source":"gs://b/k"}}]}}"#,
        r#"{"ignition":{"version":"3.2.0"},"storage":{"files":[{"path":"/a","contents":{"source":"gs://b/k"}}]}}"#,
        r#"{"ignition":{"version":"3.2.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","keyFile":{"source":"ftp://x"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Unit]\nA=b\n[Install]\n"},{"name":"b.service","enabled":true,"contents":"[Install]\nWantedBy=m.target"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":2541}]},"extra":{"key":1}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"nope"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/x"},{"path":"/l/m","target":"/y"}],"files":[{"path":"/l/f"}],"directories":[{"path":"/l/d"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":""}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","httpHeaders":[{"name":"A","value":""},{"name":"B"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","verification":{"hash":"sha256"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"http://x/y","verification":{"hash":"md5-00"}}]}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","append":[{"source":"http://x/y","verification":{"hash":"sha256-00"}}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","verification":{"hash":"sha256-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"number":1,"startMiB":1,"sizeMiB":10},{"number":2,"startMiB":5,"sizeMiB":10},{"number":3,"startMiB":0,"sizeMiB":10}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/%zz"}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"sda","format":"ext4","path":""},{"device":"/dev/sdb","label":"x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"md","level":"raid1","devices":["sda","/dev//b"]}],"luks":[{"name":"a","device":"dev/x"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"","partitions":[{"number":1},{"number":1}]},{"device":"sdc"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sdd","partitions":[{"number":1},{"number":1,"label":"b"},{"label":"c"},{"label":"c"}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tpm2":true,"custom":{"pin":"","config":""}}}],"files":[{"path":"/a","user":{"id":1,"name":""}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"httpHeaders":[{"name":"A","value":"b"}]}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tpm2":true,"custom":{"config":"x"}}}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","sshAuthorizedKeys":["k","k"]}]},"storage":{"files":[{"path":"/a"},{"path":"/b","append":[{"source":"data:,x"},{"source":"data:,x"}]}],"links":[{"path":"/a","target":"/x"}],"raid":[{"name":"md","level":"raid1","devices":["/dev/a","/dev/a"],"options":["x","x"]}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"sizeMiB":1},{"sizeMiB":2}]}]}}"#,
        r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"http://m"},{"source":"http://m"}]},"proxy":{"noProxy":["a","a"]}}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tang":[{"url":"http://t","thumbprint":"x"},{"url":"http://t","thumbprint":"y"}]},"options":["o","o"]}],"filesystems":[{"device":"/dev/sdb","format":"ext4","mountOptions":["ro","ro"]}]}}"#,
        // Rules that differ by spec version: keys a version lacks are only unused, `none`
        // from 3.3, 3.0's optional merge source and string CA source.
        r#"{"ignition":{"version":"3.0.0"},"storage":{"filesystems":[{"device":"/dev/sda","mountOptions":["x"]}]}}"#,
        r#"{"ignition":{"version":"3.2.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"none"}]}}"#,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/sda","format":"none"}]}}"#,
        r#"{"ignition":{"version":"3.0.0","config":{"merge":[{}]},"security":{"tls":{"certificateAuthorities":[{}]}}}}"#,
        r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":""}]}}}"#,
    ];
    for c in cases {
        assert_eq!(our_report(c), real_report(c), "{c}");
    }
}

#[test]
fn real_ignition_applies_a_compiled_config() {
    let d = tempfile::tempdir().unwrap();
    let butane = r##"variant: fcos
version: 1.4.0
passwd:
  users:
    - name: core
      groups: [wheel]
      ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbootplane test@lab"]
storage:
  directories:
    - path: /etc/bootplane
      mode: 0700
  files:
    - path: /etc/bootplane/machine.env
      mode: 0600
      contents:
        inline: "BOOTPLANE_MACHINE=node1\n"
    - path: /etc/hostname
      mode: 0644
      contents: { inline: "node1.lab.internal\n" }
    - path: /usr/local/bin/big
      mode: 0755
      contents:
        inline: "#!/bin/sh\n# long enough to be compressed\n# long enough to be compressed\n# long enough to be compressed\n# long enough to be compressed\necho hi\n"
  links:
    - path: /etc/localtime
      target: ../usr/share/zoneinfo/UTC
systemd:
  units:
    - name: k3s-install.service
      enabled: true
      contents: "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/big\n[Install]\nWantedBy=multi-user.target\n"
"##;
    let t = bootplane_butane::translate(butane, &Default::default()).unwrap();
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let json = bootplane_butane::to_json(&t.config, false);
    assert!(json.contains("\"compression\":\"gzip\""), "the long file exercises gzip: {json}");
    let root = bootplane_testkit::ignition::apply(d.path(), &json);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "node1.lab.internal\n");
    assert_eq!(mode("etc/hostname"), 0o644);
    assert_eq!(std::fs::read_to_string(root.join("etc/bootplane/machine.env")).unwrap(), "BOOTPLANE_MACHINE=node1\n");
    assert_eq!(mode("etc/bootplane/machine.env"), 0o600);
    assert_eq!(mode("etc/bootplane"), 0o700);
    assert!(std::fs::read_to_string(root.join("usr/local/bin/big")).unwrap().ends_with("echo hi\n"));
    assert_eq!(mode("usr/local/bin/big"), 0o755);
    assert_eq!(std::fs::read_link(root.join("etc/localtime")).unwrap(), Path::new("../usr/share/zoneinfo/UTC"));
    assert!(std::fs::read_to_string(root.join("etc/systemd/system/k3s-install.service")).unwrap().contains("ExecStart=/usr/local/bin/big"));
    assert!(std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap().contains("enable k3s-install.service"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("core:")), "{passwd}");
    assert!(std::fs::read_to_string(root.join("etc/group")).unwrap().lines().any(|l| l.starts_with("wheel:") && l.contains("core")));
    let keys = std::fs::read_to_string(root.join("home/core/.ssh/authorized_keys.d/ignition")).unwrap();
    assert!(keys.contains("bootplane test@lab"));
}
