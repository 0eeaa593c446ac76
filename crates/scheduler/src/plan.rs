//! The planner: multifactor priority, then backfill with reservations over a per-node time map.
//!
//! ```text
//!  queue (tier ↓, priority ↓, submit ↑, id ↑)
//!    │   for each job, in that order:
//!    ├─ limits (partition state, MaxTime, MaxNodes, nodes available) ─► reason, skip
//!    ├─ earliest start t over the time map (running jobs end at start + limit;
//!    │  higher jobs' reservations already booked)
//!    ├─ t == now ─► allocate now (CPUs, memory, GPU indices), book [now, now+limit)
//!    └─ t > now  ─► book a reservation [t, t+limit) on the chosen nodes (within bf_window),
//!                   pending reason Resources (first blocked in the partition) or Priority
//! ```
//! Because every job is placed in priority order against the reservations of all the jobs
//! before it, a job started now by backfill never delays a higher job's reservation (Slurm's
//! conservative backfill; reference: src/plugins/sched/backfill/backfill.c, slurm.md §4.2).
//! Unlike Slurm, the map is kept per CPU, memory and GPU count on each node (not whole nodes),
//! so small jobs may share a node with a reservation.
//!
//! Cost: a pass searches every pending job against every node in the worst case. What keeps it
//! near linear in practice: each node keeps, per power of two of CPUs and per half power of two
//! of minutes, the first stretch with that much free for that long (a lower bound checked
//! before walking its steps), and the smallest of those per block of 8 nodes (a search skips
//! whole blocks; these bounds only prune, they never change an answer); a job that
//! needs at least as much as one that could not start before `t` is not searched before `t`;
//! a one-node job that can start at once takes the best fit among the first 32 nodes that can.
//! `cargo bench -p drover-scheduler --bench plan` measures it.
//!
//! Pure (STYLE P1): a function of the state, `now` and the configuration; ties are broken by
//! submit time and job id, never by chance. The leader proposes its output as
//! `Command::Allocate`; apply re-checks every allocation.

use crate::command::{Plan, PlannedAllocation, PlannedStart};
use crate::depend::Readiness;
use crate::priority::{PriorityContext, PriorityWeights};
use crate::state::ClusterState;
use crate::types::{
    Job, JobId, Node, NodeShare, OverSubscribe, PartitionState, PendingReason, TimestampMs,
    DEFAULT_QOS,
};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Slurm's SchedulerParameters, as far as the planner has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedConfig {
    /// `sched/backfill` (true) or `sched/builtin` (false: strict order, nothing jumps ahead).
    pub backfill: bool,
    /// How far ahead reservations are booked (`bf_window`, minutes in Slurm).
    pub bf_window_s: u64,
    /// Expected starts are written to the log only when they move by more than this.
    pub bf_resolution_s: u64,
    /// Jobs tested per pass (`bf_max_job_test`); 0: the whole queue (the default here).
    pub bf_max_job_test: usize,
    /// Reservations per partition (`bf_job_part_count_reserve`); 0: every job gets one
    /// (conservative backfill); 1: only the first blocked job (EASY).
    pub bf_job_part_count_reserve: usize,
    pub weights: PriorityWeights,
}

impl Default for SchedConfig {
    fn default() -> SchedConfig {
        SchedConfig {
            backfill: true,
            bf_window_s: 1440 * 60,
            bf_resolution_s: 60,
            bf_max_job_test: 0,
            bf_job_part_count_reserve: 0,
            weights: PriorityWeights::default(),
        }
    }
}

/// The most shares per CPU the planner counts in (see `scale` in `pass`).
const MAX_CPU_SCALE: u64 = 4096;

/// A long time that still leaves room for additions: "no time limit".
const FOREVER: u64 = u64::MAX / 4;

/// What one node of a job needs: CPUs, memory, GPU count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Need {
    cpus: u32,
    mem: u64,
    gpus: u32,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    /// From this time until the next step's `at`, this much is free.
    at: u64,
    cpus: u32,
    gpus: u32,
    mem: u64,
}

impl Step {
    fn fits(&self, need: Need) -> bool {
        self.cpus >= need.cpus && self.mem >= need.mem && self.gpus >= need.gpus
    }
}

/// CPU thresholds (powers of two, 1 to 2^(CPU_BUCKETS-1)) and durations (`DURATION_MIN`)
/// for which a profile remembers the first time it has that many CPUs free for that long.
const CPU_BUCKETS: usize = 12;
const DURATION_BUCKETS: usize = 24;

/// The durations, in minutes: powers of two and the halfway points between them (1.5 × 2^n),
/// so that a job's bound is for at least two thirds of its length.
const DURATION_MIN: [u64; DURATION_BUCKETS] = {
    let mut t = [0u64; DURATION_BUCKETS];
    let mut j = 0;
    while j < DURATION_BUCKETS {
        t[j] = if j % 2 == 0 {
            1 << (j / 2)
        } else {
            (3 << (j / 2)) / 2
        };
        j += 1;
    }
    t
};

/// One node's free resources over time: a step function from `now` on. Small, so that a
/// search over many nodes reads little besides the steps themselves; its `first_run` table
/// is kept by the map.
#[derive(Clone, Debug)]
struct Profile {
    steps: Vec<Step>,
}

/// `first_run[k][j]`: the start of a node's first stretch with at least 2^k CPUs free for at
/// least `DURATION_MIN[j]` minutes (u64::MAX: none). A lower bound on when a job needing that much can
/// start there, checked before any walk over the steps.
type RunTable = [[u64; DURATION_BUCKETS]; CPU_BUCKETS];

fn log2_floor(x: u64) -> usize {
    (63 - x.max(1).leading_zeros()) as usize
}

/// The `first_run` cell that bounds a job needing `need` for `d`.
fn cell(need: Need, d: u64) -> (usize, usize) {
    (
        log2_floor(u64::from(need.cpus)).min(CPU_BUCKETS - 1),
        DURATION_MIN
            .partition_point(|&m| m <= d / 60_000)
            .saturating_sub(1),
    )
}

/// The rows of a `first_run` table whose threshold (2^k CPUs) is at most `cpus`, as a bit mask.
fn rows_up_to(cpus: u32) -> u32 {
    if cpus == 0 {
        return 0;
    }
    let top = log2_floor(u64::from(cpus)).min(CPU_BUCKETS - 1);
    (2u32 << top) - 1
}

/// Bit `x` set for each node `first + x` of a block whose bound in `cells` is at most
/// `bound` (without branches: a block's nodes are compared at once).
#[inline]
fn under(cells: &[u64], first: usize, bound: u64) -> u32 {
    let mask = |block: &[u64]| {
        block
            .iter()
            .enumerate()
            .fold(0u32, |mask, (x, &c)| mask | (u32::from(c <= bound) << x))
    };
    match cells.get(first..first + BLOCK) {
        // A whole block: a fixed length, compared without a loop.
        Some(block) => mask(<&[u64; BLOCK]>::try_from(block).expect("BLOCK long")),
        None => mask(&cells[first..]),
    }
}

/// Nodes per block of the map's summary.
const BLOCK: usize = 8;

/// How many nodes that can start a one-node job at the earliest possible time the best-fit
/// choice looks at.
const FIT_SCAN: usize = 32;

