//! srun outside any allocation (Slurm's srun without `SLURM_JOB_ID`): it allocates a job of its
//! own, runs its step 0 there, and ends the job with the step.
//!
//! ```text
//!  srun ──Ctl.Submit (a job without a batch script: BatchFlag=0)──► log: Submit
//!       ◄─ polls the job: PENDING with a reason → `srun: job N queued and waiting for resources`
//!                         RUNNING (after that line) → `srun: job N has been allocated resources`
//!       ── srun_step::run_in: step 0, the one path for a step's tasks (create, launch, I/O,
//!          signals, EndStep) ──►
//!       ──Steps.CompleteAllocation (the tasks' outcome)──► log: CompleteAllocation
//!          (apply: the job's user or root, running, no batch script → COMPLETED/FAILED,
//!           resources free at once)
//! ```
//!
//! SIGINT, SIGTERM or SIGHUP while the job pends cancel it (`srun: Job allocation N has been
//! revoked`); once it runs they go to the tasks as for any step, and the job ends when they
//! do. On the nodes such a job has no script: its batch host's supervisor holds no process of
//! its own, enforces the time limit on what the job's cgroup holds (the step's tasks, where the
//! node has cgroups) and reports the end, so `TIMEOUT` and `scancel` work as for a batch job;
//! the node daemon's `Tasks` service kills the step's tasks once the job stops running there.
//! An srun killed with SIGKILL ends nothing: its job keeps its resources until its time limit
//! (Slurm's default `InactiveLimit=0` does the same), or until `scancel`.

use std::time::{Duration, Instant};

use crate::client::{request_id, ClientError, Cluster};
use crate::srun::Allocation;
use crate::srun_step::{self, Ended, Signals};
use drover_proto as pb;

const EXIT_ERROR: i32 = 1;
/// A job still unevaluated by the planner after this long is said to be queued all the same.
const QUEUED_AFTER: Duration = Duration::from_secs(5);
/// How long srun waits out a cluster it cannot reach while its job pends.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Allocates the job (`spec`, shaped by `sbatch_prep::allocation`), runs the step in it and
/// ends it; returns srun's exit status.
pub async fn run(alloc: Allocation, spec: pb::JobSpec) -> i32 {
    let mut cluster = match Cluster::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("srun: error: {e}");
            return EXIT_ERROR;
        }
    };
    // Caught before the job exists: a signal that comes at any point is seen.
    let mut signals = Signals::catch();
    let rc = allocate_and_run(&mut cluster, alloc, spec, &mut signals).await;
    cluster.save();
    rc
}

async fn allocate_and_run(
    cluster: &mut Cluster,
    alloc: Allocation,
    spec: pb::JobSpec,
    signals: &mut Signals,
) -> i32 {
    let submit = pb::SubmitRequest {
        request_id: request_id(),
        spec: Some(spec),
    };
    let submitted = cluster
        .call(|mut c| {
            let req = submit.clone();
            async move { c.submit(req).await.map(|r| r.into_inner()) }
        })
        .await;
    let job_id = match submitted {
        Ok(r) => {
            cluster.saw(r.applied_index);
            r.job_id
        }
        Err(ClientError::Rejected(why)) => {
            eprintln!("srun: error: Unable to allocate resources: {why}");
            return EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("srun: error: Unable to allocate resources: {e}");
            return EXIT_ERROR;
        }
    };
    match wait_until_running(cluster, job_id, alloc.quiet, signals).await {
        Waited::Running => {}
        Waited::Interrupted => {
            eprintln!("srun: Job allocation {job_id} has been revoked");
            let cancel = pb::CancelRequest {
                request_id: request_id(),
                job_ids: vec![job_id],
                uid: crate::identity::uid(),
            };
            if let Err(e) = cluster
                .call(|mut c| {
                    let req = cancel.clone();
                    async move { c.cancel(req).await.map(|r| r.into_inner()) }
                })
                .await
            {
                eprintln!("srun: error: cannot cancel job {job_id}: {e}");
            }
            return EXIT_ERROR;
        }
        Waited::Ended => {
            eprintln!("srun: error: Job allocation {job_id} has been revoked");
            return EXIT_ERROR;
        }
        Waited::Failed(e) => {
            eprintln!("srun: error: while waiting for job {job_id}: {e}");
            return EXIT_ERROR;
        }
    }
    let mut step = alloc.step;
    step.job_id = job_id;
    let ended = srun_step::run_in(cluster, &step, signals).await;
    complete(cluster, job_id, ended).await;
    ended.rc
}

