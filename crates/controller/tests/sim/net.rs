//! The simulated network and the replica "processes" on it.
//!
//! ```text
//!  replica r ──RaftTransport (SimTransport)──┐
//!  replica r ──PeerLink (SimLink): forwarded writes, heartbeats ──┤   Net: who is up, which
//!  clients, node daemons ──Net::call(r, ..)─────────────────────────┘   links are cut, delays
//! ```
//!
//! Every message waits a delay drawn from the network's seeded generator, is lost when its link
//! is cut (at send or at reply time) or its target is down, and then runs the target's real code:
//! `Replica::handle_raft_rpc`, or the controller's tonic services called in process.

use drover_consensus::{
    Clock, MemDisk, NodeId, RaftRpcKind, RaftTransport, Replica, ReplicaConfig,
};
use drover_controller::ctl::CtlService;
use drover_controller::leader::{self, LeaderConfig};
use drover_controller::liveness::Liveness;
use drover_controller::node_api::NodeService;
use drover_controller::write::{LinkFuture, PeerLink, PeerService, Peers};
use drover_proto as pb;
use drover_proto::node_ctl_server::NodeCtl as _;
use drover_proto::peer_server::Peer as _;
use drover_scheduler::{Partition, Reply, Request, SchedConfig};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// One end of a link: a replica, or "outside" (clients and node daemons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    Replica(NodeId),
    Outside,
}

/// How messages travel right now.
#[derive(Clone, Debug)]
pub struct Weather {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Per mille of messages lost.
    pub drop_per_mille: u32,
}

impl Weather {
    pub fn calm() -> Weather {
        Weather {
            min_delay_ms: 1,
            max_delay_ms: 8,
            drop_per_mille: 0,
        }
    }
}

/// A running replica: its consensus handle, its services, and what stops it.
pub struct Proc {
    pub replica: Replica,
    pub incarnation: u64,
    pub ctl: CtlService,
    pub node: NodeService,
    pub peer: PeerService,
    stop: CancellationToken,
}

struct NetState {
    procs: BTreeMap<NodeId, Arc<Proc>>,
    /// Directed links that lose every message.
    cut: BTreeSet<(End, End)>,
    weather: Weather,
    rng: StdRng,
    delivered: u64,
    lost: u64,
}

pub struct Net {
    state: Mutex<NetState>,
    pub members: BTreeMap<NodeId, String>,
    pub disks: BTreeMap<NodeId, MemDisk>,
    /// Each replica's clock offset from virtual time, in ms (the nemesis skews them).
    skews: BTreeMap<NodeId, Arc<AtomicI64>>,
    me: Weak<Net>,
}

/// The simulation's clock, in ms since the epoch: its virtual time.
pub fn sim_clock_ms() -> u64 {
    const EPOCH_MS: u64 = 1_767_225_600_000; // 2026-01-01
    START.with(|s| match s.get() {
        Some(start) => EPOCH_MS + start.elapsed().as_millis() as u64,
        None => EPOCH_MS,
    })
}

