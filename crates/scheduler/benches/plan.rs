//! `cargo bench -p drover-scheduler --bench plan`: one full planning pass over a big queue.
//!
//! The target: 10,000 pending jobs on 1,000 nodes with 5,000 running ≤ 50 ms. Also
//! reports how a pass grows with queue length and node count, and 100,000 × 10,000.
//! `cargo bench -p drover-scheduler --bench plan -- quick` runs the target case only.
//!
//! The cluster: nodes of 64 CPUs and 256 GiB (one in eight with 8 GPUs), 5 running jobs per
//! node (12 CPUs each: 4 CPUs free per node), started over the last day with limits of up to a
//! day. The queue: 80% one-node jobs of 1–64 CPUs, 20% of 2–8 nodes, limits from 5 minutes to a
//! day, one in ten asking for GPUs, from 50 users. Drawn from a fixed seed.

#![allow(clippy::disallowed_methods)] // Instant::now: a benchmark measures time; the planner never does.

use drover_scheduler::plan::plan;
use drover_scheduler::*;
use std::time::Instant;

const MIN: u64 = 60_000;

#[path = "../tests/common/lcg.rs"]
mod lcg;
use lcg::Lcg;

fn request(command: Command) -> Request {
    Request {
        request_id: String::new(),
        command,
    }
}

fn cluster(nodes: usize, running_per_node: usize, pending: usize, seed: u64) -> ClusterState {
    let mut rng = Lcg(seed);
    let mut s = ClusterState::new();
    let now = 1440 * MIN;
    let mut setup = vec![request(Command::DefinePartitions(vec![
        Partition::default_debug(),
    ]))];
    for i in 0..nodes {
        setup.push(request(Command::RegisterNode(NodeRegistration {
            name: format!("n{i:05}"),
            cpus: 64,
            real_memory_mb: 256 * 1024,
            gpus: if i % 8 == 0 { 8 } else { 0 },
            ..Default::default()
        })));
    }
    s.apply(&Proposal {
        at: 0,
        requests: setup,
    });
    // Running jobs, started at spread times, each still within its limit at `now`.
    for batch in 0..24u64 {
        let at = batch * 60 * MIN;
        let mut submits = Vec::new();
        let first = s.next_job_id;
        let mut placed = Vec::new();
        for i in 0..nodes {
            for k in 0..running_per_node {
                if (i * running_per_node + k) as u64 % 24 != batch {
                    continue;
                }
                let min_limit = (now - at) / MIN + 5;
                let limit = min_limit + rng.below(1440);
                submits.push(request(Command::Submit(JobSpec {
                    name: "running".into(),
                    nodes_min: 1,
                    ntasks: 1,
                    cpus_per_task: 12,
                    mem_per_node_mb: Some(16 * 1024),
                    time_limit_min: Some(limit),
                    user: format!("u{}", rng.below(50)),
                    ..Default::default()
                })));
                placed.push(format!("n{i:05}"));
            }
        }
        s.apply(&Proposal {
            at,
            requests: submits,
        });
        let allocations = placed
            .into_iter()
            .enumerate()
            .map(|(k, node)| PlannedAllocation {
                job_id: JobId(first + k as u64),
                nodes: vec![NodeShare {
                    node,
                    cpus: 12,
                    mem_mb: 16 * 1024,
                    gpus: vec![],
                }],
            })
            .collect();
        s.apply(&Proposal {
            at,
            requests: vec![request(Command::Allocate(Plan {
                allocations,
                ..Plan::default()
            }))],
        });
    }
    let mut submits = Vec::new();
    for _ in 0..pending {
        let multi = rng.below(5) == 0;
        let gpus = if rng.below(10) == 0 {
            1 + rng.below(8) as u32
        } else {
            0
        };
        submits.push(request(Command::Submit(JobSpec {
            name: "pending".into(),
            nodes_min: if multi { 2 + rng.below(7) as u32 } else { 1 },
            ntasks: 1,
            cpus_per_task: [1, 2, 4, 8, 16, 32, 64][rng.below(7) as usize],
            mem_per_node_mb: Some(1024 * (1 + rng.below(64))),
            time_limit_min: Some(5 + rng.below(1435)),
            gpus_per_node: gpus,
            user: format!("u{}", rng.below(50)),
            ..Default::default()
        })));
    }
    for chunk in submits.chunks(10_000) {
        s.apply(&Proposal {
            at: now - 30 * MIN + rng.below(30 * MIN),
            requests: chunk.to_vec(),
        });
    }
    s.apply(&Proposal {
        at: now,
        requests: vec![],
    });
    s
}

/// The fastest of `runs` passes, in ms, and what the pass did.
fn measure(state: &ClusterState, runs: usize) -> (f64, usize, usize) {
    let cfg = SchedConfig::default();
    let mut best = f64::MAX;
    let mut out = Plan::default();
    for _ in 0..runs {
        let t = Instant::now();
        out = plan(state, state.now, &cfg);
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    let reserved = out.starts.iter().filter(|s| s.start_at.is_some()).count();
    (best, out.allocations.len(), reserved)
}

fn report(nodes: usize, pending: usize, runs: usize) -> f64 {
    let state = cluster(nodes, 5, pending, 42);
    let running = state
        .jobs
        .values()
        .filter(|j| j.state == JobState::Running)
        .count();
    let (ms, started, reserved) = measure(&state, runs);
    // The leader plans from a copy of the state, taken under the read lock (the lock's cost).
    let t = Instant::now();
    let copy = state.clone();
    let clone_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(copy);
    println!(
        "nodes {nodes:>6}  running {running:>6}  pending {pending:>7}  pass {ms:>9.2} ms  \
         (started {started}, reserved {reserved}; state copy {clone_ms:.2} ms)"
    );
    ms
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    println!("target: 10,000 pending × 1,000 nodes × 5,000 running ≤ 50 ms");
    let ms = report(1000, 10_000, 5);
    println!(
        "{}",
        if ms <= 50.0 {
            "target met"
        } else {
            "TARGET MISSED"
        }
    );
    if quick {
        return;
    }
    println!("\nqueue length (1,000 nodes, 5,000 running):");
    for pending in [1_000, 2_500, 5_000, 20_000, 40_000] {
        report(1000, pending, 3);
    }
    println!("\nnode count (10,000 pending, 5 running per node):");
    for nodes in [250, 500, 2_000, 4_000] {
        report(nodes, 10_000, 3);
    }
    println!("\nlarge: 100,000 pending × 10,000 nodes × 50,000 running:");
    report(10_000, 100_000, 1);
}
