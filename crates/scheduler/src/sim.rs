//! Trace replay: a Standard Workload Format trace through the real `ClusterState::apply` and
//! the real planner, in simulated time (pure: the trace is text, time is the trace's).
//!
//! ```text
//!  events (submits from the trace, ends at start + recorded run time), in time order
//!    └─ at each event time t: apply ends, apply submits, plan(state, t) → apply Allocate
//! ```
//! A job of P processors asks for ceil(P / cpus_per_node) nodes and P tasks (one CPU each);
//! its time limit is the requested time (or the run time when that is larger or unknown); it
//! runs for its recorded run time. Policies: `drover` is the planner as configured by default
//! (multifactor priority with per-user fairshare, conservative backfill); `easy` is the same
//! planner with FCFS order and one reservation per partition (textbook EASY); `fcfs` is FCFS
//! order without backfill.

use crate::command::{Command, Proposal, Reply, Request};
use crate::plan::{plan, SchedConfig};
use crate::priority::PriorityWeights;
use crate::state::ClusterState;
use crate::types::{JobId, JobSpec, JobState, NodeRegistration, Partition};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// One SWF record (the fields the simulator uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwfJob {
    pub id: u64,
    pub submit_s: u64,
    pub run_s: u64,
    pub procs: u32,
    pub requested_s: Option<u64>,
    pub user: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swf {
    pub jobs: Vec<SwfJob>,
    pub max_nodes: Option<u32>,
    pub max_procs: Option<u32>,
    /// Records left out (no processors or no run time).
    pub skipped: usize,
}

/// Parses SWF text: `;` header lines, then 18 numbers per job (-1 = unknown).
pub fn parse_swf(text: &str) -> Result<Swf, String> {
    let mut swf = Swf::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix(';') {
            if let Some((k, v)) = header.split_once(':') {
                let v = v.trim().parse().ok();
                match k.trim() {
                    "MaxNodes" => swf.max_nodes = v,
                    "MaxProcs" => swf.max_procs = v,
                    _ => {}
                }
            }
            continue;
        }
        let f: Vec<i64> = line
            .split_whitespace()
            .map(|w| w.parse::<f64>().map(|x| x as i64))
            .collect::<Result<_, _>>()
            .map_err(|_| format!("line {}: not a number in `{line}`", n + 1))?;
        if f.len() < 18 {
            return Err(format!(
                "line {}: {} fields, SWF has 18: `{line}`",
                n + 1,
                f.len()
            ));
        }
        let procs = if f[4] > 0 { f[4] } else { f[7] };
        if procs <= 0 || f[3] < 0 || f[1] < 0 {
            swf.skipped += 1;
            continue;
        }
        swf.jobs.push(SwfJob {
            id: f[0] as u64,
            submit_s: f[1] as u64,
            run_s: f[3] as u64,
            procs: procs as u32,
            requested_s: (f[8] > 0).then_some(f[8] as u64),
            user: f[11],
        });
    }
    swf.jobs.sort_by_key(|j| (j.submit_s, j.id));
    Ok(swf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    Fcfs,
    Easy,
    Drover,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fcfs => "fcfs",
            Policy::Easy => "easy",
            Policy::Drover => "drover",
        }
    }

    pub fn config(self) -> SchedConfig {
        let fcfs_order = PriorityWeights {
            age: 0,
            fairshare: 0,
            job_size: 0,
            partition: 0,
            qos: 0,
            ..PriorityWeights::default()
        };
        match self {
            Policy::Fcfs => SchedConfig {
                backfill: false,
                weights: fcfs_order,
                ..SchedConfig::default()
            },
            Policy::Easy => SchedConfig {
                bf_job_part_count_reserve: 1,
                weights: fcfs_order,
                ..SchedConfig::default()
            },
            Policy::Drover => SchedConfig::default(),
        }
    }
}

