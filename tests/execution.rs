//! End to end: jobs run for real under `drover up` — a supervisor per job, cgroups, signals
//! and time limits, a node daemon killed with `kill -9` and restarted (issue 4).
//!
//! The cgroup tests need root and a writable cgroup hierarchy (v1 or v2); where there is
//! none they say so and check only what the node can promise without one.

mod common;

use common::TestCluster;
use std::path::Path;
use std::time::{Duration, Instant};

/// Rewrites the cluster's drover.toml (a short KillWait, bigger fake node, fake GPUs) and
/// restarts the node daemons so that they read it.
fn reconfigure_nodes(c: &TestCluster, nodes: u32, cpus: u32, gpus: Option<u32>) {
    let path = c.root().join("drover.toml");
    let text = std::fs::read_to_string(&path).expect("drover.toml");
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("kill_wait_s = ") {
            out.push_str("kill_wait_s = 1\n");
            continue;
        }
        if line.trim_start().starts_with("cpus = ") {
            out.push_str(&format!("cpus = {cpus}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("name = \"n") {
            if let Some(g) = gpus {
                out.push_str(&format!("gpus = {g}\n"));
            }
        }
    }
    std::fs::write(&path, out).expect("write drover.toml");
    for i in 1..=nodes {
        let label = format!("noded-n{i}");
        c.kill9(&label);
        c.restart(&label);
    }
    // Registered again with the new size: a job asking for all of it can be placed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = (1..=nodes).all(|i| {
            let out = c.cmd("scontrol", &["-o", "show", "node", &format!("n{i}")]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains(&format!("CPUTot={cpus} ")) && text.contains("State=IDLE")
        });
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "nodes not back:\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reference: slurm.md §4.11 (OOM → OUT_OF_MEMORY), §4.7 (TIME LIMIT: SIGTERM, KillWait,
/// SIGKILL, TIMEOUT, the stderr line); a job pinned to one CPU cannot use two.
#[test]
fn memory_cpu_and_time_limits_are_enforced() {
    if !common::cgroups_usable() {
        eprintln!("SKIPPED: needs root and a writable cgroup hierarchy");
        return;
    }
    let c = TestCluster::start(1, 1);
    reconfigure_nodes(&c, 1, 4, None);
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();

    let timeout = c.sbatch(
        &addrs,
        &work,
        &["--time=1", "-J", "overtime"],
        "#!/bin/sh\ntrap 'echo got SIGTERM; sleep 100' TERM\necho started\nsleep 600 &\nwait\necho not-reached\n",
    );
    let oom = c.sbatch(
        &addrs,
        &work,
        &["--mem=64M", "-J", "hog"],
        "#!/bin/sh\nperl -e '$x = \"a\" x (512*1024*1024); print \"survived\\n\"'\necho after-perl\n",
    );
    let pinned = c.sbatch(
        &addrs,
        &work,
        &["-c", "1", "-J", "pinned"],
        r#"#!/bin/sh
cs=$(grep ':cpuset:' /proc/self/cgroup | cut -d: -f3)
ca=$(grep -E ':([a-z,]*,)?cpuacct(,[a-z,]*)?:' /proc/self/cgroup | cut -d: -f3)
echo "cpuset=$(cat /sys/fs/cgroup/cpuset$cs/cpuset.cpus)"
u0=$(cat /sys/fs/cgroup/cpuacct$ca/cpuacct.usage)
t0=$(date +%s%N)
( while :; do :; done ) &
p1=$!
( while :; do :; done ) &
p2=$!
sleep 3
u1=$(cat /sys/fs/cgroup/cpuacct$ca/cpuacct.usage)
t1=$(date +%s%N)
kill $p1 $p2
echo "usage_ns=$((u1 - u0)) wall_ns=$((t1 - t0))"
"#,
    );

    c.wait_state(oom, "OUT_OF_MEMORY", Duration::from_secs(30));
    let out = read(&work.join(format!("slurm-{oom}.out")));
    assert!(!out.contains("survived"), "{out}");

    c.wait_state(pinned, "COMPLETED", Duration::from_secs(30));
    let out = read(&work.join(format!("slurm-{pinned}.out")));
    let field = |k: &str| -> String {
        out.split_whitespace()
            .chain(out.lines())
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .to_string()
    };
    let cpuset = field("cpuset");
    assert!(
        !cpuset.contains(',') && !cpuset.contains('-'),
        "one CPU: {out}"
    );
    let usage: f64 = field("usage_ns").parse().expect("usage");
    let wall: f64 = field("wall_ns").parse().expect("wall");
    let cpus_used = usage / wall;
    eprintln!("two busy loops pinned to CPU {cpuset}: {cpus_used:.2} CPUs used");
    assert!(
        cpus_used < 1.25,
        "a 1-CPU job used {cpus_used:.2} CPUs: {out}"
    );

    c.wait_state(timeout, "TIMEOUT", Duration::from_secs(100));
    let out = read(&work.join(format!("slurm-{timeout}.out")));
    assert!(out.starts_with("started\n"), "{out}");
    assert!(out.contains("got SIGTERM"), "SIGTERM first: {out}");
    assert!(!out.contains("not-reached"), "{out}");
    let line = format!("slurmstepd: error: *** JOB {timeout} ON n1 CANCELLED AT ");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&line) && l.ends_with(" DUE TO TIME LIMIT ***")),
        "{out}"
    );
    // It ignored SIGTERM, so KillWait later SIGKILL ended it.
    let show = String::from_utf8_lossy(
        &c.cmd("scontrol", &["show", "job", &timeout.to_string()])
            .stdout,
    )
    .to_string();
    assert!(show.contains("ExitCode=0:9"), "{show}");
}

