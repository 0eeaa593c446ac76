//! End to end through `drover up`: job arrays, dependencies, hold/release and `--begin`, with
//! real processes (issue 3's job kinds and controls, as users reach them through sbatch,
//! scontrol, scancel and squeue).

mod common;

use common::{pids_with, TestCluster};
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A 3-replica, 1-node cluster with a leader, a work directory, and every replica's address.
fn cluster() -> (TestCluster, std::path::PathBuf, String) {
    let c = TestCluster::start(3, 1);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    (c, work, addrs)
}

/// `squeue -h -o "%i %T %r"` lines.
fn queue(c: &TestCluster) -> Vec<String> {
    let out = c.cmd("squeue", &["-h", "-o", "%i %T %r"]);
    stdout(&out).lines().map(str::to_string).collect()
}

/// Waits until `squeue` lists `line` (reasons appear with the next scheduling pass).
fn wait_listed(c: &TestCluster, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let q = queue(c);
        if q.iter().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "squeue never listed {line:?}: {q:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_array_runs_every_task_and_a_dependency_waits_for_all_of_them() {
    let (c, work, addrs) = cluster();

    // Held first, so that the dependent job is submitted before any task can end.
    let array = c.sbatch(
        &addrs,
        &work,
        &["--array=1-5:2%2", "-H", "-J", "arr"],
        "#!/bin/sh\necho \"task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID count=$SLURM_ARRAY_TASK_COUNT min=$SLURM_ARRAY_TASK_MIN max=$SLURM_ARRAY_TASK_MAX step=$SLURM_ARRAY_TASK_STEP job=$SLURM_JOB_ID\"\nsleep 1\n",
    );
    let after = c.sbatch(
        &addrs,
        &work,
        &[&format!("--dependency=afterok:{array}"), "-J", "after"],
        "#!/bin/sh\necho done\n",
    );
    wait_listed(&c, &format!("{array}_[1,3,5%2] PENDING JobHeldUser"));
    wait_listed(&c, &format!("{after} PENDING Dependency"));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &after.to_string()]));
    assert!(
        show.contains(&format!("Dependency=afterok:{array}_*(unfulfilled)")),
        "{show}"
    );

    let rel = c.cmd("scontrol", &["release", &array.to_string()]);
    assert!(rel.status.success(), "{}", stderr(&rel));
    c.wait_state(after, "COMPLETED", Duration::from_secs(60));

    // Every task wrote its own slurm-%A_%a.out with Slurm's array variables.
    for task in [1, 3, 5] {
        let path = work.join(format!("slurm-{array}_{task}.out"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), c.logs()));
        assert!(
            text.starts_with(&format!(
                "task {task} of {array} count=3 min=1 max=5 step=2 job="
            )),
            "{text}"
        );
    }
    // The last task ran in the array's own record; the others got ids of their own.
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &array.to_string()]));
    assert_eq!(show.lines().count(), 3, "{show}");
    assert!(show.contains("ArrayTaskId=5"), "{show}");
}

