//! The replicated state machine (openraft's `RaftStateMachine`) and its snapshots.
//!
//! ```text
//!   apply(entries) ──► write-lock Shared ──► ClusterState::apply(proposal) ──► Vec<Reply>
//!                                 │  last_applied, last_membership
//!                                 └──► applied watch (index)
//!   get_snapshot_builder ──► consistent clone (under the read lock)
//!        build_snapshot (spawned by openraft) ──► encode off-thread ──► sled "snapshot" tree + flush
//!   install_snapshot ──► decode ──► REPLACE Shared ──► persist + flush
//!   restart ──► load the persisted snapshot; openraft replays the log after it
//! ```
//!
//! The authoritative `ClusterState` lives in memory (the scheduler needs it there anyway); only
//! snapshots are persisted (stack.md §1.2, second persistence mode). The lock is a std `RwLock`,
//! never held across an `.await`.
//!
//! Snapshot encoding (binary, versioned): a big-endian `u32` version word (1), then postcard of
//! [`SnapshotBody`]. openraft's own types inside it are serde_json bytes, so an openraft upgrade
//! does not change the postcard layout.

// openraft's traits fix `StorageError` (224 bytes) as the error type; helpers return the same.
#![allow(clippy::result_large_err)]

use crate::log_store::{any_err, fatal};
use crate::mem_store::MemDisk;
use crate::typ::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig,
};
use drover_scheduler::{ClusterState, Reply};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

const TREE_SNAPSHOT: &str = "snapshot";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

/// The snapshot format version written by this build (2: jobs with dependencies and arrays;
/// 3: jobs with srun steps and accounting records with their steps, on one branch, and the
/// partition table as configured beside the one operators updated, on another; 4: both;
/// 5: accounting records with constraints and, when kept, scripts and environments, on one
/// branch; `OverSubscribe=` on partitions, `--oversubscribe` on job specs and each job's CPU
/// share count, and QOS (the table, `--qos` on job specs and records) on another; 6: both).
/// postcard is positional, so a field added anywhere in the state makes older snapshots
/// unreadable: the version says so in words instead of a decode error. No release has
/// shipped, so there is no migration.
pub const SNAPSHOT_VERSION: u32 = 6;

/// What a snapshot holds (version 5). Fields are only ever added at the end, with a new version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// serde_json of `Option<LogId>`.
    pub last_applied: Vec<u8>,
    /// serde_json of `StoredMembership`.
    pub last_membership: Vec<u8>,
    pub state: ClusterState,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotDecodeError {
    #[error("snapshot is {0} bytes, too short for a version word")]
    TooShort(usize),
    #[error("snapshot version {0} is not understood by this build (it reads version {SNAPSHOT_VERSION})")]
    UnknownVersion(u32),
    #[error("snapshot body: {0}")]
    Body(String),
}

/// Encodes a snapshot: version word + postcard body.
pub fn encode_snapshot(
    last_applied: &Option<LogId>,
    last_membership: &StoredMembership,
    state: &ClusterState,
) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    struct BodyRef<'a> {
        last_applied: Vec<u8>,
        last_membership: Vec<u8>,
        state: &'a ClusterState,
    }
    let body = BodyRef {
        last_applied: serde_json::to_vec(last_applied).map_err(|e| e.to_string())?,
        last_membership: serde_json::to_vec(last_membership).map_err(|e| e.to_string())?,
        state,
    };
    let mut out = SNAPSHOT_VERSION.to_be_bytes().to_vec();
    let out_body = postcard::to_allocvec(&body).map_err(|e| e.to_string())?;
    out.extend_from_slice(&out_body);
    Ok(out)
}

/// Decodes a snapshot written by [`encode_snapshot`].
pub fn decode_snapshot(
    bytes: &[u8],
) -> Result<(Option<LogId>, StoredMembership, ClusterState), SnapshotDecodeError> {
    if bytes.len() < 4 {
        return Err(SnapshotDecodeError::TooShort(bytes.len()));
    }
    let version = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotDecodeError::UnknownVersion(version));
    }
    let body: SnapshotBody =
        postcard::from_bytes(&bytes[4..]).map_err(|e| SnapshotDecodeError::Body(e.to_string()))?;
    let last_applied = serde_json::from_slice(&body.last_applied)
        .map_err(|e| SnapshotDecodeError::Body(e.to_string()))?;
    let last_membership = serde_json::from_slice(&body.last_membership)
        .map_err(|e| SnapshotDecodeError::Body(e.to_string()))?;
    Ok((last_applied, last_membership, body.state))
}