/// `kill -9` of the node daemon never kills a job: the restarted daemon re-attaches to the
/// job that still runs and reports the one that ended while it was away, each exactly once.
#[test]
fn jobs_survive_kill_9_of_the_node_daemon_and_are_reported_once() {
    let c = TestCluster::start(1, 1);
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let long = c.sbatch(
        &addrs,
        &work,
        &[],
        "#!/bin/sh\necho start\nsleep 6\necho done\n",
    );
    let short = c.sbatch(
        &addrs,
        &work,
        &[],
        "#!/bin/sh\necho start\nsleep 1\necho done\n",
    );
    c.wait_state(long, "RUNNING", Duration::from_secs(20));
    c.wait_state(short, "RUNNING", Duration::from_secs(20));

    c.kill9("noded-n1");
    // The short job ends while no daemon runs.
    std::thread::sleep(Duration::from_secs(3));
    c.restart("noded-n1");

    c.wait_state(short, "COMPLETED", Duration::from_secs(30));
    c.wait_state(long, "COMPLETED", Duration::from_secs(30));
    for id in [long, short] {
        assert_eq!(
            read(&work.join(format!("slurm-{id}.out"))),
            "start\ndone\n",
            "job {id} ran once, to its end"
        );
    }
    // Exactly one final report per job across both lives of the daemon.
    std::thread::sleep(Duration::from_secs(2));
    let log = strip_ansi(&read(&c.root().join("log/noded-n1.log")));
    for id in [long, short] {
        let reports = log
            .lines()
            .filter(|l| l.contains("job ended") && l.contains(&format!("job_id={id} ")))
            .count();
        assert_eq!(reports, 1, "job {id}:\n{log}");
    }
    assert!(log.contains("re-attached to a running job"), "{log}");
}

/// The daemon's log without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Reference: jepsen/README.md finding 1. A job allocated to a node whose daemon is dead and
/// cancelled before the daemon comes back must not stay COMPLETING: the restarted daemon
/// reports it ended, and its CPUs are free again.
#[test]
fn a_job_cancelled_before_its_daemon_launched_it_does_not_stay_completing() {
    let c = TestCluster::start(1, 1);
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    c.kill9("noded-n1");
    let id = c.sbatch(&addrs, &work, &[], "#!/bin/sh\nsleep 5\n");
    c.wait_state(id, "RUNNING", Duration::from_secs(20));
    let out = c.cmd("scancel", &[&id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.restart("noded-n1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = c.cmd("squeue", &["-h"]);
        let listed = String::from_utf8_lossy(&q.stdout).to_string();
        if q.status.success() && listed.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still listed: {listed}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.job_state(id).as_deref(), Some("CANCELLED"));
    assert!(
        !work.join(format!("slurm-{id}.out")).exists(),
        "a cancelled job never starts"
    );
}

/// Reference: slurm.md §4.10. A node with two (fake) GPUs gives two concurrent 1-GPU jobs
/// different devices, as CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS and GPU_DEVICE_ORDINAL.
#[test]
fn two_one_gpu_jobs_get_different_gpus() {
    let c = TestCluster::start(1, 1);
    reconfigure_nodes(&c, 1, 4, Some(2));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let script = "#!/bin/sh\necho \"cuda=$CUDA_VISIBLE_DEVICES jobgpus=$SLURM_JOB_GPUS ord=$GPU_DEVICE_ORDINAL\"\nsleep 3\n";
    let a = c.sbatch(&addrs, &work, &["--gres=gpu:1"], script);
    let b = c.sbatch(&addrs, &work, &["--gres=gpu:1"], script);
    c.wait_state(a, "COMPLETED", Duration::from_secs(30));
    c.wait_state(b, "COMPLETED", Duration::from_secs(30));
    let seen: Vec<String> = [a, b]
        .iter()
        .map(|id| {
            read(&work.join(format!("slurm-{id}.out")))
                .trim()
                .to_string()
        })
        .collect();
    let mut gpus: Vec<&str> = Vec::new();
    for line in &seen {
        let cuda = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cuda="))
            .unwrap_or_else(|| panic!("no CUDA_VISIBLE_DEVICES: {line:?}"));
        assert!(matches!(cuda, "0" | "1"), "{line}");
        assert_eq!(line, &format!("cuda={cuda} jobgpus={cuda} ord={cuda}"));
        gpus.push(cuda);
    }
    assert_ne!(gpus[0], gpus[1], "{seen:?}");
}
