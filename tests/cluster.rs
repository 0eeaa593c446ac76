//! End to end: real `drover` processes on 127.0.0.1 (3 or 5 replicas, node daemons), driven
//! by the real commands. No mocks of our own parts.

mod common;

use common::TestCluster;
use std::time::{Duration, Instant};

const SCRIPT: &str = "#!/bin/sh\necho \"hello from $SLURM_JOB_ID on $SLURMD_NODENAME ($SLURM_JOB_NODELIST, $SLURM_CPUS_ON_NODE cpus) name=$SLURM_JOB_NAME dir=$SLURM_SUBMIT_DIR\"\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_job_submitted_through_a_follower_runs_and_writes_its_output() {
    let c = TestCluster::start(3, 2);
    let (_, leader) = c.leader(Duration::from_secs(10));
    let follower = c
        .controllers
        .iter()
        .map(|(_, a)| a.clone())
        .find(|a| *a != leader)
        .expect("a follower");
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let id = c.sbatch(&follower, &work, &["-J", "greet"], SCRIPT);
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));

    let output = std::fs::read_to_string(work.join(format!("slurm-{id}.out")))
        .expect("slurm-N.out in the submit dir");
    assert!(
        output.starts_with(&format!("hello from {id} on n")),
        "output: {output:?}"
    );
    assert!(output.contains("name=greet"), "output: {output:?}");
    assert!(
        output.contains(&format!("dir={}", work.display())),
        "output: {output:?}"
    );

    // squeue (default format) no longer lists it; scontrol shows it completed with exit 0:0.
    let q = c.cmd_at(&follower, "squeue", &[], &work, None);
    assert!(q.status.success());
    assert_eq!(
        stdout(&q).lines().next().unwrap_or(""),
        "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
    );
    let show = stdout(&c.cmd("scontrol", &["show", "job", &id.to_string()]));
    assert!(show.contains("ExitCode=0:0"), "{show}");
}

#[test]
fn killing_the_leader_keeps_submits_working_and_loses_nothing() {
    let c = TestCluster::start(3, 2);
    let addrs = c.all_addrs();
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let sleeper = "#!/bin/sh\nsleep 4\necho done $SLURM_JOB_ID\n";
    let mut acked: Vec<u64> = (0..3)
        .map(|_| c.sbatch(&addrs, &work, &[], sleeper))
        .collect();
    for &id in &acked {
        c.wait_state(id, "RUNNING", Duration::from_secs(30));
    }

    let (leader, _) = c.leader(Duration::from_secs(10));
    c.kill9(&format!("ctld-{leader}"));
    let killed_at = Instant::now();
    // The first sbatch after the kill succeeds (it may wait for the election).
    let id = c.sbatch(&addrs, &work, &["--hold"], "#!/bin/sh\ntrue\n");
    let took = killed_at.elapsed();
    eprintln!("first submit after killing the leader took {took:?}");
    acked.push(id);
    let (new_leader, _) = c.leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);

    // Every acknowledged job is still listed; the running ones finish normally.
    let listed = stdout(&c.cmd("squeue", &["-h", "-t", "all", "-o", "%i"]));
    for id in &acked {
        assert!(
            listed.lines().any(|l| l.trim() == id.to_string()),
            "job {id} missing from:\n{listed}"
        );
    }
    for &id in &acked[..3] {
        c.wait_state(id, "COMPLETED", Duration::from_secs(30));
        let out = std::fs::read_to_string(work.join(format!("slurm-{id}.out"))).unwrap_or_default();
        assert_eq!(out.trim(), format!("done {id}"));
    }
    c.restart(&format!("ctld-{leader}"));
}

