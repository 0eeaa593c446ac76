//! End to end: srun outside any allocation (issue 4). srun allocates a job of its own (no
//! batch script: `BatchFlag=0`), says when it waits, runs step 0 there through the same path
//! as a step inside a batch job, and ends the job with the step: COMPLETED or FAILED with the
//! tasks' exit code, its CPUs free at once; a time limit, scancel and signals end it as
//! Slurm's would (slurm.md §1.2, §2.2, §4.7).

mod common;

use common::{pids_with, TestCluster};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// srun in the background, its stderr to `err`, its stdout to `out`.
fn spawn_srun(c: &TestCluster, cwd: &Path, args: &[&str], out: &Path, err: &Path) -> Child {
    Command::new(c.root().join("bin").join("srun"))
        .args(args)
        .current_dir(cwd)
        .env("DROVER_CONTROLLERS", c.all_addrs())
        .env("DROVER_STATE_CACHE", c.dir.path().join("client-state"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .stderr(std::fs::File::create(err).expect("stderr file"))
        .spawn()
        .expect("srun starts")
}

fn wait_exit(c: &TestCluster, child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "srun still runs after {timeout:?}:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The id of the (only) job named `name`, from squeue, once it has the state `want`.
fn job_named(c: &TestCluster, name: &str, want: &str) -> u64 {
    let mut id = 0;
    c.wait_until(
        &format!("job {name} {want} in squeue"),
        Duration::from_secs(60),
        || {
            let out = c.cmd("squeue", &["-h", "-t", "all", "-o", "%i %j %T"]);
            id = text(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w.len() == 3 && w[1] == name && w[2] == want).then(|| w[0].parse().ok())?
                })
                .next()
                .unwrap_or(0);
            id != 0
        },
    );
    id
}

/// sacct's rows of one job: `JobID|JobName|State|ExitCode` with the id written `ID`.
fn sacct_rows(c: &TestCluster, id: u64) -> Vec<String> {
    let out = c.cmd(
        "sacct",
        &[
            "-j",
            &id.to_string(),
            "-P",
            "-n",
            "-o",
            "JobID,JobName,State,ExitCode",
        ],
    );
    text(&out.stdout)
        .lines()
        .map(|l| l.replacen(&id.to_string(), "ID", 1))
        .collect()
}

fn field(show: &str, key: &str) -> String {
    show.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {show}"))
        .to_string()
}

/// srun's own allocation: labelled output from every task on both nodes, Slurm's variables,
/// exit status 0; `srun false` exits 1 and its job is FAILED 1:0; squeue and scontrol show the
/// job while it runs (BatchFlag=0); sacct lists `N` and `N.0`, no `N.batch`; the CPUs are free
/// as soon as srun has exited; SIGTERM to srun ends its tasks and its job; bad options and
/// requests are refused with `srun: error:`.
#[test]
fn srun_outside_an_allocation_allocates_runs_and_ends_its_job() {
    let c = TestCluster::start(3, 2);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let srun = |args: &[&str]| -> Output { c.cmd_at(&addrs, "srun", args, &work, None) };

    let out = srun(&["-N2", "-n4", "-l", "hostname"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let host = text(&Command::new("hostname").output().expect("hostname").stdout);
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    let want: Vec<String> = (0..4).map(|t| format!("{t}: {}", host.trim())).collect();
    assert_eq!(lines, want);

    let out = srun(&[
        "-N2",
        "-n4",
        "-l",
        "-J",
        "where",
        "sh",
        "-c",
        "echo $SLURMD_NODENAME $SLURM_PROCID $SLURM_NTASKS $SLURM_JOB_NUM_NODES $SLURM_STEP_ID $SLURM_JOB_NAME",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0: n1 0 4 2 0 where",
            "1: n1 1 4 2 0 where",
            "2: n2 2 4 2 0 where",
            "3: n2 3 4 2 0 where"
        ]
    );
    // The job ended with srun, at once: no COMPLETING, nothing allocated.
    let sinfo = c.cmd("sinfo", &["-h", "-o", "%C"]);
    assert_eq!(text(&sinfo.stdout).trim(), "0/4/0/4");
    // A job that needs every CPU starts next.
    let next = c.sbatch(
        &addrs,
        &work,
        &["-N2", "-n4", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    c.wait_state(next, "COMPLETED", Duration::from_secs(60));

    // `srun false`: exit 1, the job and its step FAILED 1:0, no batch step.
    let out = srun(&["-J", "falsejob", "false"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("srun: error: n1: task 0: Exited with exit code 1"),
        "{}",
        text(&out.stderr)
    );
    let id = job_named(&c, "falsejob", "FAILED");
    assert_eq!(
        sacct_rows(&c, id),
        ["ID|falsejob|FAILED|1:0", "ID.0|falsejob|FAILED|1:0"]
    );
    let show = text(
        &c.cmd("scontrol", &["-o", "show", "job", &id.to_string()])
            .stdout,
    );
    assert_eq!(field(&show, "JobState"), "FAILED");
    assert_eq!(field(&show, "ExitCode"), "1:0");

    // While it runs: squeue and scontrol see it; SIGTERM to srun reaches the task, and the
    // job ends with srun.
    let mut child = spawn_srun(
        &c,
        &work,
        &["-N2", "-n2", "-J", "sleeper", "sleep", "4141"],
        &work.join("sleeper.out"),
        &work.join("sleeper.err"),
    );
    let id = job_named(&c, "sleeper", "RUNNING");
    let q = c.cmd(
        "squeue",
        &["-h", "-j", &id.to_string(), "-o", "%j %T %D %N"],
    );
    assert_eq!(text(&q.stdout).trim(), "sleeper RUNNING 2 n[1-2]");
    let show = text(
        &c.cmd("scontrol", &["-o", "show", "job", &id.to_string()])
            .stdout,
    );
    assert_eq!(field(&show, "BatchFlag"), "0");
    assert_eq!(field(&show, "Command"), "sleep");
    assert!(!show.contains("StdOut="), "{show}");
    // Both tasks run (so srun forwards signals to them by now).
    c.wait_until("the step's tasks running", Duration::from_secs(60), || {
        pids_with("4141", "sleep").len() == 2
    });
    let pid = i32::try_from(child.id()).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the srun this test started.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let rc = wait_exit(&c, &mut child, Duration::from_secs(60));
    assert_eq!(rc, Some(143), "{}", read(&work.join("sleeper.err")));
    assert_eq!(
        sacct_rows(&c, id),
        ["ID|sleeper|FAILED|0:15", "ID.0|sleeper|CANCELLED|0:15"]
    );

    // Refused: bad options, impossible requests.
    let out = srun(&["--bogus", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("srun: unrecognized option '--bogus'"));
    let out = srun(&["-p", "nosuch", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "srun: error: Unable to allocate resources: Invalid partition name specified\n"
    );
    let out = srun(&["--mem=lots", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("srun: error: "),
        "{}",
        text(&out.stderr)
    );
    let out = srun(&["-n", "9", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("srun: error: Unable to allocate resources: "),
        "{}",
        text(&out.stderr)
    );
}

/// On a busy cluster srun says it waits, then that it has its resources, and runs; Ctrl-C
/// while it pends cancels its job; scancel ends a running one; a time limit ends one TIMEOUT.
#[test]
fn srun_waits_for_resources_and_its_job_ends_by_cancel_or_time_limit() {
    let c = TestCluster::start(1, 1);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let release = work.join("release");
    let busy = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-n", "2", "-J", "busy"],
        &format!(
            "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.2; done\n",
            release.display()
        ),
    );
    c.wait_state(busy, "RUNNING", Duration::from_secs(60));

    // Ctrl-C while pending: the job is cancelled.
    let mut child = spawn_srun(
        &c,
        &work,
        &["-J", "impatient", "true"],
        &work.join("impatient.out"),
        &work.join("impatient.err"),
    );
    let id = job_named(&c, "impatient", "PENDING");
    c.wait_until("srun says it waits", Duration::from_secs(60), || {
        read(&work.join("impatient.err")).contains("queued and waiting for resources")
    });
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on the srun this test started.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT);
    }
    assert_eq!(wait_exit(&c, &mut child, Duration::from_secs(60)), Some(1));
    c.wait_state(id, "CANCELLED", Duration::from_secs(30));
    assert_eq!(
        read(&work.join("impatient.err")),
        format!(
            "srun: job {id} queued and waiting for resources\nsrun: Job allocation {id} has been revoked\n"
        )
    );

    // Waits, then runs once the busy job ends.
    let mut child = spawn_srun(
        &c,
        &work,
        &["-n1", "sh", "-c", "echo ran in $SLURM_JOB_ID"],
        &work.join("waiter.out"),
        &work.join("waiter.err"),
    );
    c.wait_until("srun says it waits", Duration::from_secs(60), || {
        read(&work.join("waiter.err")).contains("queued and waiting for resources")
    });
    std::fs::write(&release, "").unwrap();
    assert_eq!(wait_exit(&c, &mut child, Duration::from_secs(90)), Some(0));
    let err = read(&work.join("waiter.err"));
    let id: u64 = err
        .strip_prefix("srun: job ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        err,
        format!(
            "srun: job {id} queued and waiting for resources\nsrun: job {id} has been allocated resources\n"
        )
    );
    assert_eq!(read(&work.join("waiter.out")), format!("ran in {id}\n"));
    c.wait_state(busy, "COMPLETED", Duration::from_secs(30));

    // scancel ends a running srun job: its task is killed, srun exits.
    let mut child = spawn_srun(
        &c,
        &work,
        &["-J", "victim", "sleep", "4242"],
        &work.join("victim.out"),
        &work.join("victim.err"),
    );
    let id = job_named(&c, "victim", "RUNNING");
    c.wait_until("the task runs", Duration::from_secs(60), || {
        pids_with("4242", "sleep").len() == 1
    });
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rc = wait_exit(&c, &mut child, Duration::from_secs(90));
    assert_eq!(rc, Some(143), "{}", read(&work.join("victim.err")));
    c.wait_state(id, "CANCELLED", Duration::from_secs(60));
    assert!(pids_with("4242", "sleep").is_empty(), "the task is gone");

    // A time limit: the task gets SIGTERM, the job ends TIMEOUT.
    let mut child = spawn_srun(
        &c,
        &work,
        &["-t", "1", "-J", "overtime", "sleep", "4343"],
        &work.join("overtime.out"),
        &work.join("overtime.err"),
    );
    let id = job_named(&c, "overtime", "RUNNING");
    let rc = wait_exit(&c, &mut child, Duration::from_secs(180));
    let err = read(&work.join("overtime.err"));
    assert_eq!(rc, Some(143), "{err}");
    assert!(
        err.contains(&format!(
            "srun: Job {id} has exceeded its time limit and its allocation has been revoked."
        )),
        "{err}"
    );
    c.wait_state(id, "TIMEOUT", Duration::from_secs(30));
    let rows = sacct_rows(&c, id);
    assert_eq!(rows[0].split('|').nth(2), Some("TIMEOUT"), "{rows:?}");
    assert!(!rows.iter().any(|r| r.contains(".batch")), "{rows:?}");
}

/// srun killed with SIGKILL ends nothing: its tasks go with their broken stream, but the job
/// keeps its allocation (Slurm's InactiveLimit=0), also across a node daemon killed with
/// SIGKILL and restarted (the job's supervisor is followed again); scancel then ends it.
#[test]
fn an_allocation_outlives_a_killed_srun_and_a_restarted_node_daemon() {
    let c = TestCluster::start(1, 1);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut child = spawn_srun(
        &c,
        &work,
        &["-J", "orphan", "sleep", "4444"],
        &work.join("orphan.out"),
        &work.join("orphan.err"),
    );
    let id = job_named(&c, "orphan", "RUNNING");
    c.wait_until("the task runs", Duration::from_secs(60), || {
        pids_with("4444", "sleep").len() == 1
    });
    child.kill().expect("kill -9 srun");
    child.wait().expect("reaped");
    c.wait_until(
        "the task ends with srun's stream",
        Duration::from_secs(60),
        || pids_with("4444", "sleep").is_empty(),
    );
    c.kill9("noded-n1");
    c.restart("noded-n1");
    // Give the restarted daemon time to take its assignments in again.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(c.job_state(id).as_deref(), Some("RUNNING"));
    let sinfo = c.cmd("sinfo", &["-h", "-o", "%C"]);
    assert_eq!(text(&sinfo.stdout).trim(), "1/1/0/2", "still allocated");
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.wait_state(id, "CANCELLED", Duration::from_secs(60));
    c.wait_until("the CPU free again", Duration::from_secs(60), || {
        text(&c.cmd("sinfo", &["-h", "-o", "%C"]).stdout).trim() == "0/2/0/2"
    });
}