#[test]
fn hold_release_cancel_of_one_task_and_begin_time() {
    let (c, work, addrs) = cluster();

    // --begin in the future: pending with reason BeginTime.
    let later = c.sbatch(
        &addrs,
        &work,
        &["--begin=now+1hour", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    wait_listed(&c, &format!("{later} PENDING BeginTime"));

    // An admin (these tests run as root) holds with JobHeldAdmin; uhold is a user hold.
    let id = c.sbatch(
        &addrs,
        &work,
        &["-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let hold = c.cmd("scontrol", &["hold", &id.to_string()]);
    assert!(hold.status.success(), "{}", stderr(&hold));
    wait_listed(&c, &format!("{id} PENDING JobHeldAdmin"));
    let hold = c.cmd("scontrol", &["uhold", &id.to_string()]);
    assert!(hold.status.success(), "{}", stderr(&hold));
    wait_listed(&c, &format!("{id} PENDING JobHeldUser"));

    // Unknown ids and finished jobs get Slurm's texts.
    let bad = c.cmd("scontrol", &["hold", "999999"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad),
        "scontrol: error: Invalid job id specified for job 999999\n"
    );

    // One task of a held array, cancelled by its index; the rest run once released.
    let array = c.sbatch(
        &addrs,
        &work,
        &["-a", "0-2", "-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let cancel = c.cmd("scancel", &[&format!("{array}_1")]);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    wait_listed(&c, &format!("{array}_[0,2] PENDING JobHeldUser"));
    let rel = c.cmd("scontrol", &["release", &array.to_string()]);
    assert!(rel.status.success(), "{}", stderr(&rel));
    c.wait_until("the array's tasks to end", Duration::from_secs(60), || {
        let out = c.cmd("scontrol", &["-o", "show", "job", &array.to_string()]);
        let text = stdout(&out);
        text.lines().count() == 3
            && text.matches("JobState=COMPLETED").count() == 2
            && text.matches("JobState=CANCELLED").count() == 1
    });

    let release = c.cmd("scontrol", &["release", &id.to_string()]);
    assert!(release.status.success(), "{}", stderr(&release));
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));
    let again = c.cmd("scontrol", &["hold", &id.to_string()]);
    assert_eq!(
        stderr(&again),
        format!("scontrol: error: Job is no longer pending execution for job {id}\n")
    );
    wait_listed(&c, &format!("{later} PENDING BeginTime"));
}

#[test]
fn a_requeued_job_runs_again_with_its_restart_count() {
    let (c, work, addrs) = cluster();

    // The first run waits; the second one (SLURM_RESTART_COUNT=1) ends at once.
    let id = c.sbatch(
        &addrs,
        &work,
        &["-o", "/dev/null"],
        "#!/bin/sh\necho \"run ${SLURM_RESTART_COUNT:-0}\" >> runs.txt\nif [ -z \"$SLURM_RESTART_COUNT\" ]; then sleep 600; fi\n",
    );
    c.wait_state(id, "RUNNING", Duration::from_secs(30));
    c.wait_until("the first run to start", Duration::from_secs(30), || {
        std::fs::read_to_string(work.join("runs.txt")).is_ok_and(|t| t == "run 0\n")
    });
    // The running job's batch step, as `scontrol show step` lists it.
    let steps = stdout(&c.cmd("scontrol", &["show", "step"]));
    assert!(
        steps.starts_with(&format!("StepId={id}.batch UserId=")),
        "{steps}"
    );
    assert!(
        steps.contains("\n   State=RUNNING Partition=debug NodeList=n1\n"),
        "{steps}"
    );
    let missing = stdout(&c.cmd("scontrol", &["show", "step", &format!("{id}.5")]));
    assert_eq!(missing, format!("Job step {id}.5 not found\n"));
    let rq = c.cmd("scontrol", &["requeue", &id.to_string()]);
    assert!(rq.status.success(), "{}", stderr(&rq));
    c.wait_state(id, "COMPLETED", Duration::from_secs(60));
    assert_eq!(
        std::fs::read_to_string(work.join("runs.txt")).unwrap(),
        "run 0\nrun 1\n"
    );
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &id.to_string()]));
    assert!(show.contains(" Restarts=1 "), "{show}");

    // A finished job pends again at once; requeuehold leaves it held.
    let rq = c.cmd("scontrol", &["requeuehold", &id.to_string()]);
    assert!(rq.status.success(), "{}", stderr(&rq));
    wait_listed(&c, &format!("{id} PENDING JobHeldUser"));
    let rq = c.cmd("scontrol", &["requeue", &id.to_string()]);
    assert_eq!(
        stderr(&rq),
        format!("scontrol: error: Job is pending execution for job {id}\n")
    );
}

/// Jepsen CI found a requeued job's second run launched twice: the node daemon, killed while
/// the second run went on, found the first run's end in its files when it came back and took
/// the second run's directory for a leftover. Each run must start once.
#[test]
fn a_node_daemon_killed_during_a_requeued_run_does_not_start_it_again() {
    let (c, work, addrs) = cluster();
    let id = c.sbatch(
        &addrs,
        &work,
        &["-o", "/dev/null"],
        "#!/bin/sh\necho \"run ${SLURM_RESTART_COUNT:-0}\" >> runs.txt\nif [ -z \"$SLURM_RESTART_COUNT\" ]; then sleep 600; else sleep 4; fi\n",
    );
    let runs = || std::fs::read_to_string(work.join("runs.txt")).unwrap_or_default();
    c.wait_until("the first run to start", Duration::from_secs(30), || {
        runs() == "run 0\n"
    });
    let rq = c.cmd("scontrol", &["requeue", &id.to_string()]);
    assert!(rq.status.success(), "{}", stderr(&rq));
    c.wait_until("the second run to start", Duration::from_secs(30), || {
        runs() == "run 0\nrun 1\n"
    });
    c.kill9("noded-n1");
    c.restart("noded-n1");
    c.wait_state(id, "COMPLETED", Duration::from_secs(60));
    // Long enough for a wrongly relaunched run to have written its line.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(), "run 0\nrun 1\n");
}

#[test]
fn scancel_signal_reaches_the_chosen_processes_and_sbatch_signal_warns() {
    let (c, work, addrs) = cluster();
    let script = |tag: &str| {
        format!(
            "#!/bin/bash\ntrap 'echo batch-usr1 >> {tag}.txt' USR1\nbash -c 'trap \"echo step-usr1 >> {tag}.txt; exit 0\" USR1; echo ready >> {tag}.txt; while :; do sleep 0.1; done' &\nchild=$!\nwhile kill -0 $child 2>/dev/null; do sleep 0.1; done\necho done >> {tag}.txt\n"
        )
    };
    let read =
        |tag: &str| std::fs::read_to_string(work.join(format!("{tag}.txt"))).unwrap_or_default();

    // Default scope: the job's processes but not the batch shell.
    let id = c.sbatch(&addrs, &work, &["-o", "/dev/null"], &script("steps"));
    c.wait_until("the job to start", Duration::from_secs(30), || {
        read("steps") == "ready\n"
    });
    let out = c.cmd("scancel", &[&id.to_string(), "--signal", "USR1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));
    assert_eq!(read("steps"), "ready\nstep-usr1\ndone\n");

    // --batch: the batch shell only (its child keeps running until cancelled).
    let id = c.sbatch(&addrs, &work, &["-o", "/dev/null"], &script("batch"));
    c.wait_until("the job to start", Duration::from_secs(30), || {
        read("batch") == "ready\n"
    });
    let out = c.cmd("scancel", &["-b", "-s", "USR1", &id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_until("the batch shell's trap", Duration::from_secs(30), || {
        read("batch") == "ready\nbatch-usr1\n"
    });
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(id, "CANCELLED", Duration::from_secs(30));

    // sbatch --signal=B:USR1@55 with a one-minute limit: the warning comes ~5 s in.
    let id = c.sbatch(
        &addrs,
        &work,
        &["-o", "/dev/null", "-t", "1", "--signal=B:USR1@55"],
        "#!/bin/bash\ntrap 'echo warned >> warn.txt; exit 0' USR1\nwhile :; do sleep 0.1; done\n",
    );
    c.wait_state(id, "COMPLETED", Duration::from_secs(40));
    assert_eq!(
        std::fs::read_to_string(work.join("warn.txt")).unwrap(),
        "warned\n"
    );
}

#[test]
fn scontrol_update_changes_jobs_and_drains_nodes() {
    let (c, work, addrs) = cluster();
    let id = c.sbatch(
        &addrs,
        &work,
        &["-H", "-t", "30", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let up = c.cmd(
        "scontrol",
        &[
            "update",
            &format!("JobId={id}"),
            "TimeLimit=5",
            "Name=renamed",
        ],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &id.to_string()]));
    assert!(show.contains("JobName=renamed "), "{show}");
    assert!(show.contains(" TimeLimit=00:05:00 "), "{show}");
    let bad = c.cmd("scontrol", &["update", "JobId=999999", "TimeLimit=5"]);
    assert_eq!(
        (bad.status.code(), stderr(&bad)),
        (
            Some(1),
            "slurm_update error: Invalid job id specified\n".to_string()
        )
    );

    // A drain needs a reason; a drained node takes no new work until resumed.
    let no_reason = c.cmd("scontrol", &["update", "NodeName=n1", "State=DRAIN"]);
    assert_eq!(no_reason.status.code(), Some(1));
    assert!(
        stderr(&no_reason).contains("You must specify a reason"),
        "{}",
        stderr(&no_reason)
    );
    let drain = c.cmd(
        "scontrol",
        &["update", "NodeName=n1", "State=DRAIN", "Reason=maintenance"],
    );
    assert!(drain.status.success(), "{}", stderr(&drain));
    let node = stdout(&c.cmd("scontrol", &["-o", "show", "node", "n1"]));
    assert!(node.contains("State=IDLE+DRAIN "), "{node}");
    assert!(node.contains("Reason=maintenance"), "{node}");
    let rel = c.cmd("scontrol", &["release", &id.to_string()]);
    assert!(rel.status.success(), "{}", stderr(&rel));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.job_state(id).as_deref(), Some("PENDING"));
    let resume = c.cmd("scontrol", &["update", "NodeName=n1", "State=RESUME"]);
    assert!(resume.status.success(), "{}", stderr(&resume));
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));
}

/// `scontrol update PartitionName=`: an operator takes a partition DOWN, jobs pend with
/// `PartitionDown`, the change outlives the leader (a new leader with the same configuration
/// does not define the partitions again), and `State=UP` lets the job run.
#[test]
fn scontrol_update_partition_outlives_a_leader_change() {
    let (c, work, addrs) = cluster();
    let up = c.cmd(
        "scontrol",
        &["update", "PartitionName=debug", "State=DOWN", "MaxTime=30"],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "partition", "debug"]));
    assert!(show.contains(" State=DOWN "), "{show}");
    assert!(show.contains(" MaxTime=00:30:00 "), "{show}");
    let id = c.sbatch(&addrs, &work, &["-o", "/dev/null"], "#!/bin/sh\ntrue\n");
    wait_listed(&c, &format!("{id} PENDING PartitionDown"));

    let (leader, _) = c.leader(Duration::from_secs(10));
    c.kill9(&format!("ctld-{leader}"));
    let (new_leader, _) = c.leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    // The new leader's loops have started; its partition sync must leave the change alone.
    std::thread::sleep(Duration::from_secs(2));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "partition", "debug"]));
    assert!(show.contains(" State=DOWN "), "{show}");
    wait_listed(&c, &format!("{id} PENDING PartitionDown"));

    let bad = c.cmd("scontrol", &["update", "PartitionName=nope", "State=UP"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("Invalid partition name specified"),
        "{}",
        stderr(&bad)
    );
    let up = c.cmd("scontrol", &["update", "PartitionName=debug", "State=UP"]);
    assert!(up.status.success(), "{}", stderr(&up));
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));
}