/// The time map: every node's profile, and per block of `BLOCK` nodes the smallest of their
/// `first_run` tables, so that a search skips a whole block whose bound is past its best.
struct Map {
    profiles: Vec<Profile>,
    /// Each profile's `first_run` table, by node index.
    tables: Vec<RunTable>,
    /// Per block, the smallest of its nodes' `first_run` tables, cell-major like `cells`
    /// (`(k * DURATION_BUCKETS + j) * blocks + b`).
    blocks: Vec<u64>,
    /// The profiles' `first_run` tables, cell-major (`(k * DURATION_BUCKETS + j) * n + i`):
    /// a search reads one cell of every node from contiguous memory.
    cells: Vec<u64>,
}

impl Map {
    fn new(profiles: Vec<Profile>) -> Map {
        let n = profiles.len();
        let nb = n.div_ceil(BLOCK);
        let mut cells = vec![u64::MAX; CPU_BUCKETS * DURATION_BUCKETS * n];
        let mut blocks = vec![u64::MAX; CPU_BUCKETS * DURATION_BUCKETS * nb];
        let tables: Vec<RunTable> = profiles.iter().map(Profile::runs).collect();
        for (i, first_run) in tables.iter().enumerate() {
            for (c, &start) in first_run.iter().flatten().enumerate() {
                cells[c * n + i] = start;
                let b = &mut blocks[c * nb + i / BLOCK];
                *b = (*b).min(start);
            }
        }
        Map {
            profiles,
            tables,
            blocks,
            cells,
        }
    }

    /// Every node's lower bound in cell `(k, j)`, by node index.
    fn cell_row(&self, k: usize, j: usize) -> &[u64] {
        let n = self.profiles.len();
        let c = k * DURATION_BUCKETS + j;
        &self.cells[c * n..(c + 1) * n]
    }

    /// Every block's smallest lower bound in cell `(k, j)`, by block index.
    fn block_row(&self, k: usize, j: usize) -> &[u64] {
        let nb = self.profiles.len().div_ceil(BLOCK);
        let c = k * DURATION_BUCKETS + j;
        &self.blocks[c * nb..(c + 1) * nb]
    }

    /// Books `need` over `[t, t+d)` on node `i`, and brings its `first_run` row, its cells and
    /// its block's bounds up to date (only the rows whose threshold the booking crossed).
    fn book(&mut self, i: usize, t: u64, d: u64, need: Need) {
        let crossed = self.profiles[i].book(t, d, need);
        let n = self.profiles.len();
        let nb = n.div_ceil(BLOCK);
        let b = i / BLOCK;
        let range = b * BLOCK..((b + 1) * BLOCK).min(n);
        for k in (0..CPU_BUCKETS).filter(|&k| crossed & (1 << k) != 0) {
            let new_row = self.profiles[i].run_row(k);
            for (j, &new) in new_row.iter().enumerate() {
                let old = std::mem::replace(&mut self.tables[i][k][j], new);
                if new == old {
                    continue;
                }
                let c = k * DURATION_BUCKETS + j;
                self.cells[c * n + i] = new;
                if old == self.blocks[c * nb + b] {
                    self.blocks[c * nb + b] = self.cells[c * n + range.start..c * n + range.end]
                        .iter()
                        .copied()
                        .min()
                        .unwrap_or(u64::MAX);
                }
            }
        }
        debug_assert_eq!(
            self.tables[i],
            self.profiles[i].runs(),
            "a booking changes only the rows whose threshold it crossed"
        );
    }
}

impl Profile {
    /// The `first_run` table of these steps.
    fn runs(&self) -> RunTable {
        let mut first_run = [[u64::MAX; DURATION_BUCKETS]; CPU_BUCKETS];
        let most = self.steps.iter().map(|s| s.cpus).max().unwrap_or(0);
        for (k, row) in first_run.iter_mut().enumerate() {
            if 1u32 << k > most {
                break;
            }
            *row = self.run_row(k);
        }
        first_run
    }

    /// Row `k` of the `first_run` table: stretches with at least 2^k CPUs free.
    fn run_row(&self, k: usize) -> [u64; DURATION_BUCKETS] {
        let mut row = [u64::MAX; DURATION_BUCKETS];
        let threshold = 1u32 << k;
        let mut run_start: Option<u64> = None;
        let mut filled = 0usize;
        for (i, s) in self.steps.iter().enumerate() {
            if s.cpus >= threshold {
                let start = *run_start.get_or_insert(s.at);
                let run_end = self.steps.get(i + 1).map_or(u64::MAX, |n| n.at);
                let next_free = self.steps.get(i + 1).is_some_and(|n| n.cpus >= threshold);
                if !next_free {
                    let minutes = (run_end - start) / 60_000;
                    while filled < DURATION_BUCKETS
                        && (run_end == u64::MAX || DURATION_MIN[filled] <= minutes)
                    {
                        row[filled] = start;
                        filled += 1;
                    }
                    run_start = None;
                }
            } else {
                run_start = None;
            }
            if filled == DURATION_BUCKETS {
                break;
            }
        }
        row
    }

    fn end_of(&self, i: usize) -> u64 {
        self.steps.get(i + 1).map_or(u64::MAX, |s| s.at)
    }

    fn index_at(&self, t: u64) -> usize {
        // Most searches start in the first step (now); its neighbour shares its cache line.
        if self.steps.get(1).is_none_or(|s| s.at > t) {
            return 0;
        }
        self.steps.partition_point(|s| s.at <= t).saturating_sub(1)
    }

    /// The earliest `t >= from`, not after `limit`, such that `need` is free over `[t, t+d)`,
    /// and the index of the step that holds `t` (`index_at(t)`, found on the way). `from`
    /// should already be raised to what its `first_run` table (or any lower bound) says; the answer
    /// does not depend on it, only the walk's length.
    fn earliest_step(&self, from: u64, d: u64, need: Need, limit: u64) -> Option<(u64, usize)> {
        let mut i = self.index_at(from);
        let mut candidate = from;
        let mut holds = i;
        while i < self.steps.len() {
            if candidate > limit {
                return None;
            }
            if self.steps[i].fits(need) {
                if candidate.saturating_add(d) <= self.end_of(i) {
                    return Some((candidate, holds));
                }
            } else {
                candidate = self.end_of(i);
                holds = i + 1;
            }
            i += 1;
        }
        None
    }

    /// Splits the step containing `t` so that a step starts exactly at `t`; returns its index.
    fn split(&mut self, t: u64) -> usize {
        let i = self.index_at(t);
        if self.steps[i].at == t {
            return i;
        }
        let mut s = self.steps[i];
        s.at = t;
        self.steps.insert(i + 1, s);
        i + 1
    }

    /// Takes `need` over `[t, t+d)`. Returns the rows of the `first_run` table that may have
    /// changed, as a bit mask: those whose threshold some step fell below. (A split changes
    /// no row; a row whose threshold no step crossed has the same stretches as before.)
    fn book(&mut self, t: u64, d: u64, need: Need) -> u32 {
        let end = t.saturating_add(d);
        let first = self.split(t);
        let last = if end == u64::MAX {
            self.steps.len()
        } else {
            self.split(end)
        };
        let mut crossed = 0u32;
        for s in &mut self.steps[first..last] {
            let after = s.cpus.saturating_sub(need.cpus);
            crossed |= rows_up_to(s.cpus) & !rows_up_to(after);
            s.cpus = after;
            s.mem = s.mem.saturating_sub(need.mem);
            s.gpus = s.gpus.saturating_sub(need.gpus);
        }
        crossed
    }
}

