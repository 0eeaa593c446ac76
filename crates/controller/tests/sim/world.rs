//! One simulated run: replicas, node daemons, clients, a nemesis and a checker, all driven by one
//! seed on a paused current-thread tokio runtime.
//!
//! ```text
//!  seed ─► StdRng per actor (network, nemesis, each client, each node daemon) + openraft's RNG
//!  safety phase (WORKLOAD):  clients submit/cancel with retries ─┐
//!                            node daemons register/heartbeat/    ├─► real replicas on Net
//!                              start/finish jobs                 │
//!                            nemesis: crashes, partitions, ... ──┘
//!                            checker: every CHECK_EVERY, on every live replica
//!  healing phase: faults off, every replica up ─► converge, a leader, a new submit accepted,
//!                 every job terminal and no resources held
//! ```

use super::net::{self, End, Net, Weather};
use drover_consensus::NodeId;
use drover_proto as pb;
use drover_proto::ctl_server::Ctl as _;
use drover_proto::node_ctl_server::NodeCtl as _;
use drover_scheduler::state::MIN_JOB_AGE_MS;
use drover_scheduler::{invariants, ClusterState, JobId, JobState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{sleep, Instant};
use tonic::Status;

/// How long clients and the nemesis run, unless `DROVER_SIM_WORKLOAD_MS` says otherwise.
const WORKLOAD: Duration = Duration::from_secs(12);
/// The liveness bound of the healing phase.
const HEALING: Duration = Duration::from_secs(90);
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// The largest clock skew the nemesis gives a replica.
const MAX_SKEW_MS: i64 = 30_000;
/// Clients stop submitting while this many jobs are unfinished.
const MAX_BACKLOG: usize = 30;
/// A client gives a write up (outcome unknown) after this long.
const CLIENT_DEADLINE: Duration = Duration::from_secs(12);
const NODES: usize = 3;
const NODE_CPUS: u32 = 4;
const NODE_MEM_MB: u64 = 4096;
const NODE_GPUS: u32 = 2;

/// What a run found and did.
#[derive(Default)]
pub struct Report {
    pub violations: Vec<String>,
    /// Every leader change, fault and checker sample, in order: equal for equal seeds.
    pub trace: String,
    pub stats: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn trace_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.trace.hash(&mut h);
        h.finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
}

struct Submitted {
    name: String,
    outcome: Outcome,
    job_id: Option<JobId>,
    /// The log index the acknowledgement reflects.
    index: u64,
    /// The cluster clock when the client first sent it: the job's `submit_at` is no earlier.
    sent_ms: u64,
    /// The simulated clock when the acknowledgement reached the client (ok only).
    acked_ms: Option<u64>,
}

#[derive(Default)]
struct Shared {
    violations: Vec<String>,
    trace: String,
    stats: BTreeMap<&'static str, u64>,
    submits: Vec<Submitted>,
    /// Per (replica, incarnation): each job's last seen state.
    seen: BTreeMap<(NodeId, u64), BTreeMap<JobId, JobState>>,
    /// term → the leaders seen in it (openraft allows several, ordered by id).
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
    /// applied index → hash of the state at it (first replica seen there).
    states: BTreeMap<u64, (NodeId, u64)>,
    /// (replica, incarnation) → `ClusterState::now` at the last look.
    cluster_time: BTreeMap<(NodeId, u64), u64>,
    /// job → the node daemon that launched it.
    launches: BTreeMap<u64, String>,
    /// (replica, incarnation) → the applied index last checked and the state's hash there.
    last_checked: BTreeMap<(NodeId, u64), (u64, u64)>,
}

struct World {
    net: Arc<Net>,
    shared: Mutex<Shared>,
    start: Instant,
    /// Node daemons paused by the nemesis.
    paused_nodes: Mutex<BTreeSet<usize>>,
    /// Set when the workload stops submitting (healing phase).
    quiet: tokio_util::sync::CancellationToken,
    incarnations: Mutex<BTreeMap<NodeId, u64>>,
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn t(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    fn trace(&self, line: impl AsRef<str>) {
        let t = self.t();
        let mut s = self.lock();
        let _ = writeln!(s.trace, "{t:>6} {}", line.as_ref());
    }

    fn violation(&self, what: String) {
        let t = self.t();
        let mut s = self.lock();
        let _ = writeln!(s.trace, "{t:>6} VIOLATION {what}");
        if s.violations.len() < 20 {
            s.violations.push(format!("t={t}ms: {what}"));
        }
    }

    fn count(&self, what: &'static str) {
        *self.lock().stats.entry(what).or_default() += 1;
    }

    async fn start_replica(&self, id: NodeId) {
        let incarnation = {
            let mut inc = self.incarnations.lock().unwrap_or_else(|p| p.into_inner());
            let n = inc.entry(id).or_default();
            *n += 1;
            *n
        };
        if let Err(e) = self.net.start(id, incarnation).await {
            self.violation(e);
        }
    }

    /// Unfinished jobs, as the first live replica sees them (the workload's throttle only).
    fn backlog(&self) -> usize {
        self.net.procs().first().map_or(0, |p| {
            p.replica
                .read(|s| s.jobs.values().filter(|j| !j.state.is_terminal()).count())
                .0
        })
    }

    fn leader(&self) -> Option<NodeId> {
        self.net
            .procs()
            .iter()
            .map(|p| p.replica.status())
            .filter(|s| s.role == "Leader")
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }
}

/// A hash of the state's encoding (the snapshot's postcard), streamed into the hasher.
fn state_hash(state: &ClusterState) -> u64 {
    struct HashWriter(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = HashWriter(std::collections::hash_map::DefaultHasher::new());
    postcard::to_io(state, &mut w).expect("a state encodes");
    w.0.finish()
}

fn rank(state: JobState) -> u8 {
    match state {
        JobState::Pending => 0,
        JobState::Running => 1,
        _ => 2,
    }
}

/// Election safety for openraft's leader ids. openraft 0.9 without its `single-term-leader`
/// feature (drover's build) names a leader by (term, node id): two candidates of one term can
/// both win, the higher id second, and the first is then as stale as a leader of an older term
/// (its log entries carry its leader id, so logs still match). "One leader per term" is thus
/// "one leader per (term, id)", true by construction. What must hold, and is checked here, is the
/// quorum behind it: a majority of the disks (crashed replicas' included) hold a vote at least
/// the leader's (term, id) — votes never go back, so a lost or unflushed vote, or a leader
/// elected without a majority, breaks it.
fn election_safety(world: &World, id: NodeId, term: u64) {
    let leader = (term, id);
    let disks = &world.net.disks;
    let backing = disks
        .values()
        .filter(|d| d.vote().is_some_and(|v| v >= leader))
        .count();
    if backing < disks.len() / 2 + 1 {
        let votes: Vec<Option<(u64, u64)>> = disks.values().map(|d| d.vote()).collect();
        world.violation(format!(
            "r{id} leads term {term} but only {backing} of {} disks hold a vote ≥ (term {term}, r{id}): {votes:?}",
            disks.len()
        ));
    }
    let mut s = world.lock();
    let seen = s.leaders.entry(term).or_default();
    if seen.insert(id) {
        let others: Vec<NodeId> = seen.iter().copied().filter(|x| *x != id).collect();
        drop(s);
        world.trace(format!(
            "leader r{id} term {term} (other leaders of this term: {others:?})"
        ));
    }
}

/// One look at every live replica: the invariants that must hold at every moment. The applied
/// state changes only with the applied index, so a replica whose index has not moved since the
/// last look is not read again.
fn check(world: &World) {
    let procs = world.net.procs();
    let mut moved = false;
    for proc in &procs {
        let status = proc.replica.status();
        let id = proc.replica.id();
        if let Some(reason) = &status.stopped {
            world.violation(format!("r{id}'s raft core stopped: {reason}"));
        }
        if status.role == "Leader" {
            election_safety(world, id, status.term);
        }
        let key = (id, proc.incarnation);
        let index = proc.replica.applied_index();
        if world.lock().last_checked.get(&key).map(|c| c.0) == Some(index) {
            continue;
        }
        moved = true;
        let ((problems, hash, jobs, now), index) = proc.replica.read(|state| {
            let mut problems = Vec::new();
            if let Err(e) = invariants::check(state) {
                problems.push(format!("invariant: {e}"));
            }
            for node in state.nodes.values() {
                if node.alloc_mem_mb > node.reg.real_memory_mb {
                    problems.push(format!(
                        "node {} has {} MiB allocated of {}",
                        node.name(),
                        node.alloc_mem_mb,
                        node.reg.real_memory_mb
                    ));
                }
                if node.alloc_gpus.iter().any(|&g| g >= node.reg.gpus) {
                    problems.push(format!(
                        "node {} has GPUs {:?} allocated of {}",
                        node.name(),
                        node.alloc_gpus,
                        node.reg.gpus
                    ));
                }
            }
            let jobs: BTreeMap<JobId, (JobState, String)> = state
                .jobs
                .iter()
                .map(|(id, j)| (*id, (j.state, j.spec.name.clone())))
                .collect();
            (problems, state_hash(state), jobs, state.now)
        });
        for p in problems {
            world.violation(format!("r{id} at index {index}: {p}"));
        }
        let mut missing = Vec::new();
        let mut s = world.lock();
        s.last_checked.insert(key, (index, hash));
        // The cluster's clock never goes back, whatever the leaders' clocks do.
        if let Some(before) = s.cluster_time.insert(key, now) {
            if now < before {
                missing.push(format!(
                    "r{id}: the cluster's time went back from {before} to {now} at index {index}"
                ));
            }
        }
        // Applied state identical at equal applied index.
        match s.states.get(&index) {
            Some(&(other, h)) if h != hash => {
                drop(s);
                world.violation(format!(
                    "r{id} and r{other} differ at applied index {index}"
                ));
                s = world.lock();
            }
            Some(_) => {}
            None => {
                s.states.insert(index, (id, hash));
            }
        }
        // Every acknowledged submit is present, under its name, once the replica has applied it.
        for sub in s.submits.iter().filter(|x| x.outcome == Outcome::Ok) {
            let job_id = sub.job_id.unwrap_or(JobId(0));
            let listed = jobs.get(&job_id).map(|(_, n)| n);
            // A finished job is purged MIN_JOB_AGE_MS after it ends, never sooner.
            let may_be_purged = listed.is_none()
                && now + MAX_SKEW_MS.unsigned_abs() >= sub.sent_ms + MIN_JOB_AGE_MS;
            if index >= sub.index && listed != Some(&sub.name) && !may_be_purged {
                missing.push(format!(
                    "r{id} at index {index}: acknowledged submit {} (job {job_id}, index {}) is missing or another job",
                    sub.name, sub.index
                ));
            }
        }
        // A definite refusal created nothing.
        for sub in s.submits.iter().filter(|x| x.outcome == Outcome::Fail) {
            if let Some((job, _)) = jobs.iter().find(|(_, (_, n))| *n == sub.name) {
                missing.push(format!(
                    "r{id}: refused submit {} exists as job {job}",
                    sub.name
                ));
            }
        }
        // Job states move forward only (per incarnation: a restarted replica replays).
        let seen = s.seen.entry(key).or_default();
        let mut backwards = Vec::new();
        for (job, (state, _)) in &jobs {
            if let Some(&old) = seen.get(job) {
                if rank(*state) < rank(old) || (rank(old) == 2 && *state != old) {
                    backwards.push(format!(
                        "r{id}: job {job} went from {} to {}",
                        old.name(),
                        state.name()
                    ));
                }
            }
            seen.insert(*job, *state);
        }
        // Exactly once: a name (one client operation) never names two jobs.
        let mut names: BTreeMap<&str, JobId> = BTreeMap::new();
        for (job, (_, name)) in &jobs {
            if let Some(first) = names.insert(name.as_str(), *job) {
                missing.push(format!(
                    "r{id}: submit {name} created two jobs ({first} and {job})"
                ));
            }
        }
        drop(s);
        for v in missing.into_iter().chain(backwards) {
            world.violation(v);
        }
    }
    if !moved {
        return;
    }
    let mut line = String::from("sample");
    {
        let s = world.lock();
        for proc in &procs {
            let id = proc.replica.id();
            if let Some((index, hash)) = s.last_checked.get(&(id, proc.incarnation)) {
                let _ = write!(line, " r{id}@{index}:{:04x}", hash & 0xffff);
            }
        }
    }
    world.trace(line);
}

async fn checker(world: Arc<World>, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        check(&world);
        sleep(CHECK_EVERY).await;
    }
}

/// Calls replica `r` from outside, through the network.
async fn call<T, F, Fut>(world: &World, r: NodeId, f: F) -> Result<T, Status>
where
    F: FnOnce(Arc<net::Proc>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let lost_after = Duration::from_millis(500);
    let call = world.net.call(End::Outside, r, lost_after, f);
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("client timeout")),
    }
}

