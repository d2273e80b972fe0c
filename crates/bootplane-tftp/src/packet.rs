//! TFTP packets (RFC 1350, with RFC 2347 option lists and OACK). Parsing never panics:
//! anything malformed is a [`PacketError`], which the server answers with an ERROR
//! packet or ignores.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Rrq { filename: String, mode: String, options: Vec<(String, String)> },
    Wrq { filename: String },
    Data { block: u16, data: Vec<u8> },
    Ack { block: u16 },
    Error { code: u16, message: String },
    Oack { options: Vec<(String, String)> },
}

/// RFC 1350 / 2347 error codes.
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("packet shorter than 4 bytes")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("string field is not NUL-terminated")]
    Unterminated,
    #[error("string field is not valid UTF-8")]
    NotUtf8,
    #[error("option `{0}` has no value")]
    OptionWithoutValue(String),
}

fn strings(mut b: &[u8]) -> Result<Vec<String>, PacketError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b.iter().position(|&c| c == 0).ok_or(PacketError::Unterminated)?;
        out.push(std::str::from_utf8(&b[..end]).map_err(|_| PacketError::NotUtf8)?.to_string());
        b = &b[end + 1..];
    }
    Ok(out)
}

fn option_pairs(rest: &[String]) -> Result<Vec<(String, String)>, PacketError> {
    rest.chunks(2)
        .map(|c| match c {
            [k, v] => Ok((k.to_ascii_lowercase(), v.clone())),
            [k] => Err(PacketError::OptionWithoutValue(k.clone())),
            _ => unreachable!("chunks(2)"),
        })
        .collect()
}

impl Packet {
    pub fn parse(b: &[u8]) -> Result<Packet, PacketError> {
        if b.len() < 4 {
            // A 2-byte ACK cannot exist; a bare opcode is short.
            return Err(PacketError::Short);
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let body = &b[2..];
        match op {
            1 | 2 => {
                let s = strings(body)?;
                if s.len() < 2 {
                    return Err(PacketError::Unterminated);
                }
                if op == 2 {
                    return Ok(Packet::Wrq { filename: s[0].clone() });
                }
                Ok(Packet::Rrq { filename: s[0].clone(), mode: s[1].to_ascii_lowercase(), options: option_pairs(&s[2..])? })
            }
            3 => Ok(Packet::Data { block: u16::from_be_bytes([body[0], body[1]]), data: body[2..].to_vec() }),
            4 => Ok(Packet::Ack { block: u16::from_be_bytes([body[0], body[1]]) }),
            5 => {
                let code = u16::from_be_bytes([body[0], body[1]]);
                let message = strings(&body[2..]).ok().and_then(|v| v.into_iter().next()).unwrap_or_default();
                Ok(Packet::Error { code, message })
            }
            6 => Ok(Packet::Oack { options: option_pairs(&strings(body)?)? }),
            other => Err(PacketError::Opcode(other)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let put_str = |v: &mut Vec<u8>, s: &str| {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        };
        match self {
            Packet::Rrq { filename, mode, options } => {
                v.extend_from_slice(&1u16.to_be_bytes());
                put_str(&mut v, filename);
                put_str(&mut v, mode);
                for (k, val) in options {
                    put_str(&mut v, k);
                    put_str(&mut v, val);
                }
            }
            Packet::Wrq { filename } => {
                v.extend_from_slice(&2u16.to_be_bytes());
                put_str(&mut v, filename);
                put_str(&mut v, "octet");
            }
            Packet::Data { block, data } => {
                v.extend_from_slice(&3u16.to_be_bytes());
                v.extend_from_slice(&block.to_be_bytes());
                v.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                v.extend_from_slice(&4u16.to_be_bytes());
                v.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                v.extend_from_slice(&5u16.to_be_bytes());
                v.extend_from_slice(&code.to_be_bytes());
                put_str(&mut v, message);
            }
            Packet::Oack { options } => {
                v.extend_from_slice(&6u16.to_be_bytes());
                for (k, val) in options {
                    put_str(&mut v, k);
                    put_str(&mut v, val);
                }
            }
        }
        v
    }
}

/// A DATA packet written straight into `buf` (no intermediate Vec on the hot path).
pub fn encode_data(buf: &mut Vec<u8>, block: u16, data: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&3u16.to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let pkts = [
            Packet::Rrq {
                filename: "ipxe.efi".into(),
                mode: "octet".into(),
                options: vec![("blksize".into(), "1468".into()), ("tsize".into(), "0".into())],
            },
            Packet::Data { block: 7, data: vec![1, 2, 3] },
            Packet::Ack { block: 65535 },
            Packet::Error { code: 1, message: "File not found".into() },
            Packet::Oack { options: vec![("windowsize".into(), "8".into())] },
        ];
        for p in pkts {
            assert_eq!(Packet::parse(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn options_are_case_insensitive() {
        let mut raw = vec![0, 1];
        raw.extend_from_slice(b"f\0OCTET\0BlkSize\x001024\0");
        match Packet::parse(&raw).unwrap() {
            Packet::Rrq { mode, options, .. } => {
                assert_eq!(mode, "octet");
                assert_eq!(options, vec![("blksize".to_string(), "1024".to_string())]);
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(Packet::parse(&[0, 1]), Err(PacketError::Short));
        assert_eq!(Packet::parse(&[0, 9, 0, 0]), Err(PacketError::Opcode(9)));
        assert_eq!(Packet::parse(b"\0\x01abc"), Err(PacketError::Unterminated));
        assert_eq!(Packet::parse(b"\0\x01a\0octet\0blksize\0"), Err(PacketError::OptionWithoutValue("blksize".into())));
        assert_eq!(Packet::parse(b"\0\x01\xff\xfe\0octet\0"), Err(PacketError::NotUtf8));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200_000 {
            let len = rng.gen_range(0..64);
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if b.len() >= 2 && rng.gen_bool(0.8) {
                b[0] = 0;
                b[1] = rng.gen_range(0..8);
            }
            let _ = Packet::parse(&b);
        }
    }
}