enum Waited {
    Running,
    /// SIGINT, SIGTERM or SIGHUP came first.
    Interrupted,
    /// The job ended without running (cancelled, its dependency failed…).
    Ended,
    Failed(ClientError),
}

/// Polls the job until it runs, saying so as Slurm's srun does, unless `-Q`.
async fn wait_until_running(
    cluster: &mut Cluster,
    job_id: u64,
    quiet: bool,
    signals: &mut Signals,
) -> Waited {
    let since = Instant::now();
    let mut queued = false;
    let mut pause = Duration::from_millis(50);
    let mut unreachable_since: Option<Instant> = None;
    loop {
        let jobs = match crate::commands::load_jobs(cluster, vec![job_id]).await {
            Ok(jobs) => {
                unreachable_since = None;
                jobs
            }
            // An election or a replica restart: the job waits on; so does srun, a while.
            Err(e) if !matches!(e, ClientError::Rejected(_)) => {
                let first = *unreachable_since.get_or_insert_with(Instant::now);
                if first.elapsed() >= GIVE_UP_AFTER {
                    return Waited::Failed(e);
                }
                Vec::new()
            }
            Err(e) => return Waited::Failed(e),
        };
        let job = match jobs.iter().find(|j| j.job_id == job_id) {
            Some(job) => job,
            None if unreachable_since.is_some() => {
                if sleep_or_signal(signals, pause).await {
                    return Waited::Interrupted;
                }
                continue;
            }
            None => return Waited::Ended,
        };
        match job.state.as_str() {
            "PENDING" => {
                // Slurm prints it when the controller could not start the job at once: here,
                // once a scheduling pass gave it a reason to wait.
                if !queued && (job.reason != "None" || since.elapsed() >= QUEUED_AFTER) {
                    queued = true;
                    if !quiet {
                        eprintln!("srun: job {job_id} queued and waiting for resources");
                    }
                }
            }
            "RUNNING" => {
                if queued && !quiet {
                    eprintln!("srun: job {job_id} has been allocated resources");
                }
                return Waited::Running;
            }
            _ => return Waited::Ended,
        }
        if sleep_or_signal(signals, pause).await {
            return Waited::Interrupted;
        }
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// True when SIGINT, SIGTERM or SIGHUP came before `pause` ran out (the others wait for the
/// tasks).
async fn sleep_or_signal(signals: &mut Signals, pause: Duration) -> bool {
    let Signals { sigint, forwarded } = signals;
    let cancel = std::future::poll_fn(|cx| {
        if let Some(s) = sigint.as_mut() {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        for (n, s) in forwarded.iter_mut() {
            if (*n == libc::SIGTERM || *n == libc::SIGHUP) && s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    });
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        () = cancel => true,
    }
}

/// Ends the job with the step's outcome. A job that ended first (its time limit, scancel)
/// is said to be so, in Slurm's words.
async fn complete(cluster: &mut Cluster, job_id: u64, ended: Ended) {
    let req = pb::CompleteAllocationRequest {
        request_id: request_id(),
        job_id,
        uid: crate::identity::uid(),
        exit_code: ended.exit_code,
        signal: ended.signal,
    };
    let result = cluster
        .call_steps(|mut c| {
            let req = req.clone();
            async move { c.complete_allocation(req).await.map(|r| r.into_inner()) }
        })
        .await;
    let rejected = match result {
        Ok(r) => {
            cluster.saw(r.applied_index);
            false
        }
        Err(ClientError::Rejected(_)) => true,
        Err(e) => {
            eprintln!("srun: error: cannot end job {job_id}: {e}");
            return;
        }
    };
    if !rejected && ended.signal == 0 {
        return;
    }
    // Tasks killed, or the job ended first: its time limit, or a cancel.
    let state = crate::commands::load_jobs(cluster, vec![job_id])
        .await
        .ok()
        .and_then(|jobs| jobs.into_iter().find(|j| j.job_id == job_id))
        .map(|j| j.state)
        .unwrap_or_default();
    if state == "TIMEOUT" {
        eprintln!(
            "srun: Job {job_id} has exceeded its time limit and its allocation has been revoked."
        );
    } else if rejected {
        eprintln!("srun: Job allocation {job_id} has been revoked.");
    }
}
