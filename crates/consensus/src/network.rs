//! openraft's transport over tonic: `service Raft` in proto/drover/v1/raft.proto.
//!
//! ```text
//!  leader: openraft ─► NetworkFactory::new_client(target) ─► PeerClient (cached Channel per peer)
//!            RaftBlob { data: codec(request), target } ──gRPC──► RaftService (on target)
//!  target: refuses a blob for another id (FAILED_PRECONDITION), else Raft::append_entries/vote/
//!          install_snapshot ─► RaftBlob { data: serde_json(Result<Response, RaftError>) }
//! ```
//!
//! Error mapping (stack.md §1.4): `Unavailable` (peer down, connect refused) → `Unreachable`
//! (openraft backs off); a wrong-target refusal is also `Unreachable`, since retrying at once
//! cannot fix a wrong address; a client-side deadline → `Timeout`; any other transport failure →
//! `Network`; a `RaftError` decoded from the peer → `RemoteError`. Deadlines come from
//! `RPCOption::hard_ttl()`. Messages up to [`MAX_MESSAGE_BYTES`] pass both ways (serde_json
//! inflates snapshot chunks about 4×, stack.md §1.8).

use crate::typ::{NodeId, Raft, TypeConfig};
use drover_proto::raft_client::RaftClient;
use drover_proto::raft_server::{Raft as RaftRpc, RaftServer};
use drover_proto::RaftBlob;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The largest gRPC message a replica sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Which openraft RPC a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RaftRpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// A message carrier other than gRPC, for the deterministic simulation: it takes one encoded
/// request from `from` to `to` and brings back the encoded reply, which the target produces with
/// [`crate::Replica::handle_raft_rpc`] (the same code path as the gRPC service). `Err` reads as
/// an unreachable peer.
pub trait RaftTransport: Send + Sync + 'static {
    fn send(
        &self,
        from: NodeId,
        to: NodeId,
        kind: RaftRpcKind,
        data: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;
}

/// Creates peer clients for openraft, reusing one lazily connected `Channel` per peer address
/// (or handing every message to a [`RaftTransport`]).
#[derive(Clone)]
pub struct NetworkFactory {
    my_id: NodeId,
    channels: Arc<Mutex<BTreeMap<(NodeId, String), Channel>>>,
    transport: Option<Arc<dyn RaftTransport>>,
}

impl NetworkFactory {
    pub fn new(my_id: NodeId) -> NetworkFactory {
        NetworkFactory {
            my_id,
            channels: Arc::default(),
            transport: None,
        }
    }

