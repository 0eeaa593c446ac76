//! What the daemon keeps on disk in `state_dir`, each file replaced atomically (temp file,
//! fsync, rename, fsync of the directory), so a daemon killed at any instant leaves either the
//! old or the new content, never half of it.
//!
//! - `pending-reports.json`: job reports not yet answered by a controller, oldest first.
//! - `finished-jobs.json`: jobs that ended here (or failed to launch), each with the applied
//!   index of the controller's answer to its final report once it came. Such jobs are never
//!   launched again.
//!
//! Order of writes when a job ends: the report first, then the finished set. On load, the jobs
//! of pending final reports are added to the finished set, so a crash between the two writes
//! loses nothing.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

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
}

/// The daemon's files in `state_dir`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn load_pending(&self) -> Result<Vec<PendingReport>, StateError> {
        Ok(self.load_json(PENDING_REPORTS_FILE)?.unwrap_or_default())
    }

    pub fn save_pending(&self, reports: &[PendingReport]) -> Result<(), StateError> {
        self.save_json(PENDING_REPORTS_FILE, &reports)
    }

    /// The finished set, including the jobs of pending final reports, and the fence index
    /// saved with it.
    pub fn load_finished(
        &self,
        pending: &[PendingReport],
    ) -> Result<(FinishedJobs, Attempts, u64), StateError> {
        let file: FinishedFile = self.load_json(FINISHED_JOBS_FILE)?.unwrap_or_default();
        let mut finished: FinishedJobs = file.jobs.into_iter().collect();
        let mut attempts: Attempts = file.attempts.into_iter().collect();
        for report in pending.iter().filter(|r| r.kind.is_final()) {
            finished.entry(report.job_id).or_insert(None);
            if report.restarts > 0 {
                attempts.insert(report.job_id, report.restarts);
            }
        }
        Ok((finished, attempts, file.fence_index))
    }

    pub fn save_finished(
        &self,
        finished: &FinishedJobs,
        attempts: &Attempts,
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
        };
        self.save_json(FINISHED_JOBS_FILE, &file)
    }

    fn save_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&path, &bytes).map_err(|source| StateError::Write { path, source })
    }

    /// `Ok(None)` when the file does not exist. A file that does not parse (it cannot be half
    /// written, so someone edited it) is moved aside to `<name>.corrupt` with an error logged,
    /// and treated as absent: the daemon must start.
    fn load_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let aside = self.dir.join(format!("{name}.corrupt"));
                tracing::error!(path = %path.display(), error = %e,
                    "state file does not parse; moved to {}", aside.display());
                fs::rename(&path, &aside).map_err(|source| StateError::Write {
                    path: path.clone(),
                    source,
                })?;
                Ok(None)
            }
        }
    }
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

/// Replaces `path` with `bytes` atomically and durably: write `.<name>.tmp` beside it, fsync,
/// rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, tmp) = temp_beside(path)?;
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    File::open(dir)?.sync_all()
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
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(store.dir())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(PENDING_REPORTS_FILE)]);
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
        store.save_finished(&finished, &attempts, 40).expect("save");
        let pending = [
            report(2, ReportKind::Started),
            report(3, ReportKind::LaunchFailed),
            PendingReport {
                restarts: 3,
                ..report(4, ReportKind::Finished)
            },
        ];
        let (loaded, attempts, fence_index) = store.load_finished(&pending).expect("load");
        assert_eq!(fence_index, 40);
        assert_eq!(
            loaded.into_iter().collect::<Vec<_>>(),
            vec![(1, Some(17)), (3, None), (4, None), (5, Some(18))]
        );
        assert_eq!(
            attempts.into_iter().collect::<Vec<_>>(),
            vec![(4, 3), (5, 2)]
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
    }
}