/// Where a job may run, apart from how much it needs: jobs with the same placement compete for
/// the same nodes. Borrowed from the state (partition, GPU type, constraint, excluded nodes,
/// `--exclusive`); a pass numbers the placements it meets and keeps their data by number.
/// Partition, GPU type, features, exclusions, whole nodes, and the CPU share count (spans of
/// another count keep a job off a node for a while, so bounds are kept per count).
type Placement<'a> = (&'a str, Option<&'a str>, &'a str, &'a [String], bool, u32);

/// A job of some placement that could not start before `t`: a later job of that placement that
/// needs at least as much of everything, for at least as long, cannot start before `t` either,
/// because a pass only ever takes resources away. This is what keeps a pass over a long queue
/// cheap: once the window is full for a size, bigger jobs are not searched again.
#[derive(Clone, Copy, Debug)]
struct Bound {
    need: Need,
    nodes: u32,
    d: u64,
    t: u64,
}

impl Bound {
    fn covers(&self, need: Need, nodes: u32, d: u64) -> bool {
        // `&`, not `&&`: every comparison made, without branches, over a whole list.
        (self.need.cpus <= need.cpus)
            & (self.need.mem <= need.mem)
            & (self.need.gpus <= need.gpus)
            & (self.nodes <= nodes)
            & (self.d <= d)
    }
}

/// Bounds kept per placement (the most useful ones; a lookup scans them all).
const BOUNDS_KEPT: usize = 48;

/// A pending job's place in the pass: tier and priority (both descending), submit time, id.
type QueueEntry<'a> = (Reverse<u32>, Reverse<u32>, TimestampMs, JobId, &'a Job);

/// Plans one scheduling pass over `state` at time `now`.
pub fn plan(state: &ClusterState, now: TimestampMs, cfg: &SchedConfig) -> Plan {
    pass(state, now, cfg, false).0
}

/// A pass's plan and every expected start it computed (the plan keeps only those that moved by
/// more than `bf_resolution`), in the order the jobs were considered.
pub fn plan_with_starts(
    state: &ClusterState,
    now: TimestampMs,
    cfg: &SchedConfig,
) -> (Plan, Vec<PlannedStart>) {
    pass(state, now, cfg, true)
}