#[test]
fn sbatch_wait_returns_the_jobs_exit_code_and_open_mode_append_keeps_output() {
    let (c, work, addrs) = cluster();
    let out = c.cmd_at(
        &addrs,
        "sbatch",
        &["--wait", "-o", "/dev/null", "--wrap", "exit 3"],
        &work,
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Submitted batch job "));
    let out = c.cmd_at(&addrs, "sbatch", &["-W", "--wrap", "true"], &work, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Two runs into one file: appended with --open-mode=append, emptied first without.
    for mode in ["append", "a"] {
        let out = c.cmd_at(
            &addrs,
            "sbatch",
            &[
                "-W",
                "-o",
                "kept.txt",
                &format!("--open-mode={mode}"),
                "--wrap",
                "echo run",
            ],
            &work,
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read_to_string(work.join("kept.txt")).unwrap(),
        "run\nrun\n"
    );
    let out = c.cmd_at(
        &addrs,
        "sbatch",
        &["-W", "-o", "kept.txt", "--wrap", "echo new"],
        &work,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(work.join("kept.txt")).unwrap(),
        "new\n"
    );
}

#[test]
fn squeue_r_lists_array_tasks_and_scontrol_wait_job_waits_for_the_start() {
    let (c, work, addrs) = cluster();
    let array = c.sbatch(
        &addrs,
        &work,
        &["-H", "-a", "1-3", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let q = stdout(&c.cmd("squeue", &["-h", "-r", "-o", "%i"]));
    assert_eq!(
        q,
        format!("{array}_1\n{array}_2\n{array}_3\n"),
        "one line per task"
    );
    let id = c.sbatch(&addrs, &work, &["-o", "/dev/null"], "#!/bin/sh\nsleep 1\n");
    let w = c.cmd("scontrol", &["wait_job", &id.to_string()]);
    assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
    assert!(matches!(
        c.job_state(id).as_deref(),
        Some("RUNNING" | "COMPLETED")
    ));
}

#[test]
fn sbatch_test_only_says_when_and_submits_nothing() {
    let (c, work, addrs) = cluster();
    let out = c.cmd_at(
        &addrs,
        "sbatch",
        &["--test-only", "--wrap", "true"],
        &work,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with("sbatch: Job 1 to start at ")
            && err.ends_with(" using 1 processors on nodes n1 in partition debug\n"),
        "{err}"
    );
    assert!(queue(&c).is_empty(), "nothing was submitted");
    let bad = c.cmd_at(
        &addrs,
        "sbatch",
        &["--test-only", "-c", "999", "--wrap", "true"],
        &work,
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad),
        "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
    );
}

/// A node not heard from for longer than SlurmdTimeout is DOWN (reference/slurm.md §4.7 and
/// issue 4): a job that asked `--requeue` pends again and runs on another node, any other job
/// ends NODE_FAIL. When the node answers again, the old run is stopped there, and its late
/// report changes nothing.
#[test]
fn a_failed_nodes_requeue_job_runs_again_elsewhere_and_another_ends_node_fail() {
    let c = TestCluster::start_with(1, 3, &["--node-timeout-s", "2"]);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    // Each job takes a whole node (2 CPUs); the first run sleeps, a later run ends at once.
    let script = |name: &str| {
        format!("#!/bin/sh\necho \"{name} ${{SLURM_RESTART_COUNT:-0}} $SLURMD_NODENAME\" >> runs.txt\nif [ -z \"$SLURM_RESTART_COUNT\" ]; then sleep 6001; fi\n")
    };
    let again = c.sbatch(
        &addrs,
        &work,
        &["-o", "/dev/null", "-c", "2", "--requeue"],
        &script("again"),
    );
    let once = c.sbatch(
        &addrs,
        &work,
        &["-o", "/dev/null", "-c", "2"],
        &script("once"),
    );
    let runs = || std::fs::read_to_string(work.join("runs.txt")).unwrap_or_default();
    c.wait_until("both first runs", Duration::from_secs(30), || {
        runs().lines().count() == 2
    });
    let node_of = |name: &str| {
        runs()
            .lines()
            .find(|l| l.starts_with(&format!("{name} 0 ")))
            .and_then(|l| l.split(' ').nth(2))
            .map(str::to_string)
            .expect("the first run says where it runs")
    };
    let (first, other) = (node_of("again"), node_of("once"));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &again.to_string()]));
    assert!(show.contains(" Requeue=1 Restarts=0 "), "{show}");
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &once.to_string()]));
    assert!(show.contains(" Requeue=0 Restarts=0 "), "{show}");

    // Both daemons stop answering (their jobs' processes go on).
    let paused: Vec<i32> = [&first, &other]
        .iter()
        .map(|n| c.pid(&format!("noded-{n}")))
        .collect();
    let signal = |sig: &str| {
        for pid in &paused {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        }
    };
    signal("-STOP");
    c.wait_state(once, "NODE_FAIL", Duration::from_secs(60));
    c.wait_state(again, "COMPLETED", Duration::from_secs(60));
    let third = runs()
        .lines()
        .find(|l| l.starts_with("again 1 "))
        .and_then(|l| l.split(' ').nth(2))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        !third.is_empty() && third != first && third != other,
        "the second run went to the third node: {:?}",
        runs()
    );
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &again.to_string()]));
    assert!(show.contains(" Restarts=1 "), "{show}");

    // The daemons answer again: the first runs, no longer assigned, are stopped.
    signal("-CONT");
    c.wait_until(
        "the old runs to be stopped",
        Duration::from_secs(60),
        || pids_with("6001", "sleep").is_empty(),
    );
    // Their late reports changed nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.job_state(again).as_deref(), Some("COMPLETED"));
    assert_eq!(c.job_state(once).as_deref(), Some("NODE_FAIL"));
    assert_eq!(runs().lines().count(), 3, "{}", runs());
}