fn spec(rng: &mut StdRng, name: &str) -> pb::JobSpec {
    let cpus = rng.gen_range(1..=NODE_CPUS);
    let two_nodes = rng.gen_range(0..10) == 0;
    pb::JobSpec {
        name: name.to_string(),
        nodes_min: if two_nodes { 2 } else { 1 },
        nodes_max: if two_nodes { 2 } else { 1 },
        ntasks: 1,
        cpus_per_task: cpus,
        mem_per_node_mb: 128 * rng.gen_range(1..=16),
        time_limit_min: Some(10),
        script: "#!/bin/sh\ntrue\n".to_string(),
        user: "sim".to_string(),
        uid: 1000,
        gid: 1000,
        gpus_per_node: if rng.gen_range(0..4) == 0 {
            rng.gen_range(1..=NODE_GPUS)
        } else {
            0
        },
        ..Default::default()
    }
}

/// Submits one job with one request id, retried through random replicas until an answer or
/// `CLIENT_DEADLINE`; records the outcome.
async fn submit(world: &World, rng: &mut StdRng, name: String) -> Option<(JobId, u64)> {
    let spec = spec(rng, &name);
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let slot = {
        let mut s = world.lock();
        s.submits.push(Submitted {
            name: name.clone(),
            outcome: Outcome::Info,
            job_id: None,
            index: 0,
            sent_ms: net::sim_clock_ms(),
            acked_ms: None,
        });
        s.submits.len() - 1
    };
    let ids = world.net.ids();
    while Instant::now() < deadline {
        let r = ids[rng.gen_range(0..ids.len())];
        let req = pb::SubmitRequest {
            request_id: format!("req-{name}"),
            spec: Some(spec.clone()),
        };
        let result = call(world, r, |p| async move {
            Ok(p.ctl.submit(tonic::Request::new(req)).await?.into_inner())
        })
        .await;
        match result {
            Ok(reply) => {
                let job_id = JobId(reply.job_id);
                {
                    let mut s = world.lock();
                    let sub = &mut s.submits[slot];
                    sub.outcome = Outcome::Ok;
                    sub.job_id = Some(job_id);
                    sub.index = reply.applied_index;
                    sub.acked_ms = Some(net::sim_clock_ms());
                }
                // Job ids are unique: no other acknowledged submit got this id.
                let dup = world
                    .lock()
                    .submits
                    .iter()
                    .filter(|x| x.job_id == Some(job_id))
                    .count();
                if dup > 1 {
                    world.violation(format!("job id {job_id} acknowledged to two submits"));
                }
                world.count("submit ok");
                return Some((job_id, reply.applied_index));
            }
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                // A definite refusal (before any node has registered, say): it created nothing.
                world.lock().submits[slot].outcome = Outcome::Fail;
                world.count("submit fail");
                world.trace(format!("submit {name} rejected: {}", s.message()));
                return None;
            }
            Err(_) => sleep(Duration::from_millis(rng.gen_range(50..400))).await,
        }
    }
    world.count("submit info");
    None
}

