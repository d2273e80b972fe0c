//! DHCPv4 for the network-boot chain. [`classify`] reads what kind of boot client sent a
//! packet (option 93 architecture, option 60 vendor class, option 77 user class or
//! option 175 for iPXE) and picks its first-stage file; [`pool`] allocates addresses
//! from the range with reservations, conflict-free; [`policy`] turns a request into the
//! reply for `full` or `proxy` mode. All three are pure and tested with packets built by
//! `dhcproto`. [`server`] owns the sockets: bound to one interface (SO_BINDTODEVICE),
//! never to every interface, with lease persistence and events behind a trait.

pub mod classify;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod server;

pub use classify::{BootAnswer, BootFiles, ClientKind};
pub use policy::{Mode, Settings};
pub use pool::LeasePool;