/// `--dependency=aftercorr:N` through sbatch (man1/sbatch.1): task i of the dependent array
/// runs once task i of N completed successfully; task 1's counterpart fails, so that task
/// never can (DependencyNeverSatisfied) while task 0 runs. scontrol spells the dependency as
/// Slurm does.
#[test]
fn aftercorr_pairs_the_tasks_of_two_arrays() {
    let (c, work, addrs) = cluster();
    let first = c.sbatch(
        &addrs,
        &work,
        &["--array=0-1", "-H", "-J", "first", "-o", "/dev/null"],
        "#!/bin/sh\nexit $SLURM_ARRAY_TASK_ID\n",
    );
    let second = c.sbatch(
        &addrs,
        &work,
        &[
            "--array=0-1",
            &format!("--dependency=aftercorr:{first}"),
            "-J",
            "second",
        ],
        "#!/bin/sh\necho corr $SLURM_ARRAY_TASK_ID\n",
    );
    wait_listed(&c, &format!("{second}_[0-1] PENDING Dependency"));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &second.to_string()]));
    assert!(
        show.contains(&format!("Dependency=aftercorr:{first}_*(unfulfilled)")),
        "{show}"
    );
    let rel = c.cmd("scontrol", &["release", &first.to_string()]);
    assert!(rel.status.success(), "{}", stderr(&rel));
    let out = work.join(format!("slurm-{second}_0.out"));
    c.wait_until(
        "task 0 of the dependent array",
        Duration::from_secs(60),
        || std::fs::read_to_string(&out).is_ok_and(|t| t == "corr 0\n"),
    );
    let q = queue(&c);
    let never: Vec<&String> = q
        .iter()
        .filter(|l| l.ends_with("PENDING DependencyNeverSatisfied"))
        .collect();
    assert_eq!(never.len(), 1, "{q:?}");
    assert!(never[0].starts_with(&format!("{second}_")), "{q:?}");
    assert!(!work.join(format!("slurm-{second}_1.out")).exists());
}

