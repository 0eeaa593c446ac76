//! The replicated state machine, driven through its only API: `apply(&Proposal)`.
//! Reference for the behaviours: Slurm's slurmctld (job_mgr.c), as summarised in
//! shared/reference/slurm.md §3 (states, reasons) and §4.1 (strict priority order).

use drover_scheduler::plan::plan;
use drover_scheduler::*;
use proptest::prelude::*;

fn node(name: &str, cpus: u32, mem: u64) -> Command {
    Command::RegisterNode(NodeRegistration {
        name: name.into(),
        cpus,
        real_memory_mb: mem,
        ..Default::default()
    })
}

fn job(cpus: u32) -> JobSpec {
    JobSpec {
        name: "j".into(),
        nodes_min: 1,
        ntasks: 1,
        cpus_per_task: cpus,
        script: "#!/bin/sh\ntrue\n".into(),
        ..Default::default()
    }
}

struct Cluster {
    state: ClusterState,
    at: u64,
    cfg: SchedConfig,
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster {
            state: ClusterState::new(),
            at: 1_000_000,
            cfg: SchedConfig::default(),
        };
        c.run(Command::DefinePartitions(vec![Partition::default_debug()]));
        c
    }

    fn apply(&mut self, id: &str, command: Command) -> Reply {
        self.at += 1000;
        let p = Proposal {
            at: self.at,
            requests: vec![Request {
                request_id: id.into(),
                command,
            }],
        };
        let reply = self.state.apply(&p).remove(0);
        invariants::check(&self.state).expect("invariants hold after every apply");
        reply
    }

    fn run(&mut self, command: Command) -> Reply {
        self.apply("", command)
    }

    fn submit(&mut self, spec: JobSpec) -> JobId {
        match self.run(Command::Submit(spec)) {
            Reply::Submitted { job_id } => job_id,
            other => panic!("submit refused: {other:?}"),
        }
    }

    fn schedule(&mut self) -> Reply {
        let p = plan(&self.state, self.state.now, &self.cfg);
        self.run(Command::Allocate(p))
    }

    fn job(&self, id: JobId) -> &Job {
        &self.state.jobs[&id]
    }
}

#[test]
fn job_ids_come_from_the_counter_and_a_retried_submit_returns_the_first_answer() {
    let mut c = Cluster::new();
    let first = c.apply("req-1", Command::Submit(job(1)));
    let again = c.apply("req-1", Command::Submit(job(1)));
    let second = c.apply("req-2", Command::Submit(job(1)));
    assert_eq!(first, Reply::Submitted { job_id: JobId(1) });
    assert_eq!(again, first, "a retry must not create a second job");
    assert_eq!(second, Reply::Submitted { job_id: JobId(2) });
    assert_eq!(c.state.jobs.len(), 2);
}

#[test]
fn unknown_partition_and_impossible_requests_are_rejected_with_slurms_words() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    let mut spec = job(1);
    spec.partition = Some("nope".into());
    assert_eq!(
        c.run(Command::Submit(spec)),
        Reply::Rejected(Rejection::InvalidPartition)
    );
    assert_eq!(
        Rejection::InvalidPartition.to_string(),
        "Invalid partition name specified"
    );
    assert_eq!(
        c.run(Command::Submit(job(8))),
        Reply::Rejected(Rejection::NodeConfigUnavailable)
    );
    assert!(
        c.state.jobs.is_empty(),
        "a rejected submit leaves no job behind"
    );
}

#[test]
fn fifo_first_fit_blocks_lower_jobs_behind_the_first_that_cannot_start() {
    // Reference: Slurm sched_config "the main scheduler stops at the first job that cannot start"
    // (sched/builtin: no backfill).
    let mut c = Cluster::new();
    c.cfg.backfill = false;
    c.run(node("n1", 4, 1000));
    let a = c.submit(job(3));
    let b = c.submit(job(2));
    let d = c.submit(job(1));
    assert_eq!(
        c.schedule(),
        Reply::Allocated {
            started: 1,
            refused: 0
        }
    );
    assert_eq!(c.job(a).state, JobState::Running);
    assert_eq!(
        c.job(a).alloc,
        vec![NodeShare {
            node: "n1".into(),
            cpus: 3,
            mem_mb: 0,
            gpus: vec![],
        }]
    );
    assert_eq!(c.job(b).reason, PendingReason::Resources);
    assert_eq!(
        c.job(d).reason,
        PendingReason::Priority,
        "d fits, but b is ahead of it"
    );
    // A second pass with nothing changed proposes nothing.
    assert!(plan(&c.state, c.state.now, &c.cfg).is_empty());
}

#[test]
fn apply_refuses_a_stale_allocation() {
    let mut c = Cluster::new();
    c.run(node("n1", 2, 1000));
    let a = c.submit(job(2));
    let stale = plan(&c.state, c.state.now, &SchedConfig::default());
    c.run(Command::Cancel {
        job_ids: vec![a],
        uid: 0,
    });
    assert_eq!(
        c.run(Command::Allocate(stale)),
        Reply::Allocated {
            started: 0,
            refused: 1
        }
    );
    assert_eq!(c.state.nodes["n1"].alloc_cpus, 0);
}

