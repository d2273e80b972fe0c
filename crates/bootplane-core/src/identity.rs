//! Machine identity: parsing and normalising the signals a booting machine sends (MAC,
//! SMBIOS UUID, serial) and the one function that decides which known machine, if any,
//! they designate. Firmware sends placeholder values (all-zero UUIDs, "To be filled by
//! O.E.M." serials); those are treated as absent so they can neither match nor conflict.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A MAC address, stored normalised as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("`{0}` is not a MAC address: expected six hex octets such as 52:54:00:12:34:56, 52-54-00-12-34-56 or 525400123456")]
    BadMac(String),
    #[error("`{0}` is not an SMBIOS UUID: expected 32 hex digits such as 11111111-2222-3333-4444-555555555555")]
    BadUuid(String),
}

impl FromStr for Mac {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect();
        // Separators must sit on octet (or Cisco 16-bit group) boundaries; just checking
        // the digit count would accept `a:abbccddeeff`.
        let t = s.trim();
        let seps_ok = if t.contains(':') || t.contains('-') {
            t.split([':', '-']).all(|p| p.len() == 2)
        } else if t.contains('.') {
            t.split('.').all(|p| p.len() == 4)
        } else {
            true
        };
        if digits.len() != 12 || !seps_ok || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdentityError::BadMac(s.to_string()));
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16)
                .map_err(|_| IdentityError::BadMac(s.to_string()))?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An SMBIOS system UUID, normalised to lowercase hyphenated form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmbiosUuid(String);

impl SmbiosUuid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// All-zero and all-F UUIDs are what firmware reports when it has none.
    pub fn is_placeholder(&self) -> bool {
        self.0.chars().filter(|c| *c != '-').all(|c| c == '0')
            || self.0.chars().filter(|c| *c != '-').all(|c| c == 'f')
    }
}
impl FromStr for SmbiosUuid {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches('{').trim_end_matches('}');
        let hex: String = t.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdentityError::BadUuid(s.to_string()));
        }
        let h = hex.to_ascii_lowercase();
        Ok(SmbiosUuid(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )))
    }
}
impl fmt::Display for SmbiosUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for SmbiosUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Serialize for SmbiosUuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for SmbiosUuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serials that vendors ship unset; they identify nothing.
pub fn is_placeholder_serial(s: &str) -> bool {
    let t = s.trim().to_ascii_lowercase();
    t.is_empty()
        || matches!(
            t.as_str(),
            "0" | "none"
                | "n/a"
                | "na"
                | "default string"
                | "to be filled by o.e.m."
                | "system serial number"
                | "not specified"
                | "123456789"
                | "0123456789"
        )
}

/// What a booting machine told us about itself. Absent or placeholder signals are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<SmbiosUuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl Observed {
    /// Builds an observation from raw strings, dropping placeholders. Malformed MAC or
    /// UUID values are errors: the caller answers them, it does not guess.
    pub fn from_raw(
        mac: Option<&str>,
        uuid: Option<&str>,
        serial: Option<&str>,
        arch: Option<&str>,
        platform: Option<&str>,
    ) -> Result<Observed, IdentityError> {
        let mac = match mac.map(str::trim).filter(|s| !s.is_empty()) {
            Some(m) => Some(m.parse::<Mac>()?),
            None => None,
        };
        let uuid = match uuid.map(str::trim).filter(|s| !s.is_empty()) {
            Some(u) => Some(u.parse::<SmbiosUuid>()?).filter(|u| !u.is_placeholder()),
            None => None,
        };
        let clean = |v: Option<&str>| {
            v.map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control))
        };
        Ok(Observed {
            mac,
            uuid,
            serial: clean(serial).filter(|s| !is_placeholder_serial(s)),
            arch: clean(arch).map(|a| normalize_arch(&a)),
            platform: clean(platform),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.mac.is_none() && self.uuid.is_none() && self.serial.is_none()
    }
}

/// Maps iPXE's `${buildarch}` and DHCP-ish spellings to the names bundles use.
pub fn normalize_arch(a: &str) -> String {
    match a.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x64" => "x86_64".into(),
        "arm64" | "aarch64" => "aarch64".into(),
        "i386" | "i686" | "x86" => "i386".into(),
        other => other.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(32).collect(),
    }
}

/// The identity fields of a known machine, as the matcher needs them.
#[derive(Clone, Debug)]
pub struct KnownIdentity<'a> {
    pub name: &'a str,
    pub uuid: Option<&'a SmbiosUuid>,
    pub serial: Option<&'a str>,
    pub macs: &'a [Mac],
}

/// The outcome of matching an observation against the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMatch {
    /// Exactly one machine, and no signal disagrees with it.
    Known(String),
    /// Nothing matched: a machine we have never been told about.
    Unknown,
    /// Signals point at different machines, or contradict the one they point at.
    Conflict(String),
}