    /// Peers reached through `transport` instead of gRPC (simulation).
    pub fn with_transport(my_id: NodeId, transport: Arc<dyn RaftTransport>) -> NetworkFactory {
        NetworkFactory {
            transport: Some(transport),
            ..NetworkFactory::new(my_id)
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(&(target, addr.to_string())) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr:?} for replica {target}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert((target, addr.to_string()), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        if let Some(transport) = &self.transport {
            return PeerClient {
                my_id: self.my_id,
                target,
                client: Err(String::new()),
                transport: Some(transport.clone()),
            };
        }
        let client = self.channel(target, &node.addr).map(|c| {
            RaftClient::new(c)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        if let Err(e) = &client {
            tracing::error!(target, "{e}");
        }
        PeerClient {
            my_id: self.my_id,
            target,
            client,
            transport: None,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    my_id: NodeId,
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
    transport: Option<Arc<dyn RaftTransport>>,
}

fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
        tonic::Code::FailedPrecondition => {
            tracing::error!(error = %status.message(), "a peer refused a raft message: wrong address in the membership?");
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data =
            crate::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let timeout = || {
            RPCError::Timeout(Timeout {
                action: kind,
                id: self.my_id,
                target: self.target,
                timeout: ttl,
            })
        };
        let reply = match &self.transport {
            Some(transport) => {
                let call = transport.send(self.my_id, self.target, rpc_kind(kind), data);
                match tokio::time::timeout(ttl, call).await {
                    Err(_) => return Err(timeout()),
                    Ok(Err(e)) => {
                        return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(e))))
                    }
                    Ok(Ok(reply)) => reply,
                }
            }
            None => self.call_grpc(kind, data, ttl).await.map_err(|e| match e {
                None => timeout(),
                Some(status) => status_to_rpc_error(status),
            })?,
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// One blob over gRPC; `Err(None)` when `ttl` passes first.
    async fn call_grpc(
        &self,
        kind: RPCTypes,
        data: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, Option<tonic::Status>> {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(Some(tonic::Status::unavailable(e.clone()))),
        };
        let mut request = tonic::Request::new(RaftBlob {
            data,
            target: self.target,
        });
        request.set_timeout(ttl);
        let call = async {
            match kind {
                RPCTypes::Vote => client.vote(request).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(request).await,
                _ => client.append_entries(request).await,
            }
        };
        match tokio::time::timeout(ttl, call).await {
            Err(_) => Err(None),
            Ok(Err(status)) => Err(Some(status)),
            Ok(Ok(reply)) => Ok(reply.into_inner().data),
        }
    }
}

fn rpc_kind(kind: RPCTypes) -> RaftRpcKind {
    match kind {
        RPCTypes::Vote => RaftRpcKind::Vote,
        RPCTypes::InstallSnapshot => RaftRpcKind::InstallSnapshot,
        _ => RaftRpcKind::AppendEntries,
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        // openraft's default is 500 ms; a restarted peer is picked up sooner with less.
        Backoff::new(std::iter::repeat(Duration::from_millis(250)))
    }
}

/// The server side: openraft's RPCs for one replica, carried by tonic.
#[derive(Clone)]
pub struct RaftService {
    id: NodeId,
    raft: Raft,
}

impl RaftService {
    pub(crate) fn new(id: NodeId, raft: Raft) -> RaftService {
        RaftService { id, raft }
    }

    /// The tonic service with drover's message limits.
    pub(crate) fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn handle_blob(
        &self,
        request: tonic::Request<RaftBlob>,
        kind: RaftRpcKind,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        let blob = request.into_inner();
        if blob.target != self.id {
            return Err(tonic::Status::failed_precondition(format!(
                "this is replica {}, not replica {}: the sender's membership has a wrong address",
                self.id, blob.target
            )));
        }
        let data = handle_rpc(&self.raft, kind, &blob.data).await?;
        Ok(tonic::Response::new(RaftBlob {
            data,
            target: self.id,
        }))
    }
}

/// The receiving side of one openraft RPC, for gRPC and [`RaftTransport`] alike: decode the
/// request, hand it to openraft, encode its result.
pub(crate) async fn handle_rpc(
    raft: &Raft,
    kind: RaftRpcKind,
    data: &[u8],
) -> Result<Vec<u8>, tonic::Status> {
    fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, tonic::Status> {
        crate::codec::decode(data)
            .map_err(|e| tonic::Status::invalid_argument(format!("undecodable raft message: {e}")))
    }
    fn encode<T: Serialize>(result: &T) -> Result<Vec<u8>, tonic::Status> {
        serde_json::to_vec(result)
            .map_err(|e| tonic::Status::internal(format!("encoding a raft reply: {e}")))
    }
    match kind {
        RaftRpcKind::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> = decode(data)?;
            encode(&raft.append_entries(req).await)
        }
        RaftRpcKind::Vote => {
            let req: VoteRequest<NodeId> = decode(data)?;
            encode(&raft.vote(req).await)
        }
        RaftRpcKind::InstallSnapshot => {
            let req: InstallSnapshotRequest<TypeConfig> = decode(data)?;
            encode(&raft.install_snapshot(req).await)
        }
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        self.handle_blob(request, RaftRpcKind::AppendEntries).await
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        self.handle_blob(request, RaftRpcKind::Vote).await
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        self.handle_blob(request, RaftRpcKind::InstallSnapshot)
            .await
    }
}
