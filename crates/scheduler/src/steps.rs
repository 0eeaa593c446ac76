//! Job steps (`srun` inside an allocation): what a step is in the replicated state, and how its
//! tasks are laid out over the job's nodes.
//!
//! ```text
//!  srun ──Command::StartStep──► apply: job RUNNING? fits the allocation? → Step { id, layout }
//!       ◄── Reply::StepStarted { step_id, layout } (ids 0, 1, 2… per run of the job)
//!  srun ──► node daemons of the layout (tasks, I/O; not through the controllers)
//!  srun ──Command::EndStep { exit_code, signal }──► apply: the step ends
//!  the job ends (or is requeued) ──► its running steps end with it
//! ```
//!
//! Reference: slurm.md §1.2 (srun; step ids `N.0`, `N.1`…), src/common/slurm_step_layout.c
//! (`_task_layout_block`: tasks spread evenly over the step's nodes within each node's CPUs,
//! numbered in node order), §2.2 (`SLURM_TASKS_PER_NODE` as `2(x3),1`).

use crate::command::Rejection;
use crate::types::{JobState, NodeShare, TimestampMs};
use serde::{Deserialize, Serialize};

/// How many ended steps a job keeps (running ones are always kept).
pub const ENDED_STEPS_KEPT: usize = 64;

/// One step of a job's current run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: u32,
    /// The command's name (srun's `-J`, or the executable).
    pub name: String,
    pub ntasks: u32,
    pub cpus_per_task: u32,
    /// Nodes of the step in order, with the number of tasks each runs; task ids are given in
    /// this order (block distribution).
    pub layout: Vec<(String, u32)>,
    pub start_at: TimestampMs,
    pub end_at: Option<TimestampMs>,
    /// `Running` until it ends; then `Completed`, `Failed` or `Cancelled`.
    pub state: JobState,
    pub exit_code: i32,
    pub exit_signal: i32,
}

impl Step {
    pub fn is_running(&self) -> bool {
        self.state == JobState::Running
    }
}

/// What srun asks for; `None`: not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRequest {
    pub ntasks: u32,
    pub nodes: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: u32,
}

/// Lays a step's tasks out over the job's nodes (in allocation order): the first `nodes` of
/// them (default: as many as there are tasks, at most all), tasks spread evenly (or
/// `ntasks_per_node` on each, filling in order), never more on a node than its CPUs allow
/// (`cpus_per_task` each). Errors carry Slurm's words.
pub fn layout(alloc: &[NodeShare], req: &StepRequest) -> Result<Vec<(String, u32)>, Rejection> {
    let cpt = req.cpus_per_task.max(1);
    if req.ntasks == 0 {
        return Err(Rejection::Invalid("Invalid number of tasks".into()));
    }
    let nodes = req.nodes.unwrap_or_else(|| {
        req.ntasks
            .min(u32::try_from(alloc.len()).unwrap_or(u32::MAX))
    }) as usize;
    if nodes == 0 || nodes > alloc.len() || req.ntasks < nodes as u32 {
        return Err(Rejection::NodeConfigUnavailable);
    }
    let caps: Vec<u32> = alloc[..nodes].iter().map(|s| s.cpus / cpt).collect();
    let mut counts = vec![0u32; nodes];
    let mut left = req.ntasks;
    match req.ntasks_per_node.filter(|&k| k > 0) {
        Some(k) => {
            for (c, &cap) in counts.iter_mut().zip(&caps) {
                let n = k.min(left);
                if n > cap {
                    return Err(Rejection::TooManyProcessors);
                }
                *c = n;
                left -= n;
            }
            if left > 0 || counts.contains(&0) {
                return Err(Rejection::NodeConfigUnavailable);
            }
        }
        None => {
            while left > 0 {
                let mut placed = false;
                for (c, &cap) in counts.iter_mut().zip(&caps) {
                    if left > 0 && *c < cap {
                        *c += 1;
                        left -= 1;
                        placed = true;
                    }
                }
                if !placed {
                    return Err(Rejection::TooManyProcessors);
                }
            }
            if counts.contains(&0) {
                return Err(Rejection::TooManyProcessors);
            }
        }
    }
    Ok(alloc[..nodes]
        .iter()
        .zip(counts)
        .map(|(s, c)| (s.node.clone(), c))
        .collect())
}

