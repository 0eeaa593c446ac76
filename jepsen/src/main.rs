//! drover-jepsen: a Jepsen-style test of drover with real processes.
//!
//! ```text
//! setup (drover ctld ×R, drover noded ×N on 127.0.0.1)
//!   → workload (C clients: submit / cancel / read, recorded invoke → ok|fail|info)
//!     ∥ nemesis (kill, pause, restart, kill-node, partitions; recorded as faults)
//!     ∥ monitors (replica roles every 200 ms; job markers every 50 ms)
//!   → heal everything → liveness (every job terminal; a new job runs) → final reads
//!   → checker (pure: history + markers + final reads → anomalies) → report + timeline
//! ```
//!
//! `test …` runs a test; `check --dir RUN` re-checks a stored run (`RUN/run.json`).
//! Exit status: 0 valid, 1 invalid (anomalies), 2 harness error (no verdict).

mod checker;
mod cluster;
mod history;
mod markers;
mod nemesis;
mod report;
mod rng;
mod workload;

use checker::{Liveness, Params, RunData};
use cluster::{Cluster, Shape};
use history::{Event, Kind, Recorder, F};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{channels, client, find_leader, job_obs, Known, Workload};

const USAGE: &str = "usage:
  drover-jepsen test [--time-limit S] [--nemesis kill,pause,restart,kill-node,partition,partition-ring|all|none]
                     [--replicas 3|5] [--nodes N] [--cpus-per-node C] [--mem-per-node MB]
                     [--clients K] [--seed N] [--interval-ms MS] [--hold-ms MS]
                     [--recovery-s S] [--drover PATH] [--dir DIR] [--no-hold] [--arrays]
                     [--gpus-per-node G]
  drover-jepsen check --dir RUN_DIR

exit status: 0 valid, 1 invalid, 2 harness error";

struct Args {
    time_limit_s: u64,
    nemeses: Vec<String>,
    replicas: u32,
    nodes: u32,
    cpus_per_node: u32,
    mem_per_node_mb: u64,
    clients: usize,
    seed: u64,
    interval_ms: u64,
    hold_ms: u64,
    recovery_s: u64,
    drover: PathBuf,
    dir: Option<PathBuf>,
    /// Leave `scontrol hold` / `release` out of the workload (jepsen/README.md, finding 2).
    no_hold: bool,
    /// Submit some jobs as arrays with a `%` throttle (checked from the markers).
    arrays: bool,
    /// Fake GPUs per node; with some, one submit in four asks for GPUs.
    gpus_per_node: u32,
}

