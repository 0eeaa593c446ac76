//! `Command::JobEnded`: a node's final report that says why the job ended.
//! Reference: slurm.md §4.7 (a job killed at its time limit ends TIMEOUT) and §4.11 (an OOM
//! kill in the job's cgroup ends it OUT_OF_MEMORY); a cancelled job stays CANCELLED.

use drover_scheduler::plan::plan;
use drover_scheduler::*;

fn apply(state: &mut ClusterState, at: &mut u64, command: Command) -> Reply {
    *at += 1000;
    let p = Proposal {
        at: *at,
        requests: vec![Request {
            request_id: String::new(),
            command,
        }],
    };
    let reply = state.apply(&p).remove(0);
    invariants::check(state).expect("invariants hold after every apply");
    reply
}

fn ended(job_id: JobId, cause: EndCause, signal: i32) -> Command {
    Command::JobEnded {
        job_id,
        node: "n1".into(),
        exit_code: 0,
        signal,
        cause,
        max_rss_kb: 65_536,
        total_cpu_ms: 1200,
    }
}

#[test]
fn time_limit_and_oom_end_states_and_cancel_wins() {
    let mut s = ClusterState::new();
    let mut at = 1_000_000;
    apply(
        &mut s,
        &mut at,
        Command::DefinePartitions(vec![Partition::default_debug()]),
    );
    apply(
        &mut s,
        &mut at,
        Command::RegisterNode(NodeRegistration {
            name: "n1".into(),
            cpus: 8,
            real_memory_mb: 1000,
            ..Default::default()
        }),
    );
    let mut ids = Vec::new();
    for _ in 0..4 {
        let spec = JobSpec {
            name: "j".into(),
            nodes_min: 1,
            ntasks: 1,
            cpus_per_task: 1,
            script: "#!/bin/sh\ntrue\n".into(),
            ..Default::default()
        };
        match apply(&mut s, &mut at, Command::Submit(spec)) {
            Reply::Submitted { job_id } => ids.push(job_id),
            other => panic!("submit refused: {other:?}"),
        }
    }
    let p = plan(&s, s.now, &SchedConfig::default());
    apply(&mut s, &mut at, Command::Allocate(p));
    assert!(ids.iter().all(|id| s.jobs[id].state == JobState::Running));

    apply(&mut s, &mut at, ended(ids[0], EndCause::TimeLimit, 9));
    apply(&mut s, &mut at, ended(ids[1], EndCause::OutOfMemory, 9));
    apply(&mut s, &mut at, ended(ids[2], EndCause::Exited, 0));
    apply(
        &mut s,
        &mut at,
        Command::Cancel {
            job_ids: vec![ids[3]],
            uid: 0,
        },
    );
    apply(&mut s, &mut at, ended(ids[3], EndCause::Stopped, 15));
    // A duplicate report changes nothing.
    apply(&mut s, &mut at, ended(ids[0], EndCause::Exited, 0));

    let states: Vec<_> = ids
        .iter()
        .map(|id| (s.jobs[id].state, s.jobs[id].exit_signal))
        .collect();
    assert_eq!(
        states,
        vec![
            (JobState::Timeout, 9),
            (JobState::OutOfMemory, 9),
            (JobState::Completed, 0),
            (JobState::Cancelled, 0),
        ]
    );
    assert!(ids.iter().all(|id| !s.jobs[id].completing));
    assert_eq!(s.nodes["n1"].alloc_cpus, 0, "every job released its CPUs");
}