#[test]
fn cancelling_a_running_job_holds_its_cpus_until_the_node_confirms() {
    let mut c = Cluster::new();
    c.run(node("n1", 2, 1000));
    let a = c.submit(job(2));
    c.schedule();
    let reply = c.run(Command::Cancel {
        job_ids: vec![a, JobId(99)],
        uid: 0,
    });
    assert_eq!(
        reply,
        Reply::Cancelled {
            outcomes: vec![(a, None), (JobId(99), Some(Rejection::InvalidJobId))]
        }
    );
    assert_eq!(c.job(a).state, JobState::Cancelled);
    assert!(c.job(a).completing);
    assert_eq!(c.state.nodes["n1"].alloc_cpus, 2, "processes may still run");
    c.run(Command::JobFinished {
        job_id: a,
        node: "n1".into(),
        exit_code: 0,
        signal: 15,
    });
    assert!(!c.job(a).completing);
    assert_eq!(c.job(a).state, JobState::Cancelled);
    assert_eq!(c.state.nodes["n1"].alloc_cpus, 0);
    let again = c.run(Command::Cancel {
        job_ids: vec![a],
        uid: 0,
    });
    assert_eq!(
        again,
        Reply::Cancelled {
            outcomes: vec![(a, Some(Rejection::AlreadyDone))]
        }
    );
}

#[test]
fn finished_jobs_complete_or_fail_by_exit_code_and_reports_are_idempotent() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    let ok = c.submit(job(1));
    let bad = c.submit(job(1));
    c.schedule();
    c.run(Command::JobFinished {
        job_id: ok,
        node: "n1".into(),
        exit_code: 0,
        signal: 0,
    });
    c.run(Command::JobFinished {
        job_id: bad,
        node: "n1".into(),
        exit_code: 3,
        signal: 0,
    });
    c.run(Command::JobFinished {
        job_id: bad,
        node: "n1".into(),
        exit_code: 3,
        signal: 0,
    });
    assert_eq!(c.job(ok).state, JobState::Completed);
    assert_eq!(
        (c.job(bad).state, c.job(bad).exit_code),
        (JobState::Failed, 3)
    );
    // A report from a node that does not run the job changes nothing.
    let wrong = c.run(Command::JobFinished {
        job_id: ok,
        node: "n9".into(),
        exit_code: 1,
        signal: 0,
    });
    assert_eq!(wrong, Reply::Rejected(Rejection::InvalidNodeName));
}

#[test]
fn a_node_that_stops_responding_fails_its_jobs_and_returns_when_it_registers() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    let a = c.submit(job(1));
    c.schedule();
    c.run(Command::SetNodeState {
        node: "n1".into(),
        change: NodeStateChange::NotResponding,
    });
    assert_eq!(c.job(a).state, JobState::NodeFail);
    assert_eq!(c.state.nodes["n1"].state_name(), "DOWN+NOT_RESPONDING");
    c.run(node("n1", 4, 1000));
    assert_eq!(c.state.nodes["n1"].state_name(), "IDLE");
}

#[test]
fn a_requeue_job_on_a_failed_node_pends_again_and_its_old_runs_reports_change_nothing() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    c.run(node("n2", 4, 1000));
    let mut spec = job(4);
    spec.requeue = true;
    let again = c.submit(spec);
    let once = c.submit(job(4));
    c.schedule();
    let host = |c: &Cluster, id| c.job(id).batch_host().map(str::to_string);
    let (again_host, once_host) = (host(&c, again).unwrap(), host(&c, once).unwrap());
    assert_ne!(again_host, once_host);
    for id in [again, once] {
        let node = host(&c, id).unwrap();
        c.run(Command::RunReport {
            restarts: 0,
            report: Box::new(Command::JobStarted {
                job_id: id,
                node,
                pid: 7,
            }),
        });
    }
    // Both nodes stop responding: the --requeue job pends again, the other ends NODE_FAIL.
    for n in ["n1", "n2"] {
        c.run(Command::SetNodeState {
            node: n.into(),
            change: NodeStateChange::NotResponding,
        });
    }
    assert_eq!(c.job(once).state, JobState::NodeFail);
    assert_eq!(c.job(again).state, JobState::Pending);
    assert_eq!(c.job(again).restarts, 1);
    assert!(c.job(again).alloc.is_empty());
    // The first node comes back; the job's second run starts there.
    c.run(node(&again_host, 4, 1000));
    c.schedule();
    assert_eq!(c.job(again).state, JobState::Running);
    assert_eq!(host(&c, again), Some(again_host.clone()));
    // The first run's end, reported late by that node, does not end the second run.
    let stale = c.run(Command::RunReport {
        restarts: 0,
        report: Box::new(Command::JobFinished {
            job_id: again,
            node: again_host.clone(),
            exit_code: 0,
            signal: 0,
        }),
    });
    assert_eq!(stale, Reply::Ok);
    assert_eq!(c.job(again).state, JobState::Running);
    // The second run's own end does.
    c.run(Command::RunReport {
        restarts: 1,
        report: Box::new(Command::JobFinished {
            job_id: again,
            node: again_host,
            exit_code: 0,
            signal: 0,
        }),
    });
    assert_eq!(c.job(again).state, JobState::Completed);
    // A run report must carry a node's report.
    assert!(matches!(
        c.run(Command::RunReport {
            restarts: 0,
            report: Box::new(Command::Submit(job(1))),
        }),
        Reply::Rejected(_)
    ));
}

#[test]
fn held_jobs_never_start_and_say_why() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    let mut spec = job(1);
    spec.hold = true;
    let a = c.submit(spec);
    c.schedule();
    assert_eq!(c.job(a).state, JobState::Pending);
    assert_eq!(c.job(a).reason, PendingReason::JobHeldUser);
    assert_eq!(c.job(a).priority, 0);
}