/// `OverSubscribe=` through the commands: `scontrol update PartitionName= OverSubscribe=`
/// shows in `scontrol show partition` and `sinfo %h` in Slurm's words, a bad value is refused
/// in them; `sbatch -s` shows as squeue's `%h` YES and a job with `--exclusive` as NO.
#[test]
fn oversubscribe_shows_in_slurms_words() {
    let (c, work, addrs) = cluster();
    let up = c.cmd(
        "scontrol",
        &["update", "PartitionName=debug", "OverSubscribe=FORCE:2"],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "partition", "debug"]));
    assert!(show.contains(" OverSubscribe=FORCE:2 "), "{show}");
    let sinfo = stdout(&c.cmd("sinfo", &["-h", "-o", "%h"]));
    assert_eq!(sinfo.trim(), "FORCE:2");
    let bad = c.cmd(
        "scontrol",
        &["update", "PartitionName=debug", "OverSubscribe=maybe"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad)
            .contains("Acceptable OverSubscribe values are NO, EXCLUSIVE, YES:#, and FORCE:#"),
        "{}",
        stderr(&bad)
    );
    let shared = c.sbatch(
        &addrs,
        &work,
        &["-s", "-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let whole = c.sbatch(
        &addrs,
        &work,
        &["--exclusive", "-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let plain = c.sbatch(
        &addrs,
        &work,
        &["-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let h = stdout(&c.cmd("squeue", &["-h", "-o", "%i %h"]));
    for line in [
        format!("{shared} YES"),
        format!("{whole} NO"),
        format!("{plain} OK"),
    ] {
        assert!(h.lines().any(|l| l == line), "{line:?} not in {h}");
    }
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &shared.to_string()]));
    assert!(show.contains(" OverSubscribe=YES "), "{show}");
}