async fn cancel(world: &World, rng: &mut StdRng, job_id: JobId, n: u64) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let ids = world.net.ids();
    while Instant::now() < deadline {
        let r = ids[rng.gen_range(0..ids.len())];
        let req = pb::CancelRequest {
            request_id: format!("cancel-{n}-{job_id}"),
            job_ids: vec![job_id.0],
            uid: 1000,
        };
        let result = call(world, r, |p| async move {
            Ok(p.ctl.cancel(tonic::Request::new(req)).await?.into_inner())
        })
        .await;
        match result {
            Ok(_) => {
                world.count("cancel ok");
                return;
            }
            Err(_) => sleep(Duration::from_millis(rng.gen_range(50..400))).await,
        }
    }
    world.count("cancel info");
}

/// One read through a random replica, with the client's `min_index` (one in three asks to be
/// linearizable, and then tries the replicas in turn: only the leader serves it). Checks:
/// the answer is no older than what the client has seen (monotonic reads); every job this
/// client had acknowledged at or below the answer's index is listed; a linearizable answer
/// reflects every submit acknowledged (to any client) before the read was sent.
async fn read(world: &World, rng: &mut StdRng, acked: &[(JobId, u64)], seen: &mut u64) {
    let linearizable = rng.gen_range(0..3) == 0;
    let asked: Vec<(JobId, u64)> = (0..acked.len().min(8))
        .map(|_| acked[acked.len() - 1 - rng.gen_range(0..acked.len().min(30))])
        .collect();
    let min_index = *seen;
    let sent_ms = net::sim_clock_ms();
    let must_reflect = if linearizable {
        world
            .lock()
            .submits
            .iter()
            .filter(|s| s.acked_ms.is_some_and(|t| t < sent_ms))
            .map(|s| s.index)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let ids = world.net.ids();
    let first = rng.gen_range(0..ids.len());
    let tries = if linearizable { ids.len() } else { 1 };
    for k in 0..tries {
        let r = ids[(first + k) % ids.len()];
        let req = pb::ListJobsRequest {
            consistency: Some(pb::ReadConsistency {
                min_index,
                linearizable,
            }),
            job_ids: asked.iter().map(|(id, _)| id.0).collect(),
        };
        let result = call(world, r, |p| async move {
            Ok(p.ctl
                .list_jobs(tonic::Request::new(req))
                .await?
                .into_inner())
        })
        .await;
        let reply = match result {
            Ok(reply) => reply,
            Err(_) => continue,
        };
        let idx = reply.applied_index;
        if idx < min_index {
            world.violation(format!(
                "stale read: replica {r} answered at index {idx}, the client had seen {min_index}"
            ));
        }
        if idx < must_reflect {
            world.violation(format!(
                "stale linearizable read: replica {r} answered at index {idx}, a submit acknowledged before the read was applied at {must_reflect}"
            ));
        }
        let listed: BTreeSet<u64> = reply.jobs.iter().map(|j| j.job_id).collect();
        // Until a finished job could have been purged (MinJobAge, a skewed leader's stamp
        // included), an acknowledged job is listed by every read at or above its index.
        let purge_possible =
            world.start.elapsed().as_millis() as u64 + MAX_SKEW_MS.unsigned_abs() >= MIN_JOB_AGE_MS;
        for (id, at) in asked.iter().filter(|_| !purge_possible) {
            if *at <= idx && !listed.contains(&id.0) {
                world.violation(format!(
                    "read missed job {id}: replica {r} answered at index {idx}, the job was acknowledged at {at}"
                ));
            }
        }
        *seen = (*seen).max(idx);
        world.count(if linearizable {
            "read ok (linearizable)"
        } else {
            "read ok"
        });
        return;
    }
    world.count("read fail");
}

async fn client(world: Arc<World>, k: usize, mut rng: StdRng) {
    let mut acked: Vec<(JobId, u64)> = Vec::new();
    let mut seen = 0u64;
    let mut op = 0u64;
    while !world.quiet.is_cancelled() {
        op += 1;
        if world.backlog() > MAX_BACKLOG {
            // Backpressure, as in layer 1: the cluster runs jobs slower than clients could
            // submit them, and a queue that only grows says nothing more.
            sleep(Duration::from_millis(rng.gen_range(200..800))).await;
            continue;
        }
        let roll = rng.gen_range(0..10);
        if roll < 7 || acked.is_empty() {
            if let Some((id, index)) = submit(&world, &mut rng, format!("c{k}-{op}")).await {
                seen = seen.max(index);
                acked.push((id, index));
            }
        } else if roll < 8 {
            let (job, _) = acked[rng.gen_range(0..acked.len())];
            cancel(&world, &mut rng, job, op).await;
        } else {
            read(&world, &mut rng, &acked, &mut seen).await;
        }
        sleep(Duration::from_millis(rng.gen_range(50..600))).await;
    }
}

/// A daemon launches `job`: drover has no requeue, so a job launches at most once, anywhere.
fn launched(world: &World, job: u64, node: &str) {
    let first = world.lock().launches.insert(job, node.to_string());
    if let Some(first) = first {
        world.violation(format!(
            "job {job} launched twice: on {first}, then on {node}"
        ));
    }
}

/// A fake node daemon: registers, heartbeats, and runs what it is assigned for a random while.
async fn node_daemon(world: Arc<World>, n: usize, mut rng: StdRng) {
    let name = format!("n{n}");
    let ids = world.net.ids();
    let mut boot = 0u32;
    let mut registered = false;
    // job → when it finishes (virtual time); started reports not yet acknowledged.
    let mut running: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut reported_start: BTreeSet<u64> = BTreeSet::new();
    let mut finished: BTreeSet<u64> = BTreeSet::new();
    loop {
        sleep(Duration::from_millis(rng.gen_range(100..300))).await;
        if world
            .paused_nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&n)
        {
            continue;
        }
        let r = ids[rng.gen_range(0..ids.len())];
        if !registered {
            boot += 1;
            let req = pb::RegisterRequest {
                request_id: format!("reg-{name}-{boot}"),
                name: name.clone(),
                addr: format!("{name}:6818"),
                cpus: NODE_CPUS,
                real_memory_mb: NODE_MEM_MB,
                gpus: NODE_GPUS,
                gpu_type: "fake".to_string(),
                ..Default::default()
            };
            let result = call(&world, r, |p| async move {
                Ok(p.node
                    .register(tonic::Request::new(req))
                    .await?
                    .into_inner())
            })
            .await;
            if result.is_ok() {
                registered = true;
                world.count("register ok");
            }
            continue;
        }
        let hb = pb::HeartbeatRequest {
            name: name.clone(),
            running_jobs: running.keys().copied().collect(),
        };
        match call(&world, r, |p| async move {
            Ok(p.node
                .heartbeat(tonic::Request::new(hb))
                .await?
                .into_inner())
        })
        .await
        {
            // Marked not responding (or never registered there): register again.
            Ok(reply) if !reply.known => registered = false,
            _ => {}
        }
        let poll = pb::AssignmentsRequest {
            name: name.clone(),
            after_index: 0,
            wait_ms: 0,
            ended: Vec::new(),
        };
        let Ok(assigned) = call(&world, r, |p| async move {
            Ok(p.node
                .assignments(tonic::Request::new(poll))
                .await?
                .into_inner())
        })
        .await
        else {
            continue;
        };
        let now = Instant::now();
        let mut reports = Vec::new();
        for a in assigned.jobs.iter().filter(|a| a.batch_host) {
            if a.run && !finished.contains(&a.job_id) {
                if !running.contains_key(&a.job_id) {
                    launched(&world, a.job_id, &name);
                }
                running
                    .entry(a.job_id)
                    .or_insert_with(|| now + Duration::from_millis(rng.gen_range(100..1500)));
                if !reported_start.contains(&a.job_id) {
                    reports.push((a.job_id, pb::job_report::Kind::Started, 0));
                }
            } else if !a.run {
                // Cancelled while running: stop it and say so.
                running.remove(&a.job_id);
                finished.insert(a.job_id);
                reports.push((a.job_id, pb::job_report::Kind::Finished, 1));
            }
        }
        for (job, at) in &running {
            if *at <= now && reported_start.contains(job) {
                reports.push((*job, pb::job_report::Kind::Finished, 0));
            }
        }
        for (job, kind, cause) in reports {
            let req = pb::JobReport {
                request_id: format!("{name}-{job}-{}", kind as i32),
                node: name.clone(),
                job_id: job,
                kind: kind as i32,
                exit_code: if rng.gen_range(0..5) == 0 { 1 } else { 0 },
                cause,
                pid: 4242,
                ..Default::default()
            };
            let r = ids[rng.gen_range(0..ids.len())];
            if call(&world, r, |p| async move {
                Ok(p.node
                    .report_job(tonic::Request::new(req))
                    .await?
                    .into_inner())
            })
            .await
            .is_ok()
            {
                world.count("report ok");
                if kind == pb::job_report::Kind::Started {
                    reported_start.insert(job);
                } else {
                    running.remove(&job);
                    finished.insert(job);
                }
            }
        }
    }
}

