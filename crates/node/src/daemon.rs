//! The daemon's loops: heartbeat, assignments (long poll → fence → reconcile → act) and the
//! report outbox, plus one supervisor task per running job. All decisions are made by
//! [`reconcile`]; this module only gathers facts and carries out actions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use drover_proto::{
    job_report, AssignmentsReply, AssignmentsRequest, HeartbeatRequest, JobReport, JobRun,
    RegisterRequest,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::path::PathBuf;

use crate::cgroup::{self, Isolation, Limits};
use crate::client::{CallError, Controllers, RequestIds};
use crate::discovery::Discovered;
use crate::launcher;
use crate::reconcile::{reconcile, Action, Actual, StopReason};
use crate::state::{Attempts, FinishedJobs, PendingReport, ReportKind, Store};
use crate::supervisor::{self, Attach, EndCause, JobStatus, SuperviseSpec, SupervisorRecord};
use crate::NodeConfig;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const ASSIGNMENTS_WAIT_MS: u32 = 5_000;
/// The assignments wait while a superseded run is being stopped (its next run waits on it).
const SUPERSEDED_WAIT_MS: u32 = 200;
/// Bound on one try of a short RPC (the long poll adds its wait to this).
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new supervisor may take to start its job (it normally takes milliseconds).
const SUPERVISOR_START_PATIENCE: Duration = Duration::from_secs(30);
/// A report the controllers reject this many times in a row is dropped, so that one bad
/// report cannot block every later one.
const REPORT_REJECTIONS_TOLERATED: u32 = 5;
/// Reports sent in one call (in queue order, several of one job included): the controllers
/// apply them as one write.
const REPORTS_PER_CALL: usize = 256;
/// How long the outbox stays idle before what waits to be written (`Daemon::finished_dirty`,
/// `Daemon::outbox_stale`) is.
const TIDY_AFTER: Duration = Duration::from_secs(1);
/// How long a job's `Started` report is held back before it is sent. A job that ends sooner
/// (most short jobs do) sends its start and its end in one call, applied as one write of the
/// log, and its start is never written to this node's disk on its own. A start report only
/// records the batch script's pid, which nothing decides on: one lost with the daemon (a
/// crash within this time) costs nothing, and the job's end is reported as ever.
const STARTED_REPORT_DELAY: Duration = Duration::from_millis(500);
/// How long a user's account and groups, as looked up for a job, serve later jobs of theirs
/// (a change to the user databases reaches new jobs within this).
const USER_TTL: Duration = Duration::from_secs(60);

pub(crate) struct Daemon {
    name: String,
    addr: String,
    kill_wait: Duration,
    supervisor_exe: PathBuf,
    /// What starts supervisors (`Daemon::fork_supervisor`).
    starter: Mutex<Starter>,
    /// Where this daemon's job cgroups go, unique per node and state dir.
    cgroup_group: String,
    isolation: Isolation,
    cgroups: cgroup::Host,
    host_cpus: Vec<u32>,
    found: Discovered,
    store: Store,
    /// Where the job directories go (`<runtime>/jobs/<id>`): see `NodeConfig::runtime_dir`.
    runtime: PathBuf,
    /// Runs launched by an earlier life of this daemon and not recorded as ended, taken by
    /// [`Daemon::reattach`]: one with no job directory left is lost.
    unended_runs: Mutex<BTreeMap<u64, u32>>,
    client: Controllers,
    ids: RequestIds,
    jobs: Mutex<Jobs>,
    outbox: Mutex<VecDeque<PendingReport>>,
    /// `Started` reports held back ([`STARTED_REPORT_DELAY`]), in memory only, each with when
    /// it is due: it joins the outbox then, or just before its job's final report.
    held_starts: Mutex<VecDeque<(tokio::time::Instant, PendingReport)>>,
    outbox_wake: Notify,
    /// The finished set has changes not on disk yet, and the outbox's file still holds
    /// answered reports. Either can be made again from what is on disk (a pending final
    /// report makes its job finished at load; an answer not recorded makes its report go
    /// again, and the controllers' dedup window answers it the same), so they wait for the
    /// next write that must be durable (a launch, a new report) or for the outbox to be idle
    /// ([`TIDY_AFTER`]). An outbox write that drops answered reports writes the finished set
    /// first (`Daemon::save_outbox`). With its start report held back
    /// ([`STARTED_REPORT_DELAY`]), a short job costs about two and a half fsyncs, where every
    /// change was written at once before (seven).
    finished_dirty: AtomicBool,
    outbox_stale: AtomicBool,
    /// `(uid, gid)` → when looked up, and the job's user then (`Daemon::job_user`).
    users: Mutex<BTreeMap<(u32, u32), (std::time::Instant, crate::users::JobUser)>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Jobs this node should run now (`run == true` in the latest assignments taken in), for
    /// the `Tasks` service to check a step launch against.
    assigned: Mutex<BTreeMap<u64, drover_proto::Assignment>>,
    /// Bumped after every assignments reply taken in.
    assigned_seq: tokio::sync::watch::Sender<u64>,
    /// Where the `Tasks` service listens (bound before registering, so the address registered
    /// is the one served).
    listener: Mutex<Option<tokio::net::TcpListener>>,
}

/// Which held start reports [`Daemon::release_starts`] moves to the outbox: those due, those
/// due and one job's (before its final report), or all (at shutdown).
#[derive(Clone, Copy)]
enum Release {
    Due,
    Job(u64),
    All,
}

