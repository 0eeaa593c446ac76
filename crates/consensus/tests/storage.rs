//! The storage layer on its own: openraft's conformance suite, crash safety of the log (a child
//! process killed with SIGKILL mid-stream), deterministic replay and snapshot encoding.

mod common;

use common::{define_partitions, state_bytes, submit, Cluster, SERIAL};
use drover_consensus::internals::{
    decode_snapshot, encode_snapshot, open_db, Entry, LogStore, StateMachineStore, StorageError,
    StoredMembership, TypeConfig, Vote,
};
use drover_scheduler::{ClusterState, Command, JobId, NodeRegistration, Proposal, Request};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader};
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(&dir.path().join("raft.sled")).expect("open sled");
        let log = LogStore::new(&db).expect("log store");
        let sm = StateMachineStore::open(&db).expect("state machine store");
        Ok((dir, log, sm))
    }
}

/// openraft's own storage conformance suite (log state, vote, purge, truncate, apply,
/// membership, snapshot transfer) against the sled stores.
#[test]
fn openraft_storage_suite() {
    common::init_tracing();
    Suite::test_all(SledBuilder).expect("storage suite");
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Proposal {
            at: index,
            requests: vec![submit(&format!("crash-{index}"))],
        }),
    }
}

const CHILD_ENV: &str = "DROVER_CONSENSUS_CRASH_CHILD_DIR";
const KILL_AFTER_ACKS: u64 = 300;

/// The child: save a vote, then append one entry at a time, printing each acknowledgement.
fn crash_child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let db = open_db(&std::path::Path::new(dir).join("raft.sled")).expect("open sled");
        let mut log = LogStore::new(&db).expect("log store");
        log.save_vote(&Vote::new(7, 2)).await.expect("save vote");
        println!("vote saved");
        for i in 1..=1_000_000u64 {
            log.blocking_append([entry(i)]).await.expect("append");
            println!("acked {i}");
        }
    });
}

/// An append is acknowledged only once it is on disk: kill -9 a process that is appending,
/// reopen its database, and every acknowledged entry (and the vote) is there, with no hole.
/// (A drop inside this process would prove nothing: sled flushes on drop.)
#[test]
fn acked_appends_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Process::new(std::env::current_exe().expect("test binary"))
        .args([
            "acked_appends_survive_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut vote_saved = false;
    let mut acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        // libtest may print "test <name> ... " in front of the child's first line.
        if line.ends_with("vote saved") {
            vote_saved = true;
        } else if let Some((_, n)) = line.rsplit_once("acked ") {
            acked = n.parse().expect("ack number");
            if acked >= KILL_AFTER_ACKS {
                break;
            }
        }
        assert!(Instant::now() < deadline, "child too slow: {acked} acks");
    }
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    assert!(
        vote_saved && acked >= KILL_AFTER_ACKS,
        "child died early after {acked} acks"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let db = open_db(&dir.path().join("raft.sled")).expect("reopen sled");
        let mut log = LogStore::new(&db).expect("log store");
        assert_eq!(
            log.read_vote().await.expect("read vote"),
            Some(Vote::new(7, 2))
        );
        let state = log.get_log_state().await.expect("log state");
        let last = state.last_log_id.expect("entries survived").index;
        assert!(
            last >= acked,
            "only {last} of {acked} acknowledged entries survived"
        );
        let entries = log.try_get_log_entries(0..=last).await.expect("read log");
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(
            indexes,
            (1..=last).collect::<Vec<u64>>(),
            "the log is complete, without holes"
        );
        for e in &entries {
            assert_eq!(e, &entry(e.log_id.index), "entry {} intact", e.log_id.index);
        }
        eprintln!("killed after {acked} acks; {last} entries on disk");
    });
}

fn registration(name: &str) -> NodeRegistration {
    NodeRegistration {
        name: name.to_string(),
        addr: format!("{name}:6818"),
        cpus: 8,
        real_memory_mb: 16_000,
        boot_time: 0,
        version: "test".to_string(),
        os: "linux".to_string(),
        arch: "x86_64".to_string(),
        ..Default::default()
    }
}

