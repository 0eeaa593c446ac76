//! openraft's type configuration for drover: the log payload is a group-committed
//! [`Proposal`], the response of one entry is the replies of all its requests.
//!
//! Everything openraft-specific is named here, so that an openraft upgrade (0.10 changes these
//! types) stays inside this crate.

use drover_scheduler::{Proposal, Reply};
// `declare_raft_types!` names `Cursor` without a path (stack.md §1.2).
use std::io::Cursor;

openraft::declare_raft_types!(
    /// drover's openraft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Reply>,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = crate::runtime::DroverRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StorageIOError = openraft::StorageIOError<NodeId>;
