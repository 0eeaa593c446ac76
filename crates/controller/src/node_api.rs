//! The `NodeCtl` service: node daemons register, heartbeat, watch their assignments and report.
//!
//! Assignments come from this replica's applied state (fencing: a daemon acts only on committed
//! state). Heartbeats reach the leader's liveness tracker: a follower passes them on.

use crate::convert;
use crate::liveness::Liveness;
use crate::write::{self, Peers};
use convert::AssignmentKey;
use drover_consensus::Replica;
use drover_proto as pb;
use drover_scheduler::{Command, EndCause, Job, JobId, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
use tonic::{Request as Rpc, Response, Status};

/// The longest an assignments poll is held open.
const MAX_POLL: Duration = Duration::from_secs(30);

pub struct NodeService {
    pub replica: Replica,
    pub peers: Peers,
    pub liveness: Liveness,
    /// Per node: the applied index of the last assignments answered here and the keys of
    /// what they held. A poll that comes from that answer (`after_index` equal) waits for a
    /// change from it, even when other entries were applied meanwhile.
    pub answered: Mutex<BTreeMap<String, (u64, Vec<AssignmentKey>)>>,
}

/// Whether `a` and `b` hold the same keys, leaving out the runs in `ended`.
fn same_keys(a: &[AssignmentKey], b: &[AssignmentKey], ended: &BTreeSet<(u64, u32)>) -> bool {
    let live = |k: &&AssignmentKey| !ended.contains(&k.run());
    a.iter().filter(live).eq(b.iter().filter(live))
}

#[tonic::async_trait]
impl pb::node_ctl_server::NodeCtl for NodeService {
    async fn register(
        &self,
        request: Rpc<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("a node must have a name"));
        }
        self.liveness.seen(&req.name);
        let request_id = req.request_id.clone();
        let command = Command::RegisterNode(convert::registration(req));
        let (applied_index, _) = write::write(
            &self.replica,
            &self.peers,
            vec![Request {
                request_id,
                command,
            }],
        )
        .await?;
        Ok(Response::new(pb::RegisterReply { applied_index }))
    }

    async fn heartbeat(
        &self,
        request: Rpc<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let forwarded = request.metadata().contains_key("x-drover-forwarded");
        let req = request.into_inner();
        self.liveness.seen(&req.name);
        let leadership = self.replica.leadership().borrow().clone();
        if !leadership.is_leader && !forwarded {
            if let (Some(id), Some(addr)) = (leadership.leader_id, leadership.leader_addr) {
                if id != self.replica.id() {
                    // Best effort: the leader also learns of the node from its next heartbeat.
                    if let Some(link) = self.peers.link() {
                        if let Ok(reply) = link.heartbeat(&addr, req.clone()).await {
                            return Ok(Response::new(reply));
                        }
                    } else if let Ok(channel) = self.peers.channel(&addr) {
                        let mut client = pb::node_ctl_client::NodeCtlClient::new(channel);
                        let mut fwd = Rpc::new(req.clone());
                        fwd.metadata_mut().insert(
                            "x-drover-forwarded",
                            tonic::metadata::MetadataValue::from_static("1"),
                        );
                        fwd.set_timeout(Duration::from_millis(500));
                        if let Ok(reply) = client.heartbeat(fwd).await {
                            return Ok(reply);
                        }
                    }
                }
            }
        }
        let (known, _) = self
            .replica
            .read(|s| s.nodes.get(&req.name).is_some_and(|n| !n.not_responding));
        Ok(Response::new(pb::HeartbeatReply { known }))
    }

    async fn assignments(
        &self,
        request: Rpc<pb::AssignmentsRequest>,
    ) -> Result<Response<pb::AssignmentsReply>, Status> {
        let req = request.into_inner();
        let wait = Duration::from_millis(u64::from(req.wait_ms)).min(MAX_POLL);
        let deadline = tokio::time::Instant::now() + wait;
        let name = req.name;
        // Runs the daemon has ended: their changes (their leaving the node) wake nobody.
        let ended: BTreeSet<(u64, u32)> =
            req.ended.iter().map(|r| (r.job_id, r.restarts)).collect();
        let keys = || {
            self.replica.read(|s| {
                jobs_on(s, &name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(convert::assignment_key)
                    .collect::<Vec<_>>()
            })
        };
        let (now, applied_index) = keys();
        // What the daemon holds: this very state, or the last answer it had from here.
        let held = if applied_index <= req.after_index {
            Some(now)
        } else {
            lock(&self.answered)
                .get(&name)
                .filter(|(index, _)| *index == req.after_index)
                .map(|(_, held)| held.clone())
                .filter(|held| same_keys(held, &now, &ended))
        };
        if let Some(baseline) = held {
            // The daemon is up to date: answer when *its* assignments change (or at the
            // deadline), not at every entry the cluster applies. Each applied entry costs a
            // comparison of what can change (`AssignmentKey`), not building them all.
            let mut applied = self.replica.applied_watch();
            while let Ok(Ok(())) = tokio::time::timeout_at(deadline, applied.changed()).await {
                if !same_keys(&keys().0, &baseline, &ended) {
                    break;
                }
            }
        }
        let ((jobs, keys, known), applied_index) =
            self.replica.read(|s| match s.nodes.get(&name) {
                None => (Vec::new(), Vec::new(), false),
                Some(node) => {
                    let on = jobs_on(s, &name).unwrap_or_default();
                    (
                        on.iter().map(|j| convert::assignment(j, &name)).collect(),
                        on.into_iter().map(convert::assignment_key).collect(),
                        !node.not_responding,
                    )
                }
            });
        lock(&self.answered).insert(name, (applied_index, keys));
        Ok(Response::new(pb::AssignmentsReply {
            applied_index,
            jobs,
            known,
        }))
    }

    async fn report_job(
        &self,
        request: Rpc<pb::JobReport>,
    ) -> Result<Response<pb::JobReportReply>, Status> {
        let req = request.into_inner();
        self.liveness.seen(&req.node);
        let request_id = req.request_id.clone();
        let command = report_command(req)?;
        let (applied_index, _) =
            write::write_one(&self.replica, &self.peers, request_id, command).await?;
        Ok(Response::new(pb::JobReportReply { applied_index }))
    }

    async fn report_jobs(
        &self,
        request: Rpc<pb::JobReports>,
    ) -> Result<Response<pb::JobReportReply>, Status> {
        let req = request.into_inner();
        self.liveness.seen(&req.node);
        let requests = req
            .reports
            .into_iter()
            .map(|r| {
                Ok(Request {
                    request_id: r.request_id.clone(),
                    command: report_command(r)?,
                })
            })
            .collect::<Result<Vec<Request>, Status>>()?;
        if requests.is_empty() {
            return Err(Status::invalid_argument("a report batch without reports"));
        }
        let (applied_index, _) = write::write(&self.replica, &self.peers, requests).await?;
        Ok(Response::new(pb::JobReportReply { applied_index }))
    }
}

