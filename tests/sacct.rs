//! End to end through `drover up`: sacct over the replicated job records (issue 6), read from
//! any replica, through a leader failover. Reference: slurm.md §1.7 and clients.md (the
//! invocations submitit makes: `sacct -o JobID,State,NodeList --parsable2 -j A -j B`).

mod common;

use common::TestCluster;
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `sacct -XPn -j ID -o <fields>` through `addrs`.
fn acct(c: &TestCluster, addrs: &str, id: u64, fields: &str) -> String {
    let out = c.cmd_at(
        addrs,
        "sacct",
        &["-XPn", "-j", &id.to_string(), "-o", fields],
        c.dir.path(),
        None,
    );
    assert!(out.status.success(), "sacct failed: {}", stderr(&out));
    stdout(&out)
}

fn wait_acct(c: &TestCluster, id: u64, fields: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = acct(c, &c.all_addrs(), id, fields);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sacct -j {id} -o {fields} says {got:?}, not {want:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sacct_shows_finished_failed_cancelled_and_array_jobs_from_any_replica() {
    let c = TestCluster::start(3, 1);
    let (leader_id, leader) = c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let addrs = c.all_addrs();
    let sh = |body: &str| format!("#!/bin/sh\n{body}\n");

    let ok = c.sbatch(&addrs, &work, &["-J", "ok", "-o", "/dev/null"], &sh("true"));
    let bad = c.sbatch(
        &addrs,
        &work,
        &["-J", "bad", "-o", "/dev/null"],
        &sh("exit 3"),
    );
    wait_acct(&c, ok, "JobName,State,ExitCode", "ok|COMPLETED|0:0\n");
    wait_acct(&c, bad, "JobName,State,ExitCode", "bad|FAILED|3:0\n");

    // Steps: the batch step follows its job; -X hides it.
    let out = c.cmd(
        "sacct",
        &[
            "-P",
            "-j",
            &bad.to_string(),
            "-o",
            "JobID,JobName,State,ExitCode,NodeList",
        ],
    );
    assert_eq!(
        stdout(&out),
        format!(
            "JobID|JobName|State|ExitCode|NodeList\n{bad}|bad|FAILED|3:0|n1\n{bad}.batch|batch|FAILED|3:0|n1\n"
        )
    );

    // A running job, cancelled: `CANCELLED by <uid>` (these tests run as root).
    let long = c.sbatch(
        &addrs,
        &work,
        &["-J", "long", "-o", "/dev/null"],
        &sh("sleep 60"),
    );
    wait_acct(&c, long, "State", "RUNNING\n");
    let cancel = c.cmd("scancel", &[&long.to_string()]);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    wait_acct(&c, long, "State", "CANCELLED by 0\n");
    // The default layout cuts it to `CANCELLED+` (slurm.md §1.7).
    let out = c.cmd("sacct", &["-X", "-j", &long.to_string()]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "JobID           JobName  Partition    Account  AllocCPUS      State ExitCode "
    );
    assert_eq!(
        lines[1],
        "------------ ---------- ---------- ---------- ---------- ---------- -------- "
    );
    assert_eq!(
        lines[2],
        format!("{long:<12}       long      debug       root          1 CANCELLED+      0:0 ")
    );

    // An array: each task is `N_i`, and `N_i` selects one.
    let array = c.sbatch(
        &addrs,
        &work,
        &["--array=0-2", "-J", "arr", "-o", "/dev/null"],
        &sh("true"),
    );
    let want: String = (0..3).map(|t| format!("{array}_{t}|COMPLETED\n")).collect();
    wait_acct(&c, array, "JobID,State", &want);
    assert_eq!(
        stdout(&c.cmd(
            "sacct",
            &["-XPn", "-j", &format!("{array}_1"), "-o", "JobID"]
        )),
        format!("{array}_1\n")
    );

    // submitit's call: repeated -j, --parsable2, header kept, steps listed after their job.
    let out = c.cmd(
        "sacct",
        &[
            "-o",
            "JobID,State,NodeList",
            "--parsable2",
            "-j",
            &ok.to_string(),
            "-j",
            &long.to_string(),
        ],
    );
    let text = stdout(&out);
    assert!(text.starts_with("JobID|State|NodeList\n"), "{text}");
    assert!(text.contains(&format!("\n{ok}|COMPLETED|n1\n")), "{text}");
    assert!(
        text.contains(&format!("\n{long}|CANCELLED by 0|n1\n")),
        "{text}"
    );

    // Without -j: today's jobs (root sees every user's), -s filters by state in the window.
    let out = c.cmd(
        "sacct",
        &["-XPn", "-o", "JobIDRaw", "-S", "now-1hour", "-E", "now"],
    );
    let all = stdout(&out);
    for id in [ok, bad, long, array] {
        assert!(
            all.lines().any(|l| l == id.to_string()),
            "{id} missing: {all}"
        );
    }
    let out = c.cmd(
        "sacct",
        &[
            "-XPn",
            "-o",
            "JobID",
            "-s",
            "F",
            "-S",
            "now-1hour",
            "-E",
            "now",
        ],
    );
    assert_eq!(stdout(&out), format!("{bad}\n"));

    // The records are replicated: a follower answers alone, and so does the cluster once
    // its leader is gone.
    let follower = c
        .controllers
        .iter()
        .find(|(id, _)| *id != leader_id)
        .map(|(_, a)| a.clone())
        .unwrap();
    assert_eq!(acct(&c, &follower, bad, "State,ExitCode"), "FAILED|3:0\n");
    c.kill9(&format!("ctld-{leader_id}"));
    let rest: Vec<String> = c
        .controllers
        .iter()
        .filter(|(_, a)| *a != leader)
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(acct(&c, &rest.join(","), long, "State"), "CANCELLED by 0\n");

    // --json carries the same records.
    let out = c.cmd("sacct", &["--json", "-j", &bad.to_string()]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("sacct --json");
    assert_eq!(v["jobs"][0]["job_id"], bad);
    assert_eq!(v["jobs"][0]["state"]["current"][0], "FAILED");

    // srun inside the job: a step on the batch host, patterns expanded per task, its status
    // the step's; a step beyond the allocation is refused (and so fails the job).
    // The job inherits the submitter's PATH; put the command links on it, as `.drover/env`
    // does for a user.
    let path = format!("export PATH={}:$PATH", c.root().join("bin").display());
    let step = c.sbatch(
        &addrs,
        &work,
        &["-J", "step", "-o", "step.log"],
        &sh(&format!(
            "{path}\nsrun -o step-%j_%t.out sh -c 'echo $SLURM_PROCID/$SLURM_STEP_ID/$SLURM_NTASKS'"
        )),
    );
    wait_acct(&c, step, "State", "COMPLETED\n");
    let text = std::fs::read_to_string(work.join(format!("step-{step}_0.out"))).unwrap();
    assert_eq!(text, "0/0/1\n");
    let many = c.sbatch(
        &addrs,
        &work,
        &["-J", "many", "-o", "many.out"],
        &sh(&format!("{path}\nsrun -n 2 true")),
    );
    wait_acct(&c, many, "State,ExitCode", "FAILED|1:0\n");
    let text = std::fs::read_to_string(work.join("many.out")).unwrap();
    assert_eq!(
        text,
        format!(
            "srun: error: Unable to create step for job {many}: More processors requested than permitted\n"
        )
    );

    // sacctmgr shows the default entities of the cluster.
    let out = c.cmd("sacctmgr", &["-nP", "show", "cluster", "format=cluster"]);
    assert_eq!(stdout(&out), "drover\n", "{}", stderr(&out));
    let out = c.cmd(
        "sacctmgr",
        &["-nP", "show", "assoc", "format=cluster,account,user"],
    );
    assert_eq!(stdout(&out), "drover|root|\ndrover|root|root\n");
    let out = c.cmd("sacctmgr", &["-i", "add", "account", "physics"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("sacctmgr: error: "),
        "{}",
        stderr(&out)
    );

    // Errors are Slurm's.
    let out = c.cmd("sacct", &["-o", "nosuchfield"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "sacct: error: Invalid field requested: \"nosuchfield\"\n"
    );
}

/// Records leave through the log once older than the retention (`job_record_retention_s`,
/// slurmdbd's PurgeJobAfter): on every replica alike, while the job itself is still shown by
/// squeue (MinJobAge is another clock).
#[test]
fn records_are_purged_after_the_retention_on_every_replica() {
    let c = TestCluster::start_with(3, 1, &["--job-record-retention-s", "3"]);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-J", "short", "-o", "/dev/null"],
        "#!/bin/sh\ntrue\n",
    );
    wait_acct(&c, id, "State", "COMPLETED\n");
    wait_acct(&c, id, "State", "");
    for (_, addr) in &c.controllers {
        assert_eq!(
            acct(&c, addr, id, "State"),
            "",
            "replica {addr} still has it"
        );
    }
    let out = c.cmd("squeue", &["-h", "-t", "all", "-o", "%i %T"]);
    assert_eq!(stdout(&out), format!("{id} COMPLETED\n"));
}

#[test]
fn kept_scripts_and_environments_under_accounting_store_flags() {
    let c = TestCluster::start_with(1, 1, &["--accounting-store-flags", "job_script,job_env"]);
    c.leader(Duration::from_secs(10));
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = "#!/bin/sh\n# kept for sacct -B\ntrue\n";
    let id = c.sbatch(
        &c.all_addrs(),
        &work,
        &["-J", "kept", "-o", "/dev/null", "--export=ALL,KEPT_MARK=42"],
        script,
    );
    wait_acct(&c, id, "State", "COMPLETED\n");
    let run = |args: &[&str]| {
        let out = c.cmd("sacct", args);
        assert!(out.status.success(), "sacct {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let dashes = "-".repeat(80);
    assert_eq!(
        run(&["-B", "-j", &id.to_string()]),
        format!("Batch Script for {id}\n{dashes}\n{script}")
    );
    let env = run(&["--env-vars", "-n", "-j", &id.to_string()]);
    assert!(env.lines().any(|l| l == "KEPT_MARK=42"), "{env}");
    let config = stdout(&c.cmd("scontrol", &["show", "config"]));
    assert!(
        config.contains("\nAccountingStoreFlags    = job_env,job_script\n"),
        "{config}"
    );
    // Without -j, sacct refuses as Slurm does, exit 1.
    let out = c.cmd("sacct", &["-B"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("you must also request specific jobs with the '-j' option"));
}
