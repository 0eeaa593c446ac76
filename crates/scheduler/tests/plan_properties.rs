//! Properties of the planner over random clusters and queues (proptest).
//!
//! 1. No CPU, memory or GPU index is ever allocated twice: apply accepts every allocation of a
//!    fresh plan (it re-checks capacity and GPU indices) and the invariants hold afterwards.
//! 2. A backfilled job never delays a reservation: after the plan's jobs start, planning again
//!    at the same instant gives every reserved job a start no later than its reservation.
//! 3. The plan is a pure function: the same state, time and configuration give the same plan,
//!    byte for byte.
//! 4. Every pending job has a reason after a pass.
//!
//! The queues include `-N min-max` jobs, which take more nodes than their minimum when free,
//! and jobs asking `--oversubscribe`; the partition has a random `OverSubscribe=`.
//!
//! Reference: Slurm backfill.c (`_test_resv_overlap`), slurm.md §4.2; cons_tres.

use drover_scheduler::plan::{plan, plan_with_starts};
use drover_scheduler::*;
use proptest::prelude::*;

const MIN: u64 = 60_000;

#[derive(Clone, Debug)]
struct JobGen {
    cpus: u32,
    gpus: u32,
    nodes: u32,
    /// `-N min-max`: this many nodes more at most (None: no range).
    extra_nodes: Option<u32>,
    mem: u64,
    time: Option<u64>,
    exclusive: bool,
    /// `--oversubscribe`.
    share: bool,
    user: u8,
    nice: i32,
    submit_min: u64,
    /// Finishes this many minutes after it starts, if it starts (early end).
    runs_min: u64,
}

fn job_gen() -> impl Strategy<Value = JobGen> {
    (
        (1u32..=8, 0u32..=2, 1u32..=3, 0u64..=3000),
        (
            prop::option::weighted(0.9, 1u64..=90),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.3, 1u32..=3),
        ),
        (0u8..3, -50i32..=50, 0u64..=40, 1u64..=90, prop::bool::ANY),
    )
        .prop_map(
            |(
                (cpus, gpus, nodes, mem),
                (time, exclusive, extra_nodes),
                (user, nice, submit_min, runs_min, share),
            )| {
                JobGen {
                    cpus,
                    gpus,
                    nodes,
                    extra_nodes,
                    mem,
                    time,
                    exclusive,
                    share,
                    user,
                    nice,
                    submit_min,
                    runs_min,
                }
            },
        )
}

struct Sim {
    state: ClusterState,
    cfg: SchedConfig,
}

impl Sim {
    fn apply(&mut self, at: u64, command: Command) -> Reply {
        let reply = self.state.apply_one(at, command);
        invariants::check(&self.state).expect("invariants hold after every apply");
        reply
    }

    /// One pass at `at`, checking properties 1, 3 and 4.
    fn pass(&mut self, at: u64) -> Result<(), TestCaseError> {
        self.apply(at, Command::Allocate(Plan::default()));
        let p = plan(&self.state, at, &self.cfg);
        let twin = plan(&self.state.clone(), at, &self.cfg);
        prop_assert_eq!(
            serde_json::to_vec(&p).unwrap(),
            serde_json::to_vec(&twin).unwrap(),
            "the plan is a pure function"
        );
        // The leader plans from `planning_copy` (no ended jobs, records or dedup window).
        let from_copy = plan(&self.state.planning_copy(), at, &self.cfg);
        prop_assert_eq!(
            serde_json::to_vec(&p).unwrap(),
            serde_json::to_vec(&from_copy).unwrap(),
            "the planning copy plans as the whole state does"
        );
        // The leader skips the pass when nothing is queued.
        if !self.state.has_queued() {
            prop_assert!(p.is_empty(), "a state with nothing queued plans nothing");
        }
        let n = p.allocations.len() as u32;
        let (_, starts1) = plan_with_starts(&self.state, at, &self.cfg);
        let reply = self.apply(at, Command::Allocate(p));
        prop_assert_eq!(
            reply,
            Reply::Allocated {
                started: n,
                refused: 0
            },
            "apply accepts every allocation of a fresh plan"
        );
        // Property 2: with the plan's jobs started, planning again at the same instant gives
        // every reserved job a start no later than its reservation.
        let (p2, starts2) = plan_with_starts(&self.state, at, &self.cfg);
        prop_assert!(
            p2.allocations.is_empty(),
            "nothing new can start at the same instant"
        );
        for s1 in &starts1 {
            let Some(reserved) = s1.start_at else {
                continue;
            };
            let again = starts2
                .iter()
                .find(|s| s.job_id == s1.job_id)
                .and_then(|s| s.start_at);
            prop_assert!(
                again.is_some_and(|t| t <= reserved),
                "job {} was reserved at {reserved}, planned again at {again:?}",
                s1.job_id
            );
        }
        for job in self.state.jobs.values() {
            if job.state == JobState::Pending {
                prop_assert_ne!(
                    &job.reason,
                    &PendingReason::None,
                    "job {} has no reason",
                    job.id
                );
            }
        }
        Ok(())
    }
}

