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
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The largest gRPC message a replica sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Creates peer clients for openraft, reusing one lazily connected `Channel` per peer address.
#[derive(Clone)]
pub struct NetworkFactory {
    my_id: NodeId,
    channels: Arc<Mutex<BTreeMap<(NodeId, String), Channel>>>,
}

impl NetworkFactory {
    pub fn new(my_id: NodeId) -> NetworkFactory {
        NetworkFactory {
            my_id,
            channels: Arc::default(),
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
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    my_id: NodeId,
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
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
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(e)))),
        };
        let mut client = client;
        let data =
            crate::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
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
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action: kind,
                    id: self.my_id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(status)) => return Err(status_to_rpc_error(status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
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

    fn decode<T: DeserializeOwned>(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<T, tonic::Status> {
        let blob = request.into_inner();
        if blob.target != self.id {
            return Err(tonic::Status::failed_precondition(format!(
                "this is replica {}, not replica {}: the sender's membership has a wrong address",
                self.id, blob.target
            )));
        }
        crate::codec::decode(&blob.data)
            .map_err(|e| tonic::Status::invalid_argument(format!("undecodable raft message: {e}")))
    }

    fn encode<T: Serialize>(&self, result: &T) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        let data = serde_json::to_vec(result)
            .map_err(|e| tonic::Status::internal(format!("encoding a raft reply: {e}")))?;
        Ok(tonic::Response::new(RaftBlob {
            data,
            target: self.id,
        }))
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.decode(request)?;
        let result = self.raft.append_entries(req).await;
        self.encode(&result)
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        let req: VoteRequest<NodeId> = self.decode(request)?;
        let result = self.raft.vote(req).await;
        self.encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftBlob>,
    ) -> Result<tonic::Response<RaftBlob>, tonic::Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.decode(request)?;
        let result = self.raft.install_snapshot(req).await;
        self.encode(&result)
    }
}