/// One fault at a time: applied, held, healed.
async fn nemesis(world: Arc<World>, mut rng: StdRng) {
    let ids = world.net.ids();
    let majority = ids.len() / 2 + 1;
    while !world.quiet.is_cancelled() {
        sleep(Duration::from_millis(rng.gen_range(300..2500))).await;
        if world.quiet.is_cancelled() {
            break;
        }
        let hold = Duration::from_millis(rng.gen_range(200..5000));
        match rng.gen_range(0..10) {
            kind @ 0..=2 => {
                let victims: Vec<NodeId> = match kind {
                    0 => world.leader().into_iter().collect(),
                    1 => vec![ids[rng.gen_range(0..ids.len())]],
                    _ => {
                        let mut v = ids.clone();
                        while v.len() > majority {
                            v.remove(rng.gen_range(0..v.len()));
                        }
                        v
                    }
                };
                world.trace(format!("nemesis crash {victims:?} for {hold:?}"));
                world.count("fault crash");
                for v in &victims {
                    world.net.crash(*v).await;
                }
                sleep(hold).await;
                for v in &victims {
                    world.start_replica(*v).await;
                }
            }
            3 => {
                world.trace("nemesis restart all");
                world.count("fault restart-all");
                for v in &ids {
                    world.net.crash(*v).await;
                }
                sleep(Duration::from_millis(rng.gen_range(50..1500))).await;
                for v in &ids {
                    world.start_replica(*v).await;
                }
            }
            kind @ 4..=5 => {
                let sides: Vec<Vec<NodeId>> = match (kind, world.leader()) {
                    (4, Some(l)) => {
                        vec![vec![l], ids.iter().copied().filter(|x| *x != l).collect()]
                    }
                    _ => {
                        let mut a = Vec::new();
                        let mut b = Vec::new();
                        for id in &ids {
                            if rng.gen_range(0..2) == 0 {
                                a.push(*id)
                            } else {
                                b.push(*id)
                            }
                        }
                        vec![a, b]
                    }
                };
                let outside: Vec<NodeId> = if rng.gen_range(0..2) == 0 {
                    sides[0].clone()
                } else {
                    Vec::new()
                };
                world.trace(format!(
                    "nemesis partition {sides:?} outside-cut {outside:?} for {hold:?}"
                ));
                world.count("fault partition");
                world.net.partition(&sides, &outside);
                sleep(hold).await;
                world.net.heal();
            }
            6 => {
                let weather = Weather {
                    min_delay_ms: rng.gen_range(1..20),
                    max_delay_ms: rng.gen_range(20..400),
                    drop_per_mille: rng.gen_range(0..200),
                };
                world.trace(format!("nemesis weather {weather:?} for {hold:?}"));
                world.count("fault delay-drop");
                world.net.set_weather(weather);
                sleep(hold).await;
                world.net.set_weather(Weather::calm());
            }
            9 => {
                // A replica's clock jumps (back or forward): time enters apply only as the
                // leader's stamp, and `now = max(now, at)` keeps the cluster's time monotonic.
                let r = ids[rng.gen_range(0..ids.len())];
                let offset = rng.gen_range(-MAX_SKEW_MS..=MAX_SKEW_MS);
                world.trace(format!("nemesis skew r{r} by {offset} ms for {hold:?}"));
                world.count("fault clock-skew");
                world.net.skew(r, offset);
                sleep(hold).await;
                world.net.skew(r, 0);
            }
            _ => {
                let n = rng.gen_range(0..NODES);
                // Sometimes longer than the node timeout: the node goes DOWN, its jobs NODE_FAIL.
                let pause = hold + Duration::from_millis(rng.gen_range(0..10_000));
                world.trace(format!("nemesis pause n{n} for {pause:?}"));
                world.count("fault node-pause");
                world
                    .paused_nodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n);
                sleep(pause).await;
                world
                    .paused_nodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&n);
            }
        }
    }
}