/// How supervisors are started: by a [`launcher::Zygote`], started at the first job and again
/// if it dies, or, when one cannot be had, by the daemon itself (an exec per job).
enum Starter {
    NotYet,
    Zygote(launcher::Zygote),
    Unavailable,
}

/// A supervisor started, with its pid when known.
enum Started {
    Pid(u32),
    /// Spawned by the daemon itself, which reaps it.
    Child(tokio::process::Child),
    /// The zygote had the request and died before answering: one may run.
    Unsure,
}

#[derive(Default)]
struct Jobs {
    running: BTreeMap<u64, RunningJob>,
    finished: FinishedJobs,
    /// The run (times requeued) of each running or finished job.
    attempts: Attempts,
    /// Highest applied index seen in an assignments reply: older replies are ignored.
    highest_index: u64,
    /// Jobs stopped because a later run is assigned here: until it is launched, the
    /// assignments are polled briefly, so that it starts soon after the earlier run ends.
    superseded: BTreeSet<u64>,
}

struct RunningJob {
    stop: CancellationToken,
    /// `scancel --signal` requests to its supervisor, and the last sequence number sent.
    signals: mpsc::UnboundedSender<supervisor::Request>,
    signaled: u32,
    stopping: bool,
    /// Host CPUs of its cpuset (to spread the next jobs over the others).
    cpus: Vec<u32>,
    /// Its cgroup slot (`cgroup::Host::create`): no two running jobs share one.
    cgroup_slot: Option<u32>,
}

/// A run entered into the running set, about to get its supervisor.
struct NewRun {
    a: drover_proto::Assignment,
    spec: SuperviseSpec,
    stop: CancellationToken,
    signals: mpsc::UnboundedReceiver<supervisor::Request>,
}

impl Jobs {
    fn actual(&self) -> Actual {
        Actual {
            running: self.running.keys().copied().collect(),
            runs: self
                .running
                .keys()
                .map(|&id| (id, self.attempt(id)))
                .collect(),
            stopping: self
                .running
                .iter()
                .filter(|(_, j)| j.stopping)
                .map(|(&id, _)| id)
                .collect(),
            finished: self
                .finished
                .keys()
                .map(|&id| (id, self.attempt(id)))
                .collect(),
        }
    }

    fn attempt(&self, job_id: u64) -> u32 {
        self.attempts.get(&job_id).copied().unwrap_or(0)
    }
}

/// In a job's directory: the last `scancel --signal` sequence number sent to its supervisor.
const SIGNALED_FILE: &str = "signaled";