#[test]
fn every_replica_killed_and_restarted_brings_the_state_back() {
    let c = TestCluster::start(3, 1);
    let addrs = c.all_addrs();
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|_| c.sbatch(&addrs, &work, &["--hold"], "#!/bin/sh\ntrue\n"))
        .collect();
    for (id, _) in c.controllers.clone() {
        c.kill9(&format!("ctld-{id}"));
    }
    for (id, _) in c.controllers.clone() {
        c.restart(&format!("ctld-{id}"));
    }
    c.leader(Duration::from_secs(20));
    let listed = stdout(&c.cmd("squeue", &["-h", "-o", "%i %t %r"]));
    for id in &ids {
        assert!(
            listed.contains(&format!("{id} PD JobHeldUser")),
            "job {id} not back:\n{listed}"
        );
    }
    let next = c.sbatch(&addrs, &work, &["--hold"], "#!/bin/sh\ntrue\n");
    assert_eq!(
        next,
        ids.last().unwrap() + 1,
        "ids continue from the restored counter"
    );
}

#[test]
fn five_replicas_survive_two_killed() {
    let c = TestCluster::start(5, 1);
    let addrs = c.all_addrs();
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let before = c.sbatch(&addrs, &work, &[], "#!/bin/sh\necho five\n");
    let (leader, _) = c.leader(Duration::from_secs(10));
    let other = c
        .controllers
        .iter()
        .map(|(id, _)| *id)
        .find(|&id| id != leader)
        .unwrap();
    c.kill9(&format!("ctld-{leader}"));
    c.kill9(&format!("ctld-{other}"));
    let after = c.sbatch(&addrs, &work, &[], "#!/bin/sh\necho still\n");
    c.wait_state(before, "COMPLETED", Duration::from_secs(30));
    c.wait_state(after, "COMPLETED", Duration::from_secs(30));
    let pings = c.ping();
    assert_eq!(
        pings.iter().filter(|(_, _, up)| !up).count(),
        2,
        "{pings:?}"
    );
    assert_eq!(
        pings.iter().filter(|(_, leader, _)| *leader).count(),
        1,
        "{pings:?}"
    );
}

#[test]
fn bad_input_gets_slurms_errors_and_never_a_hang() {
    let c = TestCluster::start(3, 1);
    let addrs = c.all_addrs();
    let work = c.dir.path().to_path_buf();

    let no_shebang = c.cmd_at(&addrs, "sbatch", &[], &work, Some("echo hi\n"));
    assert_eq!(no_shebang.status.code(), Some(1));
    assert!(
        stderr(&no_shebang).starts_with("sbatch: error: This does not look like a batch script."),
        "{}",
        stderr(&no_shebang)
    );

    let bad_part = c.cmd_at(
        &addrs,
        "sbatch",
        &["-p", "nosuch"],
        &work,
        Some("#!/bin/sh\ntrue\n"),
    );
    assert_eq!(bad_part.status.code(), Some(1));
    assert_eq!(
        stderr(&bad_part),
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    );

    let started = Instant::now();
    let unreachable = c.cmd_at(
        "127.0.0.1:1,127.0.0.1:2",
        "sbatch",
        &[],
        &work,
        Some("#!/bin/sh\ntrue\n"),
    );
    assert_eq!(unreachable.status.code(), Some(1));
    let msg = stderr(&unreachable);
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("127.0.0.1:2"),
        "names every address: {msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded");

    let unknown_job = c.cmd("scancel", &["999999"]);
    assert_eq!(unknown_job.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown_job),
        "scancel: error: Kill job error on job id 999999: Invalid job id specified\n"
    );

    let one = c.cmd("squeue", &["-j", "999999"]);
    assert_eq!(one.status.code(), Some(1));
    assert_eq!(
        stderr(&one),
        "slurm_load_jobs error: Invalid job id specified\n"
    );
}

#[test]
fn scancel_stops_a_running_job_and_the_node_reports_it() {
    let c = TestCluster::start(3, 1);
    let addrs = c.all_addrs();
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = c.sbatch(&addrs, &work, &[], "#!/bin/sh\nsleep 300\n");
    c.wait_state(id, "RUNNING", Duration::from_secs(30));
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(id, "CANCELLED", Duration::from_secs(30));
    // Its CPUs are free again: a job needing the whole node starts.
    let next = c.sbatch(&addrs, &work, &["-c", "2"], "#!/bin/sh\ntrue\n");
    c.wait_state(next, "COMPLETED", Duration::from_secs(30));
}
