//! The daemon's loops against a stand-in controller: a small in-test `NodeCtl` server that
//! serves a fixed script of assignments and records what the daemon sends. The real controller
//! end to end is tested at the workspace level; this checks the daemon's side of the protocol:
//! failover, fencing, launching only on the batch host, stopping, reports retried with the same
//! request id, and reports surviving a restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_node::state::{ReportKind, Store};
use drover_node::{run, NodeConfig};
use drover_proto::node_ctl_server::{NodeCtl, NodeCtlServer};
use drover_proto::{
    job_report::Kind, Assignment, AssignmentsReply, AssignmentsRequest, HeartbeatReply,
    HeartbeatRequest, JobReport, JobReportReply, JobReports, RegisterReply, RegisterRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Stub {
    applied_index: u64,
    jobs: Vec<Assignment>,
    registered: Vec<RegisterRequest>,
    /// Answer this many ReportJob(s) calls with `Unavailable` (u32::MAX: all).
    refuse_reports: u32,
    refused_ids: Vec<String>,
    /// Calls refused (a refused batch is one call, with all its reports' ids above).
    refused_calls: u32,
    reports: Vec<JobReport>,
    /// The runs (job id, restarts) the latest assignments poll named as ended by the daemon.
    polled_ended: Vec<(u64, u32)>,
}

impl Stub {
    /// Applies one report: job 3 is cancelled once it has started.
    fn take(&mut self, report: JobReport) {
        if report.job_id == 3 && report.kind == Kind::Started as i32 {
            for j in self.jobs.iter_mut().filter(|j| j.job_id == 3) {
                j.run = false;
            }
        }
        self.applied_index += 1;
        self.reports.push(report);
    }
}

#[derive(Clone, Default)]
struct Controller(Arc<Mutex<Stub>>);

impl Controller {
    fn with<R>(&self, f: impl FnOnce(&mut Stub) -> R) -> R {
        f(&mut self.0.lock().expect("stub lock"))
    }
}

#[tonic::async_trait]
impl NodeCtl for Controller {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        let applied_index = self.with(|s| {
            s.registered.push(req.into_inner());
            s.applied_index
        });
        Ok(Response::new(RegisterReply { applied_index }))
    }

    async fn heartbeat(
        &self,
        _req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        Ok(Response::new(HeartbeatReply { known: true }))
    }

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<AssignmentsReply>, Status> {
        let req = req.into_inner();
        self.with(|s| s.polled_ended = req.ended.iter().map(|r| (r.job_id, r.restarts)).collect());
        for _ in 0..(req.wait_ms / 50).min(10) {
            if self.with(|s| s.applied_index > req.after_index) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(self.with(|s| AssignmentsReply {
            applied_index: s.applied_index,
            jobs: s.jobs.clone(),
            known: true,
        })))
    }

    async fn report_job(
        &self,
        req: Request<JobReport>,
    ) -> Result<Response<JobReportReply>, Status> {
        let report = req.into_inner();
        self.with(|s| {
            if s.refuse_reports > 0 {
                if s.refuse_reports != u32::MAX {
                    s.refuse_reports -= 1;
                }
                s.refused_ids.push(report.request_id.clone());
                s.refused_calls += 1;
                return Err(Status::unavailable("no leader (test)"));
            }
            s.take(report);
            Ok(Response::new(JobReportReply {
                applied_index: s.applied_index,
            }))
        })
    }

    /// A batch as one write: refused as a whole, or every report taken in order.
    async fn report_jobs(
        &self,
        req: Request<JobReports>,
    ) -> Result<Response<JobReportReply>, Status> {
        let batch = req.into_inner();
        self.with(|s| {
            if s.refuse_reports > 0 {
                if s.refuse_reports != u32::MAX {
                    s.refuse_reports -= 1;
                }
                s.refused_ids
                    .extend(batch.reports.iter().map(|r| r.request_id.clone()));
                s.refused_calls += 1;
                return Err(Status::unavailable("no leader (test)"));
            }
            for report in batch.reports {
                s.take(report);
            }
            Ok(Response::new(JobReportReply {
                applied_index: s.applied_index,
            }))
        })
    }
}

async fn serve(controller: Controller) -> String {
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
    let addr = incoming.local_addr().expect("local addr").to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(NodeCtlServer::new(controller))
            .serve_with_incoming(incoming),
    );
    addr
}

/// A temporary directory with a `work` directory in it (the jobs' working directory).
fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    (tmp, work)
}

fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn own_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self").expect("/proc/self");
    (me.uid(), me.gid())
}

