//! drover-consensus: the controllers' shared Raft log — openraft 0.9 on sled, over tonic.
//!
//! The only crate that knows openraft and sled (DESIGN §2, §6). The controller sees [`Replica`]
//! and plain drover types; no openraft type appears in the public API (the `internals` module is
//! for this crate's tests only).
//!
//! ```text
//!  controller ──propose(Vec<Request>)──► Replica ──group commit──► openraft (leader)
//!                                                                     │ append: sled batch + flush
//!                                                                     │ replicate: tonic `Raft` service
//!                                                                     ▼ committed
//!             every replica: StateMachineStore::apply ──► ClusterState::apply(Proposal) ──► replies
//!  controller ◄──(index, replies)── Replica      read(|state| ..) ──► (T, applied index)
//! ```
//!
//! Modules:
//! - [`replica`]: open/restart, group commit, reads, leadership (the public API);
//! - `log_store`: the Raft log on sled (vote, committed, entries; flush before ack);
//! - `sm_store`: the in-memory `ClusterState`, versioned binary snapshots persisted in sled;
//! - `network`: openraft's RPCs as `RaftBlob`s over tonic, one cached channel per peer (or over a
//!   [`RaftTransport`], for the deterministic simulation);
//! - `mem_store`: [`MemDisk`], a simulated disk (log, vote, snapshot) for the simulation;
//! - [`runtime`]: openraft on tokio, with a random source a simulation can seed;
//! - `typ`: openraft's type configuration.

mod codec;
mod log_store;
mod mem_store;
mod network;
pub mod replica;
pub mod runtime;
mod sm_store;
mod typ;

pub use mem_store::MemDisk;
pub use network::{RaftRpcKind, RaftService, RaftTransport, MAX_MESSAGE_BYTES};
pub use replica::{
    Clock, ConsensusError, Leadership, ProposeError, RaftStatus, Replica, ReplicaConfig,
    MAX_BATCH_BYTES, MAX_BATCH_REQUESTS, MAX_IN_FLIGHT, MAX_PROPOSE_BYTES,
};
pub use sm_store::SNAPSHOT_VERSION;

/// A replica's id in the membership.
pub type NodeId = u64;

/// The storage layer with its openraft types, for this crate's storage and crash tests.
/// Not part of the supported API: the controller uses [`Replica`] only.
#[doc(hidden)]
pub mod internals {
    pub use crate::log_store::{open_db, LogStore};
    pub use crate::sm_store::{decode_snapshot, encode_snapshot, SnapshotBody, StateMachineStore};
    pub use crate::typ::*;
}
