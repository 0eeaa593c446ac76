//! `Replica`: one controller replica's view of the shared log — open/restart, group commit,
//! reads of the applied state, leadership.
//!
//! ```text
//!  propose(reqs) ──mpsc──► batcher task: first request, then everything already queued
//!                          (≤ MAX_BATCH_REQUESTS / MAX_BATCH_BYTES), stamp `at` = now (ms)
//!                          ──► raft.client_write_ff(Proposal)   (in order; ≤ MAX_IN_FLIGHT at once)
//!                                   │ committed, applied on this replica
//!                                   ▼
//!                          per-batch task splits Vec<Reply> back to each caller: (index, replies)
//!
//!  raft.metrics() ──► leadership task ──► watch<Leadership>
//!  apply          ──► watch<u64> (applied index)        read(f) ──► (f(&state), applied index)
//! ```

use crate::log_store::{open_db, LogStore};
use crate::mem_store::MemDisk;
use crate::network::{handle_rpc, NetworkFactory, RaftRpcKind, RaftService, RaftTransport};
use crate::sm_store::{Shared, StateMachineStore};
use crate::typ::{NodeId, Raft};
use drover_proto::raft_server::RaftServer;
use drover_scheduler::{ClusterState, Proposal, Reply, Request};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, Config, RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The most requests one log entry carries.
pub const MAX_BATCH_REQUESTS: usize = 4096;
/// The most payload (encoded bytes of the requests) one log entry carries, unless a single
/// `propose` call is larger on its own.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The most payload one `propose` call may carry. With `MAX_PAYLOAD_ENTRIES` entries per
/// AppendEntries, one such entry plus 11 full batches stays under the 64 MiB message limit; an
/// entry that never fits a message would stall replication for good.
pub const MAX_PROPOSE_BYTES: usize = 16 * 1024 * 1024;
/// How many batches may be in flight (proposed, not yet applied) at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Entries per AppendEntries: with batches up to `MAX_BATCH_BYTES`, 12 stay under the 64 MiB
/// message limit.
const MAX_PAYLOAD_ENTRIES: u64 = 12;
/// How long `open` retries while a previous instance in this process still holds the sled lock.
const OPEN_LOCK_RETRY: Duration = Duration::from_secs(15);

/// How to run one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub id: NodeId,
    /// id → "host:port": each replica's single gRPC port (raft and ctl services share it).
    pub members: BTreeMap<NodeId, String>,
    /// The sled database lives under `data_dir/raft.sled`.
    pub data_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the latest snapshot (openraft's
    /// `max_in_snapshot_log_to_keep`); older ones are purged.
    pub max_logs_kept_after_snapshot: u64,
    /// The leader's clock: it stamps `Proposal::at`. The system clock, except in the
    /// simulation, whose clocks are its virtual time (skewed per replica).
    pub clock: Clock,
}

/// A replica's clock, in ms since the epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(system_clock_ms))
    }

    /// Any other source of time (the simulation's).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl ReplicaConfig {
    pub fn new(
        id: NodeId,
        members: BTreeMap<NodeId, String>,
        data_dir: impl Into<PathBuf>,
    ) -> ReplicaConfig {
        ReplicaConfig {
            id,
            members,
            data_dir: data_dir.into(),
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_logs_since_last: 5000,
            max_logs_kept_after_snapshot: 1000,
            clock: Clock::system(),
        }
    }

    /// openraft's configuration, once this replica is known to be a member.
    fn validate(&self) -> Result<Config, ConsensusError> {
        if !self.members.contains_key(&self.id) {
            return Err(ConsensusError::Config(format!(
                "replica {} is not among the members {:?}",
                self.id, self.members
            )));
        }
        self.raft_config()
    }

    fn raft_config(&self) -> Result<Config, ConsensusError> {
        let config = Config {
            cluster_name: "drover".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: 2000,
            snapshot_max_chunk_size: 1024 * 1024,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last.max(1)),
            max_in_snapshot_log_to_keep: self.max_logs_kept_after_snapshot,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| ConsensusError::Config(e.to_string()))
    }
}