thread_local! {
    static START: std::cell::Cell<Option<tokio::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Starts the simulation's clock (inside the paused runtime).
pub fn start_clock() {
    START.with(|s| s.set(Some(tokio::time::Instant::now())));
}

pub const NODE_TIMEOUT: Duration = Duration::from_secs(8);

impl Net {
    pub fn new(replicas: u64, rng: StdRng) -> Arc<Net> {
        let members: BTreeMap<NodeId, String> = (1..=replicas)
            .map(|id| (id, format!("r{id}:7000")))
            .collect();
        let disks = members.keys().map(|id| (*id, MemDisk::new())).collect();
        let skews = members.keys().map(|id| (*id, Arc::default())).collect();
        Arc::new_cyclic(|me| Net {
            state: Mutex::new(NetState {
                procs: BTreeMap::new(),
                cut: BTreeSet::new(),
                weather: Weather::calm(),
                rng,
                delivered: 0,
                lost: 0,
            }),
            members,
            disks,
            skews,
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    pub fn proc(&self, id: NodeId) -> Option<Arc<Proc>> {
        self.lock().procs.get(&id).cloned()
    }

    pub fn procs(&self) -> Vec<Arc<Proc>> {
        self.lock().procs.values().cloned().collect()
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.lock().procs.contains_key(&id)
    }

    pub fn id_of(&self, addr: &str) -> Option<NodeId> {
        self.members
            .iter()
            .find(|(_, a)| a.as_str() == addr)
            .map(|(id, _)| *id)
    }

    pub fn set_weather(&self, weather: Weather) {
        self.lock().weather = weather;
    }

    /// Splits the replicas into sides: links between different sides are cut both ways.
    /// `outside_cut` replicas are also unreachable from clients and node daemons.
    pub fn partition(&self, sides: &[Vec<NodeId>], outside_cut: &[NodeId]) {
        let mut st = self.lock();
        st.cut.clear();
        for (i, a) in sides.iter().enumerate() {
            for (j, b) in sides.iter().enumerate() {
                if i != j {
                    for x in a {
                        for y in b {
                            st.cut.insert((End::Replica(*x), End::Replica(*y)));
                        }
                    }
                }
            }
        }
        for r in outside_cut {
            st.cut.insert((End::Outside, End::Replica(*r)));
            st.cut.insert((End::Replica(*r), End::Outside));
        }
    }

    /// Sets replica `id`'s clock to virtual time + `offset_ms` (a jump, forward or back).
    pub fn skew(&self, id: NodeId, offset_ms: i64) {
        self.skews[&id].store(offset_ms, Ordering::Relaxed);
    }

    pub fn heal(&self) {
        let mut st = self.lock();
        st.cut.clear();
        st.weather = Weather::calm();
        drop(st);
        for skew in self.skews.values() {
            skew.store(0, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.delivered, st.lost)
    }

    /// The delay of one message on `from → to`, or `None` when it is lost.
    fn hop(&self, from: End, to: End) -> Option<Duration> {
        let mut st = self.lock();
        let st = &mut *st;
        let lost = st.cut.contains(&(from, to))
            || (st.weather.drop_per_mille > 0
                && st.rng.gen_range(0..1000) < st.weather.drop_per_mille);
        let delay = st
            .rng
            .gen_range(st.weather.min_delay_ms..=st.weather.max_delay_ms);
        if lost {
            st.lost += 1;
            None
        } else {
            st.delivered += 1;
            Some(Duration::from_millis(delay))
        }
    }

    /// Carries one call from `from` to replica `to` and its answer back; `f` runs the target's
    /// real code. A lost request or reply costs the caller `lost_after` before it hears so.
    pub async fn call<T, F, Fut>(
        &self,
        from: End,
        to: NodeId,
        lost_after: Duration,
        f: F,
    ) -> Result<T, Status>
    where
        F: FnOnce(Arc<Proc>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let Some(delay) = self.hop(from, End::Replica(to)) else {
            sleep(lost_after).await;
            return Err(Status::unavailable(format!("{from:?} → r{to}: lost")));
        };
        sleep(delay).await;
        let Some(proc) = self.proc(to) else {
            return Err(Status::unavailable(format!("r{to} is down")));
        };
        let out = f(proc).await?;
        let Some(back) = self.hop(End::Replica(to), from) else {
            sleep(lost_after).await;
            return Err(Status::unavailable(format!("r{to} → {from:?}: reply lost")));
        };
        sleep(back).await;
        Ok(out)
    }

    /// Starts replica `id` on its disk: the real `Replica` and controller services, and the
    /// leader loops, as `drover_controller::run` wires them (without the gRPC server).
    pub async fn start(&self, id: NodeId, incarnation: u64) -> Result<(), String> {
        let me = self.me.upgrade().ok_or("the network is gone")?;
        let mut cfg = ReplicaConfig::new(id, self.members.clone(), "/nonexistent/sim");
        cfg.heartbeat_ms = 100;
        cfg.election_min_ms = 300;
        cfg.election_max_ms = 600;
        // Small, so that snapshots, purges and snapshot installs happen in every run.
        cfg.snapshot_logs_since_last = 40;
        cfg.max_logs_kept_after_snapshot = 10;
        let skew = self.skews[&id].clone();
        cfg.clock = Clock::from_fn(move || {
            sim_clock_ms().saturating_add_signed(skew.load(Ordering::Relaxed))
        });
        let transport: Arc<dyn RaftTransport> = Arc::new(SimTransport {
            net: Arc::downgrade(&me),
        });
        let replica = Replica::open_simulated(cfg, &self.disks[&id], transport)
            .await
            .map_err(|e| format!("r{id} did not start: {e}"))?;
        let peers = Peers::linked(Arc::new(SimLink {
            from: id,
            net: Arc::downgrade(&me),
        }));
        let liveness = Liveness::default();
        let stop = CancellationToken::new();
        tokio::spawn(leader::supervise(
            replica.clone(),
            peers.clone(),
            liveness.clone(),
            LeaderConfig {
                partitions: vec![Partition::default_debug()],
                qos: Vec::new(),
                node_timeout: NODE_TIMEOUT,
                election_grace: Duration::from_secs(3),
                sched: SchedConfig::default(),
                // Short, so that seeds purge accounting records through the log too.
                record_retention: Duration::from_secs(60),
                // Passes in virtual time take no time: space them as a large queue would.
                sched_min_interval: Duration::from_millis(100),
            },
            stop.clone(),
        ));
        let proc = Proc {
            incarnation,
            ctl: CtlService {
                replica: replica.clone(),
                peers: peers.clone(),
                sched: SchedConfig::default(),
                store: Default::default(),
                shown: Default::default(),
            },
            node: NodeService {
                replica: replica.clone(),
                peers,
                liveness,
                answered: Default::default(),
            },
            peer: PeerService {
                replica: replica.clone(),
            },
            replica,
            stop,
        };
        self.lock().procs.insert(id, Arc::new(proc));
        Ok(())
    }

    /// A crash: the replica drops off the network at once, its tasks stop, and its disk keeps
    /// only what was flushed.
    pub async fn crash(&self, id: NodeId) {
        let proc = self.lock().procs.remove(&id);
        if let Some(proc) = proc {
            proc.stop.cancel();
            proc.replica.shutdown().await;
            self.disks[&id].crash();
        }
    }
}

/// openraft's messages between replicas.
struct SimTransport {
    net: Weak<Net>,
}

impl RaftTransport for SimTransport {
    fn send(
        &self,
        from: NodeId,
        to: NodeId,
        kind: RaftRpcKind,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>> {
        let net = self.net.clone();
        Box::pin(async move {
            let net = net.upgrade().ok_or("the network is gone")?;
            net.call(
                End::Replica(from),
                to,
                Duration::from_millis(50),
                |proc| async move {
                    proc.replica
                        .handle_raft_rpc(kind, &data)
                        .await
                        .map_err(Status::internal)
                },
            )
            .await
            .map_err(|s| s.message().to_string())
        })
    }
}

/// Forwarded writes and heartbeats between replicas.
struct SimLink {
    from: NodeId,
    net: Weak<Net>,
}

impl SimLink {
    /// Carries one forwarded call to the replica at `addr`, bounded by `limit`.
    fn forward<T, F, Fut>(&self, addr: &str, limit: Duration, f: F) -> LinkFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Proc>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send,
    {
        let (net, from, addr) = (self.net.clone(), self.from, addr.to_string());
        Box::pin(async move {
            let net = net
                .upgrade()
                .ok_or_else(|| Status::unavailable("the network is gone"))?;
            let to = net
                .id_of(&addr)
                .ok_or_else(|| Status::unavailable(format!("no replica at {addr}")))?;
            let call = net.call(End::Replica(from), to, Duration::from_millis(300), f);
            timeout(limit, call).await.map_err(|_| {
                Status::deadline_exceeded(format!("forwarded call to {addr} timed out"))
            })?
        })
    }
}

impl PeerLink for SimLink {
    fn propose(
        &self,
        addr: &str,
        requests: Vec<Request>,
        limit: Duration,
    ) -> LinkFuture<(u64, Vec<Reply>)> {
        self.forward(addr, limit, |proc| async move {
            let data =
                serde_json::to_vec(&requests).map_err(|e| Status::internal(e.to_string()))?;
            let reply = proc
                .peer
                .propose(tonic::Request::new(pb::RaftBlob { data, target: 0 }))
                .await?;
            serde_json::from_slice(&reply.into_inner().data)
                .map_err(|e| Status::internal(e.to_string()))
        })
    }

    fn heartbeat(
        &self,
        addr: &str,
        request: pb::HeartbeatRequest,
    ) -> LinkFuture<pb::HeartbeatReply> {
        self.forward(addr, Duration::from_millis(500), |proc| async move {
            let mut fwd = tonic::Request::new(request);
            fwd.metadata_mut().insert(
                "x-drover-forwarded",
                tonic::metadata::MetadataValue::from_static("1"),
            );
            Ok(proc.node.heartbeat(fwd).await?.into_inner())
        })
    }
}
