//! Boot-client classification and first-stage file selection. Architecture codes are
//! IANA's "Processor Architecture Types" (RFC 4578 §2.1, updated): 0 BIOS, 6 EFI IA32,
//! 7 and 9 EFI x86-64 (firmware uses both), 11 EFI ARM64, 15/16/19 UEFI HTTP boot for
//! IA32/x64/ARM64. A client that is already iPXE gets the HTTP entry script so it never
//! loops back into TFTP.

use dhcproto::v4::{DhcpOption, Message, OptionCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// No PXE or HTTP-boot vendor class: an ordinary host. Gets no boot options.
    NotBoot,
    /// Firmware PXE (vendor class `PXEClient`), with its architecture.
    Pxe { arch: u16 },
    /// UEFI HTTP boot (vendor class `HTTPClient`).
    Http { arch: u16 },
    /// iPXE itself (user class `iPXE`, or iPXE's option 175).
    Ipxe { arch: u16 },
}

fn vendor_class(msg: &Message) -> Option<&[u8]> {
    match msg.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v),
        _ => None,
    }
}

pub fn arch(msg: &Message) -> Option<u16> {
    match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => None,
    }
}

fn is_ipxe(msg: &Message) -> bool {
    let user_class_ipxe = match msg.opts().get(OptionCode::UserClass) {
        // RFC 3004 user class is length-prefixed instances; iPXE sends one: "\x04iPXE".
        // Some clients send it raw; accept both.
        Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    user_class_ipxe || msg.opts().get(OptionCode::from(175u8)).is_some()
}

pub fn classify(msg: &Message) -> ClientKind {
    let vc = vendor_class(msg).unwrap_or(&[]);
    let a = arch(msg).unwrap_or(0);
    if is_ipxe(msg) {
        ClientKind::Ipxe { arch: a }
    } else if vc.starts_with(b"HTTPClient") {
        ClientKind::Http { arch: a }
    } else if vc.starts_with(b"PXEClient") {
        ClientKind::Pxe { arch: a }
    } else {
        ClientKind::NotBoot
    }
}

/// First-stage file names per architecture, relative to the TFTP root (and to
/// `/boot/` over HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub bios: String,
    pub efi_x64: String,
    pub efi_arm64: String,
}

