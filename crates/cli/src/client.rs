//! Finding and talking to the controllers, for every command.
//!
//! The addresses come from `DROVER_CONTROLLERS` (comma-separated), else the config file
//! (`DROVER_CONF`, else `/etc/drover/drover.toml`). A call goes to the replica that led last time
//! (remembered in a small cache file), then to the others in turn; an unreachable cluster
//! gets an error naming every address tried, within a bounded time. The cache also keeps the
//! highest applied index this user has seen, sent with every read so that a replica that is
//! behind never shows older state (read-your-writes across commands and replicas).

use crate::config::ClusterConfig;
use drover_proto as pb;
use drover_proto::ctl_client::CtlClient;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use drover_proto::FOREIGN_INDEX;

/// How long one command keeps trying before it reports the cluster unreachable.
const OVERALL_DEADLINE: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A write may wait out an election on the server (8 s), so allow a little more.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error that is the user's to fix.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Config(String),
}

pub struct Cluster {
    addrs: Vec<String>,
    channels: Vec<Option<Channel>>,
    /// Index into `addrs` to try first.
    preferred: usize,
    /// Shared with the read requests a call builds ([`Consistency`]), so that a reset is seen
    /// by the next try.
    seen_index: Arc<AtomicU64>,
    /// The cached index was from another cluster: `save` must not keep it.
    reset: bool,
    cache: Option<PathBuf>,
}

/// What a read carries: the highest index this client has seen, read when the request is
/// built (each try of a call builds it again).
#[derive(Clone, Debug)]
pub struct Consistency(Arc<AtomicU64>);

impl Consistency {
    pub fn get(&self) -> Option<pb::ReadConsistency> {
        Some(pb::ReadConsistency {
            min_index: self.0.load(Ordering::Relaxed),
            linearizable: false,
        })
    }
}

fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DROVER_STATE_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("drover").join("client-state"))
}

impl Cluster {
    /// The controllers this environment points at.
    pub fn from_env() -> Result<Cluster, ClientError> {
        let addrs: Vec<String> = match std::env::var("DROVER_CONTROLLERS") {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => {
                let path = std::env::var_os("DROVER_CONF")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/etc/drover/drover.toml"));
                let cfg = ClusterConfig::load(&path).map_err(|e| {
                    ClientError::Config(format!(
                        "no controllers configured: set DROVER_CONTROLLERS=host:port,... or DROVER_CONF ({e})"
                    ))
                })?;
                cfg.controllers.iter().map(|c| c.addr.clone()).collect()
            }
        };
        Ok(Cluster::new(addrs))
    }

    pub fn new(addrs: Vec<String>) -> Cluster {
        let cache = cache_path();
        let (seen_index, leader) = cache.as_ref().map(|p| read_cache(p)).unwrap_or((0, None));
        let preferred = leader
            .and_then(|l| addrs.iter().position(|a| *a == l))
            .unwrap_or(0);
        Cluster {
            channels: vec![None; addrs.len()],
            addrs,
            preferred,
            seen_index: Arc::new(AtomicU64::new(seen_index)),
            reset: false,
            cache,
        }
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    fn channel(&mut self, i: usize) -> Result<Channel, String> {
        if let Some(c) = &self.channels[i] {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addrs[i]))
            .map_err(|e| format!("bad controller address {}: {e}", self.addrs[i]))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let channel = match self.addrs[i].parse::<std::net::SocketAddr>() {
            // An IP address needs no resolver: connect directly, without the resolver's
            // thread pool (a command is a short process; starting threads is most of its cost).
            Ok(addr) => endpoint.connect_with_connector_lazy(tower::service_fn(
                move |_: tonic::transport::Uri| async move {
                    let stream = tokio::net::TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                },
            )),
            Err(_) => endpoint.connect_lazy(),
        };
        self.channels[i] = Some(channel.clone());
        Ok(channel)
    }

    /// Calls `f` on each replica in turn until one answers; retries the round while time is left.
    pub async fn call<T, F, Fut>(&mut self, f: F) -> Result<T, ClientError>
    where
        F: FnMut(CtlClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.call_on(
            |channel| {
                CtlClient::new(channel)
                    .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
            },
            f,
        )
        .await
    }

