//! A real cluster for tests: sled in temp dirs, tonic on 127.0.0.1 ephemeral ports.
//!
//! Robust on a slow, loaded machine: every wait polls with a generous deadline; nothing asserts
//! on a fixed sleep.

#![allow(dead_code)]

use drover_consensus::{Leadership, ProposeError, Replica, ReplicaConfig};
use drover_scheduler::{ClusterState, Command, JobSpec, Partition, Reply, Request};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: the test machine has 2 cores shared with other builds.
pub const LONG: Duration = Duration::from_secs(60);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("drover_consensus=warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Serializes the multi-replica tests of one test binary: running them in parallel on 2 cores
/// would only measure the scheduler of the machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Running {
    pub replica: Replica,
    stop_server: CancellationToken,
    server: JoinHandle<()>,
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub members: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, Option<Running>>,
    pub tweak: fn(&mut ReplicaConfig),
}

fn no_tweak(_: &mut ReplicaConfig) {}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, no_tweak).await
    }

    pub async fn start_with(n: u64, tweak: fn(&mut ReplicaConfig)) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let mut listeners = BTreeMap::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            members.insert(id, listener.local_addr().expect("addr").to_string());
            listeners.insert(id, listener);
        }
        let mut cluster = Cluster {
            root,
            members,
            nodes: BTreeMap::new(),
            tweak,
        };
        for (id, listener) in listeners {
            let running = cluster.open(id, listener).await;
            cluster.nodes.insert(id, Some(running));
        }
        cluster
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("replica-{id}"))
    }

    pub fn config(&self, id: u64) -> ReplicaConfig {
        let mut cfg = ReplicaConfig::new(id, self.members.clone(), self.dir(id));
        (self.tweak)(&mut cfg);
        cfg
    }

    async fn open(&self, id: u64, listener: TcpListener) -> Running {
        let replica = Replica::open(self.config(id)).await.expect("open replica");
        let stop_server = CancellationToken::new();
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let svc = replica.raft_service();
        let stop = stop_server.clone();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
        });
        Running {
            replica,
            stop_server,
            server,
        }
    }

    pub fn replica(&self, id: u64) -> &Replica {
        &self.nodes[&id]
            .as_ref()
            .expect("replica is running")
            .replica
    }

    pub fn live(&self) -> Vec<&Replica> {
        self.nodes.values().flatten().map(|r| &r.replica).collect()
    }

    /// Shuts a replica down and drops it (its server too); its data dir stays.
    pub async fn stop(&mut self, id: u64) {
        let running = self
            .nodes
            .get_mut(&id)
            .and_then(Option::take)
            .expect("replica is running");
        running.stop_server.cancel();
        running.replica.shutdown().await;
        let mut server = running.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        drop(running.replica);
    }

    /// Reopens a stopped replica from its data dir, on its old port.
    pub async fn restart(&mut self, id: u64) {
        assert!(self.nodes[&id].is_none(), "replica {id} is still running");
        let addr = self.members[&id].clone();
        let deadline = Instant::now() + LONG;
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding {addr}: {e}"),
            }
        };
        let running = self.open(id, listener).await;
        self.nodes.insert(id, Some(running));
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, r)| r.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// The live replica that leads, once one does (and every live replica agrees on it).
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + LONG;
        loop {
            let views: Vec<Leadership> = self
                .live()
                .iter()
                .map(|r| r.leadership().borrow().clone())
                .collect();
            if let Some(leader) = self
                .live()
                .iter()
                .find(|r| r.leadership().borrow().is_leader)
            {
                let id = leader.id();
                if views.iter().all(|v| v.leader_id == Some(id)) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed within {LONG:?}: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through whoever leads, following NotLeader hints.
    pub async fn propose(&self, requests: Vec<Request>) -> (u64, Vec<Reply>) {
        let deadline = Instant::now() + LONG;
        let mut target = self.leader().await;
        loop {
            match self.nodes.get(&target).and_then(|r| r.as_ref()) {
                Some(r) => match r.replica.propose(requests.clone()).await {
                    Ok(done) => return done,
                    Err(ProposeError::NotLeader { leader_id, .. }) => {
                        assert!(Instant::now() < deadline, "no leader accepted the write");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        target = match leader_id {
                            Some(l) if self.nodes.get(&l).is_some_and(|r| r.is_some()) => l,
                            _ => self.leader().await,
                        };
                    }
                    Err(e) => panic!("propose failed: {e}"),
                },
                None => target = self.leader().await,
            }
        }
    }

    /// Waits until every live replica has applied at least `index`.
    pub async fn wait_all_applied(&self, index: u64) {
        for r in self.live() {
            assert!(
                r.wait_applied(index, LONG).await,
                "replica {} stuck at {} < {index}: {:?}",
                r.id(),
                r.applied_index(),
                r.status()
            );
        }
    }

    /// Every live replica's state once they all reach `index`; asserts they are equal.
    pub async fn converged_state(&self, index: u64) -> ClusterState {
        self.wait_all_applied(index).await;
        // Entries past `index` (a new leader's blank entry) may still arrive: compare states at a
        // common applied index, polling until every replica shows the same one.
        let deadline = Instant::now() + LONG;
        loop {
            let snaps: Vec<(ClusterState, u64)> =
                self.live().iter().map(|r| r.read(|s| s.clone())).collect();
            let same_index = snaps.windows(2).all(|w| w[0].1 == w[1].1);
            if same_index {
                let bytes: Vec<Vec<u8>> = snaps.iter().map(|(s, _)| state_bytes(s)).collect();
                assert!(
                    bytes.windows(2).all(|w| w[0] == w[1]),
                    "replicas diverged at index {}",
                    snaps[0].1
                );
                return snaps[0].0.clone();
            }
            assert!(Instant::now() < deadline, "applied indexes never lined up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn state_bytes(state: &ClusterState) -> Vec<u8> {
    postcard::to_allocvec(state).expect("postcard")
}

pub fn define_partitions() -> Request {
    Request {
        request_id: "partitions".to_string(),
        command: Command::DefinePartitions(vec![Partition::default_debug()]),
    }
}

pub fn submit(request_id: &str) -> Request {
    Request {
        request_id: request_id.to_string(),
        command: Command::Submit(JobSpec {
            name: format!("job-{request_id}"),
            nodes_min: 1,
            nodes_max: 1,
            ntasks: 1,
            cpus_per_task: 1,
            script: "#!/bin/sh\ntrue\n".to_string(),
            work_dir: "/tmp".to_string(),
            user: "test".to_string(),
            uid: 1000,
            gid: 1000,
            ..JobSpec::default()
        }),
    }
}

pub fn job_id(reply: &Reply) -> u64 {
    match reply {
        Reply::Submitted { job_id } => job_id.0,
        other => panic!("expected Submitted, got {other:?}"),
    }
}
