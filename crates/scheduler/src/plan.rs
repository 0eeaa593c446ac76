//! The first planner: strict FIFO by priority per partition, first fit on CPUs and memory.
//!
//! It is a pure function of the state (STYLE P1). The leader proposes its output as
//! `Command::Allocate`; apply re-checks every allocation. The backfill planner replaces this
//! behind the same signature.

use crate::command::{Plan, PlannedAllocation};
use crate::state::ClusterState;
use crate::types::{Job, JobId, NodeShare, PartitionState, PendingReason};
use std::collections::{BTreeMap, BTreeSet};

/// Plans one scheduling pass over `state`.
pub fn plan(state: &ClusterState) -> Plan {
    // Free resources as this pass sees them, updated as it places jobs.
    let mut free: BTreeMap<&str, (u32, u64)> = state
        .nodes
        .values()
        .filter(|n| n.schedulable())
        .map(|n| (n.name(), (n.free_cpus(), n.free_mem_mb())))
        .collect();

    // Pending jobs in priority order: (priority desc, submit time, id) — never a random tie.
    let mut queue: Vec<&Job> = state.queued().collect();
    queue.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.submit_at, j.id));

    let mut out = Plan::default();
    let mut blocked_partitions: BTreeSet<&str> = BTreeSet::new();
    let set_reason = |out: &mut Plan, job: &Job, reason: PendingReason| {
        if job.reason != reason {
            out.reasons.push((job.id, reason));
        }
    };

    for job in queue {
        if job.priority == 0 {
            // Held: its reason was set when it was held.
            continue;
        }
        let Some(part) = state.partition(Some(&job.partition)) else {
            set_reason(&mut out, job, PendingReason::PartitionInactive);
            continue;
        };
        match part.state {
            PartitionState::Up => {}
            PartitionState::Down | PartitionState::Drain => {
                set_reason(&mut out, job, PendingReason::PartitionDown);
                continue;
            }
            PartitionState::Inactive => {
                set_reason(&mut out, job, PendingReason::PartitionInactive);
                continue;
            }
        }
        if let (Some(limit), Some(max)) = (job.time_limit_min, part.max_time_min) {
            if limit > max {
                set_reason(&mut out, job, PendingReason::PartitionTimeLimit);
                continue;
            }
        }
        let needed = job.spec.nodes_needed();
        if part.max_nodes.is_some_and(|max| needed > max) {
            set_reason(&mut out, job, PendingReason::PartitionNodeLimit);
            continue;
        }
        if blocked_partitions.contains(part.name.as_str()) {
            // Strict priority order: a higher job in this partition is waiting.
            set_reason(&mut out, job, PendingReason::Priority);
            continue;
        }
        match first_fit(state, job, part, &free) {
            Some(nodes) => {
                for share in &nodes {
                    if let Some(f) = free.get_mut(share.node.as_str()) {
                        f.0 -= share.cpus;
                        f.1 -= share.mem_mb;
                    }
                }
                out.allocations.push(PlannedAllocation {
                    job_id: job.id,
                    nodes,
                });
            }
            None => {
                blocked_partitions.insert(part.name.as_str());
                set_reason(&mut out, job, PendingReason::Resources);
            }
        }
    }
    out
}

fn first_fit(
    state: &ClusterState,
    job: &Job,
    part: &crate::types::Partition,
    free: &BTreeMap<&str, (u32, u64)>,
) -> Option<Vec<NodeShare>> {
    let cpus = job.spec.cpus_per_node();
    let mem_mb = job.spec.mem_per_node();
    let needed = job.spec.nodes_needed() as usize;
    let nodes: Vec<NodeShare> = state
        .partition_nodes(part)
        .filter(|n| {
            free.get(n.name())
                .is_some_and(|&(c, m)| c >= cpus && m >= mem_mb)
        })
        .take(needed)
        .map(|n| NodeShare {
            node: n.name().to_string(),
            cpus,
            mem_mb,
        })
        .collect();
    (nodes.len() == needed).then_some(nodes)
}

/// The jobs a plan would start, for tests and logs.
pub fn started(plan: &Plan) -> Vec<JobId> {
    plan.allocations.iter().map(|a| a.job_id).collect()
}