/// The one identity decision: UUID first, then any registered MAC, cross-checked with
/// the serial when both sides know one. `by_uuid` and `by_mac` are the machines the
/// store found for the observed UUID and MAC.
pub fn resolve_identity(
    obs: &Observed,
    by_uuid: Option<KnownIdentity<'_>>,
    by_mac: Option<KnownIdentity<'_>>,
) -> IdentityMatch {
    let candidate = match (&by_uuid, &by_mac) {
        (Some(u), Some(m)) if u.name != m.name => {
            return IdentityMatch::Conflict(format!(
                "UUID {} belongs to machine {} but MAC {} belongs to machine {}",
                obs.uuid.as_ref().map(|u| u.as_str()).unwrap_or("?"),
                u.name,
                obs.mac.map(|m| m.to_string()).unwrap_or_default(),
                m.name
            ))
        }
        (Some(u), _) => u,
        (None, Some(m)) => m,
        (None, None) => return IdentityMatch::Unknown,
    };
    if let (Some(seen), Some(registered)) = (&obs.uuid, candidate.uuid) {
        if seen != registered {
            return IdentityMatch::Conflict(format!(
                "MAC {} belongs to machine {} whose UUID is {}, but the client reported UUID {}",
                obs.mac.map(|m| m.to_string()).unwrap_or_default(),
                candidate.name,
                registered,
                seen
            ));
        }
    }
    if let (Some(seen), Some(registered)) = (&obs.serial, candidate.serial) {
        if !seen.eq_ignore_ascii_case(registered.trim()) {
            return IdentityMatch::Conflict(format!(
                "machine {} has serial {registered}, but the client reported serial {seen}",
                candidate.name
            ));
        }
    }
    IdentityMatch::Known(candidate.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms_normalise() {
        let want = "52:54:00:ab:cd:ef";
        for s in ["52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "525400abcdef", "5254.00ab.cdef"] {
            assert_eq!(s.parse::<Mac>().unwrap().to_string(), want, "{s}");
        }
        for bad in ["", "52:54:00:ab:cd", "zz:54:00:ab:cd:ef", "5:254:00:ab:cd:ef", "52:54:00:ab:cd:ef:01"] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_placeholders_are_absent() {
        let o = Observed::from_raw(None, Some("00000000-0000-0000-0000-000000000000"), Some("To Be Filled By O.E.M."), None, None).unwrap();
        assert!(o.uuid.is_none() && o.serial.is_none());
        let o = Observed::from_raw(None, Some("{11111111-2222-3333-4444-55555555555A}"), None, Some("arm64"), None).unwrap();
        assert_eq!(o.uuid.unwrap().as_str(), "11111111-2222-3333-4444-55555555555a");
        assert_eq!(o.arch.as_deref(), Some("aarch64"));
        assert!(Observed::from_raw(None, Some("not-a-uuid"), None, None, None).is_err());
    }

    fn obs(mac: &str, uuid: Option<&str>, serial: Option<&str>) -> Observed {
        Observed::from_raw(Some(mac), uuid, serial, None, None).unwrap()
    }

    #[test]
    fn matching_rules() {
        let u1: SmbiosUuid = "11111111-2222-3333-4444-555555555555".parse().unwrap();
        let m1 = ["52:54:00:00:00:01".parse().unwrap()];
        let m2 = ["52:54:00:00:00:02".parse().unwrap()];
        let a = KnownIdentity { name: "a", uuid: Some(&u1), serial: Some("S1"), macs: &m1 };
        let b = KnownIdentity { name: "b", uuid: None, serial: None, macs: &m2 };

        let o = obs("52:54:00:00:00:01", Some(u1.as_str()), Some("s1"));
        assert_eq!(resolve_identity(&o, Some(a.clone()), Some(a.clone())), IdentityMatch::Known("a".into()));
        // UUID of a, MAC of b.
        let o = obs("52:54:00:00:00:02", Some(u1.as_str()), None);
        assert!(matches!(resolve_identity(&o, Some(a.clone()), Some(b.clone())), IdentityMatch::Conflict(_)));
        // MAC of a, but a different UUID than a's.
        let o = obs("52:54:00:00:00:01", Some("99999999-2222-3333-4444-555555555555"), None);
        assert!(matches!(resolve_identity(&o, None, Some(a.clone())), IdentityMatch::Conflict(_)));
        // Serial disagrees.
        let o = obs("52:54:00:00:00:01", None, Some("S2"));
        assert!(matches!(resolve_identity(&o, None, Some(a.clone())), IdentityMatch::Conflict(_)));
        // Serial unknown on one side: fine.
        let o = obs("52:54:00:00:00:02", None, Some("S2"));
        assert_eq!(resolve_identity(&o, None, Some(b)), IdentityMatch::Known("b".into()));
        let o = obs("52:54:00:00:00:09", None, None);
        assert_eq!(resolve_identity(&o, None, None), IdentityMatch::Unknown);
    }
}
