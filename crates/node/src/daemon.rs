//! The daemon's loops: heartbeat, assignments (long poll → fence → reconcile → act) and the
//! report outbox, plus one supervisor task per running job. All decisions are made by
//! [`reconcile`]; this module only gathers facts and carries out actions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use drover_proto::{
    job_report, AssignmentsReply, AssignmentsRequest, HeartbeatRequest, JobReport, RegisterRequest,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{CallError, Controllers, RequestIds};
use crate::discovery::Discovered;
use crate::launcher::{self, LaunchContext, LaunchedJob, Supervised};
use crate::reconcile::{reconcile, Action, Actual, StopReason};
use crate::state::{FinishedJobs, PendingReport, ReportKind, Store};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const ASSIGNMENTS_WAIT_MS: u32 = 5_000;
/// Bound on one try of a short RPC (the long poll adds its wait to this).
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Between SIGTERM and SIGKILL when a job is stopped (Slurm's KillWait, shortened).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A report the controllers reject this many times in a row is dropped, so that one bad
/// report cannot block every later one.
const REPORT_REJECTIONS_TOLERATED: u32 = 5;

pub(crate) struct Daemon {
    name: String,
    addr: String,
    found: Discovered,
    store: Store,
    client: Controllers,
    ids: RequestIds,
    jobs: Mutex<Jobs>,
    outbox: Mutex<VecDeque<PendingReport>>,
    outbox_wake: Notify,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

#[derive(Default)]
struct Jobs {
    running: BTreeMap<u64, RunningJob>,
    finished: FinishedJobs,
    /// Highest applied index seen in an assignments reply: older replies are ignored.
    highest_index: u64,
}

struct RunningJob {
    stop: CancellationToken,
    stopping: bool,
}

impl Jobs {
    fn actual(&self) -> Actual {
        Actual {
            running: self.running.keys().copied().collect(),
            stopping: self
                .running
                .iter()
                .filter(|(_, j)| j.stopping)
                .map(|(&id, _)| id)
                .collect(),
            finished: self.finished.keys().copied().collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Daemon {
    pub(crate) fn new(
        name: String,
        addr: String,
        found: Discovered,
        store: Store,
        client: Controllers,
        shutdown: CancellationToken,
    ) -> Result<Daemon, crate::state::StateError> {
        let pending = store.load_pending()?;
        let (finished, fence_index) = store.load_finished(&pending)?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "re-sending reports left by an earlier run"
            );
        }
        Ok(Daemon {
            ids: RequestIds::new(&name),
            name,
            addr,
            found,
            store,
            client,
            jobs: Mutex::new(Jobs {
                finished,
                highest_index: fence_index,
                ..Jobs::default()
            }),
            outbox: Mutex::new(pending.into()),
            outbox_wake: Notify::new(),
            shutdown,
            tasks: TaskTracker::new(),
        })
    }

    /// Registers, then runs the loops until shutdown; then waits for the job supervisors to
    /// have sent SIGTERM.
    pub(crate) async fn run(self: Arc<Self>) -> Result<(), CallError> {
        self.recover_leftovers();
        match self.register().await {
            Ok(()) => {}
            Err(CallError::Cancelled) => return Ok(()),
            Err(e) => return Err(e),
        }
        let me = self.clone();
        self.tasks.spawn(async move { me.heartbeat_loop().await });
        let me = self.clone();
        self.tasks.spawn(async move { me.assignments_loop().await });
        let me = self.clone();
        self.tasks.spawn(async move { me.outbox_loop().await });
        self.shutdown.cancelled().await;
        tracing::info!(node = %self.name, "shutting down");
        self.tasks.close();
        self.tasks.wait().await;
        Ok(())
    }

    async fn register(&self) -> Result<(), CallError> {
        let req = RegisterRequest {
            request_id: self.ids.next_id(),
            name: self.name.clone(),
            addr: self.addr.clone(),
            cpus: self.found.cpus,
            real_memory_mb: self.found.real_memory_mb,
            boot_time: self.found.boot_time,
            version: env!("CARGO_PKG_VERSION").to_string(),
            os: self.found.os.clone(),
            arch: self.found.arch.clone(),
        };
        let reply = self
            .client
            .call("Register", RPC_TIMEOUT, |mut c| {
                let req = req.clone();
                async move { c.register(req).await }
            })
            .await?;
        tracing::info!(
            node = %self.name,
            controller = self.client.current_addr(),
            applied_index = reply.applied_index,
            cpus = self.found.cpus,
            real_memory_mb = self.found.real_memory_mb,
            "registered"
        );
        Ok(())
    }

    /// Registers again after a controller said it does not know this node.
    async fn reregister(&self) {
        tracing::info!(node = %self.name, "the cluster does not know this node: registering");
        if let Err(e) = self.register().await {
            if !matches!(e, CallError::Cancelled) {
                tracing::warn!(error = %e, "registration failed");
            }
        }
        self.pause(Duration::from_millis(200)).await;
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    async fn heartbeat_loop(&self) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let req = HeartbeatRequest {
                name: self.name.clone(),
                running_jobs: lock(&self.jobs).running.keys().copied().collect(),
            };
            match self
                .client
                .call("Heartbeat", RPC_TIMEOUT, |mut c| {
                    let req = req.clone();
                    async move { c.heartbeat(req).await }
                })
                .await
            {
                Ok(reply) if !reply.known => self.reregister().await,
                Ok(_) => {}
                Err(CallError::Cancelled) => return,
                Err(e) => tracing::warn!(error = %e, "heartbeat"),
            }
        }
    }

    async fn assignments_loop(self: &Arc<Self>) {
        let poll_timeout = Duration::from_millis(u64::from(ASSIGNMENTS_WAIT_MS)) + RPC_TIMEOUT;
        loop {
            let req = AssignmentsRequest {
                name: self.name.clone(),
                after_index: lock(&self.jobs).highest_index,
                wait_ms: ASSIGNMENTS_WAIT_MS,
            };
            match self
                .client
                .call("Assignments", poll_timeout, |mut c| {
                    let req = req.clone();
                    async move { c.assignments(req).await }
                })
                .await
            {
                Ok(reply) if !reply.known => self.reregister().await,
                Ok(reply) => self.on_assignments(reply).await,
                Err(CallError::Cancelled) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "assignments");
                    self.pause(Duration::from_secs(1)).await;
                }
            }
            if self.shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Fence, reconcile, act.
    async fn on_assignments(self: &Arc<Self>, reply: AssignmentsReply) {
        let actions = {
            let mut jobs = lock(&self.jobs);
            if reply.applied_index < jobs.highest_index {
                tracing::debug!(
                    applied_index = reply.applied_index,
                    highest = jobs.highest_index,
                    "ignoring assignments older than already seen"
                );
                return;
            }
            jobs.highest_index = reply.applied_index;
            let actions = reconcile(&reply.jobs, &jobs.actual());

            // A finished job whose final report was applied at or before this state and that
            // this state no longer lists will never be listed again: forget it.
            let listed: BTreeSet<u64> = reply.jobs.iter().map(|a| a.job_id).collect();
            let before = jobs.finished.len();
            jobs.finished.retain(|id, ack| {
                listed.contains(id) || ack.is_none_or(|at| at > reply.applied_index)
            });
            if jobs.finished.len() != before {
                self.save_finished(&jobs);
            }
            actions
        };
        for action in actions {
            match action {
                Action::Launch(a) => self.launch(*a).await,
                Action::Stop { job_id, reason } => self.stop(job_id, reason),
            }
        }
    }

    async fn launch(self: &Arc<Self>, a: drover_proto::Assignment) {
        let ctx = LaunchContext {
            node_name: &self.name,
            state_dir: self.store.dir(),
        };
        match launcher::launch(&a, &ctx).await {
            Ok(job) => {
                tracing::info!(job_id = a.job_id, pid = job.pid, "job started");
                let stop = CancellationToken::new();
                lock(&self.jobs).running.insert(
                    a.job_id,
                    RunningJob {
                        stop: stop.clone(),
                        stopping: false,
                    },
                );
                self.push_report(a.job_id, ReportKind::Started, job.pid, 0, 0, String::new());
                let me = self.clone();
                self.tasks
                    .spawn(async move { me.supervise(job, stop).await });
            }
            Err(e) => {
                tracing::warn!(job_id = a.job_id, error = %e, "launch failed");
                self.push_report(a.job_id, ReportKind::LaunchFailed, 0, 1, 0, e.to_string());
                self.mark_finished(a.job_id);
                launcher::remove_job_dir(self.store.dir(), a.job_id);
            }
        }
    }

    fn stop(&self, job_id: u64, reason: StopReason) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.running.get_mut(&job_id) {
            tracing::info!(job_id, ?reason, "stopping job");
            job.stopping = true;
            job.stop.cancel();
        }
    }

    async fn supervise(&self, job: LaunchedJob, stop: CancellationToken) {
        let (job_id, pid) = (job.job_id, job.pid);
        match launcher::supervise(job, stop, KILL_GRACE, self.shutdown.clone()).await {
            // Shutting down: report nothing more (the next start reports the job's end).
            Supervised::Shutdown => {}
            Supervised::Exited(o) => {
                tracing::info!(
                    job_id,
                    exit_code = o.exit_code,
                    signal = o.signal,
                    "job ended"
                );
                self.push_report(
                    job_id,
                    ReportKind::Finished,
                    pid,
                    o.exit_code,
                    o.signal,
                    o.message,
                );
                self.mark_finished(job_id);
                launcher::remove_job_dir(self.store.dir(), job_id);
            }
        }
    }

    /// Job directories left by an earlier run of the daemon: their processes can no longer be
    /// supervised, so they are killed and their end is reported.
    fn recover_leftovers(&self) {
        for left in launcher::collect_leftovers(self.store.dir()) {
            let already = lock(&self.jobs).finished.contains_key(&left.job_id);
            if !already {
                let (kind, exit_code, signal, message) = if left.killed {
                    (
                        ReportKind::Finished,
                        0,
                        libc::SIGKILL,
                        "killed: the node daemon restarted while the job ran".to_string(),
                    )
                } else {
                    (
                        ReportKind::Finished,
                        1,
                        0,
                        "the job ended while the node daemon was down; its exit status is unknown"
                            .to_string(),
                    )
                };
                tracing::warn!(job_id = left.job_id, %message, "job from an earlier run");
                self.push_report(left.job_id, kind, 0, exit_code, signal, message);
                self.mark_finished(left.job_id);
            }
            launcher::remove_job_dir(self.store.dir(), left.job_id);
        }
    }

    fn mark_finished(&self, job_id: u64) {
        let mut jobs = lock(&self.jobs);
        jobs.running.remove(&job_id);
        jobs.finished.entry(job_id).or_insert(None);
        self.save_finished(&jobs);
    }

    /// Saves the finished set with the current fence (see `state::FinishedFile`).
    fn save_finished(&self, jobs: &Jobs) {
        if let Err(e) = self.store.save_finished(&jobs.finished, jobs.highest_index) {
            tracing::error!(error = %e, "cannot save the finished job set");
        }
    }

    /// Queues a report (persisted before this returns) for the outbox loop.
    fn push_report(
        &self,
        job_id: u64,
        kind: ReportKind,
        pid: u32,
        exit_code: i32,
        signal: i32,
        message: String,
    ) {
        let report = PendingReport {
            request_id: self.ids.next_id(),
            job_id,
            kind,
            exit_code,
            signal,
            pid,
            message,
        };
        let mut queue = lock(&self.outbox);
        queue.push_back(report);
        self.save_outbox(&queue);
        drop(queue);
        self.outbox_wake.notify_one();
    }

    fn save_outbox(&self, queue: &VecDeque<PendingReport>) {
        let reports: Vec<PendingReport> = queue.iter().cloned().collect();
        if let Err(e) = self.store.save_pending(&reports) {
            tracing::error!(error = %e, "cannot save pending reports (kept in memory)");
        }
    }

    /// Sends reports oldest first, each until a controller answers it.
    async fn outbox_loop(&self) {
        let mut rejections = 0;
        loop {
            let front = lock(&self.outbox).front().cloned();
            let Some(report) = front else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.outbox_wake.notified() => continue,
                }
            };
            let req = JobReport {
                request_id: report.request_id.clone(),
                node: self.name.clone(),
                job_id: report.job_id,
                kind: match report.kind {
                    ReportKind::Started => job_report::Kind::Started,
                    ReportKind::Finished => job_report::Kind::Finished,
                    ReportKind::LaunchFailed => job_report::Kind::LaunchFailed,
                } as i32,
                exit_code: report.exit_code,
                signal: report.signal,
                pid: report.pid,
                message: report.message.clone(),
            };
            let ack_index = match self
                .client
                .call("ReportJob", RPC_TIMEOUT, |mut c| {
                    let req = req.clone();
                    async move { c.report_job(req).await }
                })
                .await
            {
                Ok(reply) => reply.applied_index,
                Err(CallError::Cancelled) => return,
                Err(e) => {
                    rejections += 1;
                    if rejections < REPORT_REJECTIONS_TOLERATED {
                        tracing::warn!(job_id = report.job_id, error = %e, "report rejected; retrying");
                        self.pause(Duration::from_secs(1)).await;
                        continue;
                    }
                    tracing::error!(job_id = report.job_id, kind = ?report.kind, error = %e,
                        "report rejected {rejections} times; dropping it");
                    0
                }
            };
            rejections = 0;
            {
                let mut queue = lock(&self.outbox);
                if queue
                    .front()
                    .is_some_and(|r| r.request_id == report.request_id)
                {
                    queue.pop_front();
                }
                self.save_outbox(&queue);
            }
            if report.kind.is_final() {
                let mut jobs = lock(&self.jobs);
                jobs.finished.insert(report.job_id, Some(ack_index));
                self.save_finished(&jobs);
            }
            tracing::debug!(job_id = report.job_id, kind = ?report.kind, ack_index, "report delivered");
        }
    }
}
