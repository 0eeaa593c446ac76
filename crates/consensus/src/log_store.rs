//! The Raft log on sled (openraft's `RaftLogStorage`, storage-v2).
//!
//! ```text
//!   sled::Db (one per replica)
//!   ├── raft_meta : "vote" | "committed" | "last_purged"  → serde_json
//!   └── raft_log  : index as big-endian u64 (byte order = numeric order) → codec (format byte + postcard) Entry
//! ```
//!
//! Durability rules (stack.md §3): `save_vote` flushes before it returns; `append` writes one
//! atomic batch, then flushes it (`flush`), and only then reports the entries as flushed to
//! openraft; `truncate`/`purge` flush too, and `purge` records `last_purged` before it deletes,
//! so the log state never shows a hole. Any sled failure is a `StorageError`, logged loudly here:
//! openraft stops the replica's core on it.

// openraft's traits fix `StorageError` (224 bytes) as the error type; helpers return the same.
#![allow(clippy::result_large_err)]

use crate::typ::{Entry, LogId, StorageError, StorageIOError, TypeConfig, Vote};
use openraft::storage::LogFlushed;
use openraft::storage::RaftLogStorage;
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

const TREE_META: &str = "raft_meta";
const TREE_LOG: &str = "raft_log";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Opens the replica's sled database with the settings drover relies on.
pub fn open_db(path: &std::path::Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(path)
        // The default is 1 GiB of RAM (stack.md §3 rule 6).
        .cache_capacity(64 * 1024 * 1024)
        // A backstop only: every acknowledged write is flushed explicitly. The jepsen bug switch
        // turns it off too, so that unflushed appends are really lost on kill -9.
        .flush_every_ms(if cfg!(feature = "inject-ack-before-flush") {
            None
        } else {
            Some(500)
        })
        .open()
}

pub(crate) fn any_err(e: &(dyn std::error::Error + 'static)) -> AnyError {
    AnyError::from_dyn(e, None)
}

/// Logs a storage failure loudly (openraft stops the core on it) and converts it.
pub(crate) fn fatal(what: &str, e: StorageIOError) -> StorageError {
    tracing::error!(error = %e, "FATAL storage error while {what}; this replica's raft core will stop");
    StorageError::IO { source: e }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The log store. Cheap to clone (sled trees are reference-counted); a clone is also the
/// log reader that openraft hands to replication tasks.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    meta: sled::Tree,
    log: sled::Tree,
}

impl LogStore {
    pub fn new(db: &sled::Db) -> Result<LogStore, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            meta: db.open_tree(TREE_META)?,
            log: db.open_tree(TREE_LOG)?,
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        k: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let raw = self
            .meta
            .get(k)
            .map_err(|e| fatal("reading raft metadata", StorageIOError::read(any_err(&e))))?;
        match raw {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| fatal("decoding raft metadata", StorageIOError::read(any_err(&e)))),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, k: &[u8], v: &T) -> Result<(), StorageIOError> {
        let bytes = serde_json::to_vec(v).map_err(|e| StorageIOError::write(any_err(&e)))?;
        self.meta
            .insert(k, bytes)
            .map_err(|e| StorageIOError::write(any_err(&e)))?;
        Ok(())
    }

    /// Everything written so far, on disk. openraft's core awaits each log write's flush
    /// before its next (0.9), so nothing runs in the meantime that a flush on the calling
    /// worker would hold up: on a multi-thread runtime it flushes there (`block_in_place` hands
    /// the worker's other tasks on), which saves sled's hand-off to its thread pool and back
    /// (5–6% more short jobs per second through a local cluster, in paired runs). A
    /// current-thread runtime (tests) awaits sled's `flush_async`.
    async fn flush(&self) -> Result<(), sled::Error> {
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(|| self.db.flush()).map(|_| ());
        }
        self.db.flush_async().await.map(|_| ())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let last = self
            .log
            .last()
            .map_err(|e| fatal("reading the log", StorageIOError::read_logs(any_err(&e))))?;
        match last {
            None => Ok(None),
            Some((_, v)) => {
                let entry: Entry = crate::codec::decode(&v).map_err(|e| {
                    fatal(
                        "decoding a log entry",
                        StorageIOError::read_logs(any_err(&e)),
                    )
                })?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let iter = match range.end_bound() {
            Bound::Included(i) => self.log.range(key(start)..=key(*i)),
            Bound::Excluded(i) => self.log.range(key(start)..key(*i)),
            Bound::Unbounded => self.log.range(key(start)..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (_, v) =
                item.map_err(|e| fatal("reading the log", StorageIOError::read_logs(any_err(&e))))?;
            let entry: Entry = crate::codec::decode(&v).map_err(|e| {
                fatal(
                    "decoding a log entry",
                    StorageIOError::read_logs(any_err(&e)),
                )
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
            .map_err(|e| fatal("saving the vote", e))?;
        self.flush()
            .await
            .map_err(|e| fatal("flushing the vote", StorageIOError::write_vote(any_err(&e))))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it only lets a restart re-apply sooner, and it is flushed with
        // the next append or vote. A stale value is always safe.
        self.write_meta(KEY_COMMITTED, &committed)
            .map_err(|e| fatal("saving the committed log id", e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = crate::codec::encode(&entry).map_err(|e| {
                fatal(
                    "encoding a log entry",
                    StorageIOError::write_logs(any_err(&e)),
                )
            })?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        // One atomic batch: readable as soon as this returns (openraft's contract).
        self.log.apply_batch(batch).map_err(|e| {
            fatal(
                "appending to the log",
                StorageIOError::write_logs(any_err(&e)),
            )
        })?;
        // BUG INJECTED ON PURPOSE (test builds only, `--features inject-ack-before-flush`): tell
        // openraft the entries are durable without flushing them, so a kill -9 of a majority
        // loses acknowledged writes. jepsen/ must report `valid: false` against such a build.
        #[cfg(feature = "inject-ack-before-flush")]
        {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // Durable before acknowledging (DESIGN §4 Durability).
        #[allow(unreachable_code)]
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = fatal(
                    "flushing appended entries",
                    StorageIOError::write_logs(any_err(&e)),
                );
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(|e| {
                fatal(
                    "truncating the log",
                    StorageIOError::write_logs(any_err(&e)),
                )
            })?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| {
            fatal(
                "truncating the log",
                StorageIOError::write_logs(any_err(&e)),
            )
        })?;
        self.flush().await.map_err(|e| {
            fatal(
                "flushing a truncation",
                StorageIOError::write_logs(any_err(&e)),
            )
        })?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record last_purged first: a reader (or a crash) never sees a hole at the log's head.
        self.write_meta(KEY_LAST_PURGED, &log_id)
            .map_err(|e| fatal("recording last_purged", e))?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=key(log_id.index)) {
            let (k, _) = item
                .map_err(|e| fatal("purging the log", StorageIOError::write_logs(any_err(&e))))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| fatal("purging the log", StorageIOError::write_logs(any_err(&e))))?;
        self.flush()
            .await
            .map_err(|e| fatal("flushing a purge", StorageIOError::write_logs(any_err(&e))))?;
        Ok(())
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("entries", &self.log.len())
            .finish()
    }
}