/// A node's report in the log's terms, tied to its run (`Command::RunReport`): a plain exit
/// stays `JobFinished`; a cause or usage needs `JobEnded`.
fn report_command(req: pb::JobReport) -> Result<Command, Status> {
    let job_id = JobId(req.job_id);
    let node = req.node;
    let report = match pb::job_report::Kind::try_from(req.kind) {
        Ok(pb::job_report::Kind::Started) => Command::JobStarted {
            job_id,
            node,
            pid: req.pid,
        },
        Ok(pb::job_report::Kind::Finished)
            if req.cause == pb::job_report::Cause::Exited as i32
                && req.max_rss_kb == 0
                && req.total_cpu_ms == 0 =>
        {
            Command::JobFinished {
                job_id,
                node,
                exit_code: req.exit_code,
                signal: req.signal,
            }
        }
        Ok(pb::job_report::Kind::Finished) => Command::JobEnded {
            job_id,
            node,
            exit_code: req.exit_code,
            signal: req.signal,
            cause: match pb::job_report::Cause::try_from(req.cause) {
                Ok(pb::job_report::Cause::TimeLimit) => EndCause::TimeLimit,
                Ok(pb::job_report::Cause::OutOfMemory) => EndCause::OutOfMemory,
                Ok(pb::job_report::Cause::Stopped) => EndCause::Stopped,
                Ok(pb::job_report::Cause::Exited) | Err(_) => EndCause::Exited,
            },
            max_rss_kb: req.max_rss_kb,
            total_cpu_ms: req.total_cpu_ms,
        },
        Ok(pb::job_report::Kind::LaunchFailed) => Command::LaunchFailed {
            job_id,
            node,
            message: req.message,
        },
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown report kind {}",
                req.kind
            )))
        }
    };
    Ok(Command::RunReport {
        restarts: req.restarts,
        report: Box::new(report),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The jobs that hold resources on node `name` (`None`: no such node).
fn jobs_on<'a>(s: &'a drover_scheduler::ClusterState, name: &str) -> Option<Vec<&'a Job>> {
    let node = s.nodes.get(name)?;
    Some(node.jobs.iter().filter_map(|id| s.jobs.get(id)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_the_daemon_ended_are_left_out_of_the_comparison() {
        let k = AssignmentKey::of_run;
        let before = [k(1, 0, true), k(2, 0, true)];
        let ended = BTreeSet::from([(1, 0)]);
        // Run 1 ended on the daemon, then left the node: no news to it.
        assert!(same_keys(&before, &[k(2, 0, true)], &ended));
        // Unless the daemon did not say it ended it.
        assert!(!same_keys(&before, &[k(2, 0, true)], &BTreeSet::new()));
        // The job's next run (requeued, and placed here again) is news.
        assert!(!same_keys(&before, &[k(1, 1, true), k(2, 0, true)], &ended));
        // So is a change to another job, or a new one.
        assert!(!same_keys(
            &before,
            &[k(1, 0, true), k(2, 0, false)],
            &ended
        ));
        assert!(!same_keys(&before, &[k(2, 0, true), k(3, 0, true)], &ended));
        assert!(same_keys(&before, &before, &ended));
    }
}
