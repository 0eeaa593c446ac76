//! A simulated disk: the Raft log, vote and snapshot of one replica, in memory, for the
//! deterministic simulation (`crates/controller/tests/sim.rs`).
//!
//! sled cannot run inside a simulation: its flushes complete on its own threads, so the order in
//! which a paused-time runtime sees them is not a function of the seed. [`MemDisk`] keeps the same
//! contract as the sled store (`log_store.rs`): what `append` reports as flushed survives a
//! [`MemDisk::crash`], and so do the vote and the snapshot; a `MemDisk` outlives the replica that
//! uses it, the way a data directory outlives a process.
//!
//! Under the jepsen bug switch `inject-ack-before-flush` it behaves as the sled store does then:
//! `append` acknowledges without flushing, only a vote, truncate or purge flushes, and a crash
//! loses everything written since the last flush.

// openraft's traits fix `StorageError` (224 bytes) as the error type; helpers return the same.
#![allow(clippy::result_large_err)]

use crate::typ::{Entry, LogId, SnapshotMeta, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
struct LogData {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
}

#[derive(Default)]
struct Disk {
    /// What the replica reads and writes.
    live: LogData,
    /// What a crash keeps, under the bug switch only; otherwise every write is durable at once.
    flushed: LogData,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    crashes: u64,
}

/// One replica's simulated disk. Cheap to clone; clones share the disk.
#[derive(Clone, Default)]
pub struct MemDisk {
    disk: Arc<Mutex<Disk>>,
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A crash of the process using this disk: unflushed writes are lost (there are none unless
    /// the bug switch is on). Call it after the replica has been stopped.
    pub fn crash(&self) {
        let mut disk = self.lock();
        disk.crashes += 1;
        if cfg!(feature = "inject-ack-before-flush") {
            disk.live = disk.flushed.clone();
        }
    }

    /// The vote on this disk as (term, candidate id), for the simulation's election check.
    /// Candidates of one term are ordered by id (openraft's default leader id, without the
    /// `single-term-leader` feature), so the pair compares as openraft compares votes.
    pub fn vote(&self) -> Option<(u64, u64)> {
        self.lock()
            .live
            .vote
            .map(|v| (v.leader_id.term, v.leader_id.node_id))
    }

    /// The number of entries in the log (for the simulation's reports).
    pub fn log_len(&self) -> usize {
        self.lock().live.log.len()
    }

    pub(crate) fn snapshot(&self) -> Option<(SnapshotMeta, Vec<u8>)> {
        self.lock().snapshot.clone()
    }

    pub(crate) fn set_snapshot(&self, meta: SnapshotMeta, data: Vec<u8>) {
        self.lock().snapshot = Some((meta, data));
    }

    pub(crate) fn log_store(&self) -> MemLogStore {
        MemLogStore { disk: self.clone() }
    }
}

fn flush(disk: &mut Disk) {
    if cfg!(feature = "inject-ack-before-flush") {
        disk.flushed = disk.live.clone();
    }
}

/// The log store over a [`MemDisk`]; also its own log reader.
#[derive(Clone)]
pub struct MemLogStore {
    disk: MemDisk,
}

impl Debug for MemLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemLogStore")
            .field("entries", &self.disk.log_len())
            .finish()
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let disk = self.disk.lock();
        Ok(disk.live.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let disk = self.disk.lock();
        let last_purged_log_id = disk.live.last_purged;
        let last_log_id = disk
            .live
            .log
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut disk = self.disk.lock();
        disk.live.vote = Some(*vote);
        flush(&mut disk);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.disk.lock().live.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.disk.lock().live.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().live.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut disk = self.disk.lock();
            for entry in entries {
                disk.live.log.insert(entry.log_id.index, entry);
            }
            // Durable before acknowledging, except under the bug switch (see the module doc).
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut disk = self.disk.lock();
        disk.live.log.split_off(&log_id.index);
        flush(&mut disk);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut disk = self.disk.lock();
        disk.live.last_purged = Some(log_id);
        let keep = disk.live.log.split_off(&(log_id.index + 1));
        disk.live.log = keep;
        flush(&mut disk);
        Ok(())
    }
}