#[test]
fn finished_jobs_are_forgotten_after_min_job_age() {
    let mut c = Cluster::new();
    let a = c.submit(job(1));
    c.run(Command::Cancel {
        job_ids: vec![a],
        uid: 0,
    });
    assert!(c.state.jobs.contains_key(&a));
    c.at += 301_000;
    c.run(node("n1", 1, 1));
    assert!(
        !c.state.jobs.contains_key(&a),
        "purged after MinJobAge (300 s)"
    );
}

#[test]
fn time_never_moves_back() {
    let mut s = ClusterState::new();
    s.apply(&Proposal {
        at: 5000,
        requests: vec![],
    });
    s.apply(&Proposal {
        at: 4000,
        requests: vec![],
    });
    assert_eq!(
        s.now, 5000,
        "a new leader with a slower clock cannot move time back"
    );
}

/// Reference: Slurm's `job_signal`: a running job's batch host gets each request once
/// (numbered); SIGKILL cancels a pending job; any other signal to one is refused.
#[test]
fn signals_are_numbered_for_running_jobs_and_kill_a_pending_one() {
    let mut c = Cluster::new();
    c.run(node("n1", 1, 4000));
    let running = c.submit(job(1));
    let pending = c.submit(job(1));
    c.schedule();
    assert_eq!(c.job(running).state, JobState::Running);
    let signal = |c: &mut Cluster, id: JobId, signal: i32| {
        c.run(Command::Signal {
            targets: vec![JobRef {
                job: id,
                task: None,
            }],
            signal,
            scope: SignalScope::Steps,
            uid: 0,
        })
    };
    for sig in [10, 12] {
        assert_eq!(
            signal(&mut c, running, sig),
            Reply::Outcomes {
                outcomes: vec![(
                    JobRef {
                        job: running,
                        task: None
                    },
                    None
                )]
            }
        );
    }
    let seqs: Vec<(u32, i32)> = c
        .job(running)
        .signals
        .iter()
        .map(|s| (s.seq, s.signal))
        .collect();
    assert_eq!(seqs, vec![(1, 10), (2, 12)]);
    assert_eq!(
        signal(&mut c, pending, 10),
        Reply::Outcomes {
            outcomes: vec![(
                JobRef {
                    job: pending,
                    task: None
                },
                Some(Rejection::JobPending)
            )]
        }
    );
    signal(&mut c, pending, 9);
    assert_eq!(c.job(pending).state, JobState::Cancelled);
}

/// Reference: `scontrol update job` (job_mgr.c `update_job`): users may only lower a time limit
/// and raise their nice; priorities are the operators'; start-shaping fields need a pending
/// job; a new dependency is indexed like a submitted one.
#[test]
fn job_updates_follow_slurms_permissions() {
    let mut c = Cluster::new();
    let mut spec = job(1);
    spec.uid = 1000;
    spec.time_limit_min = Some(30);
    let id = c.submit(spec.clone());
    let other = c.submit(spec);
    let update = |c: &mut Cluster, update: JobUpdate, uid: u32| match c.run(Command::UpdateJob {
        targets: vec![JobRef {
            job: id,
            task: None,
        }],
        update,
        uid,
    }) {
        Reply::Outcomes { outcomes } => outcomes[0].1.clone(),
        other => panic!("{other:?}"),
    };
    let limit = |m| JobUpdate {
        time_limit_min: Some(Some(m)),
        ..JobUpdate::default()
    };
    assert_eq!(
        update(&mut c, limit(60), 1000),
        Some(Rejection::AccessDenied)
    );
    assert_eq!(update(&mut c, limit(10), 1000), None);
    assert_eq!(update(&mut c, limit(60), 0), None);
    assert_eq!(c.job(id).time_limit_min, Some(60));
    assert_eq!(
        update(&mut c, limit(5), 1001),
        Some(Rejection::AccessDenied)
    );
    let nice = |n| JobUpdate {
        nice: Some(n),
        ..JobUpdate::default()
    };
    assert_eq!(
        update(&mut c, nice(-5), 1000),
        Some(Rejection::AccessDenied)
    );
    assert_eq!(update(&mut c, nice(5), 1000), None);
    let prio = |p| JobUpdate {
        priority: Some(p),
        ..JobUpdate::default()
    };
    assert_eq!(update(&mut c, prio(7), 1000), Some(Rejection::AccessDenied));
    assert_eq!(update(&mut c, prio(0), 0), None);
    assert_eq!(c.job(id).reason, PendingReason::JobHeldAdmin);
    assert_eq!(update(&mut c, prio(7), 0), None);
    assert_eq!((c.job(id).priority, c.job(id).admin_priority), (7, Some(7)));
    let dep = |d: &str| JobUpdate {
        dependency: Some(Some(depend::Dependency::parse(d).unwrap())),
        ..JobUpdate::default()
    };
    assert_eq!(
        update(&mut c, dep("afterok:999"), 0),
        Some(Rejection::DependencyProblem)
    );
    assert_eq!(
        update(&mut c, dep(&format!("afterok:{id}")), 0),
        Some(Rejection::DependencyProblem)
    );
    assert_eq!(update(&mut c, dep(&format!("afterok:{other}")), 0), None);
    c.run(Command::Cancel {
        job_ids: vec![other],
        uid: 0,
    });
    assert_eq!(
        c.job(id)
            .dependency
            .as_ref()
            .unwrap()
            .readiness(c.state.now),
        depend::Readiness::Never
    );
}

