//! The planner's output, pinned: a digest of every plan and every expected start over seeded
//! random clusters, run through several passes each (jobs start, end, new ones arrive, so
//! reservations, kept nodes and expected starts all carry from pass to pass).
//!
//! The planner is tuned for speed (issue: 10,000 pending × 1,000 nodes ≤ 50 ms); a speed-up
//! must not change a single allocation, reason or expected start. If a change of behaviour is
//! meant, rewrite `EXPECTED` with the digest the failure prints, and say why in the commit.

use drover_scheduler::plan::plan_with_starts;
use drover_scheduler::*;

const MIN: u64 = 60_000;

#[path = "common/lcg.rs"]
mod lcg;
use lcg::Lcg;

/// FNV-1a, 64 bits: a digest that is the same on every machine.
struct Digest(u64);

impl Digest {
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

fn apply(s: &mut ClusterState, at: u64, command: Command) -> Reply {
    s.apply_one(at, command)
}

/// One seeded cluster run through `passes` passes; every pass's output goes into `digest`.
fn run(seed: u64, nodes: usize, jobs_per_round: usize, passes: usize, digest: &mut Digest) {
    let mut rng = Lcg(seed);
    let mut s = ClusterState::new();
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i:03}")).collect();
    let half: Vec<String> = names.iter().step_by(2).cloned().collect();
    apply(
        &mut s,
        0,
        Command::DefinePartitions(vec![
            Partition::default_debug(),
            Partition {
                name: "half".into(),
                nodes: NodeSet::Names(half.clone()),
                is_default: false,
                max_nodes: Some(3),
                max_time_min: Some(600),
                priority_tier: 1 + rng.below(2) as u32,
                ..Partition::default_debug()
            },
        ]),
    );
    let features = ["fast", "big", "ib"];
    for (i, name) in names.iter().enumerate() {
        let gpus = if rng.chance(3) {
            1 + rng.below(4) as u32
        } else {
            0
        };
        let mut f = Vec::new();
        for feature in features {
            if rng.chance(2) {
                f.push(feature.to_string());
            }
        }
        apply(
            &mut s,
            0,
            Command::RegisterNode(NodeRegistration {
                name: name.clone(),
                cpus: [4, 8, 16, 32, 64][rng.below(5) as usize],
                real_memory_mb: 1024 * (4 + rng.below(60)),
                gpus,
                gpu_type: if gpus > 0 && i % 2 == 0 {
                    "a100".into()
                } else {
                    String::new()
                },
                features: f,
                ..Default::default()
            }),
        );
    }
    let mut now = MIN;
    for _ in 0..passes {
        for _ in 0..jobs_per_round {
            let nodes_min = if rng.chance(4) {
                2 + rng.below(5) as u32
            } else {
                1
            };
            let gpus = if rng.chance(6) {
                1 + rng.below(3) as u32
            } else {
                0
            };
            let mut spec = JobSpec {
                name: format!("j{}", rng.below(4)),
                partition: rng.chance(5).then(|| "half".to_string()),
                nodes_min,
                ntasks: nodes_min * (1 + rng.below(2) as u32),
                cpus_per_task: [1, 1, 2, 4, 8, 16, 32][rng.below(7) as usize],
                mem_per_node_mb: (!rng.chance(4)).then(|| 256 * (1 + rng.below(64))),
                time_limit_min: (!rng.chance(10)).then(|| 1 + rng.below(900)),
                gpus_per_node: gpus,
                gpu_type: (gpus > 0 && rng.chance(3)).then(|| "a100".to_string()),
                exclusive: rng.chance(12),
                user: format!("u{}", rng.below(5)),
                nice: rng.below(21) as i32 - 10,
                ..Default::default()
            };
            if rng.chance(8) {
                spec.constraint = match rng.below(4) {
                    0 => "fast".into(),
                    1 => "fast&big".into(),
                    2 => "ib|big".into(),
                    _ => "nosuch".into(),
                };
            }
            if rng.chance(15) {
                spec.nodelist = vec![names[rng.below(nodes as u64) as usize].clone()];
            }
            if rng.chance(10) {
                spec.exclude = (0..1 + rng.below(3))
                    .map(|_| names[rng.below(nodes as u64) as usize].clone())
                    .collect();
            }
            if rng.chance(30) {
                spec.begin_at = Some(now + rng.below(120) * MIN);
            }
            if rng.chance(20) {
                spec.array = Some(ArraySpec {
                    tasks: (0..2 + rng.below(6) as u32).collect(),
                    max_running: rng.below(3) as u32,
                });
            }
            apply(&mut s, now, Command::Submit(spec));
        }
        let cfg = match rng.below(4) {
            0 => SchedConfig {
                bf_job_part_count_reserve: 1,
                ..SchedConfig::default()
            },
            1 => SchedConfig {
                bf_window_s: 120 * 60,
                ..SchedConfig::default()
            },
            _ => SchedConfig::default(),
        };
        let (plan, starts) = plan_with_starts(&s, now, &cfg);
        digest.add(&serde_json::to_vec(&plan).expect("a plan encodes"));
        digest.add(&serde_json::to_vec(&starts).expect("starts encode"));
        apply(&mut s, now, Command::Allocate(plan));
        // Time moves; some running jobs end early.
        now += (1 + rng.below(90)) * MIN;
        let running: Vec<(JobId, String)> = s
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| (j.id, j.batch_host().unwrap_or("").to_string()))
            .collect();
        for (job_id, node) in running {
            if rng.chance(4) {
                apply(
                    &mut s,
                    now,
                    Command::JobFinished {
                        job_id,
                        node,
                        exit_code: 0,
                        signal: 0,
                    },
                );
            }
        }
    }
}

const EXPECTED: u64 = 0xf1f38f69a1dde431;

#[test]
fn plans_over_seeded_clusters_are_unchanged() {
    let mut digest = Digest(0xcbf29ce484222325);
    for seed in 0..40u64 {
        let nodes = 1 + (seed as usize * 7) % 60;
        run(seed, nodes, 5 + (seed as usize % 4) * 10, 6, &mut digest);
    }
    // Wide enough for a one-node job to see more than 32 nodes free at once.
    for seed in 100..104u64 {
        run(seed, 120, 150, 4, &mut digest);
    }
    assert_eq!(
        digest.0, EXPECTED,
        "the planner's output changed: digest {:#x}",
        digest.0
    );
}