/// Bounded slowdown's threshold τ (seconds).
pub const TAU_S: f64 = 10.0;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub policy: String,
    pub jobs: usize,
    pub skipped: usize,
    pub utilization: f64,
    pub mean_wait_s: f64,
    pub p95_wait_s: f64,
    pub max_wait_s: u64,
    pub mean_bounded_slowdown: f64,
    pub makespan_s: u64,
    pub passes: u64,
    /// (time s, busy CPUs, queued jobs) after each event time, for plots.
    #[serde(skip)]
    pub samples: Vec<(u64, u64, u64)>,
}

/// Replays `swf` on `nodes` × `cpus_per_node` under `policy`.
pub fn simulate(swf: &Swf, nodes: u32, cpus_per_node: u32, policy: Policy) -> SimReport {
    let cfg = policy.config();
    let total = u64::from(nodes) * u64::from(cpus_per_node);
    let mut state = ClusterState::new();
    let mut setup = vec![Command::DefinePartitions(vec![Partition::default_debug()])];
    for i in 0..nodes {
        setup.push(Command::RegisterNode(NodeRegistration {
            name: format!("n{i:04}"),
            cpus: cpus_per_node,
            real_memory_mb: 1 << 20,
            ..Default::default()
        }));
    }
    apply(&mut state, 0, setup);

    let jobs: Vec<&SwfJob> = swf
        .jobs
        .iter()
        .filter(|j| u64::from(j.procs) <= total)
        .collect();
    let skipped = swf.skipped + swf.jobs.len() - jobs.len();
    let first_submit = jobs.first().map_or(0, |j| j.submit_s);
    // Simulated time starts at 1 s, so that no event lands on the setup's instant.
    let t0 = 1;
    let mut next = 0usize;
    let mut ends: BinaryHeap<Reverse<(u64, JobId)>> = BinaryHeap::new();
    let mut trace_of: BTreeMap<JobId, usize> = BTreeMap::new();
    let mut started_at: Vec<Option<u64>> = vec![None; jobs.len()];
    let mut busy = 0u64;
    let mut report = SimReport {
        policy: policy.name().to_string(),
        jobs: jobs.len(),
        skipped,
        ..SimReport::default()
    };
    loop {
        let submit_t = jobs.get(next).map(|j| j.submit_s - first_submit + t0);
        let end_t = ends.peek().map(|Reverse((t, _))| *t);
        let t = match (submit_t, end_t) {
            (None, None) => break,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (Some(a), Some(b)) => a.min(b),
        };
        let mut commands = Vec::new();
        while let Some(Reverse((te, id))) = ends.peek().copied() {
            if te != t {
                break;
            }
            ends.pop();
            let node = state
                .jobs
                .get(&id)
                .and_then(|j| j.batch_host())
                .unwrap_or_default()
                .to_string();
            busy -= u64::from(jobs[trace_of[&id]].procs);
            commands.push(Command::JobFinished {
                job_id: id,
                node,
                exit_code: 0,
                signal: 0,
            });
        }
        let mut submitted = Vec::new();
        while let Some(j) = jobs.get(next) {
            if j.submit_s - first_submit + t0 != t {
                break;
            }
            let nodes_needed = j.procs.div_ceil(cpus_per_node);
            let limit_s = j.requested_s.unwrap_or(0).max(j.run_s).max(1);
            commands.push(Command::Submit(JobSpec {
                name: format!("swf{}", j.id),
                nodes_min: nodes_needed,
                ntasks: j.procs,
                ntasks_set: true,
                cpus_per_task: 1,
                time_limit_min: Some(limit_s.div_ceil(60)),
                user: format!("u{}", j.user),
                ..Default::default()
            }));
            submitted.push(next);
            next += 1;
        }
        let replies = apply(&mut state, t * 1000, commands);
        let mut k = 0;
        for reply in replies {
            if let Reply::Submitted { job_id } = reply {
                trace_of.insert(job_id, submitted[k]);
                k += 1;
            }
        }
        // One scheduling pass per event time.
        let p = plan(&state, t * 1000, &cfg);
        report.passes += 1;
        let starting: Vec<JobId> = p.allocations.iter().map(|a| a.job_id).collect();
        apply(&mut state, t * 1000, vec![Command::Allocate(p)]);
        for id in starting {
            if state
                .jobs
                .get(&id)
                .is_some_and(|j| j.state == JobState::Running)
            {
                let idx = trace_of[&id];
                started_at[idx] = Some(t);
                busy += u64::from(jobs[idx].procs);
                ends.push(Reverse((t + jobs[idx].run_s.max(1), id)));
            }
        }
        let queued = state.queued().count() as u64;
        report.samples.push((t - t0, busy, queued));
        if let Some(last) = report.samples.len().checked_sub(2) {
            // Keep one sample per minute at most.
            if report.samples[last].0 / 60 == (t - t0) / 60 {
                report.samples.remove(last);
            }
        }
    }

    let mut waits: Vec<u64> = Vec::with_capacity(jobs.len());
    let mut bsld = 0.0;
    let mut work = 0.0;
    let mut last_end = 0;
    for (i, j) in jobs.iter().enumerate() {
        let submit = j.submit_s - first_submit + t0;
        let start = started_at[i].unwrap_or(submit);
        let wait = start - submit;
        let run = j.run_s.max(1);
        waits.push(wait);
        bsld += ((wait + run) as f64 / (run as f64).max(TAU_S)).max(1.0);
        work += f64::from(j.procs) * run as f64;
        last_end = last_end.max(start + run);
    }
    let n = jobs.len().max(1) as f64;
    let makespan = last_end.saturating_sub(t0);
    report.makespan_s = makespan;
    report.utilization = work / (total as f64 * makespan.max(1) as f64);
    report.mean_wait_s = waits.iter().sum::<u64>() as f64 / n;
    report.max_wait_s = waits.iter().copied().max().unwrap_or(0);
    waits.sort_unstable();
    report.p95_wait_s = waits
        .get(((waits.len() as f64) * 0.95) as usize)
        .or(waits.last())
        .copied()
        .unwrap_or(0) as f64;
    report.mean_bounded_slowdown = bsld / n;
    report
}