/// Who leads, as this replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub term: u64,
}

/// A snapshot of this replica's Raft progress, for status pages, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: NodeId,
    /// "Leader", "Follower", "Candidate" or "Learner".
    pub role: String,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The last log index covered by this replica's current snapshot.
    pub snapshot_index: Option<u64>,
    /// The last purged log index.
    pub purged_index: Option<u64>,
    /// `Some(reason)` once the core has stopped (shutdown or a fatal storage error).
    pub stopped: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("replica configuration: {0}")]
    Config(String),
    #[error("replica storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica does not lead (or lost leadership before the write resolved). The hint may be
    /// empty during an election.
    #[error("not the leader; the leader is {leader_id:?} at {leader_addr:?}")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("consensus failure: {0}")]
    Fatal(String),
}

type ProposeResult = Result<(u64, Vec<Reply>), ProposeError>;

struct Pending {
    requests: Vec<Request>,
    bytes: usize,
    reply: oneshot::Sender<ProposeResult>,
}

struct Inner {
    id: NodeId,
    clock: Clock,
    members: BTreeMap<NodeId, String>,
    raft: Raft,
    shared: Arc<Shared>,
    proposals: mpsc::UnboundedSender<Pending>,
    leadership: watch::Sender<Leadership>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One replica of the shared log. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

async fn open_db_retrying(path: PathBuf) -> Result<sled::Db, ConsensusError> {
    let deadline = tokio::time::Instant::now() + OPEN_LOCK_RETRY;
    loop {
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || open_db(&p))
            .await
            .map_err(|e| ConsensusError::Storage(format!("opening sled: {e}")))?;
        match result {
            Ok(db) => return Ok(db),
            // A previous instance in this process may still be dropping its handles.
            Err(sled::Error::Io(e)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "sled busy; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(ConsensusError::Storage(format!(
                    "opening sled at {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// The system clock in ms since the epoch.
fn system_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The size a request adds to a log entry (as the log stores it), without allocating.
fn encoded_len(request: &Request) -> usize {
    crate::codec::encoded_len(request)
}

fn leader_addr(
    id: Option<NodeId>,
    node: Option<&BasicNode>,
    metrics: &RaftMetrics<NodeId, BasicNode>,
    members: &BTreeMap<NodeId, String>,
) -> Option<String> {
    let id = id?;
    node.map(|n| n.addr.clone())
        .or_else(|| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        })
        .or_else(|| members.get(&id).cloned())
}

fn leadership_of(
    metrics: &RaftMetrics<NodeId, BasicNode>,
    members: &BTreeMap<NodeId, String>,
) -> Leadership {
    Leadership {
        is_leader: metrics.state == ServerState::Leader && metrics.running_state.is_ok(),
        leader_id: metrics.current_leader,
        leader_addr: leader_addr(metrics.current_leader, None, metrics, members),
        term: metrics.current_term,
    }
}

impl Replica {
    /// Opens sled under `data_dir`, restores the last snapshot (openraft replays the log after it)
    /// and starts openraft. On a fresh cluster the member with the smallest id initializes the
    /// membership; the others wait to be contacted. A restart from disk needs nothing special.
    pub async fn open(cfg: ReplicaConfig) -> Result<Replica, ConsensusError> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            ConsensusError::Storage(format!("creating {}: {e}", cfg.data_dir.display()))
        })?;
        let db = open_db_retrying(cfg.data_dir.join("raft.sled")).await?;
        let log_store = LogStore::new(&db).map_err(|e| ConsensusError::Storage(e.to_string()))?;
        let sm = StateMachineStore::open(&db).map_err(ConsensusError::Storage)?;
        drop(db);
        let network = NetworkFactory::new(cfg.id);
        Replica::start(cfg, log_store, sm, network).await
    }

