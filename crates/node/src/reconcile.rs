//! `reconcile(desired, actual) -> Vec<Action>`: what the daemon must do so that what runs here
//! matches what the applied cluster state assigns to this node. Pure (STYLE P1, P12): the
//! daemon loop gathers `actual`, calls this, then carries out the actions.
//!
//! Rules:
//! - only the batch host runs the script: an assignment with `batch_host == false` is never
//!   launched here (a job without a script, srun's own allocation, is launched all the same:
//!   its supervisor holds its time limit and reports its end);
//! - `run == true`, not running, never finished here → [`Action::Launch`];
//! - `run == false` and running → [`Action::Stop`] (`Cancelled`);
//! - `run == false` on the batch host, neither running nor finished here → [`Action::Gone`]:
//!   the job was cancelled before this daemon ever started it (say, while the daemon was down),
//!   and only this node's report can end its COMPLETING state (jepsen/README.md finding 1);
//! - running here but not listed at all → [`Action::Stop`] (`NotAssigned`): the cluster no
//!   longer knows the job on this node (Slurm kills such orphans too);
//! - a job that finished here (or failed to launch) is never launched again, even when a
//!   stale assignment still lists it — unless the assignment is a later run of it (requeued:
//!   `restarts` higher than the run that finished);
//! - a job already being stopped is not stopped twice;
//! - running here as an earlier run than the one assigned (the job was requeued while this
//!   node ran it: its node failed, or this one was cut off) → [`Action::Stop`]
//!   (`Superseded`); the assigned run is launched by a later reconcile, once this one ended,
//!   so the two never run at once.

use std::collections::{BTreeMap, BTreeSet};

use drover_proto::Assignment;

/// What this node is doing, as far as reconcile needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actual {
    /// Jobs whose script runs here now (including those being stopped).
    pub running: BTreeSet<u64>,
    /// Running jobs already asked to stop.
    pub stopping: BTreeSet<u64>,
    /// The run (times requeued) of each running job.
    pub runs: BTreeMap<u64, u32>,
    /// Jobs that ran here and ended, or failed to launch, with the run that did (times
    /// requeued): never launched again for that run.
    pub finished: BTreeMap<u64, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The assignment says `run == false` (cancelled, timed out, …).
    Cancelled,
    /// The applied state no longer lists the job for this node.
    NotAssigned,
    /// The applied state assigns a later run of the job than the one running here.
    Superseded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start the batch script of this assignment.
    Launch(Box<Assignment>),
    /// Terminate the job's process group (SIGTERM, then SIGKILL after a grace).
    Stop { job_id: u64, reason: StopReason },
    /// Report a job that never started here and must not start any more as ended; `restarts`
    /// is the run that never started (a requeued job's next run may be cancelled before it
    /// starts on the node where an earlier run ended).
    Gone { job_id: u64, restarts: u32 },
}

