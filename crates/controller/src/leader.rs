//! Leader-only loops: they start when this replica is elected and stop when it loses the lead.
//!
//! ```text
//!  leadership watch ──► elected (term T) ──► spawn: sync partitions, scheduling pass, liveness
//!                  └──► lost / new term ──► cancel them
//! ```
//! Every loop only proposes commands; apply decides (STYLE P4). A loop that outlives its
//! leadership by a moment proposes into a replica that is no longer leader and gets NotLeader.

use crate::liveness::Liveness;
use crate::write::{self, Peers};
use drover_consensus::Replica;
use drover_scheduler::{plan, Command, NodeStateChange, Partition, Qos, Request, SchedConfig};
use std::time::Duration;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

/// A scheduling pass waits this long after a change, so that the writes of one burst that
/// are already on their way become one pass.
const PASS_SETTLE: Duration = Duration::from_millis(1);
/// The gap between passes that a long pass imposes is never more than this.
const PASS_GAP_CAP: Duration = Duration::from_millis(100);

/// How long after a pass's start the next may start: at least the configured
/// `sched_min_interval`, and at least twice the last pass's duration (up to 100 ms), so that
/// a small queue is planned at once (a job submitted to an idle cluster starts within
/// milliseconds) while passes over a large queue take at most about a third of the leader's
/// time.
pub fn pass_gap(configured: Duration, last_pass_took: Duration) -> Duration {
    configured.max((last_pass_took * 2).min(PASS_GAP_CAP))
}

/// A leader loop's proposal that takes longer than this is abandoned (and planned again).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub partitions: Vec<Partition>,
    /// The QOS table from the configuration (`normal` exists without it).
    pub qos: Vec<Qos>,
    /// A node not heard from for this long is marked DOWN (Slurm's SlurmdTimeout).
    pub node_timeout: Duration,
    /// After an election, no node is marked down before this much time has passed.
    pub election_grace: Duration,
    pub sched: SchedConfig,
    /// Accounting records older than this are purged through the log; zero keeps them.
    pub record_retention: Duration,
    /// Slurm's `sched_min_interval`: passes start at least this far apart (see `pass_gap`).
    pub sched_min_interval: Duration,
}

pub async fn supervise(
    replica: Replica,
    peers: Peers,
    liveness: Liveness,
    cfg: LeaderConfig,
    shutdown: CancellationToken,
) {
    let mut leadership = replica.leadership();
    let mut current: Option<(u64, CancellationToken)> = None;
    loop {
        let view = leadership.borrow_and_update().clone();
        let keep = matches!(&current, Some((term, _)) if view.is_leader && *term == view.term);
        if !keep {
            if let Some((term, token)) = current.take() {
                tracing::info!(term, "leadership lost: stopping leader loops");
                token.cancel();
            }
            if view.is_leader {
                tracing::info!(term = view.term, "elected leader: starting leader loops");
                let token = shutdown.child_token();
                tokio::spawn(sync_table(
                    replica.clone(),
                    peers.clone(),
                    "partitions",
                    cfg.partitions.clone(),
                    |s| s.partitions_config.clone(),
                    Command::DefinePartitions,
                    token.clone(),
                ));
                tokio::spawn(sync_table(
                    replica.clone(),
                    peers.clone(),
                    "QOS table",
                    cfg.qos.clone(),
                    |s| s.qos.clone(),
                    Command::DefineQos,
                    token.clone(),
                ));
                tokio::spawn(schedule(
                    replica.clone(),
                    cfg.sched.clone(),
                    cfg.sched_min_interval,
                    token.clone(),
                ));
                tokio::spawn(purge_records(
                    replica.clone(),
                    cfg.record_retention,
                    token.clone(),
                ));
                tokio::spawn(watch_liveness(
                    replica.clone(),
                    liveness.clone(),
                    cfg.clone(),
                    token.clone(),
                ));
                current = Some((view.term, token));
            }
        }
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { break },
            _ = shutdown.cancelled() => break,
        }
    }
    if let Some((_, token)) = current {
        token.cancel();
    }
}

