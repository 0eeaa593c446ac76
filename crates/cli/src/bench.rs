//! `drover bench …`: the figures, measured against a cluster started by `drover up`.
//!
//! - `failover --dir DIR --kills K`: kill -9 the leader, time until the first accepted submit.
//! - `submit --dir DIR --clients C --jobs N`: concurrent submits, jobs committed per second.
//! - `sbatch --dir DIR --jobs N`: sequential `sbatch --wrap true --hold` processes, one shell.
//! - `latency --dir DIR --jobs N`: one trivial job at a time, submit → COMPLETED, p50/p99.
//! - `throughput --dir DIR --jobs N`: N trivial jobs submitted at once, until all COMPLETED.

use crate::client::{request_id, Cluster};
use crate::config::ClusterConfig;
use crate::procs::{self, Layout, Role};
use drover_proto as pb;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

fn layout(dir: &Path) -> anyhow::Result<(Layout, ClusterConfig)> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    let layout = Layout { dir };
    let cfg = ClusterConfig::load(&layout.config()).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(start a cluster first: drover up --dir {})",
            layout.dir.display()
        )
    })?;
    Ok((layout, cfg))
}

fn held_job(i: usize) -> pb::JobSpec {
    pb::JobSpec {
        name: "wrap".into(),
        nodes_min: 1,
        ntasks: 1,
        cpus_per_task: 1,
        script: "#!/bin/sh\n# This script was created by sbatch --wrap.\n\ntrue\n".into(),
        work_dir: "/tmp".into(),
        user: "bench".into(),
        hold: true,
        submit_host: format!("bench-{i}"),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn leader_of(cluster: &mut Cluster) -> Option<(u64, String)> {
    for i in 0..cluster.addrs().len() {
        if let Some(p) = cluster.ping_one(i).await {
            if p.is_leader {
                return Some((p.replica_id, p.addr));
            }
        }
    }
    None
}

pub fn failover(dir: &Path, kills: u32) -> anyhow::Result<()> {
    let (layout, cfg) = layout(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut samples = Vec::new();
    // Replicas this benchmark restarted are its children: reaped here, so a killed one is gone.
    let mut restarted: Vec<std::process::Child> = Vec::new();
    for k in 1..=kills {
        let mut cluster = Cluster::new(cfg.controller_addrs());
        let (leader, addr) = rt
            .block_on(async {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(l) = leader_of(&mut cluster).await {
                        return Some(l);
                    }
                    if Instant::now() > deadline {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let role = Role::Ctld(leader);
        let pid = procs::read_pid(&layout, &role)
            .ok_or_else(|| anyhow::anyhow!("no pid file for {}", role.label()))?;
        // The client is warm (it knows the old leader), as a user's would be.
        let killed_at = Instant::now();
        procs::signal(pid, Signal::SIGKILL);
        let spec = held_job(k as usize);
        let accepted = rt.block_on(async {
            loop {
                let req = pb::SubmitRequest {
                    request_id: request_id(),
                    spec: Some(spec.clone()),
                };
                let r = cluster.call(|mut c| {
                    let req = req.clone();
                    async move { c.submit(req).await.map(|r| r.into_inner()) }
                });
                match r.await {
                    Ok(reply) => return Ok(reply),
                    Err(crate::client::ClientError::Unreachable(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        })?;
        let took = killed_at.elapsed();
        println!(
            "kill {k}/{kills}: replica {leader} ({addr}) killed; job {} accepted after {:.0} ms",
            accepted.job_id,
            took.as_secs_f64() * 1e3
        );
        samples.push(took);
        // Wait for the killed replica's process to be gone, restart it, let it catch up.
        while procs::alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
        restarted.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        restarted.push(procs::spawn(&layout, &role, true)?);
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let mut all = true;
                let mut max = 0;
                let mut indexes = Vec::new();
                for i in 0..cluster.addrs().len() {
                    match cluster.ping_one(i).await {
                        Some(p) => indexes.push(p.applied_index),
                        None => all = false,
                    }
                }
                for &x in &indexes {
                    max = max.max(x);
                }
                if all && indexes.iter().all(|&x| x + 5 >= max) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
    }
    samples.sort();
    println!(
        "failover (kill -9 of the leader → first accepted submit), {} kills: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        percentile(&samples, 50.0).as_secs_f64() * 1e3,
        percentile(&samples, 99.0).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

pub fn submit(dir: &Path, clients: usize, jobs: usize) -> anyhow::Result<()> {
    let (_layout, cfg) = layout(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut probe = Cluster::new(cfg.controller_addrs());
        let (leader, addr) = leader_of(&mut probe).await.ok_or_else(|| anyhow::anyhow!("no leader"))?;
        // A handful of HTTP/2 connections, shared by the client tasks (as many clients would).
        let mut channels = Vec::new();
        for _ in 0..clients.clamp(1, 8) {
            channels.push(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?,
            );
        }
        let per_client = jobs.div_ceil(clients.max(1));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients.max(1) {
            let channel = channels[c % channels.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut client = pb::ctl_client::CtlClient::new(channel);
                let mut done = 0usize;
                for _ in 0..per_client {
                    let req = pb::SubmitRequest { request_id: request_id(), spec: Some(held_job(c)) };
                    if client.submit(req).await.is_ok() {
                        done += 1;
                    }
                }
                done
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "submit: {total} jobs committed in {secs:.2} s = {:.0} jobs/s ({clients} clients, {} replicas, leader {leader} at {addr}, fsync on)",
            total as f64 / secs,
            cfg.controllers.len()
        );
        Ok(())
    })
}

pub fn sbatch_sequential(dir: &Path, jobs: usize) -> anyhow::Result<()> {
    let (layout, cfg) = layout(dir)?;
    let sbatch = layout.bin_dir().join("sbatch");
    let started = Instant::now();
    for _ in 0..jobs {
        let out = std::process::Command::new(&sbatch)
            .args(["--wrap", "true", "--hold"])
            .env("DROVER_CONTROLLERS", cfg.controller_addrs().join(","))
            .output()?;
        if !out.status.success() {
            anyhow::bail!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sequential sbatch --wrap true --hold: {jobs} jobs in {secs:.2} s = {:.0} jobs/s",
        jobs as f64 / secs
    );
    Ok(())
}

/// A job that runs `true` and writes nothing: what the cluster adds to a job, and no more.
fn trivial_job(i: usize) -> pb::JobSpec {
    pb::JobSpec {
        hold: false,
        stdout: "/dev/null".into(),
        stderr: "/dev/null".into(),
        ..held_job(i)
    }
}

/// The states of `ids` (all jobs when empty), read as the commands read them.
async fn states(
    cluster: &mut Cluster,
    ids: &[u64],
) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
    let jobs = crate::commands::load_jobs(cluster, ids.to_vec()).await?;
    Ok(jobs.into_iter().map(|j| (j.job_id, j.state)).collect())
}

async fn submit_one(cluster: &mut Cluster, spec: pb::JobSpec) -> anyhow::Result<u64> {
    let req = pb::SubmitRequest {
        request_id: request_id(),
        spec: Some(spec),
    };
    let reply = cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.submit(req).await.map(|r| r.into_inner()) }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.job_id)
}

/// One trivial job at a time: the time from the submit to the state COMPLETED (polled every
/// millisecond), as a user who waits for each job sees it.
pub fn latency(dir: &Path, jobs: usize) -> anyhow::Result<()> {
    let (_layout, cfg) = layout(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut cluster = Cluster::new(cfg.controller_addrs());
        let mut samples = Vec::with_capacity(jobs);
        for i in 0..jobs {
            let started = Instant::now();
            let id = submit_one(&mut cluster, trivial_job(i)).await?;
            loop {
                let s = states(&mut cluster, &[id]).await?;
                match s.get(&id).map(String::as_str) {
                    Some("COMPLETED") => break,
                    Some("PENDING" | "RUNNING" | "COMPLETING") | None => {}
                    Some(other) => anyhow::bail!("job {id} ended {other}"),
                }
                if started.elapsed() > Duration::from_secs(60) {
                    anyhow::bail!("job {id} did not complete within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        println!(
            "submit → COMPLETED, one trivial job at a time, {} jobs: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            samples.len(),
            percentile(&samples, 50.0).as_secs_f64() * 1e3,
            percentile(&samples, 99.0).as_secs_f64() * 1e3,
            samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        Ok(())
    })
}

/// `jobs` trivial jobs submitted at once (64 concurrent clients), then the time until every one
/// is COMPLETED: jobs started, run and accounted per second.
pub fn throughput(dir: &Path, jobs: usize) -> anyhow::Result<()> {
    let (_layout, cfg) = layout(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = Instant::now();
        let clients = 64.min(jobs.max(1));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let addrs = cfg.controller_addrs();
            let share = jobs / clients + usize::from(c < jobs % clients);
            tasks.push(tokio::spawn(async move {
                let mut cluster = Cluster::new(addrs);
                let mut ids = Vec::with_capacity(share);
                for k in 0..share {
                    ids.push(submit_one(&mut cluster, trivial_job(c * 1_000_000 + k)).await?);
                }
                let seen = cluster.consistency().get().map_or(0, |c| c.min_index);
                anyhow::Ok((ids, seen))
            }));
        }
        let mut ids = Vec::with_capacity(jobs);
        let mut min_index = 0;
        for t in tasks {
            let (mine, seen) = t.await??;
            ids.extend(mine);
            min_index = min_index.max(seen);
        }
        let submitted = started.elapsed();
        let mut cluster = Cluster::new(cfg.controller_addrs());
        cluster.saw(min_index);
        // Polls only the jobs not yet seen COMPLETED, every 50 ms: the cluster's own work, not
        // the watcher's, is what is measured (Slurm's bench counts lines of its jobcomp file).
        let mut left: Vec<u64> = ids.clone();
        loop {
            let s = states(&mut cluster, &left).await?;
            left.retain(|id| s.get(id).is_none_or(|st| st != "COMPLETED"));
            let done = ids.len() - left.len();
            if let Some((id, st)) = s
                .iter()
                .find(|(_, st)| !matches!(st.as_str(), "PENDING" | "RUNNING" | "COMPLETING" | "COMPLETED"))
            {
                anyhow::bail!("job {id} ended {st}");
            }
            if done == ids.len() {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                anyhow::bail!("{done} of {} jobs completed within 600 s", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "throughput: {} trivial jobs submitted in {:.2} s, all COMPLETED after {secs:.2} s = {:.0} jobs/s ({} replicas)",
            ids.len(),
            submitted.as_secs_f64(),
            ids.len() as f64 / secs,
            cfg.controllers.len()
        );
        Ok(())
    })
}
