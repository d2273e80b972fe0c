//! YAML for readers that speak YAML 1.1: subiquity and cloud-init (PyYAML) and k3s's
//! config-file parser (go-yaml v2). Under 1.1, plain scalars such as `52:54:00:00:03:01`
//! (a base-60 integer), `on`/`off`/`y`/`n` (booleans), `0755` (octal) or `2024-01-01` (a
//! timestamp) are not strings, so a YAML 1.2 emitter's output (serde_yaml's, yaml_serde's) changes
//! meaning on the way. This emitter writes a string plain only when it cannot be
//! anything but a string under 1.1 and 1.2 alike, and double-quotes everything else.
//! Hand-written because no maintained crate emits 1.1-safe YAML; it only writes (block
//! style, `serde_json::Value` in), never parses.

use serde_json::{Map, Value};

/// The document for `v` (normally an object), ending in a newline.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out += &inline(other).unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// Scalars, empty collections and single-line strings on one line; `None` for what needs
/// a block (non-empty collections, multi-line text as a literal block).
fn inline(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if literal_chomp(s).is_some() => return None,
        Value::String(s) => scalar(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        _ => return None,
    })
}

/// A string as a plain scalar when that is unambiguous, else double-quoted.
pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        // A JSON string is a valid YAML double-quoted scalar: serde_json escapes only `"`,
        // `\` and control characters, with escapes YAML 1.1 knows too.
        serde_json::to_string(s).expect("strings serialize")
    }
}

/// Words YAML 1.1 resolves to booleans or null, compared case-insensitively (a superset
/// of the spec's `y|Y|yes|Yes|YES|...`, so some strings are quoted needlessly, never the
/// other way round).
const RESERVED: [&str; 11] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "="];

fn is_plain_safe(s: &str) -> bool {
    // A letter or `/` first rules out every number, base-60 value, timestamp, `.inf`,
    // `.nan`, `-`, `?`, `!`, `&`, `*`, `%`, `@`, quotes and flow indicators; the character
    // set and the checks after it rule out ` #`, `,`, `: `, a final `:` and trailing
    // spaces. A `:` inside is safe after a letter (`https://x:6443`): base-60 needs digits.
    let first_ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/');
    first_ok
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=+@: ".contains(c))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// The literal-block chomping indicator for multi-line text, or `None` when the text
/// must be double-quoted instead (one line, a leading space, a carriage return or other
/// control characters a literal block cannot hold).
fn literal_chomp(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with([' ', '\n']) || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return None;
    }
    let body = s.trim_end_matches('\n');
    Some(match s.len() - body.len() {
        0 => "|-",
        1 => "|",
        _ => "|+",
    })
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn literal(out: &mut String, s: &str, indent: usize) {
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// Writes `v` after a `key:` or `- ` that is already on the line.
fn value(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    if let Some(one) = inline(v) {
        out.push(' ');
        out.push_str(&one);
        out.push('\n');
        return;
    }
    match v {
        Value::String(s) => {
            out.push(' ');
            out.push_str(literal_chomp(s).expect("inline() said multi-line"));
            out.push('\n');
            literal(out, s, indent + 2);
        }
        Value::Object(m) if in_seq => nested_first_line(out, |o| map(o, m, indent + 2), indent + 2),
        Value::Array(a) if in_seq => nested_first_line(out, |o| seq(o, a, indent + 2), indent + 2),
        Value::Object(m) => {
            out.push('\n');
            map(out, m, indent + 2);
        }
        // Sequences under a key sit at the key's indentation, as yaml_serde and kubectl write them.
        Value::Array(a) => {
            out.push('\n');
            seq(out, a, indent);
        }
        _ => unreachable!("scalars are inline"),
    }
}

/// A collection that starts on the line of its `- `: written at `indent`, with the first
/// line's indentation replaced by the single space after the dash.
fn nested_first_line(out: &mut String, write: impl FnOnce(&mut String), indent: usize) {
    let mut inner = String::new();
    write(&mut inner);
    out.push(' ');
    out.push_str(&inner[indent..]);
}

fn map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&scalar(k));
        out.push(':');
        value(out, v, indent, false);
    }
}

fn seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        pad(out, indent);
        out.push('-');
        value(out, v, indent, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_yaml_1_1_would_reinterpret_is_quoted() {
        for s in ["52:54:00:00:03:01", "on", "Off", "y", "N", "yes", "null", "~", "0755", "1_000", "2024-01-01", "1:20", ".inf", "-1", "0x1F", "", " a", "a ", "a: b", "a #b", "*x", "=", "a:", "a: b:c"] {
            assert!(scalar(s).starts_with('"'), "{s:?} must be quoted");
        }
        for s in ["lenovo1", "lenovo1.lab.internal", "/etc/rancher/k3s/token", "cluster-init", "a b", "https://10.0.0.5:6443", "aa:bb:cc:dd:ee:ff"] {
            assert_eq!(scalar(s), s);
        }
        assert_eq!(scalar("say \"hi\"\\"), r#""say \"hi\"\\""#);
    }

    #[test]
    fn block_layout_matches_what_readers_expect() {
        let v = json!({
            "a": "x", "n": 3, "num": 4, "b": true, "z": null, "e": [], "o": {},
            "list": ["on", {"k": "v", "k2": ["p"]}, ["systemctl", "enable"]],
            "m": {"inner": "52:54:00:00:03:01"},
            "text": "line1\n\n  indented\n",
            "nonl": "a\nb",
            "many": "a\n\n\n",
            "lead": " x\ny\n",
        });
        let y = to_string(&v);
        let want = "a: x\n\"n\": 3\nnum: 4\nb: true\nz: null\ne: []\no: {}\nlist:\n- \"on\"\n- k: v\n  k2:\n  - p\n- - systemctl\n  - enable\nm:\n  inner: \"52:54:00:00:03:01\"\ntext: |\n  line1\n\n    indented\nnonl: |-\n  a\n  b\nmany: |+\n  a\n\n\nlead: \" x\\ny\\n\"\n";
        assert_eq!(y, want);
    }

    #[test]
    fn a_yaml_1_2_reader_reads_back_what_was_written() {
        let v = json!({"mac": "52:54:00:00:03:01", "host": "on", "mode": "0600", "script": "#!/bin/sh\necho \"$x\"\n\nexit 0\n",
            "nested": [{"a": ["b", 1, false]}, [[]]], "tab": "a\tb\nc\n", "uni": "ü — ok"});
        let back: Value = yaml_serde::from_str(&to_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
