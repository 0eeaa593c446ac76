//! What the daemon keeps on disk in `state_dir`. Each record is kept as two copies that are
//! written in turn, in place ([`TwoCopies`]): a daemon killed (or a machine losing power) at
//! any instant leaves the old or the new content, never half of it, and no write creates a
//! file. (A temp file renamed over the old one creates an inode per write; on a busy node
//! that was a quarter of the machine's CPU, in ext4's inode allocator.)
//!
//! - `pending-reports.json.{0,1}`: job reports not yet answered by a controller, oldest first.
//! - `finished-jobs.json.{0,1}`: jobs that ended here (or failed to launch), each with the
//!   applied index of the controller's answer to its final report once it came. Such jobs are
//!   never launched again.
//!
//! Daemons before the two copies kept one file of each name, replaced by rename; it is read
//! when no copy exists yet, and removed once a copy is written.
//!
//! Order of writes when a job ends: the report first, then the finished set. On load, the jobs
//! of pending final reports are added to the finished set, so a crash between the two writes
//! loses nothing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const PENDING_REPORTS_FILE: &str = "pending-reports.json";
pub const FINISHED_JOBS_FILE: &str = "finished-jobs.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Started,
    Finished,
    LaunchFailed,
}

impl ReportKind {
    /// True for the report that ends a job's life on this node.
    pub fn is_final(self) -> bool {
        matches!(self, ReportKind::Finished | ReportKind::LaunchFailed)
    }
}

/// A job report as kept until a controller answers it. `request_id` is fixed when the report is
/// made and reused by every retry, across daemon restarts too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    pub request_id: String,
    pub job_id: u64,
    pub kind: ReportKind,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub signal: i32,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub message: String,
    /// Why a finished job ended (time limit, OOM, …).
    #[serde(default)]
    pub cause: crate::supervisor::EndCause,
    #[serde(default)]
    pub max_rss_kb: u64,
    #[serde(default)]
    pub total_cpu_ms: u64,
    /// The run (times requeued) the report is about.
    #[serde(default)]
    pub restarts: u32,
}

/// Job id → applied index of the answer to its final report (`None`: not answered yet).
pub type FinishedJobs = BTreeMap<u64, Option<u64>>;

/// Job id → the run (times requeued) of a job that runs or ended here; absent: 0. A run
/// with a higher count is a new run of a requeued job, even of one that ended here.
pub type Attempts = BTreeMap<u64, u32>;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

#[derive(Serialize, Deserialize, Default)]
struct FinishedFile {
    /// `[job_id, ack_index]` pairs, in job id order.
    jobs: Vec<(u64, Option<u64>)>,
    /// The highest applied index the daemon had acted on when it last forgot finished jobs:
    /// after a restart, assignments older than this are still ignored, so a lagging replica
    /// cannot relaunch a job that was forgotten.
    #[serde(default)]
    fence_index: u64,
    /// `[job_id, restarts]` of the finished jobs that were requeued (absent: 0).
    #[serde(default)]
    attempts: Vec<(u64, u32)>,
    /// `[job_id, restarts]` of the runs launched here whose end is not recorded yet: on disk
    /// before each run's supervisor starts, so a daemon that finds no directory for one
    /// (the machine restarted and its runtime directory is gone) reports it lost rather than
    /// launching it again.
    #[serde(default)]
    running: Vec<(u64, u32)>,
}

/// What `finished-jobs.json` holds, read back at start.
#[derive(Debug, Default)]
pub struct Finished {
    pub jobs: FinishedJobs,
    pub attempts: Attempts,
    /// See `FinishedFile::fence_index`.
    pub fence_index: u64,
    /// Runs launched here whose end was not recorded: job id → run.
    pub running: BTreeMap<u64, u32>,
}

/// The daemon's files in `state_dir`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    pending: Arc<Mutex<TwoCopies>>,
    finished: Arc<Mutex<TwoCopies>>,
}

