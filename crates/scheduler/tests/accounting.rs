//! Accounting records (sacct's data) in the replicated state.
//! Reference: slurm.md §1.7 (a job row and an `N.batch` row; `CANCELLED by <uid>`; array
//! tasks as `N_i`), §5.1 (records outlive the job in slurmctld's memory; slurmdbd purges them
//! after `PurgeJobAfter`).

use drover_scheduler::accounting::{purge_due, JobRecord};
use drover_scheduler::plan::plan;
use drover_scheduler::state::MIN_JOB_AGE_MS;
use drover_scheduler::*;
use std::collections::BTreeSet;

struct Cluster {
    state: ClusterState,
    at: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let mut c = Cluster {
            state: ClusterState::new(),
            at: 1_000_000,
        };
        c.run(Command::DefinePartitions(vec![Partition::default_debug()]));
        c.run(Command::RegisterNode(NodeRegistration {
            name: "n1".into(),
            cpus: 4,
            real_memory_mb: 4000,
            ..Default::default()
        }));
        c
    }

    fn run_at(&mut self, at: u64, command: Command) -> Reply {
        self.at = at;
        let reply = self.state.apply_one(at, command);
        invariants::check(&self.state).expect("invariants hold after every apply");
        reply
    }

    fn run(&mut self, command: Command) -> Reply {
        self.run_at(self.at + 1000, command)
    }

    fn submit(&mut self, spec: JobSpec) -> JobId {
        match self.run(Command::Submit(spec)) {
            Reply::Submitted { job_id } => job_id,
            other => panic!("submit refused: {other:?}"),
        }
    }

    fn schedule(&mut self) {
        let p = plan(&self.state, self.state.now, &SchedConfig::default());
        self.run(Command::Allocate(p));
    }

    fn ended(&mut self, id: JobId, exit_code: i32, signal: i32, cause: EndCause) {
        let node = self.state.jobs[&id].batch_host().unwrap().to_string();
        self.run(Command::JobEnded {
            job_id: id,
            node,
            exit_code,
            signal,
            cause,
            max_rss_kb: 2048,
            total_cpu_ms: 1500,
        });
    }

    fn record(&self, id: JobId) -> &JobRecord {
        self.state
            .accounting
            .get(id)
            .unwrap_or_else(|| panic!("no record for job {id}"))
    }
}

fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        nodes_min: 1,
        ntasks: 1,
        cpus_per_task: 2,
        mem_per_node_mb: Some(500),
        user: "alice".into(),
        uid: 1000,
        gid: 1000,
        work_dir: "/home/alice".into(),
        script: "#!/bin/sh\ntrue\n".into(),
        ..Default::default()
    }
}

#[test]
fn a_finished_job_leaves_a_record_with_its_batch_step_that_outlives_min_job_age() {
    let mut c = Cluster::new();
    let id = c.submit(spec("ok"));
    let submit_at = c.at;
    assert!(
        c.state.accounting.get(id).is_none(),
        "no record while pending"
    );
    c.schedule();
    let start = c.at;
    c.ended(id, 0, 0, EndCause::Exited);
    let end = c.at;

    let r = c.record(id).clone();
    assert_eq!(r.state, JobState::Completed);
    assert_eq!((r.exit_code, r.exit_signal), (0, 0));
    assert_eq!(r.name, "ok");
    assert_eq!(r.partition, "debug");
    assert_eq!((r.user.as_str(), r.uid), ("alice", 1000));
    assert_eq!(r.submit_at, submit_at);
    assert_eq!(r.eligible_at, Some(submit_at));
    assert_eq!((r.start_at, r.end_at), (Some(start), Some(end)));
    assert_eq!((r.alloc_cpus, r.req_cpus, r.req_mem_mb), (2, 2, 500));
    assert_eq!(r.nodes, vec!["n1".to_string()]);
    assert_eq!(r.display_id(), id.to_string());
    let step = r.batch.as_ref().expect("a batch step");
    assert_eq!(step.state, JobState::Completed);
    assert_eq!((step.node.as_str(), step.cpus), ("n1", 2));
    assert_eq!(
        (step.max_rss_kb, step.total_cpu_ms),
        (Some(2048), Some(1500))
    );

    // MinJobAge later the job is gone from the queue, the record is not.
    c.run_at(end + MIN_JOB_AGE_MS + 1, Command::Allocate(Plan::default()));
    assert!(!c.state.jobs.contains_key(&id));
    assert_eq!(c.record(id), &r);
    assert_eq!(c.state.accounting_rows(&[id]), vec![r]);
}