    /// Opens a replica on a simulated disk, reaching its peers through `transport`: the
    /// deterministic simulation's replica (`crates/controller/tests/sim.rs`). Everything above
    /// storage and transport is the same code as [`Replica::open`].
    pub async fn open_simulated(
        cfg: ReplicaConfig,
        disk: &MemDisk,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Replica, ConsensusError> {
        let sm = StateMachineStore::open_memory(disk).map_err(ConsensusError::Storage)?;
        let network = NetworkFactory::with_transport(cfg.id, transport);
        Replica::start(cfg, disk.log_store(), sm, network).await
    }

    async fn start<LS>(
        cfg: ReplicaConfig,
        log_store: LS,
        sm: StateMachineStore,
        network: NetworkFactory,
    ) -> Result<Replica, ConsensusError>
    where
        LS: openraft::storage::RaftLogStorage<crate::typ::TypeConfig>,
    {
        let config = Arc::new(cfg.validate()?);
        let shared = sm.shared();
        let raft = Raft::new(cfg.id, config, network, log_store, sm)
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))?;

        let smallest = cfg.members.keys().next().copied();
        if smallest == Some(cfg.id)
            && !raft
                .is_initialized()
                .await
                .map_err(|e| ConsensusError::Raft(e.to_string()))?
        {
            let nodes: BTreeMap<NodeId, BasicNode> = cfg
                .members
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(nodes).await {
                Ok(()) => {
                    tracing::info!(id = cfg.id, members = ?cfg.members, "initialized a fresh cluster")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::info!(id = cfg.id, "already initialized: {e}")
                }
                Err(e) => {
                    return Err(ConsensusError::Raft(format!(
                        "initializing the cluster: {e}"
                    )))
                }
            }
        }