fn parse_args(argv: &[String]) -> anyhow::Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        time_limit_s: 60,
        nemeses: nemesis::parse("kill,pause")?,
        replicas: 3,
        nodes: 3,
        cpus_per_node: 4,
        mem_per_node_mb: 1024,
        clients: 8,
        seed: history::epoch_ns() as u64 % 1_000_000,
        interval_ms: 5000,
        hold_ms: 4000,
        recovery_s: 90,
        drover: root.join("target/release/drover"),
        dir: None,
        no_hold: false,
        arrays: false,
        gpus_per_node: 0,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--time-limit" => a.time_limit_s = val()?.parse()?,
            "--nemesis" => a.nemeses = nemesis::parse(&val()?)?,
            "--replicas" => a.replicas = val()?.parse()?,
            "--nodes" => a.nodes = val()?.parse()?,
            "--cpus-per-node" => a.cpus_per_node = val()?.parse()?,
            "--mem-per-node" => a.mem_per_node_mb = val()?.parse()?,
            "--clients" => a.clients = val()?.parse()?,
            "--seed" => a.seed = val()?.parse()?,
            "--interval-ms" => a.interval_ms = val()?.parse()?,
            "--hold-ms" => a.hold_ms = val()?.parse()?,
            "--recovery-s" => a.recovery_s = val()?.parse()?,
            "--drover" => a.drover = PathBuf::from(val()?),
            "--dir" => a.dir = Some(PathBuf::from(val()?)),
            "--no-hold" => a.no_hold = true,
            "--arrays" => a.arrays = true,
            "--gpus-per-node" => a.gpus_per_node = val()?.parse()?,
            _ => anyhow::bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    if !matches!(a.replicas, 3 | 5) {
        anyhow::bail!("--replicas must be 3 or 5");
    }
    if a.nodes == 0 || a.clients == 0 || a.cpus_per_node == 0 {
        anyhow::bail!("--nodes, --clients and --cpus-per-node must be at least 1");
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match argv.first().map(String::as_str) {
        Some("test") => match parse_args(&argv[1..]) {
            Ok(args) => run_test(args),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Some("check") => match argv.get(1).map(String::as_str) {
            Some("--dir") if argv.len() == 3 => recheck(Path::new(&argv[2])),
            _ => {
                eprintln!("{USAGE}");
                2
            }
        },
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn recheck(dir: &Path) -> i32 {
    let run: RunData = match std::fs::read(dir.join("run.json"))
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: reading {}: {e}", dir.join("run.json").display());
            return 2;
        }
    };
    finish(dir, &run)
}

/// Checks, writes the report files, prints the summary; returns the exit status.
fn finish(dir: &Path, run: &RunData) -> i32 {
    let anomalies = checker::check(run);
    let summary = report::summarize(run, &anomalies);
    let text = report::text(run, &summary);
    let _ = std::fs::write(dir.join("report.txt"), &text);
    let _ = std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    );
    let _ = std::fs::write(dir.join("timeline.html"), report::timeline(run, &summary));
    print!("{text}");
    println!(
        "report: {}/report.txt, timeline: {}/timeline.html",
        dir.display(),
        dir.display()
    );
    if run.harness_error.is_some() {
        2
    } else if summary.valid {
        0
    } else {
        1
    }
}