/// Slurm's compressed per-node counts: `2(x3),1`.
pub fn tasks_per_node(counts: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < counts.len() {
        let mut j = i;
        while j + 1 < counts.len() && counts[j + 1] == counts[i] {
            j += 1;
        }
        let run = j - i + 1;
        out.push(if run > 1 {
            format!("{}(x{run})", counts[i])
        } else {
            counts[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cpus: &[u32]) -> Vec<NodeShare> {
        cpus.iter()
            .enumerate()
            .map(|(i, &c)| NodeShare {
                node: format!("n{}", i + 1),
                cpus: c,
                mem_mb: 0,
                gpus: Vec::new(),
            })
            .collect()
    }

    fn req(ntasks: u32) -> StepRequest {
        StepRequest {
            ntasks,
            nodes: None,
            ntasks_per_node: None,
            cpus_per_task: 1,
        }
    }

    fn counts(l: &[(String, u32)]) -> Vec<u32> {
        l.iter().map(|(_, c)| *c).collect()
    }

    #[test]
    fn block_spreads_evenly_over_the_nodes() {
        let a = alloc(&[4, 4]);
        assert_eq!(counts(&layout(&a, &req(4)).unwrap()), [2, 2]);
        assert_eq!(counts(&layout(&a, &req(3)).unwrap()), [2, 1]);
        // One task: one node, as Slurm does ("setting nnodes to 1").
        assert_eq!(layout(&a, &req(1)).unwrap(), [("n1".to_string(), 1)]);
        // Uneven nodes: the bigger one takes what the smaller cannot.
        assert_eq!(counts(&layout(&alloc(&[6, 2]), &req(7)).unwrap()), [5, 2]);
        let two = StepRequest {
            nodes: Some(1),
            ..req(4)
        };
        assert_eq!(layout(&a, &two).unwrap(), [("n1".to_string(), 4)]);
    }

    #[test]
    fn ntasks_per_node_fills_in_order() {
        let a = alloc(&[4, 4, 4]);
        let r = StepRequest {
            ntasks_per_node: Some(3),
            nodes: Some(2),
            ..req(5)
        };
        assert_eq!(counts(&layout(&a, &r).unwrap()), [3, 2]);
        let too_many = StepRequest {
            ntasks_per_node: Some(5),
            nodes: Some(1),
            ..req(5)
        };
        assert_eq!(layout(&a, &too_many), Err(Rejection::TooManyProcessors));
    }

    #[test]
    fn beyond_the_allocation_is_refused_in_slurms_words() {
        let a = alloc(&[2, 2]);
        assert_eq!(layout(&a, &req(5)), Err(Rejection::TooManyProcessors));
        let cpt = StepRequest {
            cpus_per_task: 2,
            ..req(3)
        };
        assert_eq!(layout(&a, &cpt), Err(Rejection::TooManyProcessors));
        let nodes = StepRequest {
            nodes: Some(3),
            ..req(3)
        };
        assert_eq!(layout(&a, &nodes), Err(Rejection::NodeConfigUnavailable));
        assert!(layout(&a, &req(0)).is_err());
        let wide_cpt = StepRequest {
            cpus_per_task: 3,
            ..req(1)
        };
        assert_eq!(layout(&a, &wide_cpt), Err(Rejection::TooManyProcessors));
    }

    #[test]
    fn tasks_per_node_is_compressed_like_slurm() {
        assert_eq!(tasks_per_node(&[2, 2, 2, 1]), "2(x3),1");
        assert_eq!(tasks_per_node(&[1]), "1");
        assert_eq!(tasks_per_node(&[1, 2, 1]), "1,2,1");
        assert_eq!(tasks_per_node(&[]), "");
    }
}