/// jepsen finding 2: a plan made before a hold, applied after it, must not replace the hold
/// reason — the job would keep priority 0 with a reason no release matches, pending forever.
/// `scontrol update PartitionName=…`: operators only, a partition that exists; the change
/// holds jobs back (PartitionDown) until undone, a re-definition from the same configuration
/// is what the leader skips (it compares with `partitions_config`), and a new definition
/// replaces the change.
#[test]
fn partition_updates_are_for_operators_and_last_until_the_configuration_changes() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    let down = PartitionUpdate {
        state: Some(PartitionState::Down),
        max_time_min: Some(Some(30)),
        ..PartitionUpdate::default()
    };
    let update = |name: &str, update: &PartitionUpdate, uid: u32| Command::UpdatePartition {
        name: name.into(),
        update: update.clone(),
        uid,
    };
    assert_eq!(
        c.run(update("debug", &down, 1000)),
        Reply::Rejected(Rejection::AccessDenied)
    );
    assert_eq!(
        c.run(update("nope", &down, 0)),
        Reply::Rejected(Rejection::InvalidPartition)
    );
    assert_eq!(c.state.partitions[0].state, PartitionState::Up);
    assert_eq!(c.run(update("debug", &down, 0)), Reply::Ok);
    assert_eq!(c.state.partitions[0].state, PartitionState::Down);
    assert_eq!(c.state.partitions[0].max_time_min, Some(30));
    assert_eq!(c.state.partitions_config, vec![Partition::default_debug()]);

    let id = c.submit(job(1));
    c.schedule();
    assert_eq!(c.job(id).state, JobState::Pending);
    assert_eq!(c.job(id).reason, PendingReason::PartitionDown);

    let up = PartitionUpdate {
        state: Some(PartitionState::Up),
        max_time_min: Some(None),
        ..PartitionUpdate::default()
    };
    assert_eq!(c.run(update("debug", &up, 0)), Reply::Ok);
    c.schedule();
    assert_eq!(c.job(id).state, JobState::Running);

    // Default=YES moves the default; a new definition replaces every change.
    let mut second = Partition::default_debug();
    second.name = "gpu".into();
    second.is_default = false;
    c.run(Command::DefinePartitions(vec![
        Partition::default_debug(),
        second.clone(),
    ]));
    let make_default = PartitionUpdate {
        is_default: Some(true),
        ..PartitionUpdate::default()
    };
    assert_eq!(c.run(update("gpu", &make_default, 0)), Reply::Ok);
    let defaults: Vec<&str> = c
        .state
        .partitions
        .iter()
        .filter(|p| p.is_default)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(defaults, vec!["gpu"]);
    c.run(Command::DefinePartitions(vec![
        Partition::default_debug(),
        second,
    ]));
    assert!(c.state.partitions[0].is_default && !c.state.partitions[1].is_default);

    // A table with two defaults or a repeated name is refused whole.
    let twice = vec![Partition::default_debug(), Partition::default_debug()];
    assert!(matches!(
        c.run(Command::DefinePartitions(twice)),
        Reply::Rejected(Rejection::Invalid(_))
    ));
    assert_eq!(c.state.partitions.len(), 2);
}

#[test]
fn a_stale_plan_does_not_unhold_a_held_job() {
    let mut c = Cluster::new();
    c.run(node("n1", 1, 4000));
    let busy = c.submit(job(1));
    c.schedule();
    let waiting = c.submit(job(1));
    let stale = plan(&c.state, c.state.now, &c.cfg);
    assert!(stale.reasons.iter().any(|(id, _)| *id == waiting));
    let target = vec![JobRef {
        job: waiting,
        task: None,
    }];
    c.run(Command::Hold {
        targets: target.clone(),
        admin: false,
        uid: 0,
    });
    c.run(Command::Allocate(stale));
    assert_eq!(c.job(waiting).reason, PendingReason::JobHeldUser);
    assert!(c.job(waiting).is_held());
    c.run(Command::Release {
        targets: target,
        uid: 0,
    });
    let node = c.job(busy).batch_host().unwrap().to_string();
    c.run(Command::JobFinished {
        job_id: busy,
        node,
        exit_code: 0,
        signal: 0,
    });
    c.schedule();
    assert_eq!(c.job(waiting).state, JobState::Running);
}

/// Reference: sbatch(1) `--test-only`: the planner's start for the job, on a copy — the
/// cluster itself is not changed.
#[test]
fn test_only_plans_on_a_copy() {
    let mut c = Cluster::new();
    c.run(node("n1", 2, 4000));
    let mut long = job(2);
    long.time_limit_min = Some(10);
    let running = c.submit(long);
    c.schedule();
    let before = c.state.clone();
    let mut spec = job(1);
    spec.time_limit_min = Some(5);
    let t = drover_scheduler::plan::test_only(c.state.clone(), spec.clone(), c.state.now, &c.cfg)
        .expect("plannable");
    assert_eq!(t.job_id.0, running.0 + 1);
    let ends = c.job(running).start_at.unwrap() + 10 * 60_000;
    assert_eq!(t.start_at, Some(ends));
    assert_eq!((t.nodes.as_slice(), t.cpus), (&["n1".to_string()][..], 1));
    assert_eq!(c.state, before, "nothing was submitted");
    spec.cpus_per_task = 64;
    assert_eq!(
        drover_scheduler::plan::test_only(c.state.clone(), spec, c.state.now, &c.cfg),
        Err(Rejection::NodeConfigUnavailable)
    );
}