impl Store {
    /// Creates `dir` when missing.
    pub fn open(dir: &Path) -> Result<Store, StateError> {
        fs::create_dir_all(dir).map_err(|source| StateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
            pending: Arc::new(Mutex::new(TwoCopies::new(dir, PENDING_REPORTS_FILE))),
            finished: Arc::new(Mutex::new(TwoCopies::new(dir, FINISHED_JOBS_FILE))),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn load_pending(&self) -> Result<Vec<PendingReport>, StateError> {
        Ok(load_json(&self.pending)?.unwrap_or_default())
    }

    pub fn save_pending(&self, reports: &[PendingReport]) -> Result<(), StateError> {
        save_json(&self.pending, &reports)
    }

    /// The finished set, including the jobs of pending final reports (whose runs then no
    /// longer count as running), with the fence index and running runs saved with it.
    pub fn load_finished(&self, pending: &[PendingReport]) -> Result<Finished, StateError> {
        let file: FinishedFile = load_json(&self.finished)?.unwrap_or_default();
        let mut finished: FinishedJobs = file.jobs.into_iter().collect();
        let mut attempts: Attempts = file.attempts.into_iter().collect();
        let mut running: BTreeMap<u64, u32> = file.running.into_iter().collect();
        for report in pending.iter().filter(|r| r.kind.is_final()) {
            finished.entry(report.job_id).or_insert(None);
            if report.restarts > 0 {
                attempts.insert(report.job_id, report.restarts);
            }
            if running.get(&report.job_id) == Some(&report.restarts) {
                running.remove(&report.job_id);
            }
        }
        // A run whose end is in the finished set (that run or a later one) is not running.
        running.retain(|id, run| {
            !finished.contains_key(id) || attempts.get(id).copied().unwrap_or(0) < *run
        });
        Ok(Finished {
            jobs: finished,
            attempts,
            fence_index: file.fence_index,
            running,
        })
    }

    /// `running`: the jobs running here (their runs are in `attempts`).
    pub fn save_finished<'a>(
        &self,
        finished: &FinishedJobs,
        attempts: &Attempts,
        running: impl Iterator<Item = &'a u64>,
        fence_index: u64,
    ) -> Result<(), StateError> {
        let file = FinishedFile {
            jobs: finished.iter().map(|(&id, &ack)| (id, ack)).collect(),
            fence_index,
            attempts: attempts
                .iter()
                .filter(|(id, &r)| r > 0 && finished.contains_key(id))
                .map(|(&id, &r)| (id, r))
                .collect(),
            running: running
                .map(|&id| (id, attempts.get(&id).copied().unwrap_or(0)))
                .collect(),
        };
        save_json(&self.finished, &file)
    }
}
/// Reads the record kept in `copies`. `Ok(None)` when there is none. A record whose copies are
/// all damaged, or whose content does not parse (someone edited it), is moved aside to
/// `<name>.<k>.corrupt` with an error logged, and treated as absent: the daemon must start.
fn load_json<T: for<'de> Deserialize<'de>>(
    copies: &Mutex<TwoCopies>,
) -> Result<Option<T>, StateError> {
    let mut copies = lock(copies);
    let Some(bytes) = copies.read()? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::error!(record = copies.name, error = %e, "state record does not parse");
            copies.move_aside()?;
            Ok(None)
        }
    }
}

fn save_json<T: Serialize>(copies: &Mutex<TwoCopies>, value: &T) -> Result<(), StateError> {
    let mut copies = lock(copies);
    let bytes = serde_json::to_vec(value).map_err(|e| StateError::Write {
        path: copies.dir.join(copies.name),
        source: io::Error::other(e),
    })?;
    copies.write(&bytes)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copies are written in whole blocks of this size.
const COPY_BLOCK: usize = 4096;

/// The first line of each copy: `drover-state 1 <sequence> <length> <checksum>`.
const COPY_MAGIC: &str = "drover-state 1";

/// CRC-32 of the sequence number, the length and the content: a copy cut short inside its
/// header (a new sequence number over the old header and content) does not check out.
fn copy_checksum(seq: u64, content: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&(content.len() as u64).to_le_bytes());
    h.update(content);
    h.finalize()
}

