//! Three real replicas (sled in temp dirs, tonic on 127.0.0.1): election, group commit,
//! failover, restart from disk, snapshot catch-up.

mod common;

use common::{define_partitions, job_id, state_bytes, submit, Cluster, LONG, SERIAL};
use drover_consensus::ReplicaConfig;
use drover_scheduler::Reply;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Elect a leader; 200 concurrent submits commit, batched into fewer log entries than requests;
/// every replica ends with the same `ClusterState`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_elect_commit_and_batch() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    let started = Instant::now();
    let leader_id = cluster.leader().await;
    eprintln!("leader {leader_id} elected after {:?}", started.elapsed());

    let (first_index, replies) = cluster.propose(vec![define_partitions()]).await;
    assert_eq!(replies, vec![Reply::Ok]);

    let leader = cluster.replica(leader_id).clone();
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..200 {
        let leader = leader.clone();
        calls.push(tokio::spawn(async move {
            leader.propose(vec![submit(&format!("r{i}"))]).await
        }));
    }
    let mut indexes = BTreeSet::new();
    let mut job_ids = BTreeSet::new();
    for call in calls {
        let (index, replies) = call.await.expect("join").expect("propose on the leader");
        assert_eq!(replies.len(), 1);
        indexes.insert(index);
        job_ids.insert(job_id(&replies[0]));
    }
    let elapsed = started.elapsed();
    eprintln!(
        "200 concurrent submits: {elapsed:?} ({:.0} writes/s) in {} log entries",
        200.0 / elapsed.as_secs_f64(),
        indexes.len()
    );
    assert_eq!(
        job_ids,
        (1..=200).collect::<BTreeSet<u64>>(),
        "job ids are 1..=200, each once"
    );
    assert!(
        indexes.len() < 200,
        "group commit: {} entries for 200 requests",
        indexes.len()
    );
    assert!(*indexes.iter().next().unwrap() > first_index);

    // Sequential writes: the latency of one commit (append + flush on a quorum + apply).
    let started = Instant::now();
    for i in 0..20 {
        leader
            .propose(vec![submit(&format!("seq{i}"))])
            .await
            .expect("sequential propose");
    }
    eprintln!(
        "20 sequential submits: {:?} per write",
        started.elapsed() / 20
    );

    let last = *indexes.iter().next_back().unwrap();
    let state = cluster.converged_state(last + 20).await;
    assert_eq!(state.jobs.len(), 220);
    assert_eq!(state.next_job_id, 221);

    // A follower refuses writes and names the leader.
    let follower = cluster
        .live()
        .into_iter()
        .find(|r| r.id() != leader_id)
        .unwrap()
        .clone();
    match follower.propose(vec![submit("via-follower")]).await {
        Err(drover_consensus::ProposeError::NotLeader {
            leader_id: Some(l),
            leader_addr: Some(addr),
        }) => {
            assert_eq!(l, leader_id);
            assert_eq!(addr, cluster.members[&leader_id]);
        }
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
    assert!(follower.ensure_linearizable().await.is_err());
    leader
        .ensure_linearizable()
        .await
        .expect("the leader confirms its leadership");
    cluster.stop_all().await;
}

/// Kill the leader: a new one is elected within seconds and takes writes; the old leader,
/// restarted from its data dir, catches up to the same state (byte for byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_and_restart_catch_up() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.propose(vec![define_partitions()]).await;
    for i in 0..30 {
        cluster.propose(vec![submit(&format!("before{i}"))]).await;
    }
    let old = cluster.leader().await;
    let killed_at = Instant::now();
    cluster.stop(old).await;
    let new = cluster.leader().await;
    let failover = killed_at.elapsed();
    eprintln!("failover: replica {old} stopped, replica {new} leads after {failover:?}");
    assert_ne!(new, old);
    assert!(
        failover < Duration::from_secs(20),
        "failover took {failover:?}"
    );

    let mut last = 0;
    for i in 0..30 {
        let (index, replies) = cluster.propose(vec![submit(&format!("after{i}"))]).await;
        assert_eq!(job_id(&replies[0]), 31 + i);
        last = index;
    }

    let restarted_at = Instant::now();
    cluster.restart(old).await;
    let state = cluster.converged_state(last).await;
    eprintln!(
        "restarted replica {old} caught up after {:?}",
        restarted_at.elapsed()
    );
    assert_eq!(state.jobs.len(), 60);
    let (restarted, _) = cluster.replica(old).read(state_bytes);
    let (live, _) = cluster.replica(new).read(state_bytes);
    assert_eq!(
        restarted, live,
        "restarted replica's state bytes equal the leader's"
    );
    cluster.stop_all().await;
}