/// Random commands, some valid, some not, against a small cluster.
fn arb_command() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(vec!["n1", "n2", "n3"]);
    prop_oneof![
        3 => (1u32..6, 1u32..3, prop::bool::weighted(0.1), prop::bool::ANY).prop_map(|(cpus, nodes, hold, share)| {
            let mut s = job(cpus);
            s.nodes_min = nodes;
            s.hold = hold;
            s.oversubscribe = share;
            Command::Submit(s)
        }),
        // srun's own allocation: no batch script.
        1 => (1u32..3, 1u32..3).prop_map(|(cpus, nodes)| {
            let mut s = job(cpus);
            s.nodes_min = nodes;
            s.script = String::new();
            Command::Submit(s)
        }),
        2 => (1u32..4, 0u32..4, 1u32..6, 0u32..3).prop_map(|(cpus, lo, len, throttle)| {
            let mut s = job(cpus);
            s.array = Some(ArraySpec { tasks: (lo..lo + len).collect(), max_running: throttle });
            Command::Submit(s)
        }),
        2 => (1u32..3, prop::sample::select(vec!["afterok", "afterany", "afternotok", "after", "aftercorr", "singleton"]), 1u64..20, prop::option::of(0u32..4), prop::bool::ANY, prop::option::of(1u32..5))
            .prop_map(|(cpus, kind, id, task, any, array)| {
                let mut s = job(cpus);
                // Dependent arrays (aftercorr pairs their tasks with the named array's).
                s.array = array.map(|len| ArraySpec { tasks: (0..len).collect(), max_running: 0 });
                let target = match task { Some(t) => format!("{id}_{t}"), None => id.to_string() };
                let text = if kind == "singleton" {
                    "singleton".to_string()
                } else if any {
                    format!("{kind}:{target}?afterany:{}", id + 1)
                } else {
                    format!("{kind}:{target}")
                };
                s.dependency = Some(depend::Dependency::parse(&text).expect("generated dependencies parse"));
                Command::Submit(s)
            }),
        1 => (1u64..20, prop::sample::select(vec![0u32, 1000])).prop_map(|(id, uid)| Command::Cancel { job_ids: vec![JobId(id)], uid }),
        1 => (0u64..600_000).prop_map(|t| Command::PurgeRecords { ended_before: t }),
        2 => (1u64..20, 1u32..6, prop::option::of(1u32..3), 1u32..3).prop_map(|(id, ntasks, nodes, cpt)| Command::StartStep {
            job_id: JobId(id),
            uid: 0,
            name: "step".into(),
            request: steps::StepRequest { ntasks, nodes, ntasks_per_node: None, cpus_per_task: cpt },
        }),
        1 => (1u64..20, 0u32..4, 0i32..3).prop_map(|(id, step_id, exit_code)| Command::EndStep { job_id: JobId(id), step_id, exit_code, signal: 0 }),
        1 => (1u64..20, prop::sample::select(vec![0u32, 1000]), 0i32..3).prop_map(|(id, uid, exit_code)| Command::CompleteAllocation { job_id: JobId(id), uid, exit_code, signal: 0 }),
        1 => (1u64..20, prop::option::of(0u32..5)).prop_map(|(id, task)| Command::CancelRefs { targets: vec![JobRef { job: JobId(id), task }], uid: 0 }),
        1 => (1u64..20, prop::option::of(0u32..5), prop::bool::ANY, prop::sample::select(vec![0u32, 1000, 1001]))
            .prop_map(|(id, task, admin, uid)| Command::Hold { targets: vec![JobRef { job: JobId(id), task }], admin, uid }),
        1 => (1u64..20, prop::option::of(0u32..5), prop::sample::select(vec![0u32, 1000]))
            .prop_map(|(id, task, uid)| Command::Release { targets: vec![JobRef { job: JobId(id), task }], uid }),
        1 => (1u64..20, prop::option::of(0u32..5), prop::bool::ANY)
            .prop_map(|(id, task, hold)| Command::Requeue { targets: vec![JobRef { job: JobId(id), task }], hold, uid: 0 }),
        1 => (1u64..20, prop::sample::select(vec![9, 10, 15]))
            .prop_map(|(id, signal)| Command::Signal { targets: vec![JobRef { job: JobId(id), task: None }], signal, scope: SignalScope::Full, uid: 0 }),
        1 => (prop::sample::select(vec![PartitionState::Up, PartitionState::Down, PartitionState::Drain, PartitionState::Inactive]), prop::option::of(1u64..10), prop::sample::select(vec![0u32, 1000]))
            .prop_map(|(state, max_time, uid)| Command::UpdatePartition {
                name: "debug".into(),
                update: PartitionUpdate { state: Some(state), max_time_min: Some(max_time), oversubscribe: Some(match max_time {
                    Some(1) => OverSubscribe::Yes(2),
                    Some(2) => OverSubscribe::Force(3),
                    Some(3) => OverSubscribe::Exclusive,
                    _ => OverSubscribe::No,
                }), ..PartitionUpdate::default() },
                uid,
            }),
        1 => (name.clone(), 1u32..8).prop_map(|(n, cpus)| node(n, cpus, 4000)),
        1 => name.clone().prop_map(|n| Command::SetNodeState { node: n.into(), change: NodeStateChange::NotResponding }),
        1 => name.clone().prop_map(|n| Command::SetNodeState { node: n.into(), change: NodeStateChange::Resume }),
        2 => (1u64..20, name.clone(), -1i32..3).prop_map(|(id, n, code)| Command::JobFinished { job_id: JobId(id), node: n.into(), exit_code: code, signal: 0 }),
        // Reports about one run, current or not (a requeued job's late report).
        1 => (1u64..20, name.clone(), 0u32..3).prop_map(|(id, n, restarts)| Command::RunReport {
            restarts,
            report: Box::new(Command::JobFinished { job_id: JobId(id), node: n.into(), exit_code: 0, signal: 0 }),
        }),
        1 => (1u32..3,).prop_map(|(cpus,)| {
            let mut s = job(cpus);
            s.requeue = true;
            Command::Submit(s)
        }),
        3 => Just(Command::Allocate(Plan::default())), // replaced by a real plan when applied
    ]
}