fn read_signaled(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join(SIGNALED_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Daemon {
    pub(crate) fn new(
        config: &NodeConfig,
        found: Discovered,
        store: Store,
        client: Controllers,
        shutdown: CancellationToken,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<Daemon, crate::state::StateError> {
        let pending = store.load_pending()?;
        let loaded = store.load_finished(&pending)?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "re-sending reports left by an earlier run"
            );
        }
        let cgroup_group = format!(
            "drover/{}-{:08x}",
            config.name,
            fnv1a(config.state_dir.as_os_str().as_encoded_bytes())
        );
        let host = cgroup::Host::detect(&cgroup_group);
        let isolation = host.isolation.clone();
        tracing::info!(isolation = %isolation.describe(), "job isolation");
        Ok(Daemon {
            ids: RequestIds::new(&config.name),
            name: config.name.clone(),
            addr: config.addr.clone(),
            kill_wait: config.kill_wait,
            supervisor_exe: config.supervisor_exe.clone(),
            starter: Mutex::new(Starter::NotYet),
            cgroup_group,
            isolation,
            cgroups: host,
            host_cpus: cgroup::host_cpus(),
            found,
            store,
            runtime: crate::runtime_dir(config),
            unended_runs: Mutex::new(loaded.running),
            client,
            jobs: Mutex::new(Jobs {
                finished: loaded.jobs,
                attempts: loaded.attempts,
                highest_index: loaded.fence_index,
                ..Jobs::default()
            }),
            outbox: Mutex::new(pending.into()),
            held_starts: Mutex::new(VecDeque::new()),
            outbox_wake: Notify::new(),
            finished_dirty: AtomicBool::new(false),
            outbox_stale: AtomicBool::new(false),
            users: Mutex::new(BTreeMap::new()),
            shutdown,
            tasks: TaskTracker::new(),
            assigned: Mutex::new(BTreeMap::new()),
            assigned_seq: tokio::sync::watch::channel(0).0,
            listener: Mutex::new(listener),
        })
    }

    /// Registers, then runs the loops until shutdown; then waits for the job supervisors to
    /// have sent SIGTERM.
    pub(crate) async fn run(self: Arc<Self>) -> Result<(), CallError> {
        self.reattach().await;
        if let Some(listener) = lock(&self.listener).take() {
            // Not tracked: a step's stream open at shutdown must not hold the daemon up (its
            // srun sees the stream break and ends the step).
            let me = self.clone();
            tokio::spawn(async move { me.serve_tasks(listener).await });
        }
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
        self.tidy();
        // The zygote goes; the supervisors it started stay.
        *lock(&self.starter) = Starter::NotYet;
        // Jobs keep running under their supervisors; an empty group is tidied away, and so
        // is a runtime directory of our own without job directories.
        self.cgroups.remove_group_if_empty();
        if self.runtime != self.store.dir() {
            let _ = std::fs::remove_dir(self.runtime.join("jobs"));
            let _ = std::fs::remove_dir(&self.runtime);
        }
        Ok(())
    }

    /// Serves `Tasks` (srun's job steps) until shutdown.
    async fn serve_tasks(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let service = drover_proto::tasks_server::TasksServer::new(crate::tasks::TaskService {
            host: self.clone(),
        });
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, self.shutdown.clone().cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the tasks service stopped");
        }
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
            gpus: u32::try_from(self.found.gpus.len()).unwrap_or(u32::MAX),
            gpu_type: self
                .found
                .gpus
                .first()
                .map(|g| g.name.clone())
                .unwrap_or_default(),
            isolation: self.isolation.describe(),
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
            gpus = self.found.gpus.len(),
            isolation = %self.isolation.describe(),
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
        // The first poll of this life (and after registering again) is answered at once: a
        // replica that answered an earlier life at the same index would otherwise wait for a
        // change, and a run assigned but not launched before a crash would wait with it.
        let mut first = true;
        loop {
            let req = {
                let jobs = lock(&self.jobs);
                AssignmentsRequest {
                    name: self.name.clone(),
                    after_index: jobs.highest_index,
                    wait_ms: if first {
                        0
                    } else if jobs.superseded.is_empty() {
                        ASSIGNMENTS_WAIT_MS
                    } else {
                        SUPERSEDED_WAIT_MS
                    },
                    // A run ended here leaving the node is no news to this daemon.
                    ended: jobs
                        .finished
                        .keys()
                        .filter(|id| !jobs.running.contains_key(id))
                        .map(|&job_id| JobRun {
                            job_id,
                            restarts: jobs.attempt(job_id),
                        })
                        .collect(),
                }
            };
            match self
                .client
                .call("Assignments", poll_timeout, |mut c| {
                    let req = req.clone();
                    async move { c.assignments(req).await }
                })
                .await
            {
                Ok(reply) if !reply.known => {
                    self.reregister().await;
                    first = true;
                }
                Ok(reply) => {
                    first = false;
                    self.on_assignments(reply).await;
                }
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
            *lock(&self.assigned) = reply
                .jobs
                .iter()
                .filter(|a| a.run)
                .map(|a| (a.job_id, a.clone()))
                .collect();
            self.assigned_seq.send_modify(|n| *n += 1);
            let actions = reconcile(&reply.jobs, &jobs.actual());

            // A finished job whose final report was applied at or before this state and that
            // this state no longer lists will never be listed again: forget it.
            let listed: BTreeSet<u64> = reply.jobs.iter().map(|a| a.job_id).collect();
            // A superseded job whose later run is no longer assigned here: nothing to wait for.
            let relaunch: BTreeSet<u64> = reply
                .jobs
                .iter()
                .filter(|a| a.run && a.batch_host)
                .map(|a| a.job_id)
                .collect();
            jobs.superseded.retain(|id| relaunch.contains(id));
            let before = jobs.finished.len();
            jobs.finished.retain(|id, ack| {
                listed.contains(id) || ack.is_none_or(|at| at > reply.applied_index)
            });
            let Jobs {
                running,
                finished,
                attempts,
                ..
            } = &mut *jobs;
            attempts.retain(|id, _| running.contains_key(id) || finished.contains_key(id));
            for a in reply.jobs.iter().filter(|a| a.run && a.batch_host) {
                let this_run = attempts.get(&a.job_id).copied().unwrap_or(0) == a.restarts;
                if let Some(job) = running.get_mut(&a.job_id).filter(|_| this_run) {
                    self.deliver_signals(a, job);
                }
            }
            if jobs.finished.len() != before {
                self.finished_changed();
            }
            actions
        };
        let mut launches = Vec::new();
        for action in actions {
            match action {
                Action::Launch(a) => launches.push(*a),
                Action::Stop { job_id, reason } => self.stop(job_id, reason),
                Action::Gone { job_id, restarts } => {
                    tracing::info!(
                        job_id,
                        restarts,
                        "cancelled before it started here: reporting it ended"
                    );
                    {
                        // A later run than one that ended here: its end is a new report.
                        let mut jobs = lock(&self.jobs);
                        if jobs.attempt(job_id) < restarts {
                            jobs.finished.remove(&job_id);
                            jobs.attempts.insert(job_id, restarts);
                        }
                    }
                    self.end_job(
                        job_id,
                        &JobStatus::unobserved(
                            0,
                            0,
                            EndCause::Cancelled,
                            "cancelled before it started on this node".into(),
                        ),
                    );
                }
            }
        }
        self.launch(launches);
    }

    /// Hands each job to a new supervisor process and follows it. The jobs count as running
    /// from here on, so a later assignments reply cannot launch one twice. One durable write
    /// records them all as running before any supervisor starts.
    fn launch(self: &Arc<Self>, assignments: Vec<drover_proto::Assignment>) {
        if assignments.is_empty() {
            return;
        }
        let launches: Vec<NewRun> = {
            let mut jobs = lock(&self.jobs);
            let launches = assignments
                .into_iter()
                .map(|a| self.enter_running(&mut jobs, a))
                .collect();
            // On disk before the supervisors start: a daemon killed while these runs go on
            // must not find an earlier run's end in its files and take a run for it (jepsen:
            // a requeued job's second run was launched twice).
            self.save_finished(&jobs);
            launches
        };
        for run in launches {
            self.tasks.spawn(self.clone().start_and_follow(run));
        }
    }

    /// Starts a run's supervisor and follows the run until its end is reported.
    async fn start_and_follow(self: Arc<Self>, run: NewRun) {
        let NewRun {
            a,
            spec,
            stop,
            signals,
        } = run;
        let job_id = a.job_id;
        match self.start_supervisor(&a, &spec) {
            Ok(known) => {
                let dir = launcher::job_dir(&self.runtime, job_id);
                // No pid to watch (`known` false): whether one runs shows within the patience.
                let recorded = supervisor_alive(&dir);
                let alive = move || !known || recorded();
                let found = supervisor::attach(&dir, SUPERVISOR_START_PATIENCE, &alive).await;
                self.on_attach(job_id, found, stop, signals, true).await;
            }
            Err(e) => {
                tracing::warn!(job_id, error = %e, "cannot start the job's supervisor");
                self.end_job(
                    job_id,
                    &JobStatus::launch_failed(format!("cannot start the job's supervisor: {e}")),
                );
            }
        }
    }

    /// Enters a run about to be launched into the running set (in memory), with its CPUs.
    fn enter_running(&self, jobs: &mut Jobs, a: drover_proto::Assignment) -> NewRun {
        let job_id = a.job_id;
        let stop = CancellationToken::new();
        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let used = |cpu: u32| {
            let n = jobs
                .running
                .values()
                .filter(|j| j.cpus.contains(&cpu))
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let cpus = if self.isolation.cpuset {
            cgroup::pick_cpus(a.cpus_on_node.max(1), &self.host_cpus, &used)
        } else {
            Vec::new()
        };
        // The lowest slot no running job holds.
        let cgroup_slot =
            (0..u32::MAX).find(|k| !jobs.running.values().any(|j| j.cgroup_slot == Some(*k)));
        let spec = self.supervise_spec(&a, cpus.clone(), cgroup_slot);
        // A later run of a requeued job that ended here before: this run is new.
        jobs.finished.remove(&job_id);
        jobs.superseded.remove(&job_id);
        jobs.attempts.insert(job_id, a.restarts);
        jobs.running.insert(
            job_id,
            RunningJob {
                stop: stop.clone(),
                signals: signal_tx,
                signaled: 0,
                stopping: false,
                cpus,
                cgroup_slot,
            },
        );
        NewRun {
            a,
            spec,
            stop,
            signals: signal_rx,
        }
    }

    fn supervise_spec(
        &self,
        a: &drover_proto::Assignment,
        cpus: Vec<u32>,
        cgroup_slot: Option<u32>,
    ) -> SuperviseSpec {
        let real_gpus = !self.found.gpus.iter().any(|g| g.name == "fake");
        let constrained = real_gpus && self.isolation.devices && !a.gpus.is_empty();
        let gpu_minors = constrained.then(|| {
            a.gpus
                .iter()
                .filter_map(|i| self.found.gpus.iter().find(|g| g.index == *i))
                .map(|g| g.minor)
                .collect()
        });
        SuperviseSpec {
            node_name: self.name.clone(),
            kill_wait_ms: u64::try_from(self.kill_wait.as_millis()).unwrap_or(u64::MAX),
            deadline_unix_s: a.time_limit_min.map(|m| {
                a.start_time
                    .saturating_add(i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX))
            }),
            cgroup_group: self.cgroup_group.clone(),
            limits: Limits {
                cpus,
                mem_mb: a.mem_on_node_mb,
                gpu_minors,
            },
            gpus: a.gpus.clone(),
            gpus_constrained: constrained,
            restarts: a.restarts,
            warning: (a.warn_signal > 0).then_some((a.warn_signal, a.warn_secs, a.warn_batch)),
            cgroups: Some(self.cgroups.clone()),
            user: Some(self.job_user(a.uid, a.gid)),
            cgroup_slot,
        }
    }

    /// The job's user, from a cache of [`USER_TTL`]: a lookup in the password and group
    /// databases per job cost more than the rest of starting it.
    fn job_user(&self, uid: u32, gid: u32) -> crate::users::JobUser {
        let now = std::time::Instant::now();
        let mut cache = lock(&self.users);
        if let Some((at, user)) = cache.get(&(uid, gid)) {
            if now.duration_since(*at) < USER_TTL {
                return user.clone();
            }
        }
        let user = launcher::job_user(uid, gid);
        cache.insert((uid, gid), (now, user.clone()));
        user
    }

    /// Prepares the job's directory and starts its supervisor; false when whether one started
    /// is not known (see [`Started::Unsure`]).
    fn start_supervisor(
        &self,
        a: &drover_proto::Assignment,
        spec: &SuperviseSpec,
    ) -> std::io::Result<bool> {
        let state_dir = &self.runtime;
        supervisor::prepare(state_dir, a, spec)?;
        let pid = match self.fork_supervisor(a.job_id)? {
            Started::Pid(pid) => pid,
            Started::Child(mut child) => {
                let pid = child.id();
                // Reap it when it exits (after a daemon restart, init does).
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                match pid {
                    Some(pid) => pid,
                    None => return Ok(false),
                }
            }
            Started::Unsure => return Ok(false),
        };
        let record = SupervisorRecord {
            pid,
            start_ticks: launcher::start_ticks(pid),
        };
        let dir = launcher::job_dir(state_dir, a.job_id);
        crate::state::write_replace(
            &dir.join(supervisor::SUPERVISOR_FILE),
            &serde_json::to_vec(&record).map_err(std::io::Error::other)?,
        )?;
        Ok(true)
    }

    /// Starts `job_id`'s supervisor through the zygote, starting that first if need be (and
    /// once more if it died); through an exec of its own when no zygote can be had.
    fn fork_supervisor(&self, job_id: u64) -> std::io::Result<Started> {
        let mut starter = lock(&self.starter);
        for _ in 0..2 {
            if matches!(*starter, Starter::NotYet) {
                *starter = match launcher::Zygote::start(&self.supervisor_exe, &self.runtime) {
                    Ok(z) => Starter::Zygote(z),
                    Err(e) => {
                        tracing::warn!(
                            exe = %self.supervisor_exe.display(),
                            error = %e,
                            "no supervisor starter: each supervisor is an exec of its own"
                        );
                        Starter::Unavailable
                    }
                };
            }
            let Starter::Zygote(zygote) = &mut *starter else {
                break;
            };
            match zygote.supervise(job_id) {
                Ok(pid) => return Ok(Started::Pid(pid)),
                Err(launcher::ZygoteError::NotSent(e)) => {
                    tracing::warn!(error = %e, "the supervisor starter is gone; starting another");
                    *starter = Starter::NotYet;
                }
                Err(e @ launcher::ZygoteError::NoReply(_)) => {
                    tracing::warn!(job_id, error = %e, "starting another supervisor starter");
                    *starter = Starter::NotYet;
                    return Ok(Started::Unsure);
                }
                Err(e @ launcher::ZygoteError::Refused(_)) => {
                    return Err(std::io::Error::other(e));
                }
            }
        }
        drop(starter);
        launcher::spawn_supervisor(&self.supervisor_exe, &self.runtime, job_id).map(Started::Child)
    }

    /// Sends the `scancel --signal` requests of `a` that its supervisor has not had yet, and
    /// remembers (on disk too, for a restarted daemon) the last one sent.
    fn deliver_signals(&self, a: &drover_proto::Assignment, job: &mut RunningJob) {
        let mut last = job.signaled;
        for s in a.signals.iter().filter(|s| s.seq > job.signaled) {
            tracing::info!(
                job_id = a.job_id,
                signal = s.signal,
                seq = s.seq,
                "signalling job"
            );
            let _ = job
                .signals
                .send(supervisor::Request::Signal(s.signal, s.scope));
            last = last.max(s.seq);
        }
        if last != job.signaled {
            job.signaled = last;
            let dir = launcher::job_dir(&self.runtime, a.job_id);
            if let Err(e) =
                crate::state::write_replace(&dir.join(SIGNALED_FILE), last.to_string().as_bytes())
            {
                tracing::warn!(job_id = a.job_id, error = %e, "cannot record signals sent");
            }
        }
    }

    /// Acts on what [`supervisor::attach`] found: follow a running job, or record its end.
    async fn on_attach(
        self: &Arc<Self>,
        job_id: u64,
        found: Attach,
        stop: CancellationToken,
        signals: mpsc::UnboundedReceiver<supervisor::Request>,
        new: bool,
    ) {
        let dir = launcher::job_dir(&self.runtime, job_id);
        match found {
            Attach::Running { pid, conn } => {
                if new {
                    tracing::info!(job_id, pid, "job started");
                    self.hold_start(PendingReport {
                        pid,
                        ..self.report(job_id, ReportKind::Started)
                    });
                } else {
                    tracing::info!(job_id, pid, "re-attached to a running job");
                }
                let followed =
                    supervisor::follow(dir.clone(), conn, stop, signals, self.shutdown.clone());
                match followed.await {
                    Some(status) => self.end_job(job_id, &status),
                    None if self.shutdown.is_cancelled() => {}
                    None => self.lost_job(job_id),
                }
            }
            Attach::Ended(status) => {
                // A job that ended before we could connect still started: say so first.
                if new && status.launched {
                    self.hold_start(PendingReport {
                        pid: status.pid,
                        ..self.report(job_id, ReportKind::Started)
                    });
                }
                self.end_job(job_id, &status)
            }
            Attach::Lost => self.lost_job(job_id),
        }
    }

    /// The supervisor is gone and left no status: whatever remains of the job is killed and
    /// the job reported failed.
    fn lost_job(&self, job_id: u64) {
        let killed = launcher::kill_orphaned_job(&self.runtime, job_id);
        let message = if killed {
            "the job's supervisor died; its processes were killed"
        } else {
            "the job's supervisor died; the job's exit status is unknown"
        };
        tracing::warn!(job_id, message);
        self.end_job(
            job_id,
            &JobStatus::unobserved(
                1,
                if killed { libc::SIGKILL } else { 0 },
                EndCause::Exited,
                message.into(),
            ),
        );
    }

    /// Records a job's end once: the final report (persisted) first, then the finished set,
    /// then the job directory goes.
    fn end_job(&self, job_id: u64, status: &JobStatus) {
        let (already, status_run) = {
            let jobs = lock(&self.jobs);
            (jobs.finished.contains_key(&job_id), jobs.attempt(job_id))
        };
        if !already {
            let kind = if status.launched {
                ReportKind::Finished
            } else {
                ReportKind::LaunchFailed
            };
            tracing::info!(job_id, ?kind, exit_code = status.exit_code, signal = status.signal,
                cause = ?status.cause, max_rss_kb = status.max_rss_kb,
                total_cpu_ms = status.total_cpu_ms, "job ended");
            self.push_report(PendingReport {
                pid: status.pid,
                exit_code: status.exit_code,
                signal: status.signal,
                message: status.message.clone(),
                cause: status.cause,
                max_rss_kb: status.max_rss_kb,
                total_cpu_ms: status.total_cpu_ms,
                restarts: status_run,
                ..self.report(job_id, kind)
            });
        }
        let mut jobs = lock(&self.jobs);
        if jobs.attempt(job_id) != status_run && jobs.running.contains_key(&job_id) {
            // The report was answered, the job requeued and its next run launched here
            // before this end was recorded: that run's entry and directory are not ours.
            return;
        }
        jobs.running.remove(&job_id);
        jobs.finished.entry(job_id).or_insert(None);
        // Its final report is on disk: that makes it finished at the next start too.
        self.finished_changed();
        launcher::remove_job_dir(&self.runtime, job_id);
    }

    fn report(&self, job_id: u64, kind: ReportKind) -> PendingReport {
        let restarts = lock(&self.jobs).attempt(job_id);
        PendingReport {
            restarts,
            request_id: self.ids.next_id(),
            job_id,
            kind,
            exit_code: 0,
            signal: 0,
            pid: 0,
            message: String::new(),
            cause: EndCause::Exited,
            max_rss_kb: 0,
            total_cpu_ms: 0,
        }
    }

    fn stop(&self, job_id: u64, reason: StopReason) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.running.get_mut(&job_id) {
            tracing::info!(job_id, ?reason, "stopping job");
            job.stopping = true;
            job.stop.cancel();
            if reason == StopReason::Superseded {
                jobs.superseded.insert(job_id);
            }
        }
    }

    /// At start: the job directories of an earlier life. A job whose supervisor still runs
    /// is followed again; one that ended meanwhile is reported (once: the finished set
    /// remembers reports already made); one whose supervisor vanished is killed and failed.
    ///
    /// A run recorded as launched whose directory is gone (the machine restarted, taking the
    /// runtime directory with it) is reported lost, never launched again.
    async fn reattach(self: &Arc<Self>) {
        launcher::link_legacy_job_dirs(self.store.dir(), &self.runtime);
        let mut ids: Vec<u64> = std::fs::read_dir(self.runtime.join("jobs"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        let unended = std::mem::take(&mut *lock(&self.unended_runs));
        for (&job_id, &run) in unended.iter().filter(|(id, _)| !ids.contains(id)) {
            tracing::warn!(
                job_id,
                run,
                runtime_dir = %self.runtime.display(),
                "a run launched here left no job directory (the machine restarted?): reporting it lost"
            );
            lock(&self.jobs).attempts.insert(job_id, run);
            self.end_job(
                job_id,
                &JobStatus::unobserved(
                    1,
                    0,
                    EndCause::Exited,
                    "the job's directory on this node is gone (the node restarted); \
                     the job's exit status is unknown"
                        .into(),
                ),
            );
        }
        for job_id in ids {
            let dir = launcher::job_dir(&self.runtime, job_id);
            // The run this directory belongs to, for the reports and the finished set.
            let spec = supervisor::read_spec(&dir);
            {
                let mut jobs = lock(&self.jobs);
                let ended_run = jobs
                    .finished
                    .contains_key(&job_id)
                    .then(|| jobs.attempt(job_id));
                let dir_run = spec.as_ref().map(|s| s.restarts);
                match (ended_run, dir_run) {
                    // The end of this very run is already recorded.
                    (Some(ended), run) if run.is_none_or(|r| r <= ended) => {
                        drop(jobs);
                        launcher::remove_job_dir(&self.runtime, job_id);
                        continue;
                    }
                    // A later run than the one that ended here (requeued): follow it.
                    (Some(_), run) => {
                        let run = run.unwrap_or_default();
                        jobs.finished.remove(&job_id);
                        jobs.attempts.insert(job_id, run);
                    }
                    (None, Some(run)) => {
                        jobs.attempts.insert(job_id, run);
                    }
                    (None, None) => {}
                }
            }
            let alive = supervisor_alive(&dir);
            let found = supervisor::attach(&dir, Duration::from_secs(5), &alive).await;
            let (signal_tx, signal_rx) = mpsc::unbounded_channel();
            if let Attach::Running { .. } = found {
                let (cpus, cgroup_slot) = spec
                    .map(|s| (s.limits.cpus, s.cgroup_slot))
                    .unwrap_or_default();
                let stop = CancellationToken::new();
                lock(&self.jobs).running.insert(
                    job_id,
                    RunningJob {
                        stop: stop.clone(),
                        signals: signal_tx,
                        signaled: read_signaled(&dir),
                        stopping: false,
                        cpus,
                        cgroup_slot,
                    },
                );
                let me = self.clone();
                self.tasks.spawn(async move {
                    me.on_attach(job_id, found, stop, signal_rx, false).await
                });
            } else {
                tracing::warn!(
                    job_id,
                    "job of an earlier run ended while the daemon was away"
                );
                self.on_attach(job_id, found, CancellationToken::new(), signal_rx, false)
                    .await;
            }
        }
    }

    /// Saves the finished set with the current fence (see `state::FinishedFile`), durably.
    fn save_finished(&self, jobs: &Jobs) {
        self.finished_dirty.store(false, Ordering::SeqCst);
        if let Err(e) = self.store.save_finished(
            &jobs.finished,
            &jobs.attempts,
            jobs.running.keys(),
            jobs.highest_index,
        ) {
            tracing::error!(error = %e, "cannot save the finished job set");
        }
    }

    /// A change to the finished set that can wait to be written (see `finished_dirty`).
    fn finished_changed(&self) {
        self.finished_dirty.store(true, Ordering::SeqCst);
    }

    /// Writes what waited to be written (at an idle outbox and at shutdown).
    fn tidy(&self) {
        let queue = lock(&self.outbox);
        if self.outbox_stale.load(Ordering::SeqCst) {
            self.save_outbox(&queue);
        } else if self.finished_dirty.load(Ordering::SeqCst) {
            self.save_finished(&lock(&self.jobs));
        }
    }

    /// Queues a report (persisted before this returns) for the outbox loop, after its job's
    /// start report if that is still held back.
    fn push_report(&self, report: PendingReport) {
        let mut queue = lock(&self.outbox);
        self.release_starts(&mut queue, Release::Job(report.job_id));
        queue.push_back(report);
        self.save_outbox(&queue);
        drop(queue);
        self.outbox_wake.notify_one();
    }

    /// Holds a `Started` report back for [`STARTED_REPORT_DELAY`] (not persisted).
    fn hold_start(&self, report: PendingReport) {
        let due = tokio::time::Instant::now() + STARTED_REPORT_DELAY;
        let mut held = lock(&self.held_starts);
        held.push_back((due, report));
        let first = held.len() == 1;
        drop(held);
        if first {
            // The outbox loop's idle wait now has a deadline.
            self.outbox_wake.notify_one();
        }
    }

    /// Moves held start reports into the outbox queue (in their order, not persisted: see
    /// [`STARTED_REPORT_DELAY`]); when the earliest still held is due. Lock order: outbox,
    /// then held starts.
    fn release_starts(
        &self,
        queue: &mut VecDeque<PendingReport>,
        which: Release,
    ) -> Option<tokio::time::Instant> {
        let mut held = lock(&self.held_starts);
        if held.is_empty() {
            return None;
        }
        let now = tokio::time::Instant::now();
        let mut kept = VecDeque::with_capacity(held.len());
        for (due, report) in held.drain(..) {
            let release = match which {
                Release::Due => due <= now,
                Release::Job(job_id) => report.job_id == job_id || due <= now,
                Release::All => true,
            };
            if release {
                queue.push_back(report);
            } else {
                kept.push_back((due, report));
            }
        }
        *held = kept;
        held.front().map(|(due, _)| *due)
    }

    /// Writes the outbox, under its lock. When the write drops answered reports, the finished
    /// set (where their answers and ends are recorded first) is written before it, so that
    /// what the disk says a report did never goes missing with the report. Lock order:
    /// outbox, then jobs (nothing takes the outbox while holding the jobs).
    fn save_outbox(&self, queue: &VecDeque<PendingReport>) {
        if self.outbox_stale.load(Ordering::SeqCst) && self.finished_dirty.load(Ordering::SeqCst) {
            self.save_finished(&lock(&self.jobs));
        }
        self.outbox_stale.store(false, Ordering::SeqCst);
        let reports: Vec<PendingReport> = queue.iter().cloned().collect();
        if let Err(e) = self.store.save_pending(&reports) {
            tracing::error!(error = %e, "cannot save pending reports (kept in memory)");
        }
    }

    /// Sends reports until a controller answers each: the queue's first [`REPORTS_PER_CALL`],
    /// in their order, in one call that the controllers apply as one write (a short job's
    /// start and end, and the ends of many jobs, cost one round trip). A batch a controller
    /// refuses goes again one report at a time, in order, so that one bad report cannot hold
    /// up the rest (it is dropped after [`REPORT_REJECTIONS_TOLERATED`] refusals).
    async fn outbox_loop(self: &Arc<Self>) {
        let mut rejections: BTreeMap<String, u32> = BTreeMap::new();
        loop {
            let (batch, next_start) = {
                let mut queue = lock(&self.outbox);
                let next_start = self.release_starts(&mut queue, Release::Due);
                let batch: Vec<PendingReport> =
                    queue.iter().take(REPORTS_PER_CALL).cloned().collect();
                (batch, next_start)
            };
            if batch.is_empty() {
                let untidy = self.finished_dirty.load(Ordering::SeqCst)
                    || self.outbox_stale.load(Ordering::SeqCst);
                let start_due = next_start.unwrap_or_else(tokio::time::Instant::now);
                tokio::select! {
                    _ = self.shutdown.cancelled() => {
                        // Held start reports go to disk with the rest, for the next start.
                        // (The file then differs from the queue: `tidy` writes it.)
                        let mut queue = lock(&self.outbox);
                        let before = queue.len();
                        self.release_starts(&mut queue, Release::All);
                        if queue.len() > before {
                            self.outbox_stale.store(true, Ordering::SeqCst);
                        }
                        drop(queue);
                        self.tidy();
                        return;
                    }
                    _ = self.outbox_wake.notified() => continue,
                    _ = tokio::time::sleep_until(start_due), if next_start.is_some() => continue,
                    _ = tokio::time::sleep(TIDY_AFTER), if untidy => {
                        self.tidy();
                        continue;
                    }
                }
            }
            let mut delivered: Vec<(PendingReport, u64)> = Vec::new();
            let mut retry = false;
            match self.send_reports(&batch).await {
                Ok(ack_index) => delivered = batch.into_iter().map(|r| (r, ack_index)).collect(),
                Err(CallError::Cancelled) => return,
                Err(e) => {
                    tracing::warn!(error = %e, reports = batch.len(), "report batch refused; sending them one by one");
                    for report in batch {
                        match self.send_report(&report).await {
                            Ok(ack_index) => delivered.push((report, ack_index)),
                            Err(CallError::Cancelled) => return,
                            Err(e) => {
                                let n = rejections.entry(report.request_id.clone()).or_insert(0);
                                *n += 1;
                                if *n < REPORT_REJECTIONS_TOLERATED {
                                    tracing::warn!(job_id = report.job_id, error = %e, "report rejected; retrying");
                                    // The ones after it wait: a job's reports keep their order.
                                    retry = true;
                                    break;
                                }
                                tracing::error!(job_id = report.job_id, kind = ?report.kind, error = %e,
                                    "report rejected {n} times; dropping it");
                                delivered.push((report, 0));
                            }
                        }
                    }
                }
            }
            if !delivered.is_empty() {
                // The answers go into the finished set before the reports leave the outbox:
                // a write of the outbox that drops them writes the finished set first.
                let mut any_final = false;
                {
                    let mut jobs = lock(&self.jobs);
                    for (report, ack_index) in &delivered {
                        rejections.remove(&report.request_id);
                        tracing::debug!(job_id = report.job_id, kind = ?report.kind, ack_index, "report delivered");
                        // The answer to a run's final report; a requeued job may already run
                        // again here, and that run has not finished.
                        let later_run = jobs.running.contains_key(&report.job_id)
                            || jobs.attempt(report.job_id) != report.restarts;
                        if report.kind.is_final() && !later_run {
                            jobs.finished.insert(report.job_id, Some(*ack_index));
                            any_final = true;
                        }
                    }
                }
                if any_final {
                    self.finished_changed();
                }
                let done: BTreeSet<&str> = delivered
                    .iter()
                    .map(|(r, _)| r.request_id.as_str())
                    .collect();
                let mut queue = lock(&self.outbox);
                queue.retain(|r| !done.contains(r.request_id.as_str()));
                self.outbox_stale.store(true, Ordering::SeqCst);
            }
            if retry {
                self.pause(Duration::from_secs(1)).await;
            }
        }
    }

    /// A pending report as the controllers take it.
    fn job_report(&self, report: &PendingReport) -> JobReport {
        JobReport {
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
            cause: match report.cause {
                EndCause::Exited => job_report::Cause::Exited,
                EndCause::Cancelled => job_report::Cause::Stopped,
                EndCause::TimeLimit => job_report::Cause::TimeLimit,
                EndCause::OutOfMemory => job_report::Cause::OutOfMemory,
            } as i32,
            max_rss_kb: report.max_rss_kb,
            total_cpu_ms: report.total_cpu_ms,
            restarts: report.restarts,
        }
    }

    /// One try (with the client's failover) of reports, in order, in one call; the applied
    /// index of the answer.
    async fn send_reports(&self, reports: &[PendingReport]) -> Result<u64, CallError> {
        let req = drover_proto::JobReports {
            node: self.name.clone(),
            reports: reports.iter().map(|r| self.job_report(r)).collect(),
        };
        self.client
            .call("ReportJobs", RPC_TIMEOUT, |mut c| {
                let req = req.clone();
                async move { c.report_jobs(req).await }
            })
            .await
            .map(|reply| reply.applied_index)
    }

    /// One try (with the client's failover) of one report; the applied index of the answer.
    async fn send_report(&self, report: &PendingReport) -> Result<u64, CallError> {
        let req = self.job_report(report);
        self.client
            .call("ReportJob", RPC_TIMEOUT, |mut c| {
                let req = req.clone();
                async move { c.report_job(req).await }
            })
            .await
            .map(|reply| reply.applied_index)
    }
}

/// Is the supervisor recorded in `dir` still the running process it was?
fn supervisor_alive(dir: &std::path::Path) -> impl Fn() -> bool + Sync {
    let record: Option<SupervisorRecord> = std::fs::read(dir.join(supervisor::SUPERVISOR_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    move || record.is_some_and(|r| launcher::same_process(r.pid, r.start_ticks))
}

/// FNV-1a, to name a daemon's cgroup and runtime directory after its state dir.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl crate::tasks::StepHost for Daemon {
    fn node_name(&self) -> &str {
        &self.name
    }

    fn running_assignment(&self, job_id: u64) -> Option<drover_proto::Assignment> {
        lock(&self.assigned).get(&job_id).cloned()
    }

    fn assignments_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.assigned_seq.subscribe()
    }

    fn job_cgroup(&self, job_id: u64) -> Option<cgroup::AttachFds> {
        match self.cgroups.attach_existing(job_id) {
            Ok(fds) => fds,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "cannot open the job's cgroup for a step");
                None
            }
        }
    }

    fn kill_wait(&self) -> Duration {
        self.kill_wait
    }
}