fn pass(
    state: &ClusterState,
    now: TimestampMs,
    cfg: &SchedConfig,
    collect_all: bool,
) -> (Plan, Vec<PlannedStart>) {
    let now = now.max(state.now);
    let window_end = now.saturating_add(cfg.bf_window_s.saturating_mul(1000));
    let resolution_ms = cfg.bf_resolution_s.saturating_mul(1000);

    // The time map: every schedulable node's free resources from now on.
    let names: Vec<&str> = state
        .nodes
        .values()
        .filter(|n| n.schedulable())
        .map(|n| n.name())
        .collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let nodes: Vec<&Node> = names.iter().map(|n| &state.nodes[*n]).collect();
    let mut profiles: Vec<Profile> = Vec::with_capacity(names.len());
    let mut ends: Vec<Vec<(u64, Need)>> = vec![Vec::new(); names.len()];
    // Users' job names in use (for `--dependency=singleton`).
    let mut active_names: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut last: Option<(JobId, bool)> = None;
    // CPUs are counted in `scale` shares each when some are oversubscribed (`OverSubscribe=`):
    // a job whose CPUs n jobs may share takes scale/n of each. 1 (CPUs as they are) otherwise.
    let scale = match state.cpu_scale() {
        s if s <= MAX_CPU_SCALE => s as u32,
        // Counts whose least common multiple is too large: plan every job as if it shared
        // nothing (what it holds is over-counted, never under-counted; apply decides exactly).
        _ => 1,
    };
    let weight = |share: u32| {
        if scale == 1 {
            1
        } else {
            scale / share.max(1)
        }
    };
    // Running jobs per (QOS, user), kept only when some QOS limits them (`MaxJobsPerUser`).
    let qos_user_limits = state.qos.iter().any(|q| q.max_jobs_per_user.is_some());
    let mut qos_running: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    // When CPUs may be shared, each node's spans `[start, end)` of one share count (jobs
    // running, and those this pass starts or reserves): a node runs jobs of one count at a
    // time (`ClusterState::cpus_fit`), so a job of another count is planned there only outside
    // them. Empty, and never looked at, when nothing is shared.
    let mut spans: Vec<Vec<(u64, u64, u32)>> = vec![Vec::new(); names.len()];
    for job in state.jobs.values().filter(|j| j.holds_resources()) {
        if scale > 1 {
            let end = match (job.completing, job.start_at, job.time_limit_min) {
                (true, _, _) => now.saturating_add(resolution_ms.max(1)),
                (false, Some(start), Some(limit)) => start
                    .saturating_add(limit.saturating_mul(60_000))
                    .max(now.saturating_add(1)),
                _ => u64::MAX,
            };
            for share in &job.alloc {
                if let Some(&i) = index.get(share.node.as_str()) {
                    spans[i].push((now, end, job.cpu_share.max(1)));
                }
            }
        }
        active_names.insert((job.spec.user.as_str(), job.spec.name.as_str()));
        if qos_user_limits {
            *qos_running
                .entry((job.spec.qos_name(), job.spec.user.as_str()))
                .or_default() += 1;
        }
        let end = if job.completing {
            now.saturating_add(resolution_ms.max(1))
        } else {
            match (job.start_at, job.time_limit_min) {
                (Some(start), Some(limit)) => start
                    .saturating_add(limit.saturating_mul(60_000))
                    .max(now.saturating_add(1)),
                _ => u64::MAX,
            }
        };
        if end == u64::MAX {
            continue;
        }
        for share in &job.alloc {
            if let Some(&i) = index.get(share.node.as_str()) {
                ends[i].push((
                    end,
                    Need {
                        cpus: share.cpus.saturating_mul(weight(job.cpu_share)),
                        mem: share.mem_mb,
                        gpus: share.gpus.len() as u32,
                    },
                ));
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let mut steps = vec![Step {
            at: now,
            cpus: if scale == 1 {
                node.free_cpus()
            } else {
                let cap = u64::from(node.reg.cpus) * u64::from(scale);
                let free = cap.saturating_sub(state.node_cpu_load(node, u64::from(scale)));
                u32::try_from(free).unwrap_or(u32::MAX)
            },
            gpus: node.free_gpus(),
            mem: node.free_mem_mb(),
        }];
        let mut e = std::mem::take(&mut ends[i]);
        e.sort_by_key(|(t, _)| *t);
        for (t, freed) in e {
            let last = *steps.last().expect("a profile has a first step");
            let mut s = if last.at == t {
                steps.pop().expect("just read")
            } else {
                Step { at: t, ..last }
            };
            s.cpus = s
                .cpus
                .saturating_add(freed.cpus)
                .min(node.reg.cpus.saturating_mul(scale));
            s.mem = s.mem.saturating_add(freed.mem).min(node.reg.real_memory_mb);
            s.gpus = s.gpus.saturating_add(freed.gpus).min(node.reg.gpus);
            steps.push(s);
        }
        profiles.push(Profile { steps });
    }
    let mut map = Map::new(profiles);
    let mut scratch = Scratch::default();
    // GPU indices handed out in this pass, per node.
    let mut gpus_taken: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();

    // Pending jobs in order: partition tier, then priority, then submit time and id.
    let ctx = PriorityContext::new(state, now);
    // The first record of an array enters once per task that may start (within its throttle).
    // `state.queued()`, walked beside the jobs (both in id order) rather than looked up one
    // by one.
    let mut jobs = state.jobs.iter().peekable();
    let queued = state.queued_ids().iter().filter_map(|id| {
        while jobs.next_if(|(k, _)| *k < id).is_some() {}
        jobs.next_if(|(k, _)| *k == id).map(|(_, j)| j)
    });
    let mut queue: Vec<QueueEntry> = queued
        .filter(|j| j.priority > 0)
        .flat_map(|j| {
            let tier = state
                .partition(Some(&j.partition))
                .map_or(0, |p| p.priority_tier);
            let prio = ctx.factors(state, j, &cfg.weights).priority;
            let copies = match &j.array {
                Some(a) if !a.pending.is_empty() => {
                    let room = if a.max_running > 0 {
                        a.max_running.saturating_sub(a.running)
                    } else {
                        u32::MAX
                    };
                    (a.pending.len() as u32).min(room).max(1)
                }
                _ => 1,
            };
            std::iter::repeat_n(
                (Reverse(tier), Reverse(prio), j.submit_at, j.id, j),
                copies as usize,
            )
        })
        .collect();
    queue.sort_by_key(|(t, p, s, id, _)| (*t, *p, *s, *id));

    let mut out = Plan::default();
    let mut all_starts: Vec<PlannedStart> = Vec::new();
    let mut blocked: BTreeSet<&str> = BTreeSet::new();
    let mut reserved: BTreeMap<&str, usize> = BTreeMap::new();
    // Per placement, by number: its bounds and its member nodes.
    let mut placement_ids: BTreeMap<Placement, usize> = BTreeMap::new();
    let mut bounds: Vec<Vec<Bound>> = Vec::new();
    let mut placements: Vec<Vec<bool>> = Vec::new();
    let caps: Vec<Need> = nodes
        .iter()
        .map(|n| Need {
            cpus: n.reg.cpus.saturating_mul(scale),
            mem: n.reg.real_memory_mb,
            gpus: n.reg.gpus,
        })
        .collect();
    let set_reason = |out: &mut Plan, job: &Job, reason: PendingReason| {
        if job.reason != reason {
            out.reasons.push((job.id, reason));
        }
    };
    // Node names are built only for what is written (or collected for tests).
    let mut set_start = |out: &mut Plan, job: &Job, start: Option<u64>, chosen: &[usize]| {
        let names_of = || chosen.iter().map(|&i| names[i].to_string()).collect();
        if collect_all {
            all_starts.push(PlannedStart {
                job_id: job.id,
                start_at: start,
                nodes: names_of(),
            });
        }
        let same_nodes = job.sched_nodes.len() == chosen.len()
            && job
                .sched_nodes
                .iter()
                .zip(chosen)
                .all(|(a, &i)| a == names[i]);
        let moved = match (job.expected_start_at, start) {
            (Some(a), Some(b)) => a.abs_diff(b) > resolution_ms || !same_nodes,
            (None, None) => false,
            _ => true,
        };
        if moved {
            out.starts.push(PlannedStart {
                job_id: job.id,
                start_at: start,
                nodes: names_of(),
            });
        }
    };

    for (tested, (_, _, _, _, job)) in queue.into_iter().enumerate() {
        if cfg.bf_max_job_test != 0 && tested >= cfg.bf_max_job_test {
            if job.reason == PendingReason::None {
                set_reason(&mut out, job, PendingReason::Priority);
            }
            continue;
        }
        // Copies of an array's first record are adjacent; once one cannot start now, the
        // array's later tasks wait behind it.
        if last.is_some_and(|(id, started)| id == job.id && !started) {
            continue;
        }
        last = Some((job.id, false));
        if let Some(begin) = job.spec.begin_at.filter(|&b| b > now) {
            set_reason(&mut out, job, PendingReason::BeginTime);
            set_start(&mut out, job, Some(begin), &[]);
            continue;
        }
        if let Some(dep) = &job.dependency {
            let reason = match dep.readiness(now) {
                Readiness::Ready
                    if dep.has_singleton()
                        && active_names
                            .contains(&(job.spec.user.as_str(), job.spec.name.as_str())) =>
                {
                    Some(PendingReason::Dependency)
                }
                Readiness::Ready => None,
                Readiness::Waiting => Some(PendingReason::Dependency),
                Readiness::Never => Some(PendingReason::DependencyNeverSatisfied),
            };
            if let Some(reason) = reason {
                set_reason(&mut out, job, reason);
                set_start(&mut out, job, None, &[]);
                continue;
            }
        }
        if state.throttled(job) {
            set_reason(&mut out, job, PendingReason::JobArrayTaskLimit);
            set_start(&mut out, job, None, &[]);
            continue;
        }
        let Some(part) = state.partition(Some(&job.partition)) else {
            set_reason(&mut out, job, PendingReason::PartitionInactive);
            continue;
        };
        match part.state {
            PartitionState::Up => {}
            PartitionState::Down | PartitionState::Drain => {
                set_reason(&mut out, job, PendingReason::PartitionDown);
                continue;
            }
            PartitionState::Inactive => {
                set_reason(&mut out, job, PendingReason::PartitionInactive);
                continue;
            }
        }
        if let (Some(limit), Some(max)) = (job.time_limit_min, part.max_time_min) {
            if limit > max {
                set_reason(&mut out, job, PendingReason::PartitionTimeLimit);
                continue;
            }
        }
        // QOS limits (acct_policy.c): MaxWall per job, MaxJobsPerUser running.
        let qos_name = job.spec.qos_name();
        let qos = state.qos.iter().find(|q| q.name == qos_name);
        if qos.is_none() && qos_name != DEFAULT_QOS {
            // Dropped from the configuration since the job was submitted.
            set_reason(&mut out, job, PendingReason::InvalidQOS);
            continue;
        }
        if let Some(max) = qos.and_then(|q| q.max_wall_min) {
            if job.time_limit_min.is_none_or(|l| l > max) {
                set_reason(&mut out, job, PendingReason::QOSMaxWallDurationPerJobLimit);
                continue;
            }
        }
        if let Some(max) = qos.and_then(|q| q.max_jobs_per_user) {
            let running = qos_running
                .get(&(qos_name, job.spec.user.as_str()))
                .copied()
                .unwrap_or(0);
            if running >= max {
                set_reason(&mut out, job, PendingReason::QOSMaxJobsPerUserLimit);
                set_start(&mut out, job, None, &[]);
                continue;
            }
        }
        let spec = &job.spec;
        let needed = spec.nodes_needed();
        if part.max_nodes.is_some_and(|max| needed > max) {
            set_reason(&mut out, job, PendingReason::PartitionNodeLimit);
            continue;
        }
        if blocked.contains(part.name.as_str()) && !cfg.backfill {
            set_reason(&mut out, job, PendingReason::Priority);
            continue;
        }

        // Candidate nodes: in the partition, up, able to hold the job at all.
        let required: Vec<usize> = spec
            .nodelist
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .collect();
        if required.len() < spec.nodelist.len() {
            set_reason(&mut out, job, PendingReason::ReqNodeNotAvail);
            set_start(&mut out, job, None, &[]);
            continue;
        }
        // `--exclusive`, or a partition with `OverSubscribe=EXCLUSIVE`: whole nodes.
        let whole_nodes = spec.exclusive || part.oversubscribe == OverSubscribe::Exclusive;
        // Shares of a CPU it takes per CPU (`scale` unless its CPUs may be shared).
        let w = if whole_nodes {
            scale
        } else {
            weight(part.oversubscribe.cpu_share(spec.oversubscribe))
        };
        let placement: Placement = (
            part.name.as_str(),
            spec.gpu_type.as_deref().filter(|_| spec.gpus_per_node > 0),
            spec.constraint.as_str(),
            spec.exclude.as_slice(),
            whole_nodes,
            part.oversubscribe.cpu_share(spec.oversubscribe),
        );
        // Nodes of the partition that are up and match the job's type, features and
        // exclusions (cached per placement); capacity is checked per job.
        let placement = *placement_ids.entry(placement).or_insert_with(|| {
            placements.push(
                nodes
                    .iter()
                    .map(|n| part.contains(n.name()) && spec.node_could_hold_type(&n.reg))
                    .collect(),
            );
            bounds.push(Vec::new());
            placements.len() - 1
        });
        let members = &placements[placement];
        // `-N min-max` whose tasks do not fit on min nodes: the fewest nodes of the range they
        // fit on, as the job's minimum here (its planning and reservation). Ordinary jobs:
        // their -N.
        let needed = if spec.nodes_allowed() > needed {
            (needed..=spec.nodes_allowed().min(nodes.len() as u32))
                .find(|&k| {
                    let (c, m) = (spec.cpus_per_node_on(k), spec.mem_per_node_on(k));
                    (0..nodes.len())
                        .filter(|&i| {
                            members[i]
                                && nodes[i].reg.cpus >= c
                                && caps[i].mem >= m
                                && caps[i].gpus >= spec.gpus_per_node
                        })
                        .take(k as usize)
                        .count()
                        >= k as usize
                })
                .unwrap_or(needed)
        } else {
            needed
        };
        let real_cpus = spec.cpus_per_node_on(needed);
        let wants = Need {
            cpus: real_cpus.saturating_mul(w),
            mem: spec.mem_per_node_on(needed),
            gpus: spec.gpus_per_node,
        };
        let member = |i: usize| {
            members[i]
                && caps[i].cpus >= wants.cpus
                && (scale == 1 || nodes[i].reg.cpus >= real_cpus)
                && caps[i].mem >= wants.mem
                && caps[i].gpus >= wants.gpus
        };
        // Whether fewer than `needed` nodes could ever hold it (counting stops at `needed`).
        let too_few_capable = || {
            (0..nodes.len())
                .filter(|&i| member(i))
                .take(needed as usize)
                .count()
                < needed as usize
        };
        if required.iter().any(|&r| !member(r)) {
            set_reason(&mut out, job, PendingReason::ReqNodeNotAvail);
            set_start(&mut out, job, None, &[]);
            continue;
        }
        let exclusive = whole_nodes;
        let need_of = |i: usize| -> Need {
            if exclusive {
                caps[i]
            } else {
                wants
            }
        };
        let d = job
            .time_limit_min
            .map_or(FOREVER, |m| m.saturating_mul(60_000).max(1));
        let base_need = Need {
            cpus: real_cpus.saturating_mul(w),
            mem: spec.mem_per_node_on(needed),
            gpus: spec.gpus_per_node,
        };
        let use_bounds = spec.nodelist.is_empty();
        let from = if use_bounds {
            bounds[placement]
                .iter()
                .filter(|b| b.covers(base_need, needed, d))
                .map(|b| b.t)
                .fold(now, u64::max)
        } else {
            now
        };
        // A job keeps the nodes of its last reservation when they still serve: a stable
        // plan, so that what backfill started around a reservation stays around it.
        let preferred: Vec<usize> = job
            .sched_nodes
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .collect();
        // Its CPU share count, as apply will fix it when it starts (`cpu_share_for`), and the
        // first start at or after `t` at which it overlaps no span of another count on node
        // `i` (the identity when nothing is shared).
        let share = part.oversubscribe.cpu_share(spec.oversubscribe);
        let clear_from = |i: usize, t: u64| -> u64 {
            let mut t = t;
            loop {
                let until = t.saturating_add(d);
                let blocking = spans[i]
                    .iter()
                    .filter(|&&(s, e, k)| k != share && s < until && t < e)
                    .map(|&(_, e, _)| e)
                    .max();
                match blocking {
                    Some(e) if e > t => t = e,
                    _ => return t,
                }
            }
        };
        let found = if from > window_end {
            None
        } else {
            earliest_start(
                &map,
                member,
                wants,
                &mut scratch,
                &required,
                &preferred,
                needed as usize,
                from,
                d,
                window_end,
                need_of,
                clear_from,
            )
        };
        if found.is_none() && from <= window_end && too_few_capable() {
            // Not enough nodes up that could ever hold it.
            set_reason(&mut out, job, PendingReason::ReqNodeNotAvail);
            set_start(&mut out, job, None, &[]);
            continue;
        }
        if use_bounds {
            let t = found.as_ref().map_or(window_end.saturating_add(1), |f| f.0);
            let new = Bound {
                need: base_need,
                nodes: needed,
                d,
                t,
            };
            let list = &mut bounds[placement];
            // Drop what the new bound makes useless: asks for more yet bounds no later.
            let useless = |b: &Bound| new.covers(b.need, b.nodes, b.d) & (b.t <= new.t);
            // Most of the time none is: a read-only scan first.
            if list.iter().any(useless) {
                list.retain(|b| !useless(b));
            }
            if list.len() >= BOUNDS_KEPT {
                list.remove(0);
            }
            list.push(new);
        }

        match found {
            Some((t, mut chosen)) if t == now => {
                // `-N min-max`: the job starts on its minimum's nodes and takes as many more
                // as can hold it now for its whole time limit, up to max (its tasks spread
                // over them, so each needs less), in node order; the map holds every
                // reservation booked so far, so none is delayed.
                let mut per_node = wants;
                let allowed = spec.nodes_allowed();
                if allowed > needed {
                    for k in (needed + 1..=allowed.min(nodes.len() as u32)).rev() {
                        let want_k = Need {
                            cpus: spec.cpus_per_node_on(k).saturating_mul(w),
                            mem: spec.mem_per_node_on(k),
                            gpus: spec.gpus_per_node,
                        };
                        let more = (k - needed) as usize;
                        let extra: Vec<usize> = (0..nodes.len())
                            .filter(|&i| {
                                let need = if exclusive { caps[i] } else { want_k };
                                members[i]
                                    && caps[i].cpus >= want_k.cpus
                                    && caps[i].mem >= want_k.mem
                                    && caps[i].gpus >= want_k.gpus
                                    && nodes[i].reg.cpus >= spec.cpus_per_node_on(k)
                                    && !chosen.contains(&i)
                                    && clear_from(i, now) == now
                                    && map.profiles[i].earliest_step(now, d, need, now).is_some()
                            })
                            .take(more)
                            .collect();
                        if extra.len() == more {
                            chosen.extend(extra);
                            per_node = want_k;
                            break;
                        }
                    }
                }
                let need_of = |i: usize| if exclusive { caps[i] } else { per_node };
                let mut shares = Vec::with_capacity(chosen.len());
                for &i in &chosen {
                    let need = need_of(i);
                    map.book(i, now, d, need);
                    let node = nodes[i];
                    let taken = gpus_taken.entry(i).or_default();
                    let gpus: Vec<u32> = (0..node.reg.gpus)
                        .filter(|g| !node.alloc_gpus.contains(g) && !taken.contains(g))
                        .take(need.gpus as usize)
                        .collect();
                    taken.extend(gpus.iter().copied());
                    shares.push(NodeShare {
                        node: names[i].to_string(),
                        cpus: need.cpus / w,
                        mem_mb: need.mem,
                        gpus,
                    });
                }
                if scale > 1 {
                    for &i in &chosen {
                        spans[i].push((now, now.saturating_add(d), share));
                    }
                }
                out.allocations.push(PlannedAllocation {
                    job_id: job.id,
                    nodes: shares,
                });
                active_names.insert((job.spec.user.as_str(), job.spec.name.as_str()));
                if qos_user_limits {
                    *qos_running
                        .entry((job.spec.qos_name(), job.spec.user.as_str()))
                        .or_default() += 1;
                }
                last = Some((job.id, true));
            }
            found => {
                let first_blocked = blocked.insert(part.name.as_str());
                let reason = if first_blocked {
                    PendingReason::Resources
                } else {
                    PendingReason::Priority
                };
                set_reason(&mut out, job, reason);
                let count = reserved.entry(part.name.as_str()).or_default();
                let may_reserve = cfg.backfill
                    && (cfg.bf_job_part_count_reserve == 0
                        || *count < cfg.bf_job_part_count_reserve);
                match found {
                    Some((t, chosen)) if may_reserve => {
                        *count += 1;
                        for &i in &chosen {
                            map.book(i, t, d, need_of(i));
                            if scale > 1 {
                                spans[i].push((t, t.saturating_add(d), share));
                            }
                        }
                        set_start(&mut out, job, Some(t), &chosen);
                    }
                    _ => set_start(&mut out, job, None, &[]),
                }
            }
        }
    }
    (out, all_starts)
}

/// The earliest time (not after `limit`) at which `needed` candidate nodes, including every
/// required one, can each hold the job for `d`, and those nodes (the nodes of its last
/// reservation first; then best fit: the least GPUs the job does not need, then the fewest free
/// CPUs, at that time in the map; then name order). `base` is what the job needs on a node
/// apart from `--exclusive` (a lower bound of `need_of`).
// Node indices address parallel arrays (profiles, members, scratch); too many arguments: the
// search's inputs, kept explicit rather than bundled for one caller.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn earliest_start(
    map: &Map,
    member: impl Fn(usize) -> bool,
    base: Need,
    scratch: &mut Scratch,
    required: &[usize],
    preferred: &[usize],
    needed: usize,
    from: u64,
    d: u64,
    limit: u64,
    need_of: impl Fn(usize) -> Need,
    clear_from: impl Fn(usize, u64) -> u64,
) -> Option<(u64, Vec<usize>)> {
    let profiles = &map.profiles;
    // Best fit: keep GPUs for jobs that ask for them, then the fewest free CPUs, in the step
    // `step` of node `i` (the one that holds the start).
    let free_at = |i: usize, step: usize| {
        let s = profiles[i].steps[step];
        let spare_gpus = if need_of(i).gpus == 0 { s.gpus } else { 0 };
        (!preferred.contains(&i), spare_gpus, s.cpus)
    };
    let (k, j) = cell(base, d);
    let cells = map.cell_row(k, j);
    // Node `i`'s earliest start from `from` (not after `bound`) and the step holding it.
    // `cells[i]` is its lower bound for `base`; `need_of(i)` differs only for --exclusive.
    // (A start must also be clear of spans of another share count: `clear_from`.)
    let earliest = |i: usize, from: u64, lower: u64, bound: u64| {
        let need = need_of(i);
        let lower = if need == base {
            lower
        } else {
            let (k, j) = cell(need, d);
            lower.max(map.tables[i][k][j])
        };
        let mut at = from.max(lower);
        loop {
            let clear = clear_from(i, at);
            if clear > bound {
                return None;
            }
            let (t, step) = profiles[i].earliest_step(clear, d, need, bound)?;
            if clear_from(i, t) == t {
                return Some((t, step));
            }
            at = t;
        }
    };
    if needed == 1 && required.is_empty() {
        // One node: the best start over all members, pruned by the best so far, block by
        // block; the block with the smallest bound first, for a tight bound early.
        let block_row = map.block_row(k, j);
        let first_block = (0..block_row.len()).min_by_key(|&b| (block_row[b], b));
        let blocks = first_block
            .into_iter()
            .chain((0..block_row.len()).filter(|&b| Some(b) != first_block));
        // Its last reservation's node first. Once the best start is `from` itself, nothing
        // can start earlier: the fit is chosen among the first FIT_SCAN nodes that can start
        // it then (or its reservation's node, which wins any tie), not among all of them.
        let eval = |i: usize, bound: u64| -> Option<(u64, usize)> {
            if cells[i] > bound || !member(i) {
                return None;
            }
            earliest(i, from, cells[i], bound)
        };
        // The best so far: start, node, the step holding its start, and its fit (worked out
        // at the first tie, then kept).
        type Best = Option<(u64, usize, usize, Option<(bool, u32, u32)>)>;
        let consider = |best: &mut Best, at_from: &mut usize, i: usize, (t, step): (u64, usize)| {
            if t == from {
                *at_from += 1;
            }
            let better = match best {
                None => true,
                Some((bt, bi, bstep, bkey)) => {
                    t < *bt
                        || (t == *bt && {
                            let theirs = *bkey.get_or_insert_with(|| free_at(*bi, *bstep));
                            (free_at(i, step), i) < (theirs, *bi)
                        })
                }
            };
            if better {
                *best = Some((t, i, step, None));
            }
        };
        let mut best: Best = None;
        let mut at_from = 0usize;
        for &i in preferred {
            if let Some(found) = eval(i, best.map_or(limit, |x| x.0)) {
                consider(&mut best, &mut at_from, i, found);
            }
        }
        'blocks: for b in blocks {
            if block_row[b] > best.map_or(limit, |x| x.0) {
                continue;
            }
            // The block's nodes whose bound is within the best so far, in order (the best
            // only gets better, and `eval` checks again; the stop below depends only on
            // what was looked at, so it comes at the same point).
            let first = b * BLOCK;
            let mut within = under(cells, first, best.map_or(limit, |x| x.0));
            while within != 0 {
                let i = first + within.trailing_zeros() as usize;
                within &= within - 1;
                if let Some((bt, bi, _, _)) = best {
                    if bt == from && (at_from >= FIT_SCAN || preferred.contains(&bi)) {
                        break 'blocks;
                    }
                }
                if preferred.contains(&i) {
                    continue;
                }
                if let Some(found) = eval(i, best.map_or(limit, |x| x.0)) {
                    consider(&mut best, &mut at_from, i, found);
                }
            }
        }
        return best.map(|(t, i, _, _)| (t, vec![i]));
    }
    // Several nodes: move t to the needed-th smallest per-node earliest start until every
    // node counted is free at t itself. Per node, `scratch.known` is its earliest start from
    // the current t when `scratch.exact` is this search's stamp, else a lower bound on it; an
    // earliest start at or after a later t is still the earliest from there.
    scratch.stamp += 1;
    let stamp = scratch.stamp;
    let n = profiles.len();
    if scratch.known.len() < n {
        scratch.known.resize(n, 0);
        scratch.exact.resize(n, 0);
        scratch.seen.resize(n, 0);
        scratch.step.resize(n, 0);
    }
    // Blocks by their bound, smallest first, so that the pruning bound (the needed-th
    // smallest start found) tightens early and the rest are passed over at once. The order
    // does not change the answer: a node is passed over only when it cannot start by that
    // bound, which is never below the final needed-th smallest start; every node that can
    // start at the final t is looked at in the last round whatever the order.
    let block_row = map.block_row(k, j);
    // The search's lists live in the scratch between searches (no allocation per search).
    let mut blocks = std::mem::take(&mut scratch.blocks);
    let mut touched = std::mem::take(&mut scratch.touched);
    let mut smallest = std::mem::take(&mut scratch.smallest);
    blocks.clear();
    blocks.extend(block_row.iter().copied().zip(0..));
    blocks.sort_unstable_by_key(|&(lower, _)| lower);
    touched.clear();
    let mut t = from;
    let found = 'search: loop {
        if t > limit {
            break 'search None;
        }
        // Pruned: once `needed` nodes are found, a node (or block) that cannot start before
        // the needed-th smallest of them cannot change the answer.
        smallest.clear();
        for &(block_lower, b) in &blocks {
            let block_bound = if smallest.len() == needed {
                smallest.peek().copied().unwrap_or(limit)
            } else {
                limit
            };
            if block_lower > block_bound {
                if required.is_empty() {
                    // Every later block's bound is as large.
                    break;
                }
                if !required.iter().any(|&r| r / BLOCK == b) {
                    continue;
                }
            }
            // The block's nodes whose bound is within the pruning bound as it is now (it only
            // falls; each node is checked again), or within the limit for required nodes.
            let first = b * BLOCK;
            let mut within = under(
                cells,
                first,
                if required.is_empty() {
                    block_bound
                } else {
                    limit
                },
            );
            while within != 0 {
                let i = first + within.trailing_zeros() as usize;
                within &= within - 1;
                let is_required = required.contains(&i);
                let bound = if smallest.len() == needed && !is_required {
                    smallest.peek().copied().unwrap_or(limit)
                } else {
                    limit
                };
                // A node that cannot start by the bound changes nothing: not the needed-th
                // smallest start, nor (its start being past the bound, so past t) the nodes
                // that start at t; its first-run bound tells so without a look at it.
                if cells[i] > bound || !member(i) {
                    continue;
                }
                if scratch.seen[i] != stamp {
                    // First look at this node in this search.
                    scratch.seen[i] = stamp;
                    scratch.exact[i] = 0;
                    scratch.known[i] = 0;
                    touched.push(i);
                }
                let e = if scratch.exact[i] == stamp && scratch.known[i] >= t {
                    Some(scratch.known[i])
                } else {
                    let known_lower = if scratch.exact[i] == stamp {
                        0
                    } else {
                        scratch.known[i]
                    };
                    let lower = known_lower.max(cells[i]);
                    if lower > bound {
                        scratch.exact[i] = 0;
                        scratch.known[i] = lower;
                        None
                    } else {
                        match earliest(i, t, lower, bound) {
                            Some((e, step)) => {
                                scratch.exact[i] = stamp;
                                scratch.known[i] = e;
                                scratch.step[i] = step;
                                Some(e)
                            }
                            None => {
                                scratch.exact[i] = 0;
                                scratch.known[i] = lower.max(bound.saturating_add(1));
                                None
                            }
                        }
                    }
                };
                if let Some(e) = e {
                    smallest.push(e);
                    if smallest.len() > needed {
                        smallest.pop();
                    }
                }
            }
        }
        if smallest.len() < needed {
            break 'search None;
        }
        let mut next = smallest.peek().copied().unwrap_or(limit);
        for &r in required {
            if scratch.exact[r] != stamp {
                break 'search None;
            }
            next = next.max(scratch.known[r]);
        }
        if next == t {
            // Each node's key once (it is looked up in the map), then only the `needed`
            // smallest sorted: keys end with the index, so the order is the same as a full
            // sort's.
            let mut keyed: Vec<(FitKey, usize)> = touched
                .iter()
                .copied()
                .filter(|&i| scratch.exact[i] == stamp && scratch.known[i] == t)
                .map(|i| ((!required.contains(&i), free_at(i, scratch.step[i])), i))
                .collect();
            if keyed.len() > needed {
                keyed.select_nth_unstable(needed - 1);
                keyed.truncate(needed);
            }
            keyed.sort_unstable();
            break 'search Some((t, keyed.into_iter().map(|(_, i)| i).collect()));
        }
        t = next;
    };
    scratch.blocks = blocks;
    scratch.touched = touched;
    scratch.smallest = smallest;
    found
}

