//! bootplane's domain: the objects of the spec (machines, bundles, clusters), the machine
//! state machine, identity matching, and the boot decision with the iPXE scripts it
//! renders. Everything here is pure: no sockets, no files, no clock except where a caller
//! passes one in. The HTTP server, the TFTP `pxelinux.cfg` lookup and `bootplane render`
//! all call [`decision::decide`]; none of them re-implements it.

pub mod attempt;
pub mod boot_query;
pub mod chain;
pub mod credential;
pub mod config;
pub mod decision;
pub mod grub;
pub mod identity;
pub mod ignition;
pub mod ipxe;
pub mod k3s;
pub mod media;
pub mod k3s_flags;
pub mod model;
pub mod network;
pub mod node;
pub mod os;
pub mod power;
pub mod pxelinux;
pub mod sealed;
pub mod state;
pub mod yaml11;

pub use decision::{decide, BootDecision, DecisionContext};
pub use identity::{resolve_identity, IdentityMatch, Mac, Observed, SmbiosUuid};
pub use model::{Artifact, Bundle, Cluster, MachineRecord, MachineSpec, OsKind, Role};
pub use state::{MachineState, TransitionError};