        let cancel = CancellationToken::new();
        let (leadership, _) = watch::channel(Leadership {
            is_leader: false,
            leader_id: None,
            leader_addr: None,
            term: 0,
        });
        let (proposals, proposals_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            id: cfg.id,
            clock: cfg.clock.clone(),
            members: cfg.members.clone(),
            raft: raft.clone(),
            shared,
            proposals,
            leadership,
            cancel: cancel.clone(),
            tasks: Mutex::new(Vec::new()),
        });
        let leadership_task = tokio::spawn(watch_leadership(
            raft.clone(),
            cfg.members.clone(),
            inner.leadership.clone(),
            cancel.clone(),
        ));
        let batcher_task =
            tokio::spawn(batcher(raft, cfg.members, cfg.clock, proposals_rx, cancel));
        inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([leadership_task, batcher_task]);
        Ok(Replica { inner })
    }

    /// This replica's clock (ms since the epoch), the one that stamps its proposals.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Answers one openraft RPC that arrived through a [`RaftTransport`] (simulation): the same
    /// decode → openraft → encode path as the gRPC service.
    pub async fn handle_raft_rpc(&self, kind: RaftRpcKind, data: &[u8]) -> Result<Vec<u8>, String> {
        handle_rpc(&self.inner.raft, kind, data)
            .await
            .map_err(|s| s.message().to_string())
    }

    /// The tonic service carrying openraft's RPCs for this replica.
    pub fn raft_service(&self) -> RaftServer<RaftService> {
        RaftService::new(self.inner.id, self.inner.raft.clone()).into_server()
    }

    /// Group commit: concurrent callers' requests share one log entry, stamped with this leader's
    /// clock. Resolves once the entry is applied here: its log index and this caller's replies, in
    /// the order of `requests`.
    pub async fn propose(&self, requests: Vec<Request>) -> Result<(u64, Vec<Reply>), ProposeError> {
        if requests.is_empty() {
            return Ok((self.applied_index(), Vec::new()));
        }
        let bytes: usize = requests.iter().map(encoded_len).sum();
        if bytes > MAX_PROPOSE_BYTES {
            return Err(ProposeError::Fatal(format!(
                "{bytes} bytes of requests in one proposal; the limit is {MAX_PROPOSE_BYTES}"
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .proposals
            .send(Pending {
                requests,
                bytes,
                reply: tx,
            })
            .map_err(|_| ProposeError::Fatal("replica is shut down".to_string()))?;
        rx.await.unwrap_or_else(|_| {
            Err(ProposeError::Fatal(
                "replica shut down before the write resolved".to_string(),
            ))
        })
    }

    /// Reads the applied state: `f`'s result and the applied log index it reflects.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> (T, u64) {
        self.inner.shared.with_state(f)
    }

    pub fn applied_index(&self) -> u64 {
        self.inner.shared.applied_index()
    }

    /// Waits until `applied_index() >= index`; false when `timeout` passes first.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.applied_watch();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|v| *v >= index)).await,
            Ok(Ok(_))
        );
        reached
    }

    /// Changes on every applied entry; the value is the applied index.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.inner.shared.applied_tx.subscribe()
    }

    /// Who leads, as this replica sees it; changes on elections.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.subscribe()
    }

    /// On the leader: confirms leadership with a quorum and waits until everything committed
    /// before the call is applied here. Reads of `read()` after it are linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ProposeError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.not_leader(f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                tracing::debug!("leadership not confirmed: {e}");
                Err(ProposeError::NotLeader {
                    leader_id: None,
                    leader_addr: None,
                })
            }
            Err(RaftError::Fatal(e)) => Err(ProposeError::Fatal(e.to_string())),
        }
    }

    fn not_leader(&self, f: ForwardToLeader<NodeId, BasicNode>) -> ProposeError {
        let metrics = self.inner.raft.metrics().borrow().clone();
        ProposeError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: leader_addr(
                f.leader_id,
                f.leader_node.as_ref(),
                &metrics,
                &self.inner.members,
            ),
        }
    }

    /// The voters and their addresses, from the latest membership this replica knows.
    pub fn members(&self) -> BTreeMap<NodeId, String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let nodes: BTreeMap<NodeId, String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        if nodes.is_empty() {
            self.inner.members.clone()
        } else {
            nodes
        }
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This replica's Raft progress (role, term, log, snapshot, purge).
    pub fn status(&self) -> RaftStatus {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        RaftStatus {
            id: m.id,
            role: format!("{:?}", m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            stopped: m.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// Asks openraft to build a snapshot now (it runs in the background).
    pub async fn trigger_snapshot(&self) -> Result<(), ConsensusError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))
    }

    /// Stops openraft and this replica's tasks. Pending proposals fail with `Fatal`. The sled
    /// database closes once openraft's tasks have dropped their handles; `open` on the same
    /// directory waits for that.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(id = self.inner.id, "raft shutdown: {e}");
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        self.inner.leadership.send_replace(Leadership {
            is_leader: false,
            leader_id: None,
            leader_addr: None,
            term: 0,
        });
    }
}