/// One record kept as two files, `<name>.0` and `<name>.1`, written in turn and in place.
/// A write goes to the copy that does not hold the newest content: a header line (a sequence
/// number one above the newest, the content's length and checksum), the content, then
/// fdatasync. A read takes the whole copy (length and checksum match) with the higher sequence
/// number, so a write cut short at any byte leaves the other copy, the previous content, to be
/// read. Once both copies exist a write creates no file and touches no directory.
#[derive(Debug)]
struct TwoCopies {
    dir: PathBuf,
    name: &'static str,
    /// The sequence number of the newest copy on disk (0: none); `None` until the copies
    /// were first read.
    newest: Option<u64>,
    /// The single file of earlier daemons may still exist (until a copy is written).
    legacy_maybe: bool,
    /// Each copy, kept open once written: a write then looks no path up (this daemon is the
    /// only writer of its state dir).
    open: [Option<File>; 2],
}

impl TwoCopies {
    fn new(dir: &Path, name: &'static str) -> TwoCopies {
        TwoCopies {
            dir: dir.to_path_buf(),
            name,
            newest: None,
            legacy_maybe: true,
            open: [None, None],
        }
    }

    fn copy_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{}.{}", self.name, seq % 2))
    }

    fn legacy_path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// The newest whole copy's content; without one, the legacy file's.
    fn read(&mut self) -> Result<Option<Vec<u8>>, StateError> {
        let mut newest: Option<(u64, Vec<u8>)> = None;
        let mut damaged = Vec::new();
        for k in 0..2 {
            let path = self.copy_path(k);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StateError::Read { path, source }),
            };
            match parse_copy(&bytes) {
                Some((seq, content)) if newest.as_ref().is_none_or(|(s, _)| seq > *s) => {
                    newest = Some((seq, content.to_vec()));
                }
                Some(_) => {}
                None => damaged.push(path),
            }
        }
        if let Some((seq, content)) = newest {
            for path in &damaged {
                // The copy a write was cut short in: the other one holds what it replaced.
                tracing::warn!(path = %path.display(), "state copy is incomplete (a write was cut short); the other copy is used");
            }
            self.newest = Some(seq);
            return Ok(Some(content));
        }
        self.newest = Some(0);
        if !damaged.is_empty() {
            tracing::error!(
                record = self.name,
                "every copy of the state record is damaged"
            );
            self.move_aside()?;
            return Ok(None);
        }
        let legacy = self.legacy_path();
        match fs::read(&legacy) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.legacy_maybe = false;
                Ok(None)
            }
            Err(source) => Err(StateError::Read {
                path: legacy,
                source,
            }),
        }
    }

    /// Writes `content` as the newest copy, durably.
    fn write(&mut self, content: &[u8]) -> Result<(), StateError> {
        if self.newest.is_none() {
            self.read()?;
        }
        let seq = self.newest.unwrap_or(0) + 1;
        let path = self.copy_path(seq);
        self.write_copy(&path, seq, content)
            .map_err(|source| StateError::Write {
                path: path.clone(),
                source,
            })?;
        self.newest = Some(seq);
        if self.legacy_maybe {
            let legacy = self.legacy_path();
            match fs::remove_file(&legacy) {
                Ok(()) => sync_dir(&self.dir).map_err(|source| StateError::Write {
                    path: legacy,
                    source,
                })?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Write {
                        path: legacy,
                        source,
                    })
                }
            }
            self.legacy_maybe = false;
        }
        Ok(())
    }

    fn write_copy(&mut self, path: &Path, seq: u64, content: &[u8]) -> io::Result<()> {
        let slot = usize::from(seq % 2 == 1);
        let (file, created) = match self.open[slot].take() {
            Some(f) => (f, false),
            None => match OpenOptions::new().write(true).open(path) {
                Ok(f) => (f, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => (
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)?,
                    true,
                ),
                Err(e) => return Err(e),
            },
        };
        let mut bytes = format!(
            "{COPY_MAGIC} {seq} {} {}\n",
            content.len(),
            copy_checksum(seq, content)
        )
        .into_bytes();
        bytes.extend_from_slice(content);
        // Padded to whole blocks: while the size stays, fdatasync writes the data alone, not
        // the inode too (a reader takes `length` bytes and ignores the rest).
        bytes.resize(bytes.len().div_ceil(COPY_BLOCK) * COPY_BLOCK, b'\n');
        let len = bytes.len() as u64;
        let before = file.metadata()?.len();
        file.write_all_at(&bytes, 0)?;
        // Cut only a longer copy (a same-sized truncate still dirties the inode).
        if before > len {
            file.set_len(len)?;
        }
        file.sync_data()?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.open[slot] = Some(file);
        Ok(())
    }

    /// Renames every copy to `<copy>.corrupt`; the next write starts over.
    fn move_aside(&mut self) -> Result<(), StateError> {
        self.open = [None, None];
        for k in 0..2 {
            let path = self.copy_path(k);
            let mut aside = path.clone().into_os_string();
            aside.push(".corrupt");
            match fs::rename(&path, &aside) {
                Ok(()) => tracing::error!(path = %path.display(), "state copy moved aside"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Write { path, source }),
            }
        }
        let legacy = self.legacy_path();
        let mut aside = legacy.clone().into_os_string();
        aside.push(".corrupt");
        match fs::rename(&legacy, &aside) {
            Ok(()) => tracing::error!(path = %legacy.display(), "state file moved aside"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Write {
                    path: legacy,
                    source,
                })
            }
        }
        self.newest = Some(0);
        self.legacy_maybe = false;
        Ok(())
    }
}