/// A node's place in the choice among nodes free at the same time: not required, then
/// `free_at`'s best fit (not its last reservation's, spare GPUs, free CPUs).
type FitKey = (bool, (bool, u32, u32));

/// Per-pass scratch space for multi-node searches (no allocation per search).
#[derive(Default)]
struct Scratch {
    stamp: u32,
    known: Vec<u64>,
    exact: Vec<u32>,
    seen: Vec<u32>,
    /// Where `exact[i]` is this search's stamp: the index of the step holding `known[i]`.
    step: Vec<usize>,
    /// The blocks by bound, the nodes looked at, the needed smallest starts.
    blocks: Vec<(u64, usize)>,
    touched: Vec<usize>,
    smallest: std::collections::BinaryHeap<u64>,
}

/// Where and when a job would start (`sbatch --test-only`): nothing is submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOnly {
    pub job_id: JobId,
    /// `None`: not within `bf_window`.
    pub start_at: Option<TimestampMs>,
    pub nodes: Vec<String>,
    pub cpus: u32,
    pub partition: String,
}

/// Submits `spec` to a copy of the state and plans one pass: the job's start now or its
/// reservation. The same checks as a submit apply (Slurm's errors).
pub fn test_only(
    mut state: ClusterState,
    spec: crate::types::JobSpec,
    now: TimestampMs,
    cfg: &SchedConfig,
) -> Result<TestOnly, crate::command::Rejection> {
    use crate::command::{Command, Reply};
    let reply = state.apply_one(now, Command::Submit(spec));
    let job_id = match reply {
        Reply::Submitted { job_id } => job_id,
        Reply::Rejected(r) => return Err(r),
        other => {
            return Err(crate::command::Rejection::Invalid(format!(
                "unexpected answer to a submit: {other:?}"
            )))
        }
    };
    let (plan, starts) = plan_with_starts(&state, now, cfg);
    let job = &state.jobs[&job_id];
    let partition = job.partition.clone();
    if let Some(a) = plan.allocations.iter().find(|a| a.job_id == job_id) {
        return Ok(TestOnly {
            job_id,
            start_at: Some(now.max(state.now)),
            nodes: a.nodes.iter().map(|s| s.node.clone()).collect(),
            cpus: a.nodes.iter().map(|s| s.cpus).sum(),
            partition,
        });
    }
    let start = starts.into_iter().rev().find(|s| s.job_id == job_id);
    Ok(TestOnly {
        job_id,
        start_at: start.as_ref().and_then(|s| s.start_at),
        nodes: start.map(|s| s.nodes).unwrap_or_default(),
        cpus: job.spec.cpus_per_node() * job.spec.nodes_needed(),
        partition,
    })
}

