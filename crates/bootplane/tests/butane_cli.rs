//! `bootplane butane` takes the Go `butane` tool's flags and exit codes (its
//! `internal/main.go`): -V, -c, -s, -p, -r, --raw-errors, --color[=WHEN], -d, -o, the
//! hidden --input, one input at most (usage error: exit 2), failures exit 1.

mod common;
use common::BIN;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn butane(args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(BIN).arg("butane").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

const OK: &str = "variant: fcos\nversion: 1.5.0\npasswd:\n  users:\n    - name: core\n";

#[test]
fn flags_and_exit_codes_match_the_go_tool() {
    let o = butane(&["-V"], "");
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("Butane "), "{o:?}");
    let o = butane(&["--version"], "");
    assert!(o.status.success(), "{o:?}");

    // --check: validity only, nothing on stdout.
    let o = butane(&["-c"], OK);
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
    let o = butane(&["--check"], "variant: fcos\nversion: 9\n");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(o.stdout.is_empty());

    // -r/--raw and --raw-errors are accepted; --color alone does not take the next word.
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.bu");
    std::fs::write(&input, OK).unwrap();
    let o = butane(&["-r", "--raw-errors", "--color", "-p", input.to_str().unwrap()], "");
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("\n  \"passwd\""), "pretty output: {o:?}");
    let o = butane(&["--colour=never", "--input", input.to_str().unwrap()], "");
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"core\""), "{o:?}");

    // -o writes the file; stdout stays empty.
    let out = d.path().join("out.ign");
    let o = butane(&["-o", out.to_str().unwrap()], OK);
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("{\"ignition\""));

    // Usage errors exit 2, read errors 1.
    assert_eq!(butane(&["a.bu", "b.bu"], "").status.code(), Some(2));
    let o = butane(&[d.path().join("missing.bu").to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("failed to read"), "{o:?}");
}