fn run_log(log: &[(u64, Command)]) -> (ClusterState, Vec<Reply>) {
    let mut s = ClusterState::new();
    s.apply(&Proposal {
        at: 0,
        requests: vec![Request {
            request_id: String::new(),
            command: Command::DefinePartitions(vec![Partition::default_debug()]),
        }],
    });
    let mut replies = Vec::new();
    for (at, command) in log {
        let command = match command {
            Command::Allocate(_) => Command::Allocate(plan(&s, s.now, &SchedConfig::default())),
            // Mostly from the job's batch host, so that jobs end and dependencies get decided.
            Command::JobFinished {
                job_id,
                node,
                exit_code,
                signal,
            } if node != "n3" => {
                let host = s
                    .jobs
                    .get(job_id)
                    .and_then(|j| j.batch_host())
                    .unwrap_or(node);
                Command::JobFinished {
                    job_id: *job_id,
                    node: host.to_string(),
                    exit_code: *exit_code,
                    signal: *signal,
                }
            }
            other => other.clone(),
        };
        let r = s.apply(&Proposal {
            at: *at,
            requests: vec![Request {
                request_id: String::new(),
                command,
            }],
        });
        invariants::check(&s).expect("invariants hold after every apply");
        replies.extend(r);
    }
    (s, replies)
}

proptest! {
    #[test]
    fn random_logs_keep_every_invariant_and_replay_identically(
        log in prop::collection::vec((0u64..600_000, arb_command()), 1..80)
    ) {
        let mut log = log;
        log.sort_by_key(|(at, _)| *at);
        let (a, ra) = run_log(&log);
        let (b, rb) = run_log(&log);
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }
}

/// Job steps (srun inside an allocation, slurm.md §1.2): ids 0, 1… per run, only in a running
/// job, within its allocation; they end with srun's report or with the job, and a requeued
/// run numbers its steps from 0 again.
#[test]
fn steps_are_numbered_per_run_and_stay_inside_the_allocation() {
    use drover_scheduler::steps::StepRequest;
    let mut c = Cluster::new();
    c.run(node("n1", 4, 1000));
    c.run(node("n2", 4, 1000));
    let mut spec = job(4);
    spec.nodes_min = 2;
    spec.nodes_max = 2;
    spec.uid = 1000;
    let id = c.submit(spec);
    let req = |ntasks: u32| StepRequest {
        ntasks,
        nodes: None,
        ntasks_per_node: None,
        cpus_per_task: 1,
    };
    let start = |c: &mut Cluster, uid: u32, ntasks: u32| {
        c.run(Command::StartStep {
            job_id: id,
            uid,
            name: "hostname".into(),
            request: req(ntasks),
        })
    };
    assert_eq!(
        start(&mut c, 1000, 1),
        Reply::Rejected(Rejection::JobPending)
    );
    c.schedule();
    assert_eq!(c.job(id).state, JobState::Running);
    assert_eq!(
        start(&mut c, 1000, 4),
        Reply::StepStarted {
            step_id: 0,
            layout: vec![("n1".into(), 2), ("n2".into(), 2)]
        }
    );
    assert_eq!(
        start(&mut c, 1000, 9),
        Reply::Rejected(Rejection::TooManyProcessors)
    );
    assert_eq!(
        Rejection::TooManyProcessors.to_string(),
        "More processors requested than permitted"
    );
    assert_eq!(
        start(&mut c, 1001, 1),
        Reply::Rejected(Rejection::AccessDenied)
    );
    assert!(matches!(
        start(&mut c, 0, 1),
        Reply::StepStarted { step_id: 1, .. }
    ));
    let end = |c: &mut Cluster, step_id: u32, exit_code: i32| {
        c.run(Command::EndStep {
            job_id: id,
            step_id,
            exit_code,
            signal: 0,
        })
    };
    assert_eq!(end(&mut c, 0, 3), Reply::Ok);
    assert_eq!(
        end(&mut c, 0, 0),
        Reply::Ok,
        "a second report changes nothing"
    );
    let s0 = &c.job(id).steps[0];
    assert_eq!((s0.state, s0.exit_code), (JobState::Failed, 3));
    assert!(matches!(end(&mut c, 7, 0), Reply::Rejected(_)));
    // Step 1 still runs; requeue: it ends with the run, and the next run starts at step 0.
    let r = c.run(Command::Requeue {
        targets: vec![JobRef {
            job: id,
            task: None,
        }],
        hold: false,
        uid: 0,
    });
    assert!(matches!(r, Reply::Outcomes { .. }), "{r:?}");
    c.run(Command::JobFinished {
        job_id: id,
        node: "n1".into(),
        exit_code: 0,
        signal: 0,
    });
    assert_eq!(c.job(id).state, JobState::Pending);
    assert!(c.job(id).steps.is_empty());
    c.schedule();
    assert!(matches!(
        start(&mut c, 1000, 2),
        Reply::StepStarted { step_id: 0, .. }
    ));
    c.run(Command::JobFinished {
        job_id: id,
        node: "n1".into(),
        exit_code: 0,
        signal: 0,
    });
    let s = &c.job(id).steps[0];
    assert_eq!(s.state, JobState::Completed);
    assert!(s.end_at.is_some());
    assert_eq!(
        start(&mut c, 1000, 1),
        Reply::Rejected(Rejection::AlreadyDone)
    );
}

