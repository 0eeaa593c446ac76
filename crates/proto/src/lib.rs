//! Generated code for drover's gRPC APIs: `ctl` (commands → controller), `node` (node daemon ↔
//! controller) and `raft` (replica ↔ replica). The schemas live in `proto/drover/v1/`.
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("drover.v1");
}
pub use v1::*;