fn tiny_snapshots(cfg: &mut ReplicaConfig) {
    cfg.snapshot_logs_since_last = 20;
    cfg.max_logs_kept_after_snapshot = 2;
}

/// With tiny snapshot thresholds, a follower that was down while 300 requests committed (and
/// the leader purged its log) catches up by installing a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_by_snapshot() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start_with(3, tiny_snapshots).await;
    cluster.propose(vec![define_partitions()]).await;
    let leader = cluster.leader().await;
    let down = cluster
        .live()
        .into_iter()
        .map(|r| r.id())
        .find(|id| *id != leader)
        .unwrap();
    let down_last_log = cluster.replica(down).status().last_log_index.unwrap_or(0);
    cluster.stop(down).await;

    // One request per entry, so that 300 requests make 300 log entries.
    let mut last = 0;
    for i in 0..300 {
        let (index, _) = cluster.propose(vec![submit(&format!("s{i}"))]).await;
        last = index;
    }
    // Wait for the leader to snapshot and purge past what the stopped follower has.
    let deadline = Instant::now() + LONG;
    loop {
        let status = cluster.replica(leader).status();
        if status.purged_index.unwrap_or(0) > down_last_log + 1 && status.snapshot_index.is_some() {
            eprintln!("leader status before restart: {status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader never purged its log: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let restarted_at = Instant::now();
    cluster.restart(down).await;
    let state = cluster.converged_state(last).await;
    eprintln!(
        "lagging follower caught up by snapshot after {:?}",
        restarted_at.elapsed()
    );
    assert_eq!(state.jobs.len(), 300);
    let status = cluster.replica(down).status();
    eprintln!("follower status after catch-up: {status:?}");
    let snapshot_index = status.snapshot_index.expect("the follower has a snapshot");
    assert!(
        snapshot_index > down_last_log,
        "snapshot {snapshot_index} came from the leader"
    );
    assert_eq!(
        cluster.replica(down).read(state_bytes).0,
        cluster.replica(leader).read(state_bytes).0
    );
    cluster.stop_all().await;
}

/// Restart every replica from disk: the state comes back (same job ids), the next submit gets
/// the next id, and a retried request id returns the first answer without a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_keeps_state_and_dedup() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    // Snapshot now and then, so the restart exercises snapshot + log replay together.
    let mut cluster = Cluster::start_with(3, |cfg| cfg.snapshot_logs_since_last = 15).await;
    cluster.propose(vec![define_partitions()]).await;
    let mut last = 0;
    for i in 1..=40 {
        let (index, replies) = cluster.propose(vec![submit(&format!("job-{i}"))]).await;
        assert_eq!(job_id(&replies[0]), i);
        last = index;
    }
    let before = cluster.converged_state(last).await;
    let before_bytes = state_bytes(&before);

    cluster.stop_all().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.leader().await;
    let after = cluster.converged_state(last).await;
    assert_eq!(
        state_bytes(&after),
        before_bytes,
        "state after a full restart is byte-identical"
    );

    let (_, replies) = cluster.propose(vec![submit("job-41")]).await;
    assert_eq!(job_id(&replies[0]), 41, "the next submit gets the next id");
    let (index, replies) = cluster.propose(vec![submit("job-5")]).await;
    assert_eq!(
        job_id(&replies[0]),
        5,
        "a retried request id gets the first answer"
    );
    let state = cluster.converged_state(index).await;
    assert_eq!(state.jobs.len(), 41, "the retry made no second job");
    cluster.stop_all().await;
}

/// The raft service refuses a blob meant for another replica (a wrong address in the
/// membership) and answers garbage with an error, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_service_checks_target_and_survives_garbage() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(1).await;
    cluster.propose(vec![define_partitions()]).await;
    let addr = format!("http://{}", cluster.members[&1]);
    let mut client = drover_proto::raft_client::RaftClient::connect(addr)
        .await
        .expect("connect");
    let wrong = drover_proto::RaftBlob {
        data: b"{}".to_vec(),
        target: 2,
    };
    let status = client
        .append_entries(wrong)
        .await
        .expect_err("wrong target refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    for data in [
        b"".to_vec(),
        b"not json".to_vec(),
        vec![0xff; 64],
        b"{\"vote\":17}".to_vec(),
    ] {
        let blob = drover_proto::RaftBlob {
            data: data.clone(),
            target: 1,
        };
        let status = client
            .vote(blob.clone())
            .await
            .expect_err("garbage refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let status = client
            .install_snapshot(blob)
            .await
            .expect_err("garbage refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
    // Still serving.
    let (_, replies) = cluster.propose(vec![submit("after-garbage")]).await;
    assert_eq!(job_id(&replies[0]), 1);
    cluster.stop_all().await;
}