async fn watch_leadership(
    raft: Raft,
    members: BTreeMap<NodeId, String>,
    tx: watch::Sender<Leadership>,
    cancel: CancellationToken,
) {
    let mut metrics = raft.metrics();
    let mut reported_stop = false;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            if let Err(e) = &m.running_state {
                if !reported_stop && !cancel.is_cancelled() {
                    // A fatal storage error (or a panic) stopped the core: this replica no longer
                    // takes part until it is restarted (or rebuilt, stack.md §1.10).
                    tracing::error!(id = m.id, error = %e, "FATAL: this replica's raft core stopped");
                    reported_stop = true;
                }
            }
            leadership_of(&m, &members)
        };
        tx.send_if_modified(|l| {
            if *l != now {
                tracing::info!(
                    is_leader = now.is_leader,
                    leader = ?now.leader_id,
                    term = now.term,
                    "leadership changed"
                );
                *l = now;
                true
            } else {
                false
            }
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// Takes the first waiting proposal, then drains what is already queued into one log entry.
async fn batcher(
    raft: Raft,
    members: BTreeMap<NodeId, String>,
    clock: Clock,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                _ = cancel.cancelled() => break,
                p = rx.recv() => match p { Some(p) => p, None => break },
            },
        };
        // Waiting for a slot lets more requests queue up: the next entry gets bigger.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let mut count = first.requests.len();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while count < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    if count + p.requests.len() > MAX_BATCH_REQUESTS
                        || bytes + p.bytes > MAX_BATCH_BYTES
                    {
                        carry = Some(p);
                        break;
                    }
                    count += p.requests.len();
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let mut requests = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(batch.len());
        for p in batch {
            waiters.push((p.requests.len(), p.reply));
            requests.extend(p.requests);
        }
        let proposal = Proposal {
            at: clock.now_ms(),
            requests,
        };
        // Leadership as openraft sees it when the entry is proposed: losing it (a step-down or a
        // new term) before the entry resolves answers NotLeader; the outcome is then unknown and
        // the caller retries with the same request ids (apply deduplicates).
        let mut metrics = raft.metrics();
        let (was_leader, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        match raft.client_write_ff(proposal).await {
            Err(e) => {
                for (_, w) in waiters {
                    let _ = w.send(Err(ProposeError::Fatal(e.to_string())));
                }
            }
            Ok(responder) => {
                let members = members.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let lost = async {
                        if was_leader {
                            let changed = metrics
                                .wait_for(|m| {
                                    m.state != ServerState::Leader || m.current_term != term
                                })
                                .await
                                .map(|m| m.clone());
                            if let Ok(m) = changed {
                                return m;
                            }
                        }
                        // Not leader to begin with (openraft answers ForwardToLeader at once), or
                        // shutting down (the responder is dropped): wait for the responder.
                        std::future::pending().await
                    };
                    let result = tokio::select! {
                        biased;
                        r = responder => match r {
                            Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data)),
                            Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                                let m = metrics.borrow().clone();
                                Err(ProposeError::NotLeader {
                                    leader_id: f.leader_id,
                                    leader_addr: leader_addr(f.leader_id, f.leader_node.as_ref(), &m, &members),
                                })
                            }
                            Ok(Err(e)) => Err(ProposeError::Fatal(e.to_string())),
                            Err(_) => Err(ProposeError::Fatal("raft stopped before the write resolved".to_string())),
                        },
                        m = lost => {
                            tracing::info!(term, new_term = m.current_term, "leadership lost while a write was in flight");
                            let leader = m.current_leader.filter(|l| *l != m.id);
                            Err(ProposeError::NotLeader {
                                leader_id: leader,
                                leader_addr: leader_addr(leader, None, &m, &members),
                            })
                        }
                    };
                    distribute(result, waiters);
                });
            }
        }
    }
    // Fail whatever is still queued.
    rx.close();
    for p in carry
        .into_iter()
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
    {
        let _ = p.reply.send(Err(ProposeError::Fatal(
            "replica is shutting down".to_string(),
        )));
    }
}

fn distribute(
    result: Result<(u64, Vec<Reply>), ProposeError>,
    waiters: Vec<(usize, oneshot::Sender<ProposeResult>)>,
) {
    match result {
        Ok((index, replies)) => {
            let expected: usize = waiters.iter().map(|(n, _)| n).sum();
            if replies.len() != expected {
                let msg = format!(
                    "entry {index} produced {} replies for {expected} requests",
                    replies.len()
                );
                tracing::error!("{msg}");
                for (_, w) in waiters {
                    let _ = w.send(Err(ProposeError::Fatal(msg.clone())));
                }
                return;
            }
            let mut replies = replies.into_iter();
            for (n, w) in waiters {
                let mine: Vec<Reply> = replies.by_ref().take(n).collect();
                let _ = w.send(Ok((index, mine)));
            }
        }
        Err(e) => {
            for (_, w) in waiters {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}