fn apply(state: &mut ClusterState, at: u64, commands: Vec<Command>) -> Vec<Reply> {
    state.apply(&Proposal {
        at,
        requests: commands
            .into_iter()
            .map(|command| Request {
                request_id: String::new(),
                command,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "; MaxNodes: 2\n; MaxProcs: 8\n\
        1 0 -1 100 4 -1 -1 4 100 -1 1 1 1 1 1 -1 -1 -1\n\
        2 10 -1 100 8 -1 -1 8 200 -1 1 2 1 1 1 -1 -1 -1\n\
        3 20 -1 50 4 -1 -1 4 60 -1 1 3 1 1 1 -1 -1 -1\n";

    #[test]
    fn easy_backfills_what_fcfs_holds_back() {
        let swf = parse_swf(TRACE).unwrap();
        assert_eq!(swf.max_nodes, Some(2));
        assert_eq!(swf.jobs.len(), 3);
        let fcfs = simulate(&swf, 2, 4, Policy::Fcfs);
        let easy = simulate(&swf, 2, 4, Policy::Easy);
        let drover = simulate(&swf, 2, 4, Policy::Drover);
        // FCFS: job 3 waits behind job 2 (starts at 100 + 100 = 200 - 20).
        assert_eq!(fcfs.max_wait_s, 180);
        // Job 3 (60 s limit) fits before job 2's reservation at 100 only from 20 to 80: yes.
        assert_eq!(easy.max_wait_s, 90);
        assert_eq!(drover.max_wait_s, 90);
        assert!(easy.mean_bounded_slowdown < fcfs.mean_bounded_slowdown);
    }
}