/// srun outside any allocation: its job has no batch script; srun ends it (owner or root,
/// running, no script) with its outcome, and the CPUs are free at once for the next job;
/// such a job cannot be requeued, and its accounting has the step rows but no `N.batch`.
#[test]
fn srun_ends_its_own_allocation_and_frees_it_at_once() {
    let mut c = Cluster::new();
    c.run(node("n1", 4, 8000));
    let alloc = |ntasks: u32| JobSpec {
        name: "hostname".into(),
        ntasks,
        cpus_per_task: 1,
        script: String::new(),
        uid: 1000,
        ..job(1)
    };
    let id = c.submit(alloc(4));
    let batch = c.submit(JobSpec {
        uid: 1000,
        ..job(4)
    });
    let complete = |c: &mut Cluster, job_id: JobId, uid: u32, exit_code: i32| {
        c.run(Command::CompleteAllocation {
            job_id,
            uid,
            exit_code,
            signal: 0,
        })
    };
    assert_eq!(
        complete(&mut c, id, 1000, 0),
        Reply::Rejected(Rejection::JobPending)
    );
    c.schedule();
    assert_eq!(c.job(id).state, JobState::Running);
    assert_eq!(c.job(batch).state, JobState::Pending, "the CPUs are taken");
    assert!(matches!(
        c.run(Command::StartStep {
            job_id: id,
            uid: 1000,
            name: "hostname".into(),
            request: steps::StepRequest {
                ntasks: 4,
                nodes: None,
                ntasks_per_node: None,
                cpus_per_task: 1,
            },
        }),
        Reply::StepStarted { step_id: 0, .. }
    ));
    assert_eq!(
        complete(&mut c, id, 1001, 0),
        Reply::Rejected(Rejection::AccessDenied)
    );
    assert_eq!(
        c.run(Command::Requeue {
            targets: vec![JobRef {
                job: id,
                task: None
            }],
            hold: false,
            uid: 0,
        }),
        Reply::Outcomes {
            outcomes: vec![(
                JobRef {
                    job: id,
                    task: None
                },
                Some(Rejection::Invalid(
                    "Only batch jobs are accepted or processed".into()
                ))
            )]
        }
    );
    c.run(Command::EndStep {
        job_id: id,
        step_id: 0,
        exit_code: 1,
        signal: 0,
    });
    assert_eq!(complete(&mut c, id, 1000, 1), Reply::Ok);
    let j = c.job(id);
    assert_eq!(
        (j.state, j.exit_code, j.completing),
        (JobState::Failed, 1, false)
    );
    assert_eq!(c.state.nodes["n1"].alloc_cpus, 0, "freed at once");
    assert_eq!(
        complete(&mut c, id, 1000, 0),
        Reply::Rejected(Rejection::AlreadyDone),
        "ended once"
    );
    // The batch host's late report of its supervisor's stop changes nothing.
    c.run(Command::JobEnded {
        job_id: id,
        node: "n1".into(),
        exit_code: 0,
        signal: 15,
        cause: EndCause::Stopped,
        max_rss_kb: 0,
        total_cpu_ms: 0,
    });
    assert_eq!(c.job(id).state, JobState::Failed);
    let r = c.state.accounting.get(id).expect("a record");
    assert_eq!((r.state, r.exit_code), (JobState::Failed, 1));
    assert!(r.batch.is_none(), "no N.batch row without a batch script");
    assert_eq!(r.steps.len(), 1);
    assert_eq!(
        (r.steps[0].state, r.steps[0].exit_code),
        (JobState::Failed, 1)
    );
    c.schedule();
    assert_eq!(c.job(batch).state, JobState::Running);
    // A batch job is not ended this way; a job's user or root only.
    assert!(matches!(
        complete(&mut c, batch, 0, 0),
        Reply::Rejected(Rejection::Invalid(_))
    ));
    let other = c.submit(alloc(1));
    assert_eq!(
        complete(&mut c, JobId(999), 0, 0),
        Reply::Rejected(Rejection::InvalidJobId)
    );
    c.run(Command::JobFinished {
        job_id: batch,
        node: "n1".into(),
        exit_code: 0,
        signal: 0,
    });
    c.schedule();
    assert_eq!(c.job(other).state, JobState::Running);
    assert_eq!(complete(&mut c, other, 0, 0), Reply::Ok, "root may end it");
    assert_eq!(c.job(other).state, JobState::Completed);
    // Past its time limit, srun's end (tasks killed by the supervisor's SIGTERM) is TIMEOUT.
    let late = c.submit(JobSpec {
        time_limit_min: Some(1),
        ..alloc(1)
    });
    c.schedule();
    assert_eq!(c.job(late).state, JobState::Running);
    c.at += 60_000;
    c.run(Command::CompleteAllocation {
        job_id: late,
        uid: 1000,
        exit_code: 0,
        signal: 15,
    });
    assert_eq!(c.job(late).state, JobState::Timeout);
}

