//! The pure core of drover: domain types, the replicated state machine and the planner.
//!
//! ```text
//!  Proposal { at, requests } ──► ClusterState::apply ──► Vec<Reply>
//!                                      │
//!  plan(&ClusterState, now, &SchedConfig) ──► Plan (data) ──► proposed as Command::Allocate
//! ```
//!
//! Nothing here does I/O, reads a clock, draws a random number or iterates a hash map
//! (enforced by `clippy.toml`): every replica that applies the same log reaches the same state.

pub mod accounting;
pub mod command;
pub mod depend;
pub mod hostlist;
pub mod invariants;
pub mod plan;
pub mod priority;
pub mod sim;
pub mod state;
pub mod steps;
pub mod time;
pub mod types;
pub mod units;

pub use command::{
    Command, EndCause, JobRef, JobUpdate, NodeStateChange, PartitionUpdate, Plan,
    PlannedAllocation, PlannedStart, Proposal, Rejection, Reply, Request,
};
pub use plan::SchedConfig;
pub use state::ClusterState;
pub use types::*;
