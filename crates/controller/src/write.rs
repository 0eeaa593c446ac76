//! The write path: propose on the leader, forward from a follower, wait out an election.
//!
//! A client may send a write to any replica. A follower hands it to the leader over the `Peer`
//! service (request ids travel along, so a write forwarded twice is applied once). During an
//! election the write waits, bounded by `WRITE_DEADLINE`, instead of failing.

use drover_consensus::{ProposeError, Replica};
use drover_proto::peer_client::PeerClient;
use drover_proto::{HeartbeatReply, HeartbeatRequest, RaftBlob};
use drover_scheduler::{Reply, Request};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// How long a write may wait for a leader before the client is told to try again.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(8);

/// A future a [`PeerLink`] returns.
pub type LinkFuture<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// How a replica reaches another one for forwarded calls when not over gRPC: the deterministic
/// simulation (`tests/sim.rs`) carries them in process, through its simulated network.
pub trait PeerLink: Send + Sync + 'static {
    /// `Peer.Propose` on the replica at `addr`.
    fn propose(
        &self,
        addr: &str,
        requests: Vec<Request>,
        timeout: Duration,
    ) -> LinkFuture<(u64, Vec<Reply>)>;
    /// `NodeCtl.Heartbeat` on the replica at `addr`, marked as forwarded.
    fn heartbeat(&self, addr: &str, request: HeartbeatRequest) -> LinkFuture<HeartbeatReply>;
}

/// One lazily connected channel per peer address, shared by every forwarded call.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
    link: Option<Arc<dyn PeerLink>>,
}

impl Peers {
    /// Peers reached through `link` instead of gRPC (simulation).
    pub fn linked(link: Arc<dyn PeerLink>) -> Peers {
        Peers {
            channels: Arc::default(),
            link: Some(link),
        }
    }

    /// The in-process link, if this replica has one instead of gRPC.
    pub fn link(&self) -> Option<&Arc<dyn PeerLink>> {
        self.link.as_ref()
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(300))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Applies `requests` through the leader, wherever it is. Returns the log index and replies.
/// Writes one request; its reply (`None` only if apply answered nothing, which it does not).
pub async fn write_one(
    replica: &Replica,
    peers: &Peers,
    request_id: String,
    command: drover_scheduler::Command,
) -> Result<(u64, Option<Reply>), Status> {
    let (index, replies) = write(
        replica,
        peers,
        vec![Request {
            request_id,
            command,
        }],
    )
    .await?;
    Ok((index, replies.into_iter().next()))
}

pub async fn write(
    replica: &Replica,
    peers: &Peers,
    requests: Vec<Request>,
) -> Result<(u64, Vec<Reply>), Status> {
    let deadline = Instant::now() + WRITE_DEADLINE;
    let mut leadership = replica.leadership();
    let mut last_error = String::from("no leader elected");
    loop {
        match propose_bounded(replica, requests.clone(), deadline).await {
            Ok(done) => return Ok(done),
            Err(ProposeError::Fatal(e)) => return Err(Status::internal(e)),
            Err(ProposeError::NotLeader {
                leader_id,
                leader_addr,
            }) => {
                if let (Some(id), Some(addr)) = (leader_id, leader_addr) {
                    if id != replica.id() {
                        match forward(peers, &addr, &requests, deadline).await {
                            Ok(done) => return Ok(done),
                            Err(e) => {
                                last_error = format!("leader {id} at {addr}: {}", e.message())
                            }
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Status::unavailable(format!(
                "no leader could take the write: {last_error}"
            )));
        }
        // Wait for a leadership change, or a short while, before trying again.
        let pause = (deadline - now).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(pause, leadership.changed()).await;
    }
}

async fn forward(
    peers: &Peers,
    addr: &str,
    requests: &[Request],
    deadline: Instant,
) -> Result<(u64, Vec<Reply>), Status> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(50));
    if let Some(link) = peers.link() {
        return link.propose(addr, requests.to_vec(), timeout).await;
    }
    let data = serde_json::to_vec(requests).map_err(|e| Status::internal(e.to_string()))?;
    let mut client = PeerClient::new(peers.channel(addr)?);
    let mut req = tonic::Request::new(RaftBlob { data, target: 0 });
    req.set_timeout(timeout);
    let reply = client.propose(req).await?.into_inner();
    serde_json::from_slice(&reply.data)
        .map_err(|e| Status::internal(format!("bad reply from leader: {e}")))
}

/// The leader's side of `Peer.Propose`: propose locally, never forward again.
pub struct PeerService {
    pub replica: Replica,
}

#[tonic::async_trait]
impl drover_proto::peer_server::Peer for PeerService {
    async fn propose(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, Status> {
        let requests: Vec<Request> = serde_json::from_slice(&request.into_inner().data)
            .map_err(|e| Status::invalid_argument(format!("bad forwarded requests: {e}")))?;
        let deadline = Instant::now() + WRITE_DEADLINE;
        match propose_bounded(&self.replica, requests, deadline).await {
            Ok(done) => {
                let data =
                    serde_json::to_vec(&done).map_err(|e| Status::internal(e.to_string()))?;
                Ok(tonic::Response::new(RaftBlob { data, target: 0 }))
            }
            Err(ProposeError::NotLeader { .. }) => {
                Err(Status::unavailable("not the leader any more"))
            }
            Err(ProposeError::Fatal(e)) => Err(Status::internal(e)),
        }
    }
}

/// `Replica::propose`, bounded by `deadline`. openraft 0.9 does not step down a leader cut off
/// from its quorum, so a proposal could otherwise wait forever. A proposal that times out has
/// an unknown outcome and reads as "no leader": retrying it with the same request ids is safe
/// (apply deduplicates them).
pub async fn propose_bounded(
    replica: &Replica,
    requests: Vec<Request>,
    deadline: Instant,
) -> Result<(u64, Vec<Reply>), ProposeError> {
    match tokio::time::timeout_at(deadline, replica.propose(requests)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("a proposal was not committed before its deadline");
            Err(ProposeError::NotLeader {
                leader_id: None,
                leader_addr: None,
            })
        }
    }
}
