//! End to end: the display and query side of the commands (squeue, sinfo, scontrol show,
//! scancel filters) against a real `drover up` cluster. Byte-level layouts are pinned by the
//! golden tests in crates/cli; these check that the real commands, options and exit codes
//! work through the real processes.

mod common;

use common::TestCluster;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLEEPER: &str = "#!/bin/sh\nsleep 120\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn squeue_sinfo_scontrol_and_scancel_on_a_cluster() {
    let c = TestCluster::start(3, 2);
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let runner = c.sbatch(&addrs, &work, &["-J", "runner", "-t", "5"], SLEEPER);
    let held = c.sbatch(&addrs, &work, &["-J", "held", "-H"], SLEEPER);
    c.wait_state(runner, "RUNNING", Duration::from_secs(30));

    // squeue: default header and the held job's row in Slurm's widths.
    let q = c.cmd("squeue", &[]);
    assert!(q.status.success(), "{}", text(&q.stderr));
    let out = text(&q.stdout);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(
            "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
        )
    );
    let held_row = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{held} ")))
        .unwrap_or_else(|| panic!("no row for job {held}:\n{out}"));
    assert!(
        held_row.ends_with(" PD       0:00      1 (JobHeldUser)"),
        "{held_row:?}"
    );
    assert_eq!(held_row.find(" PD "), Some(46), "{held_row:?}");

    // -o, -O, -S, filters, -t, -h.
    let q = c.cmd("squeue", &["-h", "-S", "i", "-o", "%i|%j|%t|%.5D"]);
    assert_eq!(
        text(&q.stdout),
        format!("{runner}|runner|R|    1\n{held}|held|PD|    1\n")
    );
    let q = c.cmd("squeue", &["-h", "-n", "held", "-O", "JobID:8,State:.10"]);
    assert_eq!(text(&q.stdout), format!("{held:<8}   PENDING\n"));
    let q = c.cmd("squeue", &["-h", "-t", "R", "-o", "%i"]);
    assert_eq!(text(&q.stdout), format!("{runner}\n"));
    let q = c.cmd("squeue", &["--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&q.stdout).expect("squeue --json");
    assert_eq!(doc["jobs"].as_array().map(Vec::len), Some(2));
    assert!(doc["jobs"][0]["job_state"].is_array());

    // Exactly one unknown -j id is an error; more ids are filtered quietly.
    let q = c.cmd("squeue", &["-j", "999999"]);
    assert_eq!(q.status.code(), Some(1));
    assert_eq!(
        text(&q.stderr),
        "slurm_load_jobs error: Invalid job id specified\n"
    );
    let q = c.cmd("squeue", &[&format!("-j{runner},999999"), "-h", "-o", "%i"]);
    assert!(q.status.success());
    assert_eq!(text(&q.stdout), format!("{runner}\n"));
    let q = c.cmd("squeue", &["--bogus"]);
    assert_eq!(q.status.code(), Some(1));
    assert!(q.stdout.is_empty());
    assert_eq!(
        text(&q.stderr),
        "squeue: unrecognized option '--bogus'\nTry \"squeue --help\" for more information\n"
    );

    // A reader that goes away is not an error: `squeue -i 1 | head -1` ends, quietly.
    let squeue = c.root().join("bin").join("squeue");
    let started = Instant::now();
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' -i 1 | head -1",
            squeue.display()
        ))
        .env("DROVER_CONTROLLERS", &addrs)
        .env("DROVER_STATE_CACHE", c.dir.path().join("client-state"))
        .stderr(Stdio::piped())
        .output()
        .expect("sh runs");
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert!(piped.stderr.is_empty(), "{}", text(&piped.stderr));
    assert!(started.elapsed() < Duration::from_secs(15));

    // sinfo: default header, one line per node with -N, bad states refused.
    let s = c.cmd("sinfo", &[]);
    assert!(text(&s.stdout).starts_with("PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n"));
    let s = c.cmd("sinfo", &["-N", "-h", "-o", "%N %t %c"]);
    let nodes = text(&s.stdout);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    assert!(
        nodes
            .lines()
            .any(|l| l.ends_with(" mix 2") || l.ends_with(" alloc 2")),
        "{nodes}"
    );
    let s = c.cmd("sinfo", &["-s", "-h", "-o", "%F"]);
    assert_eq!(text(&s.stdout), "1/1/0/2\n");
    let s = c.cmd("sinfo", &["-t", "bogus"]);
    assert_eq!(s.status.code(), Some(1));
    assert!(text(&s.stderr).starts_with("sinfo: error: Bad state string: \"bogus\"\n"));

    // scontrol: show config from the cluster, host lists, version, -d.
    let conf = text(&c.cmd("scontrol", &["show", "config"]).stdout);
    assert!(conf.starts_with("Configuration data as of "), "{conf}");
    assert!(
        conf.contains("\nMinJobAge               = 300 sec\n"),
        "{conf}"
    );
    assert!(
        conf.contains("\nMaxArraySize            = 1001\n"),
        "{conf}"
    );
    for (_, addr) in &c.controllers {
        assert!(
            conf.contains(&format!("] = {addr}\n")) || conf.contains(&format!(" = {addr}\n")),
            "{conf}"
        );
    }
    assert!(conf.contains("is UP\n"), "{conf}");
    let h = c.cmd("scontrol", &["show", "hostnames", "n[1-2],x7"]);
    assert_eq!(text(&h.stdout), "n1\nn2\nx7\n");
    let h = c.cmd("scontrol", &["show", "hostlist", "n1,n2,n4"]);
    assert_eq!(text(&h.stdout), "n[1-2,4]\n");
    assert!(text(&c.cmd("scontrol", &["version"]).stdout).starts_with("slurm "));
    let d = text(
        &c.cmd("scontrol", &["-d", "show", "job", &runner.to_string()])
            .stdout,
    );
    assert!(d.contains("\n   DerivedExitCode=0:0\n"), "{d}");
    assert!(d.contains("\n     Nodes=n"), "{d}");
    let two = text(&c.cmd("scontrol", &["-o", "show", "node", "n[1-2]"]).stdout);
    assert_eq!(two.lines().count(), 2, "{two}");
    let nf = c.cmd("scontrol", &["show", "node", "nosuch"]);
    assert_eq!(
        (nf.status.code(), text(&nf.stdout)),
        (Some(1), "Node nosuch not found\n".to_string())
    );

    // scancel: a signal (after the id, as submitit sends it) goes through; unknown ids are
    // errors, filters select.
    let k = c.cmd("scancel", &[&runner.to_string(), "--signal", "CONT"]);
    assert_eq!(k.status.code(), Some(0), "{}", text(&k.stderr));
    let k = c.cmd("scancel", &["999999"]);
    assert_eq!(k.status.code(), Some(1));
    assert_eq!(
        text(&k.stderr),
        "scancel: error: Kill job error on job id 999999: Invalid job id specified\n"
    );
    let k = c.cmd("scancel", &["-v", "-n", "nomatch"]);
    assert!(k.status.success());
    assert_eq!(
        text(&k.stderr),
        "scancel: error: No active jobs match ALL job filters, including: job_name=nomatch \n"
    );
    let k = c.cmd("scancel", &["-v", "--me", "-t", "PD"]);
    assert!(k.status.success(), "{}", text(&k.stderr));
    assert_eq!(
        text(&k.stderr),
        format!("scancel: Terminating job {held}\n")
    );
    c.wait_state(held, "CANCELLED", Duration::from_secs(10));
    assert_eq!(c.job_state(runner).as_deref(), Some("RUNNING"));
    let k = c.cmd("scancel", &["-n", "runner"]);
    assert!(k.status.success(), "{}", text(&k.stderr));
    c.wait_state(runner, "CANCELLED", Duration::from_secs(30));
    // Finished jobs leave the default view; -t all shows them.
    let q = c.cmd("squeue", &["-h"]);
    assert_eq!(text(&q.stdout), "");
    let q = c.cmd("squeue", &["-h", "-t", "all", "-o", "%i %T"]);
    let all = text(&q.stdout);
    assert!(all.contains(&format!("{held} CANCELLED\n")), "{all}");
}

/// A command's cached read index from another cluster (same addresses, a new cluster) is
/// forgotten: the leader says no index that high exists here, and the read goes through.
#[test]
fn a_cached_index_from_another_cluster_is_forgotten() {
    let c = TestCluster::start(3, 1);
    let (_, leader) = c.leader(Duration::from_secs(10));
    let cache = c.dir.path().join("client-state");
    std::fs::write(&cache, format!("999999999 {leader}\n")).unwrap();
    let q = c.cmd("squeue", &["-h"]);
    assert!(q.status.success(), "{}", text(&q.stderr));
    let saved = std::fs::read_to_string(&cache).unwrap();
    let index: u64 = saved.split_whitespace().next().unwrap().parse().unwrap();
    assert!(index < 999_999_999, "the foreign index was kept: {saved}");
}