impl Default for BootFiles {
    fn default() -> Self {
        BootFiles { bios: "undionly.kpxe".into(), efi_x64: "ipxe.efi".into(), efi_arm64: "ipxe-arm64.efi".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootAnswer {
    None,
    /// TFTP file name (with `siaddr` = us).
    Tftp(String),
    /// An `http://` URL; the reply must carry vendor class `HTTPClient`.
    Http(String),
}

impl BootAnswer {
    pub fn file(&self) -> Option<&str> {
        match self {
            BootAnswer::None => None,
            BootAnswer::Tftp(f) | BootAnswer::Http(f) => Some(f),
        }
    }
}

/// `server` is the HTTP base URL machines use (`server.advertise`). `shim`: UEFI x86-64
/// gets shim (then GRUB, `bootplane_core::grub`) instead of iPXE, for Secure Boot; over
/// PXE only. Shim and GRUB do load over UEFI HTTP boot, but Debian's signed GRUB has no
/// `http` and then cannot read its config (it stops at its prompt: e2e trial, see
/// docs/secure-boot.md), so an HTTP boot client of the shim chain gets no boot file and
/// the firmware moves on to its PXE boot option, which takes the chain.
pub fn boot_answer(kind: ClientKind, files: &BootFiles, server: &str, shim: Option<&str>) -> BootAnswer {
    if shim.is_some() && matches!(kind, ClientKind::Http { arch: 16 }) {
        return BootAnswer::None;
    }
    let shim_file = shim.unwrap_or_default().to_string();
    let by_arch = |a: u16| match a {
        7 | 9 | 16 if shim.is_some() => &shim_file,
        7 | 9 | 16 => &files.efi_x64,
        11 | 19 => &files.efi_arm64,
        // BIOS, and PXE clients we do not know: they still get a loader, so they can
        // reach the quarantine script.
        _ => &files.bios,
    };
    match kind {
        ClientKind::NotBoot => BootAnswer::None,
        ClientKind::Ipxe { .. } => BootAnswer::Http(format!("{server}/boot.ipxe")),
        ClientKind::Http { arch } => BootAnswer::Http(format!("{server}/boot/{}", by_arch(arch))),
        ClientKind::Pxe { arch } => BootAnswer::Tftp(by_arch(arch).clone()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dhcproto::v4::{self, Architecture, UnknownOption};

    pub fn discover(mac: [u8; 6], vendor: Option<&str>, arch: Option<u16>, user_class: Option<&[u8]>) -> Message {
        let mut m = Message::new(
            std::net::Ipv4Addr::UNSPECIFIED,
            std::net::Ipv4Addr::UNSPECIFIED,
            std::net::Ipv4Addr::UNSPECIFIED,
            std::net::Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(v4::MessageType::Discover));
        if let Some(v) = vendor {
            m.opts_mut().insert(DhcpOption::ClassIdentifier(v.as_bytes().to_vec()));
        }
        if let Some(a) = arch {
            m.opts_mut().insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
        }
        if let Some(u) = user_class {
            m.opts_mut().insert(DhcpOption::UserClass(u.to_vec()));
        }
        m
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

    #[test]
    fn option_93_matrix() {
        let f = BootFiles::default();
        let s = "http://198.18.0.1:8080";
        let cases: Vec<(Message, BootAnswer)> = vec![
            (discover(MAC, Some("PXEClient:Arch:00000:UNDI:002001"), Some(0), None), BootAnswer::Tftp("undionly.kpxe".into())),
            (discover(MAC, Some("PXEClient:Arch:00007:UNDI:003016"), Some(7), None), BootAnswer::Tftp("ipxe.efi".into())),
            (discover(MAC, Some("PXEClient:Arch:00009:UNDI:003016"), Some(9), None), BootAnswer::Tftp("ipxe.efi".into())),
            (discover(MAC, Some("PXEClient:Arch:00011:UNDI:003016"), Some(11), None), BootAnswer::Tftp("ipxe-arm64.efi".into())),
            (discover(MAC, Some("HTTPClient:Arch:00016:UNDI:003001"), Some(16), None), BootAnswer::Http(format!("{s}/boot/ipxe.efi"))),
            (discover(MAC, Some("PXEClient:Arch:00000:UNDI:002001"), Some(0), Some(b"\x04iPXE")), BootAnswer::Http(format!("{s}/boot.ipxe"))),
            (discover(MAC, Some("PXEClient:Arch:00042:UNDI:002001"), Some(42), None), BootAnswer::Tftp("undionly.kpxe".into())),
            (discover(MAC, Some("PXEClient"), None, None), BootAnswer::Tftp("undionly.kpxe".into())),
            (discover(MAC, Some("MSFT 5.0"), None, None), BootAnswer::None),
            (discover(MAC, None, None, None), BootAnswer::None),
        ];
        for (msg, want) in cases {
            assert_eq!(boot_answer(classify(&msg), &f, s, None), want, "{msg:?}");
        }
        // iPXE's own option 175 marks it even without the user class.
        let mut m = discover(MAC, Some("PXEClient:Arch:00007"), Some(7), None);
        m.opts_mut().insert(DhcpOption::Unknown(UnknownOption::new(OptionCode::from(175u8), vec![0xb1, 1, 1])));
        assert_eq!(classify(&m), ClientKind::Ipxe { arch: 7 });
    }

    #[test]
    fn shim_replaces_ipxe_for_uefi_x64_only() {
        let f = BootFiles::default();
        let s = "http://198.18.0.1:8080";
        let cases: Vec<(Message, BootAnswer)> = vec![
            (discover(MAC, Some("PXEClient:Arch:00007:UNDI:003016"), Some(7), None), BootAnswer::Tftp("shimx64.efi".into())),
            (discover(MAC, Some("PXEClient:Arch:00009:UNDI:003016"), Some(9), None), BootAnswer::Tftp("shimx64.efi".into())),
            // GRUB would stop at its prompt after HTTP boot: the PXE option takes the chain.
            (discover(MAC, Some("HTTPClient:Arch:00016:UNDI:003001"), Some(16), None), BootAnswer::None),
            // BIOS has no Secure Boot; Debian ships no arm64 shim here; iPXE already runs.
            (discover(MAC, Some("PXEClient:Arch:00000:UNDI:002001"), Some(0), None), BootAnswer::Tftp("undionly.kpxe".into())),
            (discover(MAC, Some("PXEClient:Arch:00011:UNDI:003016"), Some(11), None), BootAnswer::Tftp("ipxe-arm64.efi".into())),
            (discover(MAC, Some("PXEClient:Arch:00007:UNDI:003016"), Some(7), Some(b"\x04iPXE")), BootAnswer::Http(format!("{s}/boot.ipxe"))),
        ];
        for (msg, want) in cases {
            assert_eq!(boot_answer(classify(&msg), &f, s, Some("shimx64.efi")), want, "{msg:?}");
        }
    }
}
