//! PXELINUX support: which identity a `pxelinux.cfg/...` name carries, and the config
//! text for a [`BootDecision`]. PXELINUX asks for `pxelinux.cfg/<uuid>`, then
//! `01-<mac>`, then the client IP in hex with ever shorter prefixes, then `default`
//! (syslinux wiki, "PXELINUX: Configuration"). bootplane answers the UUID and MAC names
//! from the same decision as `/v1/boot/ipxe`, says "not found" to the IP names (they
//! identify nothing), and answers `default` with a local boot, so a client that matched
//! nothing falls through to its disk.

use crate::decision::BootDecision;
use crate::identity::{Mac, SmbiosUuid};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Uuid(SmbiosUuid),
    Mac(Mac),
    /// A hex IP prefix such as `C0A8010A` or `C0A8`.
    IpHex(String),
    Default,
}

/// Parses the part after `pxelinux.cfg/`. `None`: not a name PXELINUX asks for.
pub fn parse(name: &str) -> Option<Lookup> {
    if name == "default" {
        return Some(Lookup::Default);
    }
    if let Some(mac) = name.strip_prefix("01-") {
        return mac.parse().ok().map(Lookup::Mac);
    }
    if name.len() == 36 {
        if let Ok(u) = name.parse::<SmbiosUuid>() {
            return Some(Lookup::Uuid(u));
        }
    }
    if (1..=8).contains(&name.len()) && name.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()) {
        return Some(Lookup::IpHex(name.to_string()));
    }
    None
}

const LOCAL: &str = "DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n";

/// The config for a decision. Installers need lpxelinux.0 (HTTP-capable) for `http://`
/// kernel URLs; that is the firmware's business, the text is the same.
pub fn render(decision: &BootDecision) -> String {
    match decision {
        BootDecision::Install { machine, plan, .. } => {
            let initrds: Vec<&str> = plan.initrds.iter().map(|(_, u)| u.as_str()).collect();
            format!(
                "# bootplane: installing {machine}\nDEFAULT install\nPROMPT 0\nLABEL install\n  KERNEL {}\n  INITRD {}\n  APPEND {}\n",
                plan.kernel_url,
                initrds.join(","),
                plan.args
            )
        }
        BootDecision::LocalBoot { machine, state } => format!("# bootplane: {machine} is {state}\n{LOCAL}"),
        BootDecision::Quarantine { .. } => format!("# bootplane: quarantine\n{LOCAL}"),
        BootDecision::Misconfigured { machine, .. } => format!("# bootplane: cannot install {machine}\n{LOCAL}"),
        BootDecision::AttemptsExhausted { machine, .. } => format!("# bootplane: {machine} failed\n{LOCAL}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::InstallerPlan;

    #[test]
    fn lookup_names() {
        assert_eq!(parse("default"), Some(Lookup::Default));
        assert_eq!(parse("01-52-54-00-12-34-56"), Some(Lookup::Mac("52:54:00:12:34:56".parse().unwrap())));
        assert!(matches!(parse("11111111-2222-3333-4444-555555555555"), Some(Lookup::Uuid(_))));
        assert_eq!(parse("C0A8010A"), Some(Lookup::IpHex("C0A8010A".into())));
        assert_eq!(parse("C"), Some(Lookup::IpHex("C".into())));
        assert_eq!(parse("01-zz"), None);
        assert_eq!(parse("../x"), None);
        assert_eq!(parse("c0a8"), None);
    }

    #[test]
    fn install_and_local_configs() {
        let plan = InstallerPlan { kernel_url: "http://k".into(), initrds: vec![("i".into(), "http://i".into())], args: "a=b".into() };
        let s = render(&BootDecision::Install { machine: "m".into(), bundle: "b".into(), plan });
        assert!(s.contains("KERNEL http://k\n  INITRD http://i\n  APPEND a=b"));
        assert!(render(&BootDecision::Quarantine { reason: "x".into() }).contains("LOCALBOOT 0"));
    }
}