/// `sbatch -q`: `normal` always exists (squeue `%q`, `scontrol show job QOS=`, sacctmgr lists
/// it); an unknown QOS is refused in Slurm's words, exit 1.
#[test]
fn sbatch_qos_is_checked_and_shown() {
    let (c, work, addrs) = cluster();
    let bad = c.cmd_at(
        &addrs,
        "sbatch",
        &["-q", "gold"],
        &work,
        Some("#!/bin/sh\ntrue\n"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad),
        "sbatch: error: Batch job submission failed: Invalid qos specification\n"
    );
    let id = c.sbatch(
        &addrs,
        &work,
        &["-q", "normal", "-H", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    let q = stdout(&c.cmd("squeue", &["-h", "-o", "%i %q"]));
    assert_eq!(q.trim(), format!("{id} normal"));
    let show = stdout(&c.cmd("scontrol", &["-o", "show", "job", &id.to_string()]));
    assert!(show.contains(" QOS=normal "), "{show}");
    let qos = stdout(&c.cmd("sacctmgr", &["-nP", "show", "qos", "format=name,priority"]));
    assert_eq!(qos, "normal|0\n");
}

/// `sbatch -N 1-2 -n 2` on two idle nodes: the job gets both (as many as are free, up to
/// max), its tasks spread one per node, and the batch script sees the count and the list it
/// was granted.
#[test]
fn a_node_range_gets_the_free_nodes_and_its_environment_says_so() {
    let c = TestCluster::start(3, 2);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let id = c.sbatch(
        &addrs,
        &work,
        &["-N", "1-2", "-n", "2", "-o", "range.out"],
        "#!/bin/sh\necho \"$SLURM_JOB_NUM_NODES $SLURM_NNODES $SLURM_JOB_NODELIST $SLURM_NTASKS\"\n",
    );
    c.wait_state(id, "COMPLETED", Duration::from_secs(60));
    let text = std::fs::read_to_string(work.join("range.out")).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{text}");
    assert_eq!((fields[0], fields[1], fields[3]), ("2", "2", "2"), "{text}");
    let names = stdout(&c.cmd("scontrol", &["show", "hostnames", fields[2]]));
    assert_eq!(names.lines().count(), 2, "{text} -> {names}");
}