/// A table that comes from the leader's configuration, defined through the log whenever the
/// applied one differs from it: the partition table (compared with the table as the
/// configuration last defined it, so that operators' `scontrol update PartitionName=` changes
/// outlive elections while a changed configuration replaces them) and the QOS table.
async fn sync_table<T: PartialEq + Clone>(
    replica: Replica,
    peers: Peers,
    what: &'static str,
    wanted: T,
    applied: fn(&drover_scheduler::ClusterState) -> T,
    define: fn(T) -> Command,
    token: CancellationToken,
) {
    while !token.is_cancelled() {
        let (current, _) = replica.read(applied);
        if current == wanted {
            return;
        }
        let request = Request {
            request_id: String::new(),
            command: define(wanted.clone()),
        };
        match write::write(&replica, &peers, vec![request]).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("could not define the {what} yet: {}", e.message());
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The scheduling pass: after every change (and at least once a second), plan and propose.
async fn schedule(
    replica: Replica,
    sched: SchedConfig,
    min_interval: Duration,
    token: CancellationToken,
) {
    let mut applied = replica.applied_watch();
    let mut last_pass = Instant::now();
    let mut last_pass_took = Duration::ZERO;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = applied.changed() => {},
            _ = sleep(Duration::from_secs(1)) => {},
        }
        // Let a burst of submits settle into one pass, and keep passes apart: a pass reads the
        // whole queue.
        sleep(PASS_SETTLE).await;
        if let Some(wait) = pass_gap(min_interval, last_pass_took).checked_sub(last_pass.elapsed())
        {
            sleep(wait).await;
        }
        last_pass = Instant::now();
        // The controller is not pure: the pass's `now` is the leader's clock, as in Proposal::at.
        let now = replica.now_ms();
        // Plan from a copy of what the pass reads: the read lock is held for the copy (~18 ms
        // at 10,000 pending), not for the whole pass, so applies are not held up; ended jobs,
        // records and the dedup window are left out (they made the copy cost more than the
        // pass under a high job rate). (The pass runs on this task, not a blocking thread, so
        // that the simulation's paused clock stays exact.)
        // Nothing queued, nothing to plan: reports of jobs ending must not each cost a copy
        // of the state (whose ended jobs the copy still walks).
        let (state, _) = replica.read(|s| s.has_queued().then(|| s.planning_copy()));
        let Some(state) = state else {
            last_pass_took = Duration::ZERO;
            continue;
        };
        let plan = plan::plan(&state, now, &sched);
        drop(state);
        last_pass_took = last_pass.elapsed();
        if plan.is_empty() || token.is_cancelled() {
            continue;
        }
        let count = plan.allocations.len();
        let request = Request {
            request_id: String::new(),
            command: Command::Allocate(plan),
        };
        match write::propose_bounded(&replica, vec![request], Instant::now() + PROPOSE_TIMEOUT)
            .await
        {
            Ok((index, replies)) => {
                tracing::debug!(index, count, ?replies, "scheduling pass applied")
            }
            Err(e) => tracing::debug!("scheduling pass not applied: {e}"),
        }
    }
}

/// Proposes `PurgeRecords` once the oldest accounting record is older than the retention;
/// apply removes the same records on every replica (`accounting::purge_due`).
async fn purge_records(replica: Replica, retention: Duration, token: CancellationToken) {
    if retention.is_zero() {
        return;
    }
    // Often enough that a record outlives the retention by little (a short one in tests).
    let every = (retention / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
    let retention_ms = retention.as_millis() as u64;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = sleep(every) => {},
        }
        let now = replica.now_ms();
        let (due, _) =
            replica.read(|s| drover_scheduler::accounting::purge_due(s, now, retention_ms));
        let Some(ended_before) = due else { continue };
        let request = Request {
            request_id: String::new(),
            command: Command::PurgeRecords { ended_before },
        };
        if let Err(e) =
            write::propose_bounded(&replica, vec![request], Instant::now() + PROPOSE_TIMEOUT).await
        {
            tracing::debug!("record purge not applied: {e}");
        }
    }
}

/// Marks nodes DOWN (not responding) when they stop heartbeating.
async fn watch_liveness(
    replica: Replica,
    liveness: Liveness,
    cfg: LeaderConfig,
    token: CancellationToken,
) {
    let elected_at = Instant::now();
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = sleep(Duration::from_secs(1)) => {},
        }
        let now = Instant::now();
        if now.duration_since(elected_at) < cfg.election_grace {
            continue;
        }
        let (nodes, _) = replica.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.up && !n.not_responding)
                .map(|n| n.name().to_string())
                .collect::<Vec<_>>()
        });
        for node in nodes {
            let last = liveness
                .last_seen(&node)
                .unwrap_or(elected_at)
                .max(elected_at);
            if now.duration_since(last) > cfg.node_timeout {
                tracing::warn!(node, "node not responding: marking it DOWN");
                let command = Command::SetNodeState {
                    node,
                    change: NodeStateChange::NotResponding,
                };
                let request = Request {
                    request_id: String::new(),
                    command,
                };
                let deadline = Instant::now() + PROPOSE_TIMEOUT;
                if let Err(e) = write::propose_bounded(&replica, vec![request], deadline).await {
                    tracing::debug!("liveness change not applied: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_spaced_by_their_duration_and_the_configured_interval() {
        let ms = Duration::from_millis;
        assert_eq!(pass_gap(Duration::ZERO, ms(0)), ms(0));
        assert_eq!(pass_gap(Duration::ZERO, ms(3)), ms(6));
        assert_eq!(pass_gap(Duration::ZERO, ms(90)), ms(100));
        assert_eq!(pass_gap(ms(100), ms(3)), ms(100));
        assert_eq!(pass_gap(ms(250), ms(900)), ms(250));
    }
}