/// The healing phase: everything up and connected; the cluster must converge and finish its work.
async fn heal(world: &Arc<World>) -> Result<(), String> {
    world.net.heal();
    world
        .paused_nodes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    for id in world.net.ids() {
        if !world.net.is_up(id) {
            world.start_replica(id).await;
        }
    }
    world.trace("healed");
    let deadline = Instant::now() + HEALING;
    // A leader, and a new submit accepted.
    let mut rng = StdRng::seed_from_u64(0x4ea1);
    let name = "after-heal".to_string();
    let accepted = loop {
        if let Some((id, _)) = submit(world, &mut rng, name.clone()).await {
            break id;
        }
        if Instant::now() >= deadline {
            return Err("no new submit was accepted after healing".to_string());
        }
    };
    world.trace(format!("after-heal submit is job {accepted}"));
    // Every job terminal, nothing held, every replica at the same index with the same state.
    loop {
        let views: Vec<(NodeId, u64, u64, usize, usize)> = world
            .net
            .procs()
            .iter()
            .map(|p| {
                let ((hash, open, held), index) = p.replica.read(|s| {
                    let open = s.jobs.values().filter(|j| !j.state.is_terminal()).count();
                    let held = s.jobs.values().filter(|j| j.holds_resources()).count();
                    // Hashing the state is the costly part: only once the work is done.
                    let hash = if open + held == 0 { state_hash(s) } else { 0 };
                    (hash, open, held)
                });
                (p.replica.id(), index, hash, open, held)
            })
            .collect();
        let converged = views.len() == world.net.ids().len()
            && views.iter().all(|v| (v.1, v.2) == (views[0].1, views[0].2));
        let done = views.iter().all(|v| v.3 == 0 && v.4 == 0);
        if converged && done && world.leader().is_some() {
            world.trace(format!("converged at index {}", views[0].1));
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not live {HEALING:?} after healing: (replica, applied index, state hash, unfinished jobs, jobs holding resources) = {views:?}, leader {:?}",
                world.leader()
            ));
        }
        sleep(Duration::from_millis(250)).await;
    }
}

