//! The connection to the controllers: one lazily connected tonic `Channel` per replica address.
//! Any replica serves the node API (followers forward writes to the leader), so on a transport
//! failure, `Unavailable` or a deadline the call moves to the next address and tries again after
//! a short backoff, for as long as the daemon runs. A caller that needs a retried write to be
//! recognised as the same write keeps its `request_id` fixed across tries (see [`RequestIds`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_proto::node_ctl_client::NodeCtlClient;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Assignment replies carry job scripts; leave room for many.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no controller address given")]
    NoAddress,
    #[error("bad controller address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
}

#[derive(Debug, Error)]
pub enum CallError {
    /// The daemon is shutting down.
    #[error("shutting down")]
    Cancelled,
    /// A controller answered with an error that retrying will not fix.
    #[error("{rpc} rejected by {addr}: {status}")]
    Rejected {
        rpc: &'static str,
        addr: String,
        status: Status,
    },
}

/// Every controller replica this daemon may talk to, and which one it uses now.
#[derive(Debug)]
pub struct Controllers {
    endpoints: Vec<(String, Channel)>,
    current: AtomicUsize,
    shutdown: CancellationToken,
}

impl Controllers {
    /// `addrs` are `host:port` (or full `http://host:port` URIs). Nothing connects yet.
    pub fn new(addrs: &[String], shutdown: CancellationToken) -> Result<Controllers, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoAddress);
        }
        let endpoints = addrs
            .iter()
            .map(|addr| {
                let uri = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("http://{addr}")
                };
                let endpoint = Endpoint::from_shared(uri).map_err(|e| ClientError::BadAddress {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
                let channel = endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok((addr.clone(), channel))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Controllers {
            endpoints,
            current: AtomicUsize::new(0),
            shutdown,
        })
    }

    /// The address calls go to now.
    pub fn current_addr(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i].0
    }

    /// Runs `rpc` against the current controller until a controller answers, moving to the next
    /// address after each retryable failure. Each try is bounded by `timeout`. Returns
    /// [`CallError::Cancelled`] once the daemon shuts down and [`CallError::Rejected`] for an
    /// answer that retrying would not change.
    pub async fn call<T, F, Fut>(
        &self,
        rpc: &'static str,
        timeout: Duration,
        mut f: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(NodeCtlClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
            let (addr, channel) = &self.endpoints[i];
            let client = NodeCtlClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let status = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(CallError::Cancelled),
                r = tokio::time::timeout(timeout, f(client)) => match r {
                    Ok(Ok(reply)) => return Ok(reply.into_inner()),
                    Ok(Err(status)) => status,
                    Err(_) => Status::deadline_exceeded(format!("no answer within {timeout:?}")),
                },
            };
            if !is_retryable(&status) {
                return Err(CallError::Rejected {
                    rpc,
                    addr: addr.clone(),
                    status,
                });
            }
            let next = (i + 1) % self.endpoints.len();
            // Several loops share the connection: only the first to see this failure moves on.
            if self
                .current
                .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::warn!(
                    rpc,
                    failed = %addr,
                    code = ?status.code(),
                    message = status.message(),
                    "controller call failed; using controller {}",
                    self.endpoints[next].0
                );
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(CallError::Cancelled),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Failures another try (maybe at another replica) can fix. tonic reports transport errors
/// (refused, reset, broken h2 connection) as `Unavailable`, `Unknown`, `Internal` or
/// `Cancelled`; a replica with no leader answers `Unavailable`.
fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Unique request ids for this daemon's writes: `<node>-<pid>-<start µs>-<n>`. The pid and start
/// time keep ids of different daemon lives apart without persisting the counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new(node: &str) -> RequestIds {
        let started_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        RequestIds {
            prefix: format!("{node}-{}-{started_us}", std::process::id()),
            next: AtomicU64::new(1),
        }
    }

    pub fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::HeartbeatRequest;

    #[test]
    fn bad_addresses_are_errors_not_panics() {
        let token = CancellationToken::new();
        assert!(matches!(
            Controllers::new(&[], token.clone()),
            Err(ClientError::NoAddress)
        ));
        assert!(matches!(
            Controllers::new(&["bad address with spaces".into()], token),
            Err(ClientError::BadAddress { .. })
        ));
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::new("n1");
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        assert!(a.starts_with("n1-"));
    }

    /// With every controller down the call keeps rotating through the addresses until the
    /// daemon shuts down.
    #[tokio::test]
    async fn unreachable_controllers_rotate_until_shutdown() {
        // Ports that were just free: nothing listens there.
        let dead: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").to_string()
            })
            .collect();
        let token = CancellationToken::new();
        let controllers = Controllers::new(&dead, token.clone()).expect("controllers");
        let stopper = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            stopper.cancel();
        });
        let tries = AtomicUsize::new(0);
        let r = controllers
            .call("Heartbeat", Duration::from_secs(1), |mut c| {
                tries.fetch_add(1, Ordering::Relaxed);
                async move {
                    c.heartbeat(HeartbeatRequest {
                        name: "n1".into(),
                        running_jobs: vec![],
                    })
                    .await
                }
            })
            .await;
        assert!(matches!(r, Err(CallError::Cancelled)), "{r:?}");
        assert!(tries.load(Ordering::Relaxed) >= 3, "kept retrying");
    }
}