#[test]
fn cancelled_jobs_remember_who_cancelled_them() {
    let mut c = Cluster::new();
    let running = c.submit(spec("run"));
    c.schedule();
    let held = c.submit(JobSpec {
        hold: true,
        ..spec("held")
    });
    c.run(Command::Cancel {
        job_ids: vec![held],
        uid: 1000,
    });
    let r = c.record(held);
    assert_eq!((r.state, r.cancelled_by), (JobState::Cancelled, Some(1000)));
    assert!(r.batch.is_none(), "a job that never started has no step");
    assert_eq!(r.eligible_at, None, "a held job never became eligible");
    let queued = c.submit(JobSpec {
        nodes_min: 1,
        cpus_per_task: 4,
        ..spec("queued")
    });
    let submitted = c.at;
    c.run(Command::Cancel {
        job_ids: vec![queued],
        uid: 1000,
    });
    assert_eq!(
        c.record(queued).eligible_at,
        Some(submitted),
        "cancelled while waiting for resources: it was eligible"
    );

    c.run(Command::CancelRefs {
        targets: vec![JobRef {
            job: running,
            task: None,
        }],
        uid: 0,
    });
    assert!(
        c.state.accounting.get(running).is_none(),
        "written when the processes are gone"
    );
    let live = c.state.accounting_rows(&[running]);
    assert_eq!(
        live[0].cancelled_by,
        Some(0),
        "sacct sees it while completing"
    );
    c.ended(running, 0, 15, EndCause::Stopped);
    let r = c.record(running);
    assert_eq!((r.state, r.cancelled_by), (JobState::Cancelled, Some(0)));
    assert_eq!(
        (r.exit_code, r.exit_signal),
        (0, 0),
        "Slurm: the job row says 0:0"
    );
    let step = r.batch.as_ref().unwrap();
    assert_eq!(
        (step.state, step.exit_code, step.exit_signal),
        (JobState::Cancelled, 0, 15)
    );
}

#[test]
fn failures_timeouts_and_array_tasks_get_their_own_rows() {
    let mut c = Cluster::new();
    let failing = c.submit(spec("fail"));
    let slow = c.submit(spec("slow"));
    c.schedule();
    c.ended(failing, 3, 0, EndCause::Exited);
    c.ended(slow, 0, 9, EndCause::TimeLimit);
    assert_eq!(c.record(failing).state, JobState::Failed);
    assert_eq!(c.record(failing).exit_code, 3);
    assert_eq!(
        c.record(failing).batch.as_ref().unwrap().state,
        JobState::Failed
    );
    assert_eq!(c.record(slow).state, JobState::Timeout);
    assert_eq!(
        c.record(slow).batch.as_ref().unwrap().state,
        JobState::Cancelled
    );

    let array = c.submit(JobSpec {
        array: Some(ArraySpec {
            tasks: (0..4).collect(),
            max_running: 0,
        }),
        ..spec("arr")
    });
    c.schedule(); // two tasks fit on 4 CPUs
    let rows = c.state.accounting_rows(&[array]);
    let ids: Vec<String> = rows.iter().map(JobRecord::display_id).collect();
    assert_eq!(
        ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            format!("{array}_[2-3]").as_str(),
            format!("{array}_0").as_str(),
            format!("{array}_1").as_str()
        ])
    );
    for r in rows.iter().filter(|r| r.state == JobState::Running) {
        c.ended(r.job_id, 0, 0, EndCause::Exited);
    }
    // The rest never start: cancel the array.
    c.run(Command::Cancel {
        job_ids: vec![array],
        uid: 1000,
    });
    let rows = c.state.accounting_rows(&[array]);
    let mut shown: Vec<(String, JobState)> =
        rows.iter().map(|r| (r.display_id(), r.state)).collect();
    shown.sort();
    assert_eq!(
        shown,
        vec![
            (format!("{array}_0"), JobState::Completed),
            (format!("{array}_1"), JobState::Completed),
            (format!("{array}_[2-3]"), JobState::Cancelled),
        ]
    );
    assert!(rows.iter().all(|r| r.array_job_id == Some(array)));
}

#[test]
fn records_are_purged_through_the_log_after_the_retention() {
    let mut c = Cluster::new();
    let first = c.submit(spec("a"));
    c.run(Command::Cancel {
        job_ids: vec![first],
        uid: 0,
    });
    let first_end = c.at;
    let second = c.submit(spec("b"));
    c.run_at(
        first_end + 10_000,
        Command::Cancel {
            job_ids: vec![second],
            uid: 0,
        },
    );
    let retention = 60_000;
    assert_eq!(purge_due(&c.state, first_end + retention, retention), None);
    assert_eq!(
        purge_due(&c.state, first_end + retention, 0),
        None,
        "0 keeps all"
    );
    let cutoff = purge_due(&c.state, first_end + retention + 1, retention).expect("due");
    assert_eq!(cutoff, first_end + 1);
    c.run(Command::PurgeRecords {
        ended_before: cutoff,
    });
    assert!(c.state.accounting.get(first).is_none());
    assert!(c.state.accounting.get(second).is_some());
    assert_eq!(c.state.accounting.len(), 1);
}

#[test]
fn the_purge_command_has_a_fixed_encoding() {
    // Append-only contract (STYLE P5): the serde name is part of the log format.
    let json = serde_json::to_string(&Command::PurgeRecords { ended_before: 7 }).unwrap();
    assert_eq!(json, r#"{"purge_records":{"ended_before":7}}"#);
}