/// `aftercorr` set with `scontrol update` on an array whose tasks have not started: a task
/// whose counterpart already ended (cancelled) is split off at once and never satisfied; the
/// tasks whose counterparts still pend keep waiting in the first record.
#[test]
fn aftercorr_given_by_update_decides_each_task() {
    let mut c = Cluster::new();
    let mut target = job(1);
    target.array = Some(ArraySpec {
        tasks: (0..3).collect(),
        max_running: 0,
    });
    target.hold = true;
    let a = c.submit(target.clone());
    target.hold = false;
    let b = c.submit(target);
    let cancel = |c: &mut Cluster, task| {
        c.run(Command::CancelRefs {
            targets: vec![JobRef { job: a, task }],
            uid: 0,
        })
    };
    // a_1 is cancelled; a_0 and a_2 still pend, held.
    cancel(&mut c, Some(1));
    let reply = c.run(Command::UpdateJob {
        targets: vec![JobRef { job: b, task: None }],
        update: JobUpdate {
            dependency: Some(Some(
                depend::Dependency::parse(&format!("aftercorr:{a}")).unwrap(),
            )),
            ..JobUpdate::default()
        },
        uid: 0,
    });
    assert!(
        matches!(reply, Reply::Outcomes { ref outcomes } if outcomes[0].1.is_none()),
        "{reply:?}"
    );
    let task = |c: &Cluster, t: u32| {
        c.state
            .array_records(b)
            .find(|j| j.array.as_ref().is_some_and(|p| p.task_id == Some(t)))
            .map(|j| j.dependency.as_ref().unwrap().readiness(c.state.now))
    };
    assert_eq!(task(&c, 1), Some(depend::Readiness::Never));
    assert_eq!(task(&c, 0), None, "task 0 still waits in the first record");
    assert_eq!(
        c.job(b).dependency.as_ref().unwrap().readiness(c.state.now),
        depend::Readiness::Waiting
    );
    assert_eq!(
        c.job(b).array.as_ref().unwrap().pending,
        [0, 2].into_iter().collect()
    );
}

/// The multifactor QOS factor (priority_multifactor.shtml): the job's QOS priority over the
/// highest QOS priority; `normal` (0 here) gives 0, and the weight turns it into priority.
#[test]
fn qos_priority_is_a_factor_of_the_highest() {
    let mut c = Cluster::new();
    c.run(Command::DefineQos(vec![
        Qos::normal(),
        Qos {
            name: "high".into(),
            priority: 100,
            max_wall_min: None,
            max_jobs_per_user: None,
        },
        Qos {
            name: "mid".into(),
            priority: 25,
            max_wall_min: None,
            max_jobs_per_user: None,
        },
    ]));
    let ids: Vec<JobId> = [None, Some("high"), Some("mid")]
        .into_iter()
        .map(|q| {
            let mut s = job(1);
            s.qos = q.map(str::to_string);
            c.submit(s)
        })
        .collect();
    let weights = priority::PriorityWeights {
        qos: 1000,
        ..priority::PriorityWeights::default()
    };
    let ctx = priority::PriorityContext::new(&c.state, c.state.now);
    let f: Vec<(f64, u32)> = ids
        .iter()
        .map(|id| {
            let f = ctx.factors(&c.state, c.job(*id), &weights);
            (f.qos, f.priority)
        })
        .collect();
    assert_eq!((f[0].0, f[1].0, f[2].0), (0.0, 1.0, 0.25));
    assert_eq!(f[1].1 - f[0].1, 1000);
    assert_eq!(f[2].1 - f[0].1, 250);
    // A QOS the table does not name is refused at submit.
    let mut s = job(1);
    s.qos = Some("gold".into());
    assert_eq!(
        c.run(Command::Submit(s)),
        Reply::Rejected(Rejection::InvalidQos)
    );
}

/// `aftercorr` between two 150-task arrays, run to the end: each dependent task runs only
/// after its counterpart completed, and the tasks whose counterparts failed (every seventh)
/// are left DependencyNeverSatisfied.
#[test]
fn aftercorr_pairs_every_task_of_large_arrays() {
    let mut c = Cluster::new();
    c.run(node("n1", 64, 64_000));
    let tasks = 150u32;
    let array = |c: &mut Cluster, dep: Option<String>| {
        let mut s = job(1);
        s.array = Some(ArraySpec {
            tasks: (0..tasks).collect(),
            max_running: 0,
        });
        s.dependency = dep.map(|d| depend::Dependency::parse(&d).unwrap());
        c.submit(s)
    };
    let first = array(&mut c, None);
    let second = array(&mut c, Some(format!("aftercorr:{first}")));
    let task_of = |j: &Job| j.array.as_ref().and_then(|a| a.task_id);
    // (array, task) → (start, end) of each task that ran (records are purged after MinJobAge).
    let mut ran: std::collections::BTreeMap<(JobId, u32), (u64, u64)> = Default::default();
    for _ in 0..100 {
        c.schedule();
        let running: Vec<(JobId, JobId, u32, u64)> = c
            .state
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| {
                let a = j.array.as_ref().unwrap();
                (
                    j.id,
                    a.array_job_id,
                    a.task_id.unwrap(),
                    j.start_at.unwrap(),
                )
            })
            .collect();
        if running.is_empty() {
            break;
        }
        for (id, array, task, start) in running {
            let code = i32::from(array == first && task % 7 == 0);
            c.run(Command::JobFinished {
                job_id: id,
                node: "n1".into(),
                exit_code: code,
                signal: 0,
            });
            ran.insert((array, task), (start, c.state.now));
        }
    }
    for t in 0..tasks {
        let counterpart = ran[&(first, t)];
        match ran.get(&(second, t)) {
            Some(&(start, _)) => {
                assert!(t % 7 != 0, "task {t} ran after its counterpart failed");
                assert!(
                    start >= counterpart.1,
                    "task {t} started before its counterpart ended"
                );
            }
            None => {
                assert_eq!(t % 7, 0, "task {t} never ran");
                let dependent = c
                    .state
                    .array_records(second)
                    .find(|j| task_of(j) == Some(t))
                    .unwrap_or_else(|| panic!("task {t} has a record of its own"));
                assert_eq!(
                    dependent
                        .dependency
                        .as_ref()
                        .unwrap()
                        .readiness(c.state.now),
                    depend::Readiness::Never,
                    "task {t}"
                );
            }
        }
    }
}
