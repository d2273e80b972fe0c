//! A read-only TFTP server for the first link of the boot chain: iPXE binaries and
//! generated `pxelinux.cfg/` files. Written by hand rather than with `async-tftp`
//! because bootplane needs three things that crate does not give together: RFC 7440
//! windowed transfers with retransmission backoff, a hook for generated files decided
//! by the same logic as `/v1/boot/ipxe`, and an event per request (served or refused).
//!
//! The wire format ([`packet`]), option negotiation ([`options`]) and path policy
//! ([`path`]) are pure and unit-tested; [`server`] owns the sockets. Every transfer gets
//! its own socket (its own TID, RFC 1350 §4) bound to the address the request came to,
//! so replies leave from the address the client talked to.

pub mod options;
pub mod packet;
pub mod path;
pub mod server;

pub use server::{FileSource, Observer, TftpConfig, TftpServer, TransferEvent};
