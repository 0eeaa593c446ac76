//! Generated code for drover's gRPC APIs: `ctl` (commands → controller), `node` (node daemon ↔
//! controller) and `raft` (replica ↔ replica). The schemas live in `proto/drover/v1/`.
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("drover.v1");
}
pub use v1::*;

/// Starts the error a replica gives a read whose `min_index` no replica of its cluster can reach
/// (a command's cached index from another cluster); the commands forget the index on seeing it.
pub const FOREIGN_INDEX: &str = "index from another cluster";