/// The jobs a plan would start, for tests and logs.
pub fn started(plan: &Plan) -> Vec<JobId> {
    plan.allocations.iter().map(|a| a.job_id).collect()
}

#[cfg(test)]
mod tests {
    //! The search's pruning (block and node bounds, the order blocks are visited in, the
    //! steps and fits it remembers) against a plain reference that looks at every node.
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    /// Every member node's earliest start from `from` (not after `limit`) and its step, with
    /// no bound used.
    fn every_start(
        map: &Map,
        member: &dyn Fn(usize) -> bool,
        from: u64,
        d: u64,
        limit: u64,
        need_of: &dyn Fn(usize) -> Need,
    ) -> Vec<Option<(u64, usize)>> {
        (0..map.profiles.len())
            .map(|i| {
                if !member(i) {
                    return None;
                }
                map.profiles[i].earliest_step(from, d, need_of(i), limit)
            })
            .collect()
    }

    /// `earliest_start` as its documentation says, the slow way.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        map: &Map,
        member: &dyn Fn(usize) -> bool,
        base: Need,
        required: &[usize],
        preferred: &[usize],
        needed: usize,
        from: u64,
        d: u64,
        limit: u64,
        need_of: &dyn Fn(usize) -> Need,
    ) -> Option<(u64, Vec<usize>)> {
        let fit = |i: usize, step: usize| {
            let s = map.profiles[i].steps[step];
            let spare_gpus = if need_of(i).gpus == 0 { s.gpus } else { 0 };
            (!preferred.contains(&i), spare_gpus, s.cpus)
        };
        if needed == 1 && required.is_empty() {
            // Preferred nodes, then the block with the smallest bound, then the others in
            // order; once the best start is `from`, stop after FIT_SCAN nodes that can start
            // then, or at once when the best is a preferred node.
            let e = every_start(map, member, from, d, limit, need_of);
            let (k, j) = cell(base, d);
            let nb = map.profiles.len().div_ceil(BLOCK);
            let block_min = |b: usize| {
                (b * BLOCK..((b + 1) * BLOCK).min(map.profiles.len()))
                    .map(|i| map.tables[i][k][j])
                    .min()
                    .unwrap_or(u64::MAX)
            };
            let first = (0..nb).min_by_key(|&b| (block_min(b), b));
            let mut order: Vec<(usize, bool)> = preferred.iter().map(|&i| (i, true)).collect();
            for b in first
                .into_iter()
                .chain((0..nb).filter(|&b| Some(b) != first))
            {
                for i in b * BLOCK..((b + 1) * BLOCK).min(map.profiles.len()) {
                    if !preferred.contains(&i) {
                        order.push((i, false));
                    }
                }
            }
            let mut best: Option<(u64, (bool, u32, u32), usize)> = None;
            let mut at_from = 0;
            for (i, is_preferred) in order {
                if let Some((bt, _, bi)) = best {
                    if !is_preferred
                        && bt == from
                        && (at_from >= FIT_SCAN || preferred.contains(&bi))
                    {
                        break;
                    }
                }
                let Some((t, step)) = e[i] else { continue };
                if t == from {
                    at_from += 1;
                }
                let key = (t, fit(i, step), i);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            return best.map(|(t, _, i)| (t, vec![i]));
        }
        // Several nodes: t moves to the needed-th smallest start (and past every required
        // node's) until it stays.
        let mut t = from;
        loop {
            if t > limit {
                return None;
            }
            let e = every_start(map, member, t, d, limit, need_of);
            let mut starts: Vec<u64> = e.iter().flatten().map(|x| x.0).collect();
            starts.sort_unstable();
            if starts.len() < needed {
                return None;
            }
            let mut next = starts[needed - 1];
            for &r in required {
                next = next.max(e[r]?.0);
            }
            if next == t {
                let mut at_t: Vec<usize> = (0..e.len())
                    .filter(|&i| e[i].is_some_and(|x| x.0 == t))
                    .collect();
                at_t.sort_by_key(|&i| (!required.contains(&i), fit(i, e[i].unwrap().1), i));
                at_t.truncate(needed);
                return Some((t, at_t));
            }
            t = next;
        }
    }

    /// A job booked on a node: start and length in minutes, CPUs, GPUs.
    type Booked = (u64, u64, u32, u32);

    #[derive(Clone, Debug)]
    struct Case {
        /// Per node: CPUs, GPUs, and the jobs booked on it.
        nodes: Vec<(u32, u32, Vec<Booked>)>,
        not_member: Vec<bool>,
        cpus: u32,
        gpus: u32,
        needed: usize,
        minutes: u64,
        from_min: u64,
        limit_min: u64,
        exclusive: bool,
        required: Vec<usize>,
        preferred: Vec<usize>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let node = (
            prop::sample::select(vec![4u32, 8, 16, 32]),
            0u32..=2,
            prop::collection::vec((0u64..200, 1u64..150, 1u32..=16, 0u32..=1), 0..4),
        );
        (
            prop::collection::vec(node, 1..120),
            prop::collection::vec(prop::bool::weighted(0.1), 120),
            (
                1u32..=16,
                0u32..=1,
                prop::sample::select(vec![1usize, 1, 2, 3, 5]),
            ),
            (1u64..200, 0u64..60, 50u64..400, prop::bool::weighted(0.1)),
            (
                prop::collection::vec(0usize..120, 0..2),
                prop::collection::vec(0usize..120, 0..3),
            ),
        )
            .prop_map(
                |(
                    nodes,
                    not_member,
                    (cpus, gpus, needed),
                    (minutes, from_min, limit_min, exclusive),
                    (required, preferred),
                )| {
                    let n = nodes.len();
                    let mut required: Vec<usize> =
                        required.into_iter().filter(|&r| r < n).collect();
                    required.dedup();
                    let mut preferred: Vec<usize> =
                        preferred.into_iter().filter(|&p| p < n).collect();
                    preferred.sort_unstable();
                    preferred.dedup();
                    Case {
                        nodes,
                        not_member,
                        cpus,
                        gpus,
                        needed,
                        minutes,
                        from_min,
                        limit_min,
                        exclusive,
                        required,
                        preferred,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn the_pruned_search_finds_what_looking_at_every_node_finds(c in case()) {
            let now = 1000 * MIN;
            let mut map = Map::new(
                c.nodes
                    .iter()
                    .map(|&(cpus, gpus, _)| Profile {
                        steps: vec![Step { at: now, cpus, gpus, mem: 1 << 20 }],
                    })
                    .collect(),
            );
            let caps: Vec<Need> = c
                .nodes
                .iter()
                .map(|&(cpus, gpus, _)| Need { cpus, mem: 1 << 20, gpus })
                .collect();
            for (i, (_, _, booked)) in c.nodes.iter().enumerate() {
                for &(start, len, cpus, gpus) in booked {
                    map.book(i, now + start * MIN, len * MIN, Need { cpus, mem: 0, gpus });
                }
            }
            let base = Need { cpus: c.cpus, mem: 0, gpus: c.gpus };
            let member = |i: usize| {
                !c.not_member[i]
                    && caps[i].cpus >= base.cpus
                    && caps[i].gpus >= base.gpus
            };
            let need_of = |i: usize| if c.exclusive { caps[i] } else { base };
            let required: Vec<usize> = c.required.iter().copied().filter(|&r| member(r)).collect();
            let from = now + c.from_min * MIN;
            let d = c.minutes * MIN;
            let limit = now + c.limit_min * MIN;
            let mut scratch = Scratch::default();
            // Twice with the same scratch: a search leaves nothing behind for the next.
            for _ in 0..2 {
                let fast = earliest_start(
                    &map, member, base, &mut scratch, &required, &c.preferred, c.needed,
                    from, d, limit, need_of, |_, t| t,
                );
                let slow = reference(
                    &map, &member, base, &required, &c.preferred, c.needed, from, d, limit,
                    &need_of,
                );
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