/// Runs one seed to the end on the current (paused, current-thread) runtime.
pub async fn run(seed: u64) -> Report {
    drover_consensus::runtime::seed_thread_rng(seed);
    net::start_clock();
    let mut master = StdRng::seed_from_u64(seed);
    let replicas = if master.gen_range(0..4) == 0 { 5 } else { 3 };
    let net = Net::new(replicas, StdRng::seed_from_u64(master.gen()));
    let world = Arc::new(World {
        net,
        shared: Mutex::new(Shared::default()),
        start: Instant::now(),
        paused_nodes: Mutex::new(BTreeSet::new()),
        quiet: tokio_util::sync::CancellationToken::new(),
        incarnations: Mutex::new(BTreeMap::new()),
    });
    world.trace(format!("seed {seed}: {replicas} replicas, {NODES} nodes"));
    for id in world.net.ids() {
        world.start_replica(id).await;
    }
    let stop_checker = tokio_util::sync::CancellationToken::new();
    tokio::spawn(checker(world.clone(), stop_checker.clone()));
    for n in 0..NODES {
        tokio::spawn(node_daemon(
            world.clone(),
            n,
            StdRng::seed_from_u64(master.gen()),
        ));
    }
    let mut clients = Vec::new();
    for k in 0..3 {
        clients.push(tokio::spawn(client(
            world.clone(),
            k,
            StdRng::seed_from_u64(master.gen()),
        )));
    }
    let nemesis = tokio::spawn(nemesis(world.clone(), StdRng::seed_from_u64(master.gen())));
    let workload = std::env::var("DROVER_SIM_WORKLOAD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(WORKLOAD, Duration::from_millis);
    sleep(workload).await;
    world.quiet.cancel();
    for c in clients {
        let _ = c.await;
    }
    let _ = nemesis.await;
    if let Err(e) = heal(&world).await {
        world.violation(e);
    }
    check(&world);
    stop_checker.cancel();
    let (delivered, lost) = world.net.counts();
    let mut s = world.lock();
    s.stats.insert("messages delivered", delivered);
    s.stats.insert("messages lost", lost);
    s.stats.insert("replicas", replicas);
    let terms = s.leaders.len() as u64;
    s.stats.insert("terms", terms);
    let shared_terms = s.leaders.values().filter(|l| l.len() > 1).count() as u64;
    s.stats.insert("terms with two leaders", shared_terms);
    s.stats
        .insert("virtual ms", world.start.elapsed().as_millis() as u64);
    Report {
        violations: std::mem::take(&mut s.violations),
        trace: std::mem::take(&mut s.trace),
        stats: std::mem::take(&mut s.stats),
    }
}