    /// [`Cluster::call`] for the `Steps` service (srun).
    pub async fn call_steps<T, F, Fut>(&mut self, f: F) -> Result<T, ClientError>
    where
        F: FnMut(pb::steps_client::StepsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.call_on(pb::steps_client::StepsClient::new, f).await
    }

    async fn call_on<C, T, F, Fut>(
        &mut self,
        make: impl Fn(Channel) -> C,
        mut f: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(C) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        if self.addrs.is_empty() {
            return Err(ClientError::Config(
                "no controller addresses configured (DROVER_CONTROLLERS is empty)".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + OVERALL_DEADLINE;
        let mut errors: Vec<String> = vec![String::new(); self.addrs.len()];
        let mut pause = Duration::from_millis(50);
        'round: loop {
            for k in 0..self.addrs.len() {
                let i = (self.preferred + k) % self.addrs.len();
                let channel = match self.channel(i) {
                    Ok(c) => c,
                    Err(e) => {
                        errors[i] = e;
                        continue;
                    }
                };
                match f(make(channel)).await {
                    Ok(v) => {
                        self.preferred = i;
                        return Ok(v);
                    }
                    Err(s)
                        if s.code() == Code::FailedPrecondition
                            && s.message().starts_with(FOREIGN_INDEX)
                            && self.seen_index.load(Ordering::Relaxed) > 0 =>
                    {
                        // The cached index is from another cluster (the same addresses, a
                        // new cluster): forget it and ask again at once.
                        self.seen_index.store(0, Ordering::Relaxed);
                        self.reset = true;
                        errors[i] = describe(&s);
                        continue 'round;
                    }
                    Err(s) if is_retryable(&s) => {
                        errors[i] = describe(&s);
                        // A broken connection is rebuilt on the next try.
                        self.channels[i] = None;
                    }
                    Err(s) => return Err(ClientError::Rejected(s.message().to_string())),
                }
            }
            if tokio::time::Instant::now() + pause >= deadline {
                let tried: Vec<String> = self
                    .addrs
                    .iter()
                    .zip(&errors)
                    .map(|(a, e)| format!("{a} ({e})"))
                    .collect();
                return Err(ClientError::Unreachable(format!(
                    "Unable to contact slurm controller (connect failure): tried {}",
                    tried.join(", ")
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(1000));
        }
    }

    /// The read consistency of this client; `.get()` it where the request is built.
    pub fn consistency(&self) -> Consistency {
        Consistency(self.seen_index.clone())
    }

    /// Remembers an index this client has seen (and where the leader was), for the next command.
    pub fn saw(&mut self, index: u64) {
        self.seen_index.fetch_max(index, Ordering::Relaxed);
    }

    /// Writes the cache file (best effort: a command never fails because of it).
    pub fn save(&self) {
        let Some(path) = &self.cache else { return };
        let leader = self.addrs.get(self.preferred).cloned().unwrap_or_default();
        let (old_index, _) = read_cache(path);
        let seen = self.seen_index.load(Ordering::Relaxed);
        let index = if self.reset {
            seen
        } else {
            seen.max(old_index)
        };
        let text = format!("{index} {leader}\n");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    /// Asks one replica (no failover) for its role; `None` when it does not answer.
    pub async fn ping_one(&mut self, i: usize) -> Option<pb::PingReply> {
        let channel = self.channel(i).ok()?;
        let mut client = CtlClient::new(channel);
        let mut req = tonic::Request::new(pb::PingRequest {});
        req.set_timeout(Duration::from_secs(2));
        client.ping(req).await.ok().map(|r| r.into_inner())
    }
}

fn read_cache(path: &std::path::Path) -> (u64, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, None);
    };
    let mut words = text.split_whitespace();
    let index = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    (index, words.next().map(str::to_string))
}

/// Errors worth another replica: the server is down, behind, or between leaders.
fn is_retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
    ) || (s.code() == Code::Internal && s.message().contains("transport"))
}

fn describe(s: &Status) -> String {
    let msg = s.message();
    if msg.is_empty() {
        format!("{:?}", s.code())
    } else {
        let short: String = msg.chars().take(120).collect();
        short
    }
}

/// A request id unique across processes and hosts: pid, time and a counter.
pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let host = crate::identity::hostname();
    format!(
        "{host}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
