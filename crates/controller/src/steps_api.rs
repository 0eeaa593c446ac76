//! The `Steps` service: srun creates and ends the steps of a running job, and ends the job it
//! allocated for itself outside any allocation. All are writes
//! through the log (apply decides: the job must be running, the step must fit its
//! allocation); the reply names the step's nodes with the addresses their daemons registered,
//! so that srun talks to them directly.

use crate::write::{self, Peers};
use drover_consensus::Replica;
use drover_proto as pb;
use drover_scheduler::steps::StepRequest;
use drover_scheduler::{Command, JobId, Reply};
use tonic::{Request as Rpc, Response, Status};

pub struct StepsService {
    pub replica: Replica,
    pub peers: Peers,
}

#[tonic::async_trait]
impl pb::steps_server::Steps for StepsService {
    async fn create_step(
        &self,
        request: Rpc<pb::CreateStepRequest>,
    ) -> Result<Response<pb::CreateStepReply>, Status> {
        let req = request.into_inner();
        let command = Command::StartStep {
            job_id: JobId(req.job_id),
            uid: req.uid,
            name: req.name,
            request: StepRequest {
                ntasks: req.ntasks,
                nodes: (req.nodes > 0).then_some(req.nodes),
                ntasks_per_node: (req.ntasks_per_node > 0).then_some(req.ntasks_per_node),
                cpus_per_task: req.cpus_per_task.max(1),
            },
        };
        let (index, reply) =
            write::write_one(&self.replica, &self.peers, req.request_id, command).await?;
        match reply {
            Some(Reply::StepStarted { step_id, layout }) => {
                // The addresses as this replica knows them (it has applied the step's entry).
                let (nodes, _) = self.replica.read(|s| {
                    layout
                        .iter()
                        .map(|(name, tasks)| pb::StepNode {
                            name: name.clone(),
                            addr: s
                                .nodes
                                .get(name)
                                .map(|n| n.reg.addr.clone())
                                .unwrap_or_default(),
                            tasks: *tasks,
                        })
                        .collect::<Vec<_>>()
                });
                Ok(Response::new(pb::CreateStepReply {
                    step_id,
                    nodes,
                    applied_index: index,
                }))
            }
            Some(Reply::Rejected(r)) => Err(Status::failed_precondition(r.to_string())),
            other => Err(Status::internal(format!(
                "unexpected reply to a step: {other:?}"
            ))),
        }
    }

    async fn end_step(
        &self,
        request: Rpc<pb::EndStepRequest>,
    ) -> Result<Response<pb::EndStepReply>, Status> {
        let req = request.into_inner();
        let command = Command::EndStep {
            job_id: JobId(req.job_id),
            step_id: req.step_id,
            exit_code: req.exit_code,
            signal: req.signal,
        };
        let applied_index = write_accepted(self, req.request_id, command).await?;
        Ok(Response::new(pb::EndStepReply { applied_index }))
    }

    async fn complete_allocation(
        &self,
        request: Rpc<pb::CompleteAllocationRequest>,
    ) -> Result<Response<pb::CompleteAllocationReply>, Status> {
        let req = request.into_inner();
        let command = Command::CompleteAllocation {
            job_id: JobId(req.job_id),
            uid: req.uid,
            exit_code: req.exit_code,
            signal: req.signal,
        };
        let applied_index = write_accepted(self, req.request_id, command).await?;
        Ok(Response::new(pb::CompleteAllocationReply { applied_index }))
    }
}

/// Writes `command` and answers with the applied index, or with apply's refusal in Slurm's
/// words (`FailedPrecondition`).
async fn write_accepted(
    service: &StepsService,
    request_id: String,
    command: Command,
) -> Result<u64, Status> {
    let (index, reply) =
        write::write_one(&service.replica, &service.peers, request_id, command).await?;
    match reply {
        Some(Reply::Rejected(r)) => Err(Status::failed_precondition(r.to_string())),
        _ => Ok(index),
    }
}