fn job(job_id: u64, batch_host: bool, work_dir: &Path, script: &str) -> Assignment {
    let (uid, gid) = own_ids();
    Assignment {
        job_id,
        run: true,
        batch_host,
        name: format!("job{job_id}"),
        script: script.into(),
        work_dir: work_dir.to_string_lossy().into_owned(),
        user: "tester".into(),
        uid,
        gid,
        num_nodes: 1,
        cpus_on_node: 1,
        ..Assignment::default()
    }
}

fn config(name: &str, controllers: Vec<String>, state_dir: &Path) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        controllers,
        state_dir: state_dir.to_path_buf(),
        cpus: Some(2),
        real_memory_mb: Some(1024),
        addr: "127.0.0.1:0".into(),
        kill_wait: Duration::from_secs(2),
        fake_gpus: None,
        supervisor_exe: env!("CARGO_BIN_EXE_drover-supervise").into(),
        runtime_dir: None,
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Shuts the daemon down and waits for `run` to return Ok.
async fn stop(shutdown: CancellationToken, daemon: tokio::task::JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("daemon stops")
        .expect("join")
        .expect("run returns Ok");
}

/// The FINISHED reports sent, as (job id, exit code), by job id.
fn finished(controller: &Controller) -> Vec<(u64, i32)> {
    let mut ended: Vec<(u64, i32)> = controller.with(|s| {
        s.reports
            .iter()
            .filter(|r| r.kind == Kind::Finished as i32)
            .map(|r| (r.job_id, r.exit_code))
            .collect()
    });
    ended.sort_unstable();
    ended
}