/// Compares the assignments of one applied state with what runs here. Actions come out in job
/// id order (stops and launches interleaved), each job at most once.
pub fn reconcile(desired: &[Assignment], actual: &Actual) -> Vec<Action> {
    let mut by_id: Vec<&Assignment> = desired.iter().collect();
    by_id.sort_by_key(|a| a.job_id);

    let listed: BTreeSet<u64> = by_id.iter().map(|a| a.job_id).collect();
    let mut decided = BTreeSet::new();
    let mut actions = Vec::new();

    for a in by_id {
        if !decided.insert(a.job_id) {
            // A job listed twice: the first entry wins.
            continue;
        }
        let running = actual.running.contains(&a.job_id);
        let done_here = actual
            .finished
            .get(&a.job_id)
            .is_some_and(|&run| run >= a.restarts);
        let earlier_run = actual
            .runs
            .get(&a.job_id)
            .is_some_and(|&run| run < a.restarts);
        if a.run {
            if a.batch_host && !running && !done_here {
                actions.push(Action::Launch(Box::new(a.clone())));
            } else if running && earlier_run && !actual.stopping.contains(&a.job_id) {
                actions.push(Action::Stop {
                    job_id: a.job_id,
                    reason: StopReason::Superseded,
                });
            }
        } else if running {
            if !actual.stopping.contains(&a.job_id) {
                actions.push(Action::Stop {
                    job_id: a.job_id,
                    reason: StopReason::Cancelled,
                });
            }
        } else if a.batch_host && !done_here {
            actions.push(Action::Gone {
                job_id: a.job_id,
                restarts: a.restarts,
            });
        }
    }
    for &job_id in &actual.running {
        if !listed.contains(&job_id) && !actual.stopping.contains(&job_id) {
            actions.push(Action::Stop {
                job_id,
                reason: StopReason::NotAssigned,
            });
        }
    }
    actions.sort_by_key(|a| match a {
        Action::Launch(a) => a.job_id,
        Action::Stop { job_id, .. } | Action::Gone { job_id, .. } => *job_id,
    });
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(job_id: u64, run: bool, batch_host: bool) -> Assignment {
        Assignment {
            job_id,
            run,
            batch_host,
            name: format!("job{job_id}"),
            script: "#!/bin/sh\ntrue\n".into(),
            ..Assignment::default()
        }
    }

    fn actual(running: &[u64], stopping: &[u64], finished: &[u64]) -> Actual {
        Actual {
            running: running.iter().copied().collect(),
            stopping: stopping.iter().copied().collect(),
            runs: running.iter().map(|&id| (id, 0)).collect(),
            finished: finished.iter().map(|&id| (id, 0)).collect(),
        }
    }

    fn launched(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Launch(a) => Some(a.job_id),
                Action::Stop { .. } | Action::Gone { .. } => None,
            })
            .collect()
    }

    #[test]
    fn launches_new_batch_host_jobs_only() {
        let desired = [job(3, true, true), job(1, true, true), job(2, true, false)];
        let actions = reconcile(&desired, &Actual::default());
        assert_eq!(launched(&actions), vec![1, 3]);
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn running_jobs_are_not_launched_again() {
        let desired = [job(1, true, true), job(2, true, true)];
        let actions = reconcile(&desired, &actual(&[1], &[], &[]));
        assert_eq!(launched(&actions), vec![2]);
    }

    /// A stale assignment (read before the finish report was applied) must never relaunch.
    #[test]
    fn finished_jobs_are_never_relaunched() {
        let desired = [job(1, true, true), job(2, true, true)];
        let actions = reconcile(&desired, &actual(&[], &[], &[1, 2]));
        assert!(actions.is_empty(), "{actions:?}");
    }

    /// A requeued job runs again here: an assignment with a higher run launches, a stale one
    /// of the run that ended does not.
    #[test]
    fn a_later_run_of_a_finished_job_launches() {
        let mut again = job(1, true, true);
        again.restarts = 1;
        let mut stale = job(2, true, true);
        stale.restarts = 1;
        let mut done = actual(&[], &[], &[1]);
        done.finished.insert(2, 1);
        let actions = reconcile(&[again, stale], &done);
        assert_eq!(launched(&actions), vec![1]);
    }

    #[test]
    fn cancelled_running_jobs_stop_once() {
        let desired = [
            job(1, false, true),
            job(2, false, true),
            job(3, false, true),
        ];
        let actions = reconcile(&desired, &actual(&[1, 2], &[2], &[3]));
        assert_eq!(
            actions,
            vec![Action::Stop {
                job_id: 1,
                reason: StopReason::Cancelled
            }]
        );
    }

    /// Reference: jepsen/README.md finding 1. Cancelled while this node's daemon was down:
    /// the batch host reports it gone (once: then it is finished here); other nodes do nothing.
    #[test]
    fn cancelled_jobs_never_started_here_are_reported_gone_by_the_batch_host() {
        let desired = [
            job(1, false, true),
            job(2, false, false),
            job(3, false, true),
        ];
        assert_eq!(
            reconcile(&desired, &actual(&[], &[], &[3])),
            vec![Action::Gone {
                job_id: 1,
                restarts: 0
            }]
        );
    }

    /// A requeued job whose first run ended here, assigned here again and cancelled before its
    /// second run started: reconcile asks for the second run to be reported gone, naming that
    /// run (the daemon then records it as a new end instead of taking the first run's end for
    /// it: jepsen finding 3, a job stuck in COMPLETING).
    #[test]
    fn a_later_run_cancelled_before_it_started_is_reported_gone() {
        let mut second = job(1, false, true);
        second.restarts = 1;
        let mut ended_first = actual(&[], &[], &[]);
        ended_first.finished.insert(1, 0);
        assert_eq!(
            reconcile(&[second.clone()], &ended_first),
            vec![Action::Gone {
                job_id: 1,
                restarts: 1
            }]
        );
        let mut ended_second = actual(&[], &[], &[]);
        ended_second.finished.insert(1, 1);
        assert_eq!(reconcile(&[second], &ended_second), vec![]);
    }

    #[test]
    fn unlisted_running_jobs_are_stopped() {
        let desired = [job(1, true, true)];
        let actions = reconcile(&desired, &actual(&[1, 7, 9], &[9], &[]));
        assert_eq!(
            actions,
            vec![Action::Stop {
                job_id: 7,
                reason: StopReason::NotAssigned
            }]
        );
    }

    /// A job requeued (its other node failed) while its first run went on here: the later
    /// run is assigned here too. The first run is stopped; the later one is launched only
    /// once it has ended, never beside it (review of node-failure requeue).
    #[test]
    fn an_earlier_run_is_stopped_before_the_assigned_run_starts() {
        let next = Assignment {
            restarts: 1,
            ..job(7, true, true)
        };
        let actions = reconcile(std::slice::from_ref(&next), &actual(&[7], &[], &[]));
        assert_eq!(
            actions,
            vec![Action::Stop {
                job_id: 7,
                reason: StopReason::Superseded
            }]
        );
        // Asked already: nothing more while it stops.
        assert!(reconcile(std::slice::from_ref(&next), &actual(&[7], &[7], &[])).is_empty());
        // The first run has ended: the assigned one starts.
        assert_eq!(
            launched(&reconcile(
                std::slice::from_ref(&next),
                &actual(&[], &[], &[7])
            )),
            vec![7]
        );
        // The same run assigned: it just goes on.
        assert!(reconcile(&[job(7, true, true)], &actual(&[7], &[], &[])).is_empty());
    }

    #[test]
    fn duplicate_entries_launch_once() {
        let desired = [job(5, true, true), job(5, true, true)];
        assert_eq!(launched(&reconcile(&desired, &Actual::default())), vec![5]);
    }

    #[test]
    fn mixed_state_gives_one_action_per_job_in_id_order() {
        let desired = [
            job(4, true, true),  // launch
            job(2, false, true), // stop (running)
            job(3, true, true),  // running: nothing
            job(1, true, true),  // finished: nothing
        ];
        let actions = reconcile(&desired, &actual(&[2, 3, 6], &[], &[1]));
        let kinds: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Launch(a) => format!("launch {}", a.job_id),
                Action::Stop { job_id, reason } => format!("stop {job_id} {reason:?}"),
                Action::Gone { job_id, .. } => format!("gone {job_id}"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec!["stop 2 Cancelled", "launch 4", "stop 6 NotAssigned"]
        );
    }
}
