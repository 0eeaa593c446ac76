//! The `Ctl` service: what the commands call. Writes go through `write::write`; reads are
//! answered from this replica's applied state once it has caught up with the client.

use crate::convert;
use crate::write::{self, Peers};
use drover_consensus::Replica;
use drover_proto as pb;
use drover_scheduler::priority::PriorityContext;
use drover_scheduler::state::{MIN_JOB_AGE_MS, USAGE_HALF_LIFE_MS};
use drover_scheduler::{
    Command, JobId, JobRef, NodeStateChange, Rejection, Reply, Request, SchedConfig,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{Request as Rpc, Response, Status};

/// How long a read waits for this replica to catch up with what the client has already seen.
pub const READ_CATCH_UP: Duration = Duration::from_secs(2);

pub fn wall_clock_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

use drover_proto::FOREIGN_INDEX;

/// Waits until this replica has applied `min_index`; a replica that stays behind says so and
/// the client tries another one.
pub async fn catch_up(
    replica: &Replica,
    consistency: Option<pb::ReadConsistency>,
) -> Result<(), Status> {
    if consistency.as_ref().is_some_and(|c| c.linearizable) {
        // A leader cut off from its quorum cannot confirm itself: bounded, then the client
        // asks another replica.
        return match tokio::time::timeout(READ_CATCH_UP, replica.ensure_linearizable()).await {
            Ok(Ok(())) => {
                // openraft 0.9 restores a leader that restarts with its vote without a new
                // election, and then reads at the index it knows committed, which can be below
                // entries committed before the restart (jepsen finding 4). Every committed
                // entry is in the confirmed leader's log: wait until all of it is applied.
                let last = replica.status().last_log_index.unwrap_or(0);
                if replica.wait_applied(last, READ_CATCH_UP).await {
                    Ok(())
                } else {
                    Err(Status::unavailable(format!(
                        "replica {} leads but has not applied its log (index {last}) yet",
                        replica.id()
                    )))
                }
            }
            Ok(Err(e)) => Err(Status::unavailable(format!(
                "replica {} cannot serve a linearizable read: {e}",
                replica.id()
            ))),
            Err(_) => Err(Status::unavailable(format!(
                "replica {} could not confirm its leadership within {READ_CATCH_UP:?}",
                replica.id()
            ))),
        };
    }
    let min_index = consistency.map(|c| c.min_index).unwrap_or(0);
    if replica.applied_index() >= min_index {
        return Ok(());
    }
    // Every index of this cluster is in its leader's log: one past it was seen elsewhere (a
    // client's cache from another cluster), and waiting would never end.
    let status = replica.status();
    let last = status.last_log_index.unwrap_or(0);
    if status.leader_id == Some(status.id) && min_index > last {
        return Err(Status::failed_precondition(format!(
            "{FOREIGN_INDEX}: the client has seen index {min_index}, this cluster's log ends at {last}"
        )));
    }
    if replica.wait_applied(min_index, READ_CATCH_UP).await {
        return Ok(());
    }
    Err(Status::unavailable(format!(
        "replica {} is behind (applied {}, client has seen {min_index})",
        replica.id(),
        replica.applied_index()
    )))
}

pub struct CtlService {
    pub replica: Replica,
    pub peers: Peers,
    /// The planner's settings (priority weights for `scontrol show job`, `show config`).
    pub sched: SchedConfig,
    /// What the records of the jobs submitted here keep (AccountingStoreFlags).
    pub store: crate::AccountingStore,
    pub shown: ShownConfig,
}

/// Settings of this replica that `scontrol show config` reports beside the state's.
#[derive(Clone, Debug, Default)]
pub struct ShownConfig {
    pub cluster_name: String,
    pub slurmd_timeout_s: u64,
    pub kill_wait_s: u64,
    /// When this replica started (unix seconds).
    pub boot_time: i64,
}

#[tonic::async_trait]
impl pb::ctl_server::Ctl for CtlService {
    async fn submit(
        &self,
        request: Rpc<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitReply>, Status> {
        let req = request.into_inner();
        let spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("submit without a job spec"))?;
        let mut spec = convert::job_spec(spec).map_err(Status::invalid_argument)?;
        spec.keep_script = self.store.job_script;
        spec.keep_env = self.store.job_env;
        let request = Request {
            request_id: req.request_id,
            command: Command::Submit(spec),
        };
        let (index, replies) = write::write(&self.replica, &self.peers, vec![request]).await?;
        match replies.into_iter().next() {
            Some(Reply::Submitted { job_id }) => Ok(Response::new(pb::SubmitReply {
                job_id: job_id.0,
                applied_index: index,
            })),
            Some(Reply::Rejected(r)) => Err(Status::invalid_argument(r.to_string())),
            other => Err(Status::internal(format!(
                "unexpected reply to a submit: {other:?}"
            ))),
        }
    }

    async fn cancel(
        &self,
        request: Rpc<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelReply>, Status> {
        let req = request.into_inner();
        let command = Command::Cancel {
            job_ids: req.job_ids.iter().map(|&i| JobId(i)).collect(),
            uid: req.uid,
        };
        let (index, reply) =
            write::write_one(&self.replica, &self.peers, req.request_id, command).await?;
        match reply {
            Some(Reply::Cancelled { outcomes }) => Ok(Response::new(pb::CancelReply {
                outcomes: outcomes
                    .into_iter()
                    .map(|(id, r)| pb::CancelOutcome {
                        job_id: id.0,
                        error: r.map(|r| r.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                applied_index: index,
            })),
            Some(Reply::Rejected(r)) => Err(Status::invalid_argument(r.to_string())),
            other => Err(Status::internal(format!(
                "unexpected reply to a cancel: {other:?}"
            ))),
        }
    }

    async fn list_jobs(
        &self,
        request: Rpc<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsReply>, Status> {
        let req = request.into_inner();
        catch_up(&self.replica, req.consistency).await?;
        let now = wall_clock_s();
        let ((jobs, state_now_ms), applied_index) = self.replica.read(|s| {
            let prio = PriorityContext::new(s, (now.max(0) as u64) * 1000);
            let jobs = if req.job_ids.is_empty() {
                s.jobs
                    .values()
                    .map(|j| convert::job_info(j, s, now, &prio, &self.sched.weights))
                    .collect::<Vec<_>>()
            } else {
                // An array's id names every record of the array.
                let mut ids: Vec<JobId> = Vec::new();
                for &id in &req.job_ids {
                    let id = JobId(id);
                    if s.is_array(id) {
                        ids.extend(s.array_records(id).map(|j| j.id));
                    } else {
                        ids.push(id);
                    }
                }
                ids.dedup();
                ids.iter()
                    .filter_map(|id| s.jobs.get(id))
                    .map(|j| convert::job_info(j, s, now, &prio, &self.sched.weights))
                    .collect()
            };
            (jobs, s.now)
        });
        Ok(Response::new(pb::ListJobsReply {
            jobs,
            applied_index,
            state_now_ms,
        }))
    }

    async fn list_nodes(
        &self,
        request: Rpc<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesReply>, Status> {
        let req = request.into_inner();
        catch_up(&self.replica, req.consistency).await?;
        let (nodes, applied_index) = self.replica.read(|s| {
            s.nodes
                .values()
                .filter(|n| req.names.is_empty() || req.names.iter().any(|x| x == n.name()))
                .map(|n| convert::node_info(n, s))
                .collect::<Vec<_>>()
        });
        Ok(Response::new(pb::ListNodesReply {
            nodes,
            applied_index,
        }))
    }

    async fn list_partitions(
        &self,
        request: Rpc<pb::ListPartitionsRequest>,
    ) -> Result<Response<pb::ListPartitionsReply>, Status> {
        let req = request.into_inner();
        catch_up(&self.replica, req.consistency).await?;
        let (partitions, applied_index) = self.replica.read(|s| {
            s.partitions
                .iter()
                .map(|p| convert::partition_info(p, s))
                .collect::<Vec<_>>()
        });
        Ok(Response::new(pb::ListPartitionsReply {
            partitions,
            applied_index,
        }))
    }

    async fn control(
        &self,
        request: Rpc<pb::ControlRequest>,
    ) -> Result<Response<pb::ControlReply>, Status> {
        use pb::control_request::Action;
        let req = request.into_inner();
        let targets: Vec<JobRef> = req
            .targets
            .iter()
            .map(|t| JobRef {
                job: JobId(t.job_id),
                task: t.task_id,
            })
            .collect();
        let uid = req.uid;
        let command = match Action::try_from(req.action) {
            Ok(Action::Cancel) => Command::CancelRefs { targets, uid },
            Ok(Action::Hold) => Command::Hold {
                targets,
                admin: true,
                uid,
            },
            Ok(Action::UserHold) => Command::Hold {
                targets,
                admin: false,
                uid,
            },
            Ok(Action::Release) => Command::Release { targets, uid },
            Ok(Action::Requeue) => Command::Requeue {
                targets,
                hold: false,
                uid,
            },
            Ok(Action::RequeueHold) => Command::Requeue {
                targets,
                hold: true,
                uid,
            },
            Ok(Action::Update) => Command::UpdateJob {
                targets,
                update: convert::job_update(req.update.unwrap_or_default())
                    .map_err(Status::invalid_argument)?,
                uid,
            },
            Ok(Action::Signal) => Command::Signal {
                targets,
                signal: req.signal,
                scope: convert::signal_scope(req.signal_scope),
                uid,
            },
            Err(_) => return Err(Status::invalid_argument("unknown control action")),
        };
        let (index, reply) =
            write::write_one(&self.replica, &self.peers, req.request_id, command).await?;
        match reply {
            Some(Reply::Outcomes { outcomes }) => Ok(Response::new(pb::ControlReply {
                outcomes: outcomes
                    .into_iter()
                    .map(|(r, e)| pb::ControlOutcome {
                        target: Some(pb::JobRef {
                            job_id: r.job.0,
                            task_id: r.task,
                        }),
                        error: e.map(|e| e.to_string()).unwrap_or_default(),
                    })
                    .collect(),
                applied_index: index,
            })),
            Some(Reply::Rejected(r)) => Err(Status::invalid_argument(r.to_string())),
            other => Err(Status::internal(format!(
                "unexpected reply to a control request: {other:?}"
            ))),
        }
    }

    async fn test_only(
        &self,
        request: Rpc<pb::SubmitRequest>,
    ) -> Result<Response<pb::TestOnlyReply>, Status> {
        let req = request.into_inner();
        let spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("submit without a job spec"))?;
        let spec = convert::job_spec(spec).map_err(Status::invalid_argument)?;
        let now = self.replica.now_ms();
        let (state, _) = self.replica.read(|s| s.clone());
        let reply = drover_scheduler::plan::test_only(state, spec, now, &self.sched)
            .map_err(|r| Status::invalid_argument(r.to_string()))?;
        Ok(Response::new(pb::TestOnlyReply {
            job_id: reply.job_id.0,
            start_time: reply.start_at.map_or(0, |t| (t / 1000) as i64),
            nodes: reply.nodes,
            cpus: reply.cpus,
            partition: reply.partition,
        }))
    }

    async fn update_node(
        &self,
        request: Rpc<pb::UpdateNodeRequest>,
    ) -> Result<Response<pb::UpdateNodeReply>, Status> {
        let req = request.into_inner();
        let reason = req.reason.trim().to_string();
        let change = match req.state.to_ascii_uppercase().as_str() {
            "DOWN" | "DRAIN" | "FAIL" if reason.is_empty() => {
                return Err(Status::invalid_argument(
                    "You must specify a reason when DOWNING or DRAINING a node. Request denied",
                ))
            }
            "DOWN" => NodeStateChange::Down { reason },
            "DRAIN" | "FAIL" => NodeStateChange::Drain { reason },
            "RESUME" | "UNDRAIN" | "IDLE" => NodeStateChange::Resume,
            other => {
                return Err(Status::invalid_argument(format!(
                    "Invalid node state specified: {other}"
                )))
            }
        };
        let requests = req
            .names
            .iter()
            .enumerate()
            .map(|(i, node)| Request {
                request_id: format!("{}-{i}", req.request_id),
                command: Command::SetNodeState {
                    node: node.clone(),
                    change: change.clone(),
                },
            })
            .collect();
        let (applied_index, replies) = write::write(&self.replica, &self.peers, requests).await?;
        for (name, reply) in req.names.iter().zip(replies) {
            if let Reply::Rejected(r) = reply {
                return Err(Status::invalid_argument(format!("{r}: {name}")));
            }
        }
        Ok(Response::new(pb::UpdateNodeReply { applied_index }))
    }

    async fn update_partition(
        &self,
        request: Rpc<pb::UpdatePartitionRequest>,
    ) -> Result<Response<pb::UpdatePartitionReply>, Status> {
        let req = request.into_inner();
        let update = convert::partition_update(&req).map_err(Status::invalid_argument)?;
        let request = Request {
            request_id: req.request_id.clone(),
            command: Command::UpdatePartition {
                name: req.name.clone(),
                update,
                uid: req.uid,
            },
        };
        let (applied_index, mut replies) =
            write::write(&self.replica, &self.peers, vec![request]).await?;
        if let Some(Reply::Rejected(r)) = replies.pop() {
            return Err(match r {
                Rejection::AccessDenied => Status::permission_denied(r.to_string()),
                _ => Status::invalid_argument(r.to_string()),
            });
        }
        Ok(Response::new(pb::UpdatePartitionReply { applied_index }))
    }

    async fn ping(
        &self,
        _request: Rpc<pb::PingRequest>,
    ) -> Result<Response<pb::PingReply>, Status> {
        let leadership = self.replica.leadership().borrow().clone();
        let members = self.replica.members();
        Ok(Response::new(pb::PingReply {
            replica_id: self.replica.id(),
            addr: members.get(&self.replica.id()).cloned().unwrap_or_default(),
            is_leader: leadership.is_leader,
            leader_id: leadership.leader_id.unwrap_or(0),
            leader_addr: leadership.leader_addr.unwrap_or_default(),
            term: leadership.term,
            applied_index: self.replica.applied_index(),
            members: members
                .into_iter()
                .map(|(id, addr)| pb::Member { id, addr })
                .collect(),
        }))
    }

    async fn list_records(
        &self,
        request: Rpc<pb::ListRecordsRequest>,
    ) -> Result<Response<pb::ListRecordsReply>, Status> {
        let req = request.into_inner();
        catch_up(&self.replica, req.consistency).await?;
        let ids: Vec<JobId> = req.job_ids.iter().map(|&i| JobId(i)).collect();
        let ((records, now_ms), applied_index) = self.replica.read(|s| {
            let since_ms = u64::try_from(req.ended_since).unwrap_or(0) * 1000;
            let rows = s.accounting_rows(&ids);
            (
                rows.iter()
                    .filter(|r| r.end_at.is_none_or(|e| e >= since_ms))
                    .map(convert::job_record)
                    .collect::<Vec<_>>(),
                s.now,
            )
        });
        // The cluster's clock, or this replica's when nothing was applied yet.
        let now = if now_ms == 0 {
            wall_clock_s()
        } else {
            (now_ms / 1000) as i64
        };
        Ok(Response::new(pb::ListRecordsReply {
            records,
            applied_index,
            now: now.max(wall_clock_s()),
            cluster_name: self.shown.cluster_name.clone(),
        }))
    }

    async fn show_config(
        &self,
        request: Rpc<pb::ShowConfigRequest>,
    ) -> Result<Response<pb::ShowConfigReply>, Status> {
        let req = request.into_inner();
        catch_up(&self.replica, req.consistency).await?;
        let sched = &self.sched;
        let ((next_job_id, qos), applied_index) = self.replica.read(|s| {
            let mut qos = s.qos.clone();
            if !qos.iter().any(|q| q.name == drover_scheduler::DEFAULT_QOS) {
                qos.insert(0, drover_scheduler::Qos::normal());
            }
            (s.next_job_id, qos)
        });
        Ok(Response::new(pb::ShowConfigReply {
            cluster_name: self.shown.cluster_name.clone(),
            controllers: self.replica.members().into_values().collect(),
            min_job_age_s: MIN_JOB_AGE_MS / 1000,
            max_array_size: u64::from(drover_scheduler::depend::MAX_ARRAY_SIZE),
            slurmd_timeout_s: self.shown.slurmd_timeout_s,
            kill_wait_s: self.shown.kill_wait_s,
            accounting_store_flags: self.store.flags(),
            backfill: sched.backfill,
            bf_window_s: sched.bf_window_s,
            bf_resolution_s: sched.bf_resolution_s,
            bf_max_job_test: sched.bf_max_job_test as u64,
            bf_job_part_count_reserve: sched.bf_job_part_count_reserve as u64,
            next_job_id,
            boot_time: self.shown.boot_time,
            version: env!("CARGO_PKG_VERSION").to_string(),
            weight_age: u64::from(sched.weights.age),
            weight_fairshare: u64::from(sched.weights.fairshare),
            weight_job_size: u64::from(sched.weights.job_size),
            weight_partition: u64::from(sched.weights.partition),
            weight_qos: u64::from(sched.weights.qos),
            priority_max_age_s: sched.weights.max_age_s,
            priority_decay_half_life_s: USAGE_HALF_LIFE_MS / 1000,
            applied_index,
            qos: qos
                .into_iter()
                .map(|q| pb::QosInfo {
                    name: q.name,
                    priority: q.priority,
                    max_wall_min: q.max_wall_min,
                    max_jobs_per_user: q.max_jobs_per_user,
                })
                .collect(),
        }))
    }
}