fn run_test(args: Args) -> i32 {
    let dir = args.dir.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("store")
            .join(format!(
                "{}-seed{}",
                history::epoch_ns() / 1_000_000_000,
                args.seed
            ))
    });
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    if !args.drover.exists() {
        eprintln!(
            "error: no drover binary at {} (cargo build --release --bin drover, or --drover PATH)",
            args.drover.display()
        );
        return 2;
    }
    let params = Params {
        replicas: args.replicas,
        nodes: args.nodes,
        cpus_per_node: args.cpus_per_node,
        mem_per_node_mb: args.mem_per_node_mb,
        gpus_per_node: args.gpus_per_node,
        clients: args.clients,
        nemeses: args.nemeses.clone(),
        time_limit_s: args.time_limit_s,
        seed: args.seed,
        drover: args.drover.display().to_string(),
    };
    let shape = Shape {
        replicas: args.replicas,
        nodes: args.nodes,
        cpus_per_node: args.cpus_per_node,
        mem_per_node_mb: args.mem_per_node_mb,
        gpus_per_node: args.gpus_per_node,
    };
    let netns = args.nemeses.iter().any(|n| nemesis::is_partition(n));
    let cluster = match Cluster::create(&dir.join("cluster"), &args.drover, shape, netns) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: setting up {}: {e}", dir.display());
            return 2;
        }
    };
    println!(
        "drover-jepsen: run directory {} (seed {})",
        dir.display(),
        args.seed
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rec = Recorder::new();
    let mut run = RunData {
        params,
        start_epoch_ns: rec.start_epoch_ns,
        ..Default::default()
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = drive(&args, &dir, cluster.clone(), rec.clone(), &mut run) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    if let Err(e) = result {
        run.harness_error = Some(format!("{e:#}"));
    }
    run.events = rec.snapshot();
    cluster.shutdown();
    // Stray job processes (a harness failure, or a run cut short): kill their groups.
    for a in &run.attempts {
        if a.gone_ns.is_none() && cluster::alive(a.pid) {
            cluster::kill_group(a.pid);
        }
    }
    if let Ok(bytes) = serde_json::to_vec(&run) {
        let _ = std::fs::write(dir.join("run.json"), bytes);
    }
    finish(&dir, &run)
}

async fn wait_ready(
    cluster: &Cluster,
    chans: &[tonic::transport::Channel],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no leader yet");
    while Instant::now() < deadline {
        if find_leader(chans).await.is_some() {
            for ch in chans {
                let mut req = tonic::Request::new(drover_proto::ListNodesRequest::default());
                req.set_timeout(Duration::from_secs(2));
                match client(ch).list_nodes(req).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let up = cluster
                            .nodes
                            .iter()
                            .filter(|n| {
                                r.nodes
                                    .iter()
                                    .any(|x| &x.name == *n && !x.state.starts_with("DOWN"))
                            })
                            .count();
                        if up == cluster.nodes.len() {
                            return Ok(());
                        }
                        last = format!("{up} of {} nodes up", cluster.nodes.len());
                        break;
                    }
                    Err(e) => last = e.message().to_string(),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "the cluster was not ready within {} s: {last}",
        timeout.as_secs()
    )
}

async fn drive(
    args: &Args,
    dir: &Path,
    cluster: Arc<Cluster>,
    rec: Recorder,
    run: &mut RunData,
) -> anyhow::Result<()> {
    let markers = dir.join("markers");
    let out = dir.join("out");
    std::fs::create_dir_all(&markers)?;
    std::fs::create_dir_all(&out)?;
    for l in cluster.labels() {
        cluster.start(&l)?;
    }
    let chans = channels(&cluster.addrs())?;
    let ids: Vec<u64> = cluster.ctlds.iter().map(|(id, _)| *id).collect();
    wait_ready(&cluster, &chans, Duration::from_secs(90)).await?;
    println!(
        "cluster ready: {} replicas, {} nodes; running {} s with nemeses [{}]",
        ids.len(),
        cluster.nodes.len(),
        args.time_limit_s,
        args.nemeses.join(",")
    );

    let stop_monitors = Arc::new(AtomicBool::new(false));
    let watcher = markers::Watcher::new(&markers, rec.start_epoch_ns);
    let watch_task = tokio::spawn(watcher.clone().run(stop_monitors.clone()));
    let role_task = tokio::spawn(workload::role_monitor(
        rec.clone(),
        chans.clone(),
        ids.clone(),
        stop_monitors.clone(),
    ));

    let stop_clients = Arc::new(AtomicBool::new(false));
    let known = Arc::new(Mutex::new(Known::default()));
    let wl = Arc::new(Workload {
        rec: rec.clone(),
        channels: chans.clone(),
        ids: ids.clone(),
        markers: markers.clone(),
        out: out.clone(),
        known: known.clone(),
        stop: stop_clients.clone(),
        cpus_per_node: args.cpus_per_node,
        hold: !args.no_hold,
        arrays: args.arrays,
        gpus_per_node: args.gpus_per_node,
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|c| tokio::spawn(wl.clone().run_client(c, args.seed)))
        .collect();
    let nem = nemesis::Nemesis {
        cluster: cluster.clone(),
        channels: chans.clone(),
        rec: rec.clone(),
        faults: args.nemeses.clone(),
        interval_ms: args.interval_ms,
        hold_ms: args.hold_ms,
    };
    let nem_task = tokio::spawn(nem.run(args.seed, stop_clients.clone()));

    tokio::time::sleep(Duration::from_secs(args.time_limit_s)).await;
    stop_clients.store(true, Ordering::Relaxed);
    println!(
        "workload stopped at {:.1} s; waiting for operations in flight, healing",
        rec.now() as f64 / 1e9
    );
    let _ = nem_task.await;
    for c in clients {
        let _ = c.await;
    }
    let healed = cluster.heal_all()?;
    rec.record(Event {
        process: "nemesis".into(),
        kind: Some(Kind::Info),
        f: Some(F::Fault),
        info: Some(format!("final heal: {healed:?}")),
        ..Default::default()
    });
    run.healed_ns = rec.now();
    wait_ready(&cluster, &chans, Duration::from_secs(60)).await?;

    // Jobs the workload held (and did not release for certain) would pend forever: release
    // them, as an operator would, before the liveness bound starts.
    let held: Vec<u64> = {
        let k = known.lock().unwrap_or_else(|p| p.into_inner());
        k.held.keys().copied().collect()
    };
    if !held.is_empty() {
        let request = drover_proto::ControlRequest {
            request_id: format!("jepsen-{}-final-release", rec.start_epoch_ns),
            action: drover_proto::control_request::Action::Release as i32,
            targets: held
                .iter()
                .map(|&job_id| drover_proto::JobRef {
                    job_id,
                    task_id: None,
                })
                .collect(),
            uid: 0,
            ..Default::default()
        };
        let (kind, _, _, err) = workload::control_retrying(&chans, 0, &request).await;
        println!("released {} held jobs: {kind:?} {err}", held.len());
    }

    // Liveness: every job we know of reaches a terminal state within the bound.
    let healed_at = Instant::now();
    let bound = Duration::from_secs(args.recovery_s);
    let mut liveness = Liveness {
        bound_s: args.recovery_s,
        ..Default::default()
    };
    loop {
        let all = read_all(&chans, 0).await;
        if let Some((_, reply)) = &all {
            let stuck: Vec<(u64, String, String)> = reply
                .jobs
                .iter()
                .filter(|j| !workload::is_terminal(&j.state))
                .map(|j| (j.job_id, j.name.clone(), j.state.clone()))
                .collect();
            // A job whose dependency can never be met pends forever (as in Slurm without
            // kill_invalid_depend): cancel it, as an operator would.
            let never: Vec<u64> = reply
                .jobs
                .iter()
                .filter(|j| j.state == "PENDING" && j.reason == "DependencyNeverSatisfied")
                .map(|j| j.job_id)
                .collect();
            if !never.is_empty() {
                let request = drover_proto::CancelRequest {
                    request_id: format!("jepsen-{}-never-{}", rec.start_epoch_ns, rec.now()),
                    job_ids: never.clone(),
                    uid: 0,
                };
                // Any replica that answers (a follower that refuses is tried again next round).
                let k = (rec.now() / 500_000_000) as usize % chans.len();
                let r = client(&chans[k]).cancel(request).await;
                println!(
                    "cancelled jobs whose dependency can never be met: {never:?} ({:?})",
                    r.err().map(|e| e.code())
                );
            }
            if stuck.is_empty() {
                liveness.settled_after_s = Some(healed_at.elapsed().as_secs_f64());
                liveness.stuck.clear();
                break;
            }
            liveness.stuck = stuck;
        }
        if healed_at.elapsed() > bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // … and new work runs.
    let probe_name = &format!("{}after-heal", checker::PROBE_PREFIX);
    let spec = workload::spec(
        probe_name,
        1,
        64,
        workload::script(probe_name, &markers, 200),
        &out,
    );
    let request_id = format!("jepsen-{}-probe", rec.start_epoch_ns);
    let (kind, reply, _, err) = workload::submit_retrying(&chans, 0, &request_id, &spec).await;
    match reply {
        Some(r) => {
            liveness.probe_job = Some(r.job_id);
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut state = String::from("not listed");
            while Instant::now() < deadline {
                if let Some((_, all)) = read_all(&chans, r.applied_index).await {
                    if let Some(j) = all.jobs.iter().find(|j| j.job_id == r.job_id) {
                        state = j.state.clone();
                    }
                }
                if workload::is_terminal(&state) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if state != "COMPLETED" {
                liveness.probe_error =
                    Some(format!("job {} is {state} 60 s after submit", r.job_id));
            }
        }
        None => liveness.probe_error = Some(format!("submit {kind:?}: {err}")),
    }
    rec.record(Event {
        process: "probe".into(),
        kind: Some(if liveness.probe_error.is_none() {
            Kind::Ok
        } else {
            Kind::Fail
        }),
        f: Some(F::Probe),
        job_id: liveness.probe_job,
        error: liveness.probe_error.clone(),
        ..Default::default()
    });
    run.liveness = liveness;

    // Final reads: every replica, everything, at least as new as anything seen.
    let max_seen = rec
        .snapshot()
        .iter()
        .filter_map(|e| e.applied_index)
        .max()
        .unwrap_or(0);
    for (k, ch) in chans.iter().enumerate() {
        let mut req = tonic::Request::new(drover_proto::ListJobsRequest {
            consistency: Some(drover_proto::ReadConsistency {
                min_index: max_seen,
                ..Default::default()
            }),
            job_ids: vec![],
        });
        req.set_timeout(Duration::from_secs(10));
        let t = rec.now();
        let e = match client(ch).list_jobs(req).await {
            Ok(r) => {
                let r = r.into_inner();
                Event {
                    t_ns: t,
                    process: "final".into(),
                    kind: Some(Kind::Ok),
                    f: Some(F::Read),
                    replica: Some(ids[k]),
                    min_index: Some(max_seen),
                    applied_index: Some(r.applied_index),
                    state_now_ms: Some(r.state_now_ms),
                    jobs: r.jobs.iter().map(job_obs).collect(),
                    ..Default::default()
                }
            }
            Err(s) => Event {
                t_ns: t,
                process: "final".into(),
                kind: Some(Kind::Fail),
                f: Some(F::Read),
                replica: Some(ids[k]),
                error: Some(s.message().to_string()),
                ..Default::default()
            },
        };
        run.final_reads.push(e);
    }
    if run.final_reads.iter().all(|e| e.kind != Some(Kind::Ok)) {
        anyhow::bail!("no replica answered the final read");
    }
    // The final accounting read (sacct of everything), at least as new as the final reads.
    let max_read = run
        .final_reads
        .iter()
        .filter_map(|e| e.applied_index)
        .max()
        .unwrap_or(0);
    for (k, ch) in chans.iter().enumerate() {
        let mut req = tonic::Request::new(drover_proto::ListRecordsRequest {
            consistency: Some(drover_proto::ReadConsistency {
                min_index: max_read,
                ..Default::default()
            }),
            job_ids: vec![],
            ended_since: 0,
        });
        req.set_timeout(Duration::from_secs(10));
        let t = rec.now();
        if let Ok(r) = client(ch).list_records(req).await {
            let r = r.into_inner();
            run.final_records.push(Event {
                t_ns: t,
                process: "final".into(),
                kind: Some(Kind::Ok),
                f: Some(F::Acct),
                replica: Some(ids[k]),
                min_index: Some(max_read),
                applied_index: Some(r.applied_index),
                jobs: r.records.iter().map(workload::record_obs).collect(),
                ..Default::default()
            });
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_monitors.store(true, Ordering::Relaxed);
    let _ = role_task.await;
    let _ = watch_task.await;
    run.attempts = watcher.all();
    Ok(())
}

/// Every job, from the first replica that answers (min_index given).
async fn read_all(
    chans: &[tonic::transport::Channel],
    min_index: u64,
) -> Option<(usize, drover_proto::ListJobsReply)> {
    for (k, ch) in chans.iter().enumerate() {
        let mut req = tonic::Request::new(drover_proto::ListJobsRequest {
            consistency: Some(drover_proto::ReadConsistency {
                min_index,
                ..Default::default()
            }),
            job_ids: vec![],
        });
        req.set_timeout(Duration::from_secs(3));
        if let Ok(r) = client(ch).list_jobs(req).await {
            return Some((k, r.into_inner()));
        }
    }
    None
}