fn kinds(reports: &[JobReport]) -> Vec<(u64, i32, i32, i32)> {
    reports
        .iter()
        .map(|r| (r.job_id, r.kind, r.exit_code, r.signal))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_stops_and_reports_through_a_failover() {
    let (tmp, work) = scratch();
    let controller = Controller::default();
    controller.with(|s| {
        s.applied_index = 5;
        s.refuse_reports = 2;
        s.jobs = vec![
            job(1, true, &work, "#!/bin/sh\necho ran >> count\nexit 3\n"),
            job(2, false, &work, "#!/bin/sh\necho never > job2\n"),
            job(3, true, &work, "#!/bin/sh\nexec sleep 300\n"),
        ];
    });
    let addr = serve(controller.clone()).await;
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(
        config("n1", vec![dead_addr(), addr], &tmp.path().join("state")),
        shutdown.clone(),
    ));

    wait_until("jobs 1 and 3 to finish", || {
        finished(&controller).len() == 2
    })
    .await;
    // The stale assignment still lists job 1 with run = true: it must not run again.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (registered, refused, refused_calls, reports) = controller.with(|s| {
        (
            s.registered.clone(),
            s.refused_ids.clone(),
            s.refused_calls,
            s.reports.clone(),
        )
    });
    assert_eq!(registered.len(), 1);
    assert_eq!(
        (registered[0].cpus, registered[0].real_memory_mb),
        (2, 1024)
    );
    assert_eq!(registered[0].name, "n1");

    let started = Kind::Started as i32;
    let finished = Kind::Finished as i32;
    let mut got = kinds(&reports);
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, started, 0, 0),
            (1, finished, 3, 0),
            (3, started, 0, 0),
            (3, finished, 0, libc::SIGTERM),
        ]
    );
    // Refused reports were retried with the same request id (two calls were refused: one
    // batch of reports made at once, or one report, each).
    assert_eq!(refused_calls, 2);
    assert!(!refused.is_empty());
    for id in &refused {
        assert!(
            reports.iter().any(|r| &r.request_id == id),
            "{id} never re-sent"
        );
    }
    let mut ids: Vec<_> = reports.iter().map(|r| r.request_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each report delivered once");

    assert_eq!(
        std::fs::read_to_string(work.join("count")).expect("count"),
        "ran\n"
    );
    assert!(
        !work.join("job2").exists(),
        "only the batch host runs the script"
    );
    // Its polls name the runs it ended: their leaving the node need not wake it.
    assert_eq!(
        controller.with(|s| s.polled_ended.clone()),
        [(1, 0), (3, 0)]
    );
    let pending = Store::open(&tmp.path().join("state"))
        .expect("state")
        .load_pending()
        .expect("pending reports");
    assert!(pending.is_empty(), "{pending:?}");

    stop(shutdown, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_reports_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let controller = Controller::default();
    controller.with(|s| {
        s.applied_index = 1;
        s.refuse_reports = u32::MAX;
        s.jobs = vec![job(7, true, tmp.path(), "#!/bin/sh\nexit 0\n")];
    });
    let addr = serve(controller.clone()).await;

    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(
        config("n2", vec![addr.clone()], &state),
        shutdown.clone(),
    ));
    let on_disk = || {
        Store::open(&state)
            .and_then(|s| s.load_pending())
            .expect("pending reports")
    };
    wait_until("the FINISHED report to be kept on disk", || {
        on_disk().iter().any(|r| r.kind == ReportKind::Finished)
    })
    .await;
    wait_until("the first report to be tried", || {
        controller.with(|s| !s.refused_ids.is_empty())
    })
    .await;
    stop(shutdown, daemon).await;
    let kept = on_disk();
    let kept_ids: Vec<String> = kept.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(kept_ids.len(), 2, "{kept:?}");
    let refused = controller.with(|s| s.refused_ids.clone());
    assert!(
        refused.contains(&kept_ids[0]),
        "the first report was being retried"
    );

    // The controller recovers, and still lists the job (its report was never applied).
    controller.with(|s| s.refuse_reports = 0);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(config("n2", vec![addr], &state), shutdown.clone()));
    wait_until("both reports to arrive", || {
        controller.with(|s| s.reports.len() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reports = controller.with(|s| s.reports.clone());
    assert_eq!(
        kinds(&reports),
        vec![
            (7, Kind::Started as i32, 0, 0),
            (7, Kind::Finished as i32, 0, 0)
        ],
        "re-sent in order, and the job was not run again"
    );
    let sent_ids: Vec<String> = reports.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(sent_ids, kept_ids, "same request ids after the restart");
    stop(shutdown, daemon).await;
}

/// A machine restart empties the runtime directory (a tmpfs) and ends the supervisors: the
/// run the daemon had launched is reported lost when it starts again, never launched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_directory_is_gone_is_reported_lost_not_run_again() {
    let (tmp, work) = scratch();
    let state = tmp.path().join("state");
    let runtime = tmp.path().join("runtime");
    let controller = Controller::default();
    controller.with(|s| {
        s.applied_index = 1;
        s.jobs = vec![job(
            9,
            true,
            &work,
            "#!/bin/sh\necho ran >> count\nexec sleep 60\n",
        )];
    });
    let addr = serve(controller.clone()).await;
    let cfg = || NodeConfig {
        runtime_dir: Some(runtime.clone()),
        ..config("n4", vec![addr.clone()], &state)
    };

    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(cfg(), shutdown.clone()));
    wait_until("the job to start", || {
        controller.with(|s| s.reports.iter().any(|r| r.job_id == 9))
    })
    .await;
    let script_pid = controller.with(|s| s.reports[0].pid);
    assert!(
        runtime.join("jobs/9").is_dir(),
        "the job's directory is in the runtime directory"
    );
    stop(shutdown, daemon).await;

    // The machine restarts: the supervisor and the job die, the tmpfs comes back empty.
    let record =
        std::fs::read_to_string(runtime.join("jobs/9/supervisor.json")).expect("supervisor record");
    let supervisor: serde_json::Value = serde_json::from_str(&record).expect("json");
    let supervisor_pid = supervisor["pid"].as_u64().expect("pid").to_string();
    // The daemon's zygote forked it: it is named after its job, leads a process group of its
    // own, and outlives the daemon, whose zygote is gone with it.
    let cmdline = std::fs::read(format!("/proc/{supervisor_pid}/cmdline")).expect("alive");
    assert!(
        cmdline.starts_with(b"drover-stepd: job 9\0"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    let stat = std::fs::read_to_string(format!("/proc/{supervisor_pid}/stat")).expect("stat");
    let pgrp = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .nth(2);
    assert_eq!(pgrp, Some(supervisor_pid.as_str()), "its own process group");
    let zygotes: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("--zygote") && c.contains(&*runtime.to_string_lossy()))
        .collect();
    assert!(
        zygotes.is_empty(),
        "the zygote outlived its daemon: {zygotes:?}"
    );
    for target in [supervisor_pid, format!("-{script_pid}")] {
        #[allow(clippy::disallowed_methods)] // the test plays the machine going down
        let killed = std::process::Command::new("kill")
            .args(["-9", "--", &target])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 {target}");
    }
    std::fs::remove_dir_all(&runtime).expect("empty the runtime directory");

    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(cfg(), shutdown.clone()));
    wait_until("the lost run to be reported", || {
        controller.with(|s| s.reports.len() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reports = controller.with(|s| s.reports.clone());
    assert_eq!(
        kinds(&reports),
        vec![
            (9, Kind::Started as i32, 0, 0),
            (9, Kind::Finished as i32, 1, 0)
        ]
    );
    assert!(
        reports[1]
            .message
            .contains("directory on this node is gone"),
        "{}",
        reports[1].message
    );
    assert_eq!(
        std::fs::read_to_string(work.join("count")).expect("count"),
        "ran\n",
        "the job was not launched again"
    );
    stop(shutdown, daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_when_the_supervisor_binary_cannot_be_a_zygote() {
    use std::os::unix::fs::PermissionsExt as _;
    let (tmp, work) = scratch();
    // An older supervisor binary: it knows `supervise --job`, not `--zygote`.
    let old = tmp.path().join("old-stepd");
    std::fs::write(
        &old,
        format!(
            "#!/bin/sh\ncase \"$*\" in *--zygote*) echo 'unknown flag' >&2; exit 2;; esac\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_drover-supervise")
        ),
    )
    .expect("write");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let controller = Controller::default();
    controller.with(|s| {
        s.applied_index = 1;
        s.jobs = vec![
            job(11, true, &work, "#!/bin/sh\necho one >> ran\n"),
            job(12, true, &work, "#!/bin/sh\necho two >> ran\nexit 3\n"),
        ];
    });
    let addr = serve(controller.clone()).await;
    let cfg = NodeConfig {
        supervisor_exe: old,
        ..config("n5", vec![addr], &tmp.path().join("state"))
    };
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(cfg, shutdown.clone()));
    wait_until("both jobs to finish", || finished(&controller).len() == 2).await;
    assert_eq!(finished(&controller), vec![(11, 0), (12, 3)]);
    let mut ran: Vec<String> = std::fs::read_to_string(work.join("ran"))
        .expect("ran")
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    assert_eq!(ran, ["one", "two"], "each job ran once");
    stop(shutdown, daemon).await;
}

/// Each running job holds its own cgroup slot (whose spare cgroup it reuses); a restarted
/// daemon takes the slots of the runs it finds again from their specs, and a job's slot is
/// the next job's once it has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_running_job_holds_its_own_cgroup_slot_across_a_restart() {
    let (tmp, work) = scratch();
    let state = tmp.path().join("state");
    let runtime = tmp.path().join("runtime");
    let controller = Controller::default();
    let sleeper = |id: u64| job(id, true, &work, "#!/bin/sh\nexec sleep 60\n");
    controller.with(|s| {
        s.applied_index = 1;
        s.jobs = vec![sleeper(21), sleeper(22)];
    });
    let addr = serve(controller.clone()).await;
    let cfg = || NodeConfig {
        runtime_dir: Some(runtime.clone()),
        ..config("n5", vec![addr.clone()], &state)
    };
    let slot = |id: u64| {
        let spec = std::fs::read(runtime.join(format!("jobs/{id}/supervise.json")))
            .expect("the job's spec");
        let spec: serde_json::Value = serde_json::from_slice(&spec).expect("json");
        spec["cgroup_slot"].as_u64()
    };
    let started = |ids: &[u64]| {
        controller.with(|s| {
            ids.iter().all(|id| {
                s.reports
                    .iter()
                    .any(|r| r.job_id == *id && r.kind == Kind::Started as i32)
            })
        })
    };
    let change = |f: &dyn Fn(&mut Vec<Assignment>)| {
        controller.with(|s| {
            f(&mut s.jobs);
            s.applied_index += 1;
        });
    };

    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(cfg(), shutdown.clone()));
    wait_until("jobs 21 and 22 to start", || started(&[21, 22])).await;
    let mut first = [slot(21), slot(22)];
    first.sort_unstable();
    assert_eq!(first, [Some(0), Some(1)]);
    stop(shutdown, daemon).await;

    // The jobs ran on while the daemon was away; a new one must not take their slots.
    change(&|jobs| jobs.push(sleeper(23)));
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(cfg(), shutdown.clone()));
    wait_until("job 23 to start", || started(&[23])).await;
    assert_eq!(
        slot(23),
        Some(2),
        "slots 0 and 1 are held by the runs found again"
    );

    // Job 21 is over: its slot is the next job's.
    let freed = slot(21);
    change(&|jobs| jobs.retain(|j| j.job_id != 21));
    wait_until("job 21 to end", || {
        finished(&controller).iter().any(|(id, _)| *id == 21)
    })
    .await;
    change(&|jobs| jobs.push(sleeper(24)));
    wait_until("job 24 to start", || started(&[24])).await;
    assert_eq!(slot(24), freed);

    change(&|jobs| jobs.clear());
    wait_until("every job to end", || finished(&controller).len() == 4).await;
    stop(shutdown, daemon).await;
}