fn sample_log() -> Vec<Proposal> {
    let mut log = vec![Proposal {
        at: 1_000,
        requests: vec![define_partitions()],
    }];
    log.push(Proposal {
        at: 1_500,
        requests: (1..=3)
            .map(|n| Request {
                request_id: format!("reg-{n}"),
                command: Command::RegisterNode(registration(&format!("n{n}"))),
            })
            .collect(),
    });
    for i in 0..40u64 {
        let mut requests = vec![submit(&format!("s{i}")), submit(&format!("s{i}"))];
        if i % 7 == 3 {
            requests.push(Request {
                request_id: format!("cancel-{i}"),
                command: Command::Cancel {
                    job_ids: vec![JobId(i), JobId(999)],
                    uid: 0,
                },
            });
        }
        // A clock that sometimes goes backwards (a new leader with a slower clock).
        let at = 2_000 + i * 100 - if i % 5 == 0 { 250 } else { 0 };
        log.push(Proposal { at, requests });
    }
    log
}

fn replay(log: &[Proposal]) -> ClusterState {
    let mut state = ClusterState::new();
    for p in log {
        state.apply(p);
    }
    state
}

/// Replaying the same log twice gives byte-identical state; a snapshot (encode → decode) plus
/// the rest of the log equals the full replay.
#[test]
fn replay_is_deterministic_and_snapshot_plus_suffix_equals_full_replay() {
    let log = sample_log();
    let a = replay(&log);
    let b = replay(&log);
    assert_eq!(state_bytes(&a), state_bytes(&b));
    assert!(
        a.jobs.len() >= 30,
        "the sample log made jobs: {}",
        a.jobs.len()
    );

    let (head, tail) = log.split_at(17);
    let mid = replay(head);
    let bytes = encode_snapshot(&Some(log_id(3, 1, 17)), &StoredMembership::default(), &mid)
        .expect("encode");
    assert_eq!(
        &bytes[..4],
        &drover_consensus::SNAPSHOT_VERSION.to_be_bytes(),
        "the version word, big-endian"
    );
    let (last_applied, _, mut restored) = decode_snapshot(&bytes).expect("decode");
    assert_eq!(last_applied, Some(log_id(3, 1, 17)));
    assert_eq!(state_bytes(&restored), state_bytes(&mid));
    for p in tail {
        restored.apply(p);
    }
    assert_eq!(
        state_bytes(&restored),
        state_bytes(&a),
        "snapshot + suffix == full replay"
    );

    // Unknown versions and garbage are refused, not misread.
    let mut future = bytes.clone();
    future[3] = (drover_consensus::SNAPSHOT_VERSION + 1) as u8;
    assert!(decode_snapshot(&future).is_err());
    let mut older = bytes.clone();
    older[3] = 1;
    assert!(decode_snapshot(&older).is_err());
    assert!(decode_snapshot(&bytes[..3]).is_err());
    assert!(decode_snapshot(&[0, 0, 0, 1, 0xff, 0xff]).is_err());
}

/// The state a live replica reached equals, byte for byte, a fresh replay of the log it
/// persisted in sled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_log_replays_to_the_live_state() {
    common::init_tracing();
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(1).await;
    let mut last = 0;
    cluster.propose(vec![define_partitions()]).await;
    for i in 0..25 {
        let reqs = (0..=i % 3).map(|k| submit(&format!("p{i}-{k}"))).collect();
        last = cluster.propose(reqs).await.0;
    }
    assert!(cluster.replica(1).wait_applied(last, common::LONG).await);
    let (live, _) = cluster.replica(1).read(state_bytes);
    cluster.stop_all().await;

    let db_path = cluster.dir(1).join("raft.sled");
    // Reopen (retrying while the stopped replica's last handles drop).
    let deadline = Instant::now() + common::LONG;
    let db = loop {
        match open_db(&db_path) {
            Ok(db) => break db,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reopen: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen {}: {e}", db_path.display()),
        }
    };
    let mut log = LogStore::new(&db).expect("log store");
    let entries = log.try_get_log_entries(..).await.expect("read log");
    assert_eq!(
        entries.first().map(|e| e.log_id.index),
        Some(0),
        "nothing purged (no snapshot yet)"
    );
    let mut state = ClusterState::new();
    for e in &entries {
        if let EntryPayload::Normal(p) = &e.payload {
            state.apply(p);
        }
    }
    assert_eq!(
        state_bytes(&state),
        live,
        "replaying the persisted log gives the live state"
    );
}
