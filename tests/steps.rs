//! End to end: job steps (issue 4). `srun` inside a batch job creates a step through the
//! controllers and runs its tasks on the job's nodes through their daemons, with Slurm's
//! environment, labels, stdin, file patterns and exit status (slurm.md §1.2, §0.3, §2.2).

mod common;

use common::{pids_with, TestCluster};
use std::path::Path;
use std::time::{Duration, Instant};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Waits for the file the batch script writes last.
fn wait_file(c: &TestCluster, path: &Path, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "job {id} did not finish its script ({:?}):\n{}",
            c.job_state(id),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn srun_runs_steps_across_the_jobs_nodes() {
    let c = TestCluster::start(3, 2);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let bin = c.root().join("bin");
    let script = format!(
        r#"#!/bin/sh
export PATH={bin}:$PATH
srun -l sh -c 'echo $SLURMD_NODENAME $SLURM_PROCID $SLURM_LOCALID $SLURM_NODEID $SLURM_STEP_ID $SLURM_NTASKS $SLURM_STEP_NUM_NODES $SLURM_STEP_NODELIST $SLURM_TASKS_PER_NODE $SLURM_JOB_ID' > step0.txt 2> step0.err
echo "rc=$?" >> step0.txt
srun -n 1 sh -c 'echo step $SLURM_STEP_ID on $SLURMD_NODENAME' > step1.txt
srun -n 3 sh -c 'exit $SLURM_PROCID' 2> exit.err
echo "rc=$?" > exit.txt
echo hello | srun -l -n 2 sh -c 'cat; echo end' > stdin.txt
srun -n 5 true 2> refused.txt
echo "rc=$?" >> refused.txt
srun -n 4 -o out-%t-%N.txt sh -c 'echo task $SLURM_PROCID; echo err >&2'
srun -n 1 sh -c 'kill -9 $$' 2> signal.err
echo "rc=$?" > signal.txt
export MINE=kept
srun -N 1 -n 2 sh -c 'echo $MINE $SLURM_STEP_NUM_NODES' > env.txt
srun -n 1 no-such-command-here 2> missing.txt
echo "rc=$?" >> missing.txt
srun -l -n 2 sh -c 'grep -c "/job_$SLURM_JOB_ID\$" /proc/self/cgroup || true' > cgroup.txt
echo done > done.txt
"#,
        bin = bin.display()
    );
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-N", "2", "-n", "4", "-o", "batch.out"],
        &script,
    );
    wait_file(&c, &work.join("done.txt"), id);
    let batch = read(&work.join("batch.out"));

    // Four tasks, two on each node, labelled, with Slurm's variables; step 0.
    let step0 = read(&work.join("step0.txt"));
    let want: Vec<String> = [
        "0: n1 0 0 0 0 4 2 n[1-2] 2(x2) ID",
        "1: n1 1 1 0 0 4 2 n[1-2] 2(x2) ID",
        "2: n2 2 0 1 0 4 2 n[1-2] 2(x2) ID",
        "3: n2 3 1 1 0 4 2 n[1-2] 2(x2) ID",
        "rc=0",
    ]
    .iter()
    .map(|l| l.replace("ID", &id.to_string()))
    .collect();
    assert_eq!(
        sorted_lines(&step0),
        want,
        "stderr: {}\nbatch: {batch}\n{}",
        read(&work.join("step0.err")),
        c.logs()
    );
    // The next srun is step 1; one task runs on the job's first node.
    assert_eq!(read(&work.join("step1.txt")), "step 1 on n1\n");
    // The highest exit code is srun's, and the failing tasks are named as Slurm does.
    assert_eq!(read(&work.join("exit.txt")), "rc=2\n");
    let exit_err = read(&work.join("exit.err"));
    assert!(
        exit_err.contains("srun: error: n1: task 1: Exited with exit code 1")
            && exit_err.contains("srun: error: n2: task 2: Exited with exit code 2"),
        "{exit_err}"
    );
    // stdin goes to task 0 only.
    assert_eq!(
        sorted_lines(&read(&work.join("stdin.txt"))),
        ["0: end", "0: hello", "1: end"]
    );
    // Beyond the allocation: refused with Slurm's words, exit 1.
    assert_eq!(
        read(&work.join("refused.txt")),
        format!(
            "srun: error: Unable to create step for job {id}: More processors requested than permitted\nrc=1\n"
        )
    );
    // -o with %t and %N: one file per task, written on its node; stderr shares it.
    for (t, node) in [(0, "n1"), (1, "n1"), (2, "n2"), (3, "n2")] {
        let text = read(&work.join(format!("out-{t}-{node}.txt")));
        assert_eq!(sorted_lines(&text), ["err", &format!("task {t}")]);
    }
    // A task killed by a signal: 128 + signal.
    assert_eq!(read(&work.join("signal.txt")), "rc=137\n");
    assert!(read(&work.join("signal.err")).contains("srun: error: n1: task 0: Killed"));
    // The tasks start from srun's environment.
    assert_eq!(read(&work.join("env.txt")), "kept 1\nkept 1\n");
    // A command that does not exist: Slurm's message, exit 2.
    let missing = read(&work.join("missing.txt"));
    assert!(
        missing.contains("execve(): no-such-command-here: No such file or directory")
            && missing.contains("srun: error: n1: task 0: Exited with exit code 2")
            && missing.ends_with("rc=2\n"),
        "{missing}"
    );
    // On the batch host the tasks join the job's cgroup (made by its supervisor); the other
    // node has none for the job.
    if common::cgroups_usable() {
        let text = read(&work.join("cgroup.txt"));
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert!(
            lines.len() == 2 && lines[0] != "0: 0" && lines[1] == "1: 0",
            "{text}"
        );
    }
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));

    // sacct lists the steps (`N.0`, `N.1`…) after the batch step; the refused srun made none.
    let out = c.cmd(
        "sacct",
        &[
            "-j",
            &id.to_string(),
            "-P",
            "-n",
            "-o",
            "JobID,JobName,State,ExitCode,NNodes,NTasks",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let prefix = format!("{id}.");
    let steps: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| format!("ID.{l}"))
        .collect();
    assert_eq!(
        steps,
        [
            "ID.batch|batch|COMPLETED|0:0|1|1",
            "ID.0|sh|COMPLETED|0:0|2|4",
            "ID.1|sh|COMPLETED|0:0|1|1",
            "ID.2|sh|FAILED|2:0|2|3",
            "ID.3|sh|COMPLETED|0:0|2|2",
            "ID.4|sh|COMPLETED|0:0|2|4",
            "ID.5|sh|CANCELLED|0:9|1|1",
            "ID.6|sh|COMPLETED|0:0|1|2",
            "ID.7|no-such-command-here|FAILED|2:0|1|1",
            "ID.8|sh|COMPLETED|0:0|2|2",
        ],
        "{text}"
    );
    let out = c.cmd(
        "sacct",
        &["-j", &format!("{id}.2"), "-P", "-n", "-o", "JobID,State"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{id}.2|FAILED\n")
    );
}

/// scancel reaches a step's tasks on every node; srun forwards SIGTERM to its tasks and
/// exits with their status; a job that ended gets no more steps.
#[test]
fn steps_end_with_their_job_and_srun_forwards_signals() {
    let c = TestCluster::start(1, 2);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let bin = c.root().join("bin");
    let path = format!("export PATH={}:$PATH", bin.display());

    // A step across both nodes, cancelled with its job.
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-N", "2", "-n", "2", "-o", "cancel.out"],
        &format!("#!/bin/sh\n{path}\nsrun -n 2 sleep 3131\n"),
    );
    c.wait_until("both tasks running", Duration::from_secs(60), || {
        pids_with("3131", "sleep").len() == 2
    });
    // squeue -s lists the running steps: srun's, then the batch step (Slurm's P,i order).
    let listed = c.cmd("squeue", &["-s", "-h", "-o", "%i %j %A %N"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("{id}.0 sleep 2 n[1-2]\n{id}.batch batch 1 n1\n")
    );
    let one = c.cmd(
        "squeue",
        &["-h", "-o", "%i", "--steps", &format!("{id}.batch")],
    );
    assert_eq!(
        String::from_utf8_lossy(&one.stdout),
        format!("{id}.batch\n")
    );
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(out.status.success());
    c.wait_until(
        "the tasks gone after scancel",
        Duration::from_secs(60),
        || pids_with("3131", "sleep").is_empty(),
    );
    c.wait_state(id, "CANCELLED", Duration::from_secs(60));
    let out = c.cmd("srun", &["--jobid", &id.to_string(), "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "srun: error: Unable to create step for job {id}: Job/step already completing or completed\n"
        )
    );

    // SIGTERM to srun: its tasks get it, and srun's status is theirs.
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-N", "2", "-n", "2", "-o", "signal.out"],
        &format!(
            "#!/bin/sh\n{path}\nsrun -l -n 2 sh -c 'trap \"echo got TERM; exit 7\" TERM; echo ready; while :; do sleep 0.1; done' marker4242 > sig.txt\necho rc=$? >> sig.txt\n"
        ),
    );
    let sig = work.join("sig.txt");
    c.wait_until("both tasks ready", Duration::from_secs(60), || {
        std::fs::read_to_string(&sig).is_ok_and(|t| t.matches("ready").count() == 2)
    });
    let srun = pids_with("marker4242", "srun");
    assert_eq!(srun.len(), 1, "one srun");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &srun[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    c.wait_until("srun's status written", Duration::from_secs(60), || {
        std::fs::read_to_string(&sig).is_ok_and(|t| t.contains("rc="))
    });
    let mut lines: Vec<String> = std::fs::read_to_string(&sig)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["0: got TERM", "0: ready", "1: got TERM", "1: ready", "rc=7"]
    );
    c.wait_state(id, "COMPLETED", Duration::from_secs(30));

    // Ctrl-C as Slurm's srun takes it: a first prints the tasks' states, a second within a
    // second sends SIGINT to the tasks.
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-N", "2", "-n", "2", "-o", "int.out"],
        &format!(
            "#!/bin/sh\n{path}\nsrun -l -n 2 sh -c 'trap \"echo got INT; exit 5\" INT; echo ready; while :; do sleep 0.1; done' marker5353 > int.txt 2> int.err\necho rc=$? >> int.txt\n"
        ),
    );
    let int = work.join("int.txt");
    c.wait_until("both tasks ready", Duration::from_secs(60), || {
        std::fs::read_to_string(&int).is_ok_and(|t| t.matches("ready").count() == 2)
    });
    let srun = pids_with("marker5353", "srun");
    assert_eq!(srun.len(), 1, "one srun");
    let interrupt = || {
        let status = std::process::Command::new("kill")
            .args(["-INT", &srun[0].to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !read(&int).contains("got INT"),
        "a single Ctrl-C only reports"
    );
    interrupt();
    std::thread::sleep(Duration::from_millis(100));
    interrupt();
    c.wait_until("srun's status written", Duration::from_secs(60), || {
        std::fs::read_to_string(&int).is_ok_and(|t| t.contains("rc="))
    });
    let mut lines: Vec<String> = read(&int).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        ["0: got INT", "0: ready", "1: got INT", "1: ready", "rc=5"]
    );
    let err = read(&work.join("int.err"));
    assert_eq!(
        err.matches(&format!("srun: StepId={id}.0 tasks 0-1: running\n"))
            .count(),
        2,
        "{err}"
    );
    assert!(
        err.contains("srun: interrupt (one more within 1 sec to abort)\n")
            && err.contains(&format!("srun: sending Ctrl-C to StepId={id}.0\n")),
        "{err}"
    );
}