fn run(
    nodes: &[(u32, u32, u64)],
    jobs: &[JobGen],
    cfg: SchedConfig,
    oversubscribe: OverSubscribe,
) -> Result<(), TestCaseError> {
    let mut sim = Sim {
        state: ClusterState::new(),
        cfg,
    };
    sim.apply(
        0,
        Command::DefinePartitions(vec![Partition {
            oversubscribe,
            ..Partition::default_debug()
        }]),
    );
    for (i, &(cpus, gpus, mem)) in nodes.iter().enumerate() {
        sim.apply(
            0,
            Command::RegisterNode(NodeRegistration {
                name: format!("n{i}"),
                cpus,
                gpus,
                real_memory_mb: mem,
                ..Default::default()
            }),
        );
    }
    let mut order: Vec<&JobGen> = jobs.iter().collect();
    order.sort_by_key(|j| j.submit_min);
    let mut runs = std::collections::BTreeMap::new();
    for j in order {
        let at = j.submit_min * MIN;
        // Jobs whose early end has come finish first.
        let due: Vec<JobId> = sim
            .state
            .jobs
            .values()
            .filter(|job| {
                job.state == JobState::Running
                    && job.start_at.unwrap_or(0) + runs.get(&job.id).copied().unwrap_or(0) * MIN
                        <= at
            })
            .map(|job| job.id)
            .collect();
        for id in due {
            let node = sim.state.jobs[&id].batch_host().unwrap_or("").to_string();
            sim.apply(
                at,
                Command::JobFinished {
                    job_id: id,
                    node,
                    exit_code: 0,
                    signal: 0,
                },
            );
        }
        let spec = JobSpec {
            name: "p".into(),
            nodes_min: j.nodes,
            nodes_max: j.extra_nodes.map_or(0, |e| j.nodes + e),
            // Ranged jobs have tasks to spread over the nodes they get.
            ntasks: j.nodes + j.extra_nodes.unwrap_or(0),
            cpus_per_task: j.cpus,
            mem_per_node_mb: (j.mem > 0).then_some(j.mem),
            time_limit_min: j.time,
            user: format!("u{}", j.user),
            nice: j.nice,
            gpus_per_node: j.gpus,
            exclusive: j.exclusive,
            oversubscribe: j.share,
            ..Default::default()
        };
        if let Reply::Submitted { job_id } = sim.apply(at, Command::Submit(spec)) {
            runs.insert(job_id, j.runs_min);
        }
        sim.pass(at)?;
    }

    sim.pass(sim.state.now + MIN)?;
    Ok(())
}

fn oversubscribe_gen() -> impl Strategy<Value = OverSubscribe> {
    prop::sample::select(vec![
        OverSubscribe::No,
        OverSubscribe::No,
        OverSubscribe::Yes(2),
        OverSubscribe::Yes(4),
        OverSubscribe::Force(3),
        OverSubscribe::Exclusive,
    ])
}

fn nodes_gen() -> impl Strategy<Value = Vec<(u32, u32, u64)>> {
    // Up to 40 nodes: several blocks of the planner's map summary.
    prop::collection::vec((4u32..=16, 0u32..=4, 4000u64..=16000), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn conservative_backfill_keeps_every_property(
        nodes in nodes_gen(),
        jobs in prop::collection::vec(job_gen(), 1..80),
        oversubscribe in oversubscribe_gen(),
    ) {
        run(&nodes, &jobs, SchedConfig::default(), oversubscribe)?;
    }

    #[test]
    fn easy_and_fifo_keep_the_safety_properties(
        nodes in nodes_gen(),
        jobs in prop::collection::vec(job_gen(), 1..30),
        easy in any::<bool>(),
        oversubscribe in oversubscribe_gen(),
    ) {
        let cfg = SchedConfig {
            backfill: easy,
            bf_job_part_count_reserve: 1,
            ..SchedConfig::default()
        };
        run(&nodes, &jobs, cfg, oversubscribe)?;
    }
}
