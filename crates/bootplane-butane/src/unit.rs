//! systemd unit text as go-systemd's deserializer (which Ignition uses) reads it: what
//! both the Ignition checks (`crate::ignition`) and the Butane validation rules
//! (`crate::validate`) ask of a unit. A leaf: it uses nothing else of the crate.

/// The section of every option in systemd unit text, as go-systemd's deserializer (which
/// Ignition uses) reads it: every line is blank, a comment, a `[Section]` header or
/// `Key=value`; a trailing backslash continues a line. (It accepts options before any
/// section, `[]`, and a continuation at the end, so this does too: checked against
/// ignition-validate.) `None` when the text does not parse.
pub(crate) fn unit_option_sections(text: &str) -> Option<Vec<String>> {
    let (mut continued, mut section, mut out) = (false, String::new(), Vec::new());
    for line in text.lines() {
        let t = line.trim();
        if std::mem::take(&mut continued) {
            continued = t.ends_with('\\');
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') {
            if !t.ends_with(']') || t.len() < 2 {
                return None;
            }
            section = t[1..t.len() - 1].to_string();
            continue;
        }
        if !t.contains('=') {
            return None;
        }
        out.push(section.clone());
        continued = t.ends_with('\\');
    }
    Some(out)
}

/// Whether unit text has an `[Install]` section with an option in it (an empty one is
/// none to go-systemd, so Ignition warns about it too). Unparseable text counts as having
/// one: its error is reported already.
pub(crate) fn has_install_section(text: &str) -> bool {
    unit_option_sections(text).is_none_or(|s| s.iter().any(|s| s == "Install"))
}