/// The applied state, shared by the state-machine store (writer) and `Replica` (readers).
pub struct Applied {
    pub state: ClusterState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// State shared between the store openraft drives and the replica's readers.
pub struct Shared {
    pub applied: RwLock<Applied>,
    pub applied_tx: watch::Sender<u64>,
}

impl Shared {
    pub fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        // A poisoned lock means a panic in apply, which already stopped the core; the data is
        // still the last consistent state, so keep serving it.
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the applied state; returns its result and the applied index it reflects.
    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> (T, u64) {
        let guard = self.read();
        let index = guard.last_applied.map(|l| l.index).unwrap_or(0);
        (f(&guard.state), index)
    }

    fn publish(&self, index: u64) {
        self.applied_tx.send_if_modified(|v| {
            if *v != index {
                *v = index;
                true
            } else {
                false
            }
        });
    }
}

/// Where snapshots are kept: the sled "snapshot" tree, or (simulation) a [`MemDisk`].
#[derive(Clone)]
enum SnapshotBackend {
    Sled { db: sled::Db, tree: sled::Tree },
    Memory(MemDisk),
}

/// The snapshot store plus a guard that keeps an older snapshot from overwriting a newer one
/// (a build finishing after an install).
#[derive(Clone)]
struct SnapshotStore {
    backend: SnapshotBackend,
    write_guard: Arc<Mutex<()>>,
}

impl SnapshotStore {
    fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let read_err = |e: &(dyn std::error::Error + 'static)| {
            fatal(
                "reading the snapshot",
                StorageIOError::read_snapshot(None, any_err(e)),
            )
        };
        let (meta, data) = match &self.backend {
            SnapshotBackend::Memory(disk) => return Ok(disk.snapshot()),
            SnapshotBackend::Sled { tree, .. } => (
                tree.get(KEY_SNAPSHOT_META).map_err(|e| read_err(&e))?,
                tree.get(KEY_SNAPSHOT_DATA).map_err(|e| read_err(&e))?,
            ),
        };
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta = serde_json::from_slice(&meta).map_err(|e| read_err(&e))?;
                Ok(Some((meta, data.to_vec())))
            }
            _ => Ok(None),
        }
    }

    /// The last log id of the stored snapshot, if any.
    fn stored_last_log_id(&self) -> Result<Option<Option<LogId>>, StorageError> {
        match &self.backend {
            SnapshotBackend::Memory(disk) => Ok(disk.snapshot().map(|(m, _)| m.last_log_id)),
            SnapshotBackend::Sled { tree, .. } => {
                let old = tree.get(KEY_SNAPSHOT_META).map_err(|e| {
                    fatal(
                        "reading the snapshot",
                        StorageIOError::read_snapshot(None, any_err(&e)),
                    )
                })?;
                Ok(old.and_then(|old| {
                    serde_json::from_slice::<SnapshotMeta>(&old)
                        .ok()
                        .map(|m| m.last_log_id)
                }))
            }
        }
    }

    /// True when snapshots live in memory (simulation): encoding then stays on the runtime's
    /// thread, so that a simulated run does not depend on a blocking pool's timing.
    fn in_memory(&self) -> bool {
        matches!(self.backend, SnapshotBackend::Memory(_))
    }

    /// Persists `meta` + `data` unless a newer snapshot is already stored; flushes.
    async fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let write_err = |e: &(dyn std::error::Error + 'static)| {
            fatal(
                "persisting a snapshot",
                StorageIOError::write_snapshot(Some(meta.signature()), any_err(e)),
            )
        };
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| write_err(&e))?;
        {
            let _guard = self.write_guard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = self.stored_last_log_id()? {
                if old > meta.last_log_id {
                    tracing::debug!(new = %meta.snapshot_id, "keeping the newer stored snapshot");
                    return Ok(());
                }
            }
            match &self.backend {
                SnapshotBackend::Memory(disk) => {
                    disk.set_snapshot(meta.clone(), data.to_vec());
                    return Ok(());
                }
                SnapshotBackend::Sled { tree, .. } => {
                    let mut batch = sled::Batch::default();
                    batch.insert(KEY_SNAPSHOT_META, meta_bytes);
                    batch.insert(KEY_SNAPSHOT_DATA, data);
                    tree.apply_batch(batch).map_err(|e| write_err(&e))?;
                }
            }
        }
        if let SnapshotBackend::Sled { db, .. } = &self.backend {
            db.flush_async().await.map_err(|e| write_err(&e))?;
        }
        Ok(())
    }
}