/// A copy's sequence number and content, when it is whole.
fn parse_copy(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let mut words = header.strip_prefix(COPY_MAGIC)?.split_whitespace();
    let seq: u64 = words.next()?.parse().ok()?;
    let len: usize = words.next()?.parse().ok()?;
    let crc: u32 = words.next()?.parse().ok()?;
    let content = bytes.get(newline + 1..newline + 1 + len)?;
    (words.next().is_none() && copy_checksum(seq, content) == crc).then_some((seq, content))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `path`'s directory and the hidden temporary `.<name>.tmp` beside it.
fn temp_beside(path: &Path) -> io::Result<(&Path, PathBuf)> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    Ok((dir, dir.join(tmp_name)))
}

/// Replaces `path` with `bytes` atomically against process crashes, without fsync: for the
/// files of a job directory, which matter only while the machine stays up (a power loss ends
/// the job too, and a missing or empty file reads as "supervisor lost"). A durable write costs
/// ~6 ms on the test VMs; a job makes five of these.
pub fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (_, tmp) = temp_beside(path)?;
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(job_id: u64, kind: ReportKind) -> PendingReport {
        PendingReport {
            request_id: format!("n1-{job_id}-{kind:?}"),
            job_id,
            kind,
            exit_code: 3,
            signal: 0,
            pid: 42,
            message: String::new(),
            cause: crate::supervisor::EndCause::Exited,
            max_rss_kb: 0,
            total_cpu_ms: 0,
            restarts: 0,
        }
    }

    #[test]
    fn pending_reports_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state")).expect("open");
        assert!(store.load_pending().expect("load").is_empty());
        let reports = vec![
            report(1, ReportKind::Started),
            report(1, ReportKind::Finished),
        ];
        store.save_pending(&reports).expect("save");
        assert_eq!(store.load_pending().expect("load"), reports);
        store.save_pending(&reports[1..]).expect("save");
        store.save_pending(&reports[..1]).expect("save");
        // A store opened afresh (a restarted daemon) reads the newest.
        let again = Store::open(store.dir()).expect("open");
        assert_eq!(again.load_pending().expect("load"), reports[..1]);
        // The two copies and nothing else: no temp file is left behind.
        assert_eq!(
            names(store.dir()),
            ["pending-reports.json.0", "pending-reports.json.1"]
        );
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What a write cut short leaves: the copy being written holds a prefix of the new bytes
    /// over the old ones.
    #[test]
    fn a_write_cut_short_at_any_byte_leaves_the_previous_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let first = vec![report(1, ReportKind::Started)];
        let second = vec![
            report(1, ReportKind::Started),
            report(1, ReportKind::Finished),
        ];
        let third = vec![report(2, ReportKind::Started)];
        store.save_pending(&first).expect("save");
        store.save_pending(&second).expect("save");
        // The third write goes to the copy that holds `first`.
        let target = dir.path().join("pending-reports.json.1");
        let old = fs::read(&target).expect("read");
        store.save_pending(&third).expect("save");
        let new = fs::read(&target).expect("read");
        let whole = parse_copy(&new).map(|(_, c)| c.len()).expect("whole")
            + new.iter().position(|&b| b == b'\n').expect("header")
            + 1;
        for cut in 0..new.len() {
            let mut torn = new[..cut].to_vec();
            if cut < old.len() {
                torn.extend_from_slice(&old[cut..]);
            }
            fs::write(&target, &torn).expect("write");
            let reopened = Store::open(dir.path()).expect("open");
            // Once the new header and content are down (or the bytes still missing equal the
            // old ones), the copy is the new one, whole; the padding after it does not count.
            let expected = if torn[..whole] == new[..whole] {
                &third
            } else {
                &second
            };
            assert_eq!(
                &reopened.load_pending().expect("load"),
                expected,
                "cut at byte {cut}"
            );
        }
        fs::write(&target, &new).expect("write");
        let reopened = Store::open(dir.path()).expect("open");
        assert_eq!(reopened.load_pending().expect("load"), third);
    }

    /// A daemon before the two copies kept `pending-reports.json` alone: it is read, and
    /// removed once the first copy is written.
    #[test]
    fn the_single_file_of_earlier_daemons_is_read_then_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reports = vec![report(7, ReportKind::Finished)];
        fs::write(
            dir.path().join(PENDING_REPORTS_FILE),
            serde_json::to_vec_pretty(&reports).expect("json"),
        )
        .expect("write");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.load_pending().expect("load"), reports);
        let loaded = store.load_finished(&reports).expect("load");
        assert!(loaded.jobs.contains_key(&7));
        store.save_pending(&[]).expect("save");
        assert_eq!(names(dir.path()), ["pending-reports.json.1"]);
        assert!(Store::open(dir.path())
            .expect("open")
            .load_pending()
            .expect("load")
            .is_empty());
    }

    #[test]
    fn finished_set_includes_jobs_of_pending_final_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut finished = FinishedJobs::new();
        finished.insert(1, Some(17));
        finished.insert(5, Some(18));
        // The runs of requeued jobs are kept with them; those of jobs no longer here are not.
        let attempts = Attempts::from([(5, 2), (6, 1)]);
        store
            .save_finished(&finished, &attempts, [8, 9, 4].iter(), 40)
            .expect("save");
        let pending = [
            report(2, ReportKind::Started),
            report(3, ReportKind::LaunchFailed),
            PendingReport {
                restarts: 3,
                ..report(4, ReportKind::Finished)
            },
        ];
        let loaded = store.load_finished(&pending).expect("load");
        assert_eq!(loaded.fence_index, 40);
        assert_eq!(
            loaded.jobs.into_iter().collect::<Vec<_>>(),
            vec![(1, Some(17)), (3, None), (4, None), (5, Some(18))]
        );
        assert_eq!(
            loaded.attempts.into_iter().collect::<Vec<_>>(),
            vec![(4, 3), (5, 2)]
        );
        // Runs saved as running, less those a pending final report ended (job 4's run 0
        // ended with run 3's report too: a later run's end).
        assert_eq!(
            loaded.running.into_iter().collect::<Vec<_>>(),
            vec![(8, 0), (9, 0)]
        );
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        fs::write(dir.path().join(PENDING_REPORTS_FILE), b"{not json").expect("write");
        assert!(store.load_pending().expect("load").is_empty());
        assert!(dir
            .path()
            .join(format!("{PENDING_REPORTS_FILE}.corrupt"))
            .exists());
        // Whole copies whose content someone edited into something else.
        store
            .save_pending(&[report(1, ReportKind::Started)])
            .expect("save");
        let copy = dir.path().join("pending-reports.json.1");
        let content = b"{not json";
        let mut edited = format!(
            "{COPY_MAGIC} 9 {} {}\n",
            content.len(),
            copy_checksum(9, content)
        )
        .into_bytes();
        edited.extend_from_slice(content);
        fs::write(&copy, edited).expect("write");
        let reopened = Store::open(dir.path()).expect("open");
        assert!(reopened.load_pending().expect("load").is_empty());
        assert!(dir.path().join("pending-reports.json.1.corrupt").exists());
        // The next write starts over.
        reopened
            .save_pending(&[report(2, ReportKind::Started)])
            .expect("save");
        assert_eq!(
            Store::open(dir.path())
                .expect("open")
                .load_pending()
                .expect("load"),
            [report(2, ReportKind::Started)]
        );
    }
}