/// The state-machine store handed to openraft.
pub struct StateMachineStore {
    shared: Arc<Shared>,
    snapshots: SnapshotStore,
    builds: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the store on `db`, restoring the last persisted snapshot (if any).
    pub fn open(db: &sled::Db) -> Result<StateMachineStore, String> {
        StateMachineStore::with_backend(SnapshotBackend::Sled {
            db: db.clone(),
            tree: db.open_tree(TREE_SNAPSHOT).map_err(|e| e.to_string())?,
        })
    }

    /// Opens the store on a simulated disk, restoring its snapshot (if any).
    pub fn open_memory(disk: &MemDisk) -> Result<StateMachineStore, String> {
        StateMachineStore::with_backend(SnapshotBackend::Memory(disk.clone()))
    }

    fn with_backend(backend: SnapshotBackend) -> Result<StateMachineStore, String> {
        let snapshots = SnapshotStore {
            backend,
            write_guard: Arc::new(Mutex::new(())),
        };
        let applied = match snapshots.load().map_err(|e| e.to_string())? {
            None => Applied {
                state: ClusterState::new(),
                last_applied: None,
                last_membership: StoredMembership::default(),
            },
            Some((meta, data)) => {
                let (last_applied, last_membership, state) = decode_snapshot(&data)
                    .map_err(|e| format!("stored snapshot {}: {e}", meta.snapshot_id))?;
                tracing::info!(snapshot = %meta.snapshot_id, last_applied = ?last_applied, "restored the state machine from its snapshot");
                Applied {
                    state,
                    last_applied,
                    last_membership,
                }
            }
        };
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let (applied_tx, _) = watch::channel(index);
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                applied: RwLock::new(applied),
                applied_tx,
            }),
            snapshots,
            builds: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Builds one snapshot from a clone taken inside `get_snapshot_builder`.
pub struct SnapshotBuilder {
    state: ClusterState,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots: SnapshotStore,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let state = std::mem::take(&mut self.state);
        let last_applied = self.last_applied;
        let last_membership = self.last_membership.clone();
        let membership = last_membership.clone();
        // Serializing a large state must not stall a tokio worker (stack.md §1.10).
        let encoded = if self.snapshots.in_memory() {
            encode_snapshot(&last_applied, &membership, &state)
        } else {
            tokio::task::spawn_blocking(move || encode_snapshot(&last_applied, &membership, &state))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        };
        let data = encoded.map_err(|e| {
            fatal(
                "encoding a snapshot",
                StorageIOError::write_snapshot(None, msg_err(&e)),
            )
        })?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        self.snapshots.save(&meta, &data).await?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn msg_err(msg: &str) -> openraft::AnyError {
    openraft::AnyError::error(msg)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let guard = self.shared.read();
        Ok((guard.last_applied, guard.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Reply>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let last_index = {
            let mut guard = self.shared.write();
            for entry in entries {
                let reply = match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(proposal) => guard.state.apply(proposal),
                    EntryPayload::Membership(m) => {
                        guard.last_membership =
                            StoredMembership::new(Some(entry.log_id), m.clone());
                        Vec::new()
                    }
                };
                guard.last_applied = Some(entry.log_id);
                replies.push(reply);
            }
            guard.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.shared.publish(last_index);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let guard = self.shared.read();
        SnapshotBuilder {
            state: guard.state.clone(),
            last_applied: guard.last_applied,
            last_membership: guard.last_membership.clone(),
            snapshots: self.snapshots.clone(),
            seq: self.builds.fetch_add(1, Ordering::Relaxed),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let (last_applied, last_membership, state) = decode_snapshot(&data).map_err(|e| {
            fatal(
                "decoding a received snapshot",
                StorageIOError::read_snapshot(Some(meta.signature()), msg_err(&e.to_string())),
            )
        })?;
        if last_applied != meta.last_log_id {
            tracing::warn!(meta = ?meta.last_log_id, body = ?last_applied, "snapshot body and meta disagree; trusting the meta");
        }
        // Persist first, so that a crash right after never leaves memory ahead of disk.
        self.snapshots.save(meta, &data).await?;
        let index = {
            let mut guard = self.shared.write();
            // REPLACE, never merge.
            *guard = Applied {
                state,
                last_applied: meta.last_log_id,
                last_membership: if meta.last_membership.log_id().is_some() {
                    meta.last_membership.clone()
                } else {
                    last_membership
                },
            };
            guard.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.shared.publish(index);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshots.load()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
