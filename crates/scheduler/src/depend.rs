//! Job dependencies (`sbatch -d/--dependency`) and job array index expressions (`--array`):
//! their syntax, their Slurm spelling, and the state each condition of a dependency is in.
//!
//! Sources: man1/sbatch.1 (`--dependency`, `--array`), doc/html/job_array.shtml,
//! src/slurmctld/job_scheduler.c (`update_job_dependency`, `print_job_dependency`),
//! reference/slurm.md §4.4–§4.5.
//!
//! A dependency is a list of conditions joined by `,` (all must hold) or `?` (any one). Each
//! condition names one job (`afterok:12:13` is two conditions); `singleton` names none. Apply
//! keeps each condition's status current as the jobs it names start and end (state.rs), so a
//! dependency stays decided after its target is purged from memory.

use crate::types::{JobId, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The largest array index plus one (Slurm's `MaxArraySize` default).
pub const MAX_ARRAY_SIZE: u32 = 1001;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DepKind {
    #[serde(rename = "after")]
    After,
    #[serde(rename = "afterany")]
    AfterAny,
    #[serde(rename = "afterok")]
    AfterOk,
    #[serde(rename = "afternotok")]
    AfterNotOk,
    #[serde(rename = "aftercorr")]
    AfterCorr,
    #[serde(rename = "singleton")]
    Singleton,
}

impl DepKind {
    pub fn name(self) -> &'static str {
        match self {
            DepKind::After => "after",
            DepKind::AfterAny => "afterany",
            DepKind::AfterOk => "afterok",
            DepKind::AfterNotOk => "afternotok",
            DepKind::AfterCorr => "aftercorr",
            DepKind::Singleton => "singleton",
        }
    }

    fn parse(s: &str) -> Option<DepKind> {
        Some(match s.to_ascii_lowercase().as_str() {
            "after" => DepKind::After,
            "afterany" => DepKind::AfterAny,
            "afterok" => DepKind::AfterOk,
            "afternotok" => DepKind::AfterNotOk,
            "aftercorr" => DepKind::AfterCorr,
            "singleton" => DepKind::Singleton,
            _ => return None,
        })
    }
}

/// Which part of a job a condition waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DepTask {
    /// `12`: the job; for an array, every task (Slurm prints `12_*`).
    Whole,
    /// `12_4`: one task of an array.
    Task(u32),
}

/// Where a condition stands. Apply moves `Waiting` to one of the others, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepStatus {
    #[serde(rename = "waiting")]
    Waiting,
    /// Met; the job may start from this time on (`after:N+min` adds the minutes).
    #[serde(rename = "satisfied")]
    Satisfied { at: TimestampMs },
    /// Can never be met (reason `DependencyNeverSatisfied`).
    #[serde(rename = "failed")]
    Failed,
}

/// One condition: a kind and, except for `singleton`, the job it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepCondition {
    pub kind: DepKind,
    /// `JobId(0)` for `singleton`.
    pub job: JobId,
    pub task: DepTask,
    /// `after:N+M`: M minutes after N started.
    pub delay_min: u32,
    pub status: DepStatus,
}

/// A parsed `--dependency` value with each condition's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub conditions: Vec<DepCondition>,
    /// Joined by `?`: any one condition suffices.
    pub any: bool,
}

/// Whether a job's dependency lets it start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Reason `Dependency` (singleton is decided by the planner on top of this).
    Waiting,
    /// Reason `DependencyNeverSatisfied`.
    Never,
}

impl Dependency {
    /// Parses Slurm's syntax: `type:id[:id...][,type:id...]` or the same joined by `?`;
    /// `after:id+minutes`; ids `N`, `N_i` (one array task) or `N_*` (every task); a bare id
    /// list means `afterany`; `singleton`.
    pub fn parse(s: &str) -> Result<Dependency, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty dependency".to_string());
        }
        if s.contains(',') && s.contains('?') {
            return Err(format!(
                "dependency `{s}` mixes `,` (all) and `?` (any): use one of them"
            ));
        }
        let any = s.contains('?');
        let mut conditions = Vec::new();
        for part in s.split([',', '?']) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("dependency `{s}` has an empty element"));
            }
            let (kind, ids) = match part.split_once(':') {
                Some((k, rest)) => match DepKind::parse(k) {
                    Some(kind) => (kind, Some(rest)),
                    // The old form: a list of job ids means afterany.
                    None if k.bytes().all(|b| b.is_ascii_digit()) => {
                        (DepKind::AfterAny, Some(part))
                    }
                    None => return Err(format!("unknown dependency type `{k}` in `{part}`")),
                },
                None => match DepKind::parse(part) {
                    Some(DepKind::Singleton) => (DepKind::Singleton, None),
                    Some(_) => return Err(format!("dependency `{part}` names no job id")),
                    None if part.bytes().all(|b| b.is_ascii_digit()) => {
                        (DepKind::AfterAny, Some(part))
                    }
                    None => return Err(format!("unknown dependency type `{part}`")),
                },
            };
            match (kind, ids) {
                (DepKind::Singleton, Some(_)) => {
                    return Err(format!("`singleton` takes no job id (in `{part}`)"));
                }
                (DepKind::Singleton, None) => conditions.push(DepCondition {
                    kind,
                    job: JobId(0),
                    task: DepTask::Whole,
                    delay_min: 0,
                    status: DepStatus::Waiting,
                }),
                (_, None) => return Err(format!("dependency `{part}` names no job id")),
                (_, Some(ids)) => {
                    for id in ids.split(':') {
                        conditions.push(parse_target(kind, id, part)?);
                    }
                }
            }
        }
        Ok(Dependency { conditions, any })
    }

    /// Combines the conditions' statuses (at `now`).
    pub fn readiness(&self, now: TimestampMs) -> Readiness {
        let conds = self
            .conditions
            .iter()
            .filter(|c| c.kind != DepKind::Singleton);
        let mut any_ready = false;
        let mut all_ready = true;
        let mut all_failed = true;
        let mut any_failed = false;
        let mut counted = false;
        for c in conds {
            counted = true;
            let ready = matches!(c.status, DepStatus::Satisfied { at } if at <= now);
            let failed = c.status == DepStatus::Failed;
            any_ready |= ready;
            all_ready &= ready;
            all_failed &= failed;
            any_failed |= failed;
        }
        if !counted {
            return Readiness::Ready;
        }
        if self.any {
            if any_ready {
                Readiness::Ready
            } else if all_failed {
                Readiness::Never
            } else {
                Readiness::Waiting
            }
        } else if any_failed {
            Readiness::Never
        } else if all_ready {
            Readiness::Ready
        } else {
            Readiness::Waiting
        }
    }

    pub fn has_singleton(&self) -> bool {
        self.conditions.iter().any(|c| c.kind == DepKind::Singleton)
    }

    /// The jobs the conditions name (for the reverse index).
    pub fn targets(&self) -> BTreeSet<JobId> {
        self.conditions
            .iter()
            .filter(|c| c.kind != DepKind::Singleton)
            .map(|c| c.job)
            .collect()
    }

    /// Slurm's spelling of what remains (`squeue %E`, `scontrol Dependency=`): satisfied
    /// conditions are dropped; each other one is followed by `(unfulfilled)` or `(failed)`.
    /// `arrays` says which targets are job arrays (printed `N_*`). Empty when nothing remains.
    pub fn remaining(&self, now: TimestampMs, is_array: &dyn Fn(JobId) -> bool) -> String {
        let sep = if self.any { "?" } else { "," };
        let mut out = String::new();
        for c in &self.conditions {
            let state = match c.status {
                DepStatus::Satisfied { at } if at <= now => continue,
                DepStatus::Satisfied { .. } | DepStatus::Waiting => "unfulfilled",
                DepStatus::Failed => "failed",
            };
            if !out.is_empty() {
                out.push_str(sep);
            }
            out.push_str(c.kind.name());
            if c.kind != DepKind::Singleton {
                out.push(':');
                out.push_str(&c.job.to_string());
                match c.task {
                    DepTask::Task(i) => out.push_str(&format!("_{i}")),
                    DepTask::Whole if is_array(c.job) => out.push_str("_*"),
                    DepTask::Whole => {}
                }
                if c.delay_min > 0 {
                    out.push_str(&format!("+{}", c.delay_min));
                }
            }
            out.push('(');
            out.push_str(state);
            out.push(')');
        }
        out
    }
}

fn parse_target(kind: DepKind, text: &str, part: &str) -> Result<DepCondition, String> {
    let (id_part, delay) = match text.split_once('+') {
        Some((id, m)) if kind == DepKind::After => {
            let m: u32 = m
                .parse()
                .map_err(|_| format!("bad delay `+{m}` in `{part}` (minutes expected)"))?;
            (id, m)
        }
        Some(_) => {
            return Err(format!(
                "`+minutes` is allowed only with `after` (in `{part}`)"
            ))
        }
        None => (text, 0),
    };
    let (id, task) = match id_part.split_once('_') {
        Some((id, "*")) => (id, DepTask::Whole),
        Some((id, t)) => (
            id,
            DepTask::Task(
                t.parse()
                    .map_err(|_| format!("bad array task `{t}` in `{part}`"))?,
            ),
        ),
        None => (id_part, DepTask::Whole),
    };
    let id: u64 = id
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad job id `{id_part}` in `{part}`"))?;
    Ok(DepCondition {
        kind,
        job: JobId(id),
        task,
        delay_min: delay,
        status: DepStatus::Waiting,
    })
}

/// A parsed `--array` value: the task indices and the throttle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayRequest {
    pub tasks: BTreeSet<u32>,
    /// `%N`: at most N tasks run at once; 0: no limit.
    pub max_running: u32,
}

/// Parses `0-15`, `1,3,5`, `1-7:2`, `0-15%4` (any mix of comma-separated ranges and one
/// trailing `%N`). Indices must be below `max_size` (Slurm's MaxArraySize).
pub fn parse_array(s: &str, max_size: u32) -> Result<ArrayRequest, String> {
    let (list, throttle) = match s.split_once('%') {
        Some((l, t)) => {
            let t: u32 = t
                .trim()
                .parse()
                .map_err(|_| format!("bad throttle `%{t}` (a number of tasks expected)"))?;
            (l, t)
        }
        None => (s, 0),
    };
    let mut tasks = BTreeSet::new();
    for part in list.split(',') {
        let part = part.trim();
        let bad = || format!("bad array range `{part}` (expected N, N-M or N-M:S)");
        if part.is_empty() {
            return Err(format!("empty element in array `{s}`"));
        }
        let (range, step) = match part.split_once(':') {
            Some((r, st)) => (r, st.parse::<u32>().map_err(|_| bad())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("array step 0 in `{part}`"));
        }
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = range.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("array range `{part}` ends before it starts"));
        }
        if hi >= max_size {
            return Err(format!(
                "array index {hi} in `{part}` is not below MaxArraySize={max_size}"
            ));
        }
        let mut i = lo;
        while i <= hi {
            tasks.insert(i);
            i = match i.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
    }
    Ok(ArrayRequest {
        tasks,
        max_running: throttle,
    })
}

/// Slurm's compact spelling of a set of indices: `1-3,5,7-9` (squeue's `N_[...]`).
pub fn format_indices(tasks: &BTreeSet<u32>) -> String {
    let mut out = String::new();
    let mut iter = tasks.iter().copied().peekable();
    while let Some(lo) = iter.next() {
        let mut hi = lo;
        while iter.peek() == Some(&(hi + 1)) {
            hi += 1;
            iter.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if hi == lo {
            out.push_str(&lo.to_string());
        } else {
            out.push_str(&format!("{lo}-{hi}"));
        }
    }
    out
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slurm_forms() {
        let d = Dependency::parse("afterok:12:13_2,after:9+5,singleton").unwrap();
        assert!(!d.any);
        let got: Vec<(DepKind, u64, DepTask, u32)> = d
            .conditions
            .iter()
            .map(|c| (c.kind, c.job.0, c.task, c.delay_min))
            .collect();
        assert_eq!(
            got,
            vec![
                (DepKind::AfterOk, 12, DepTask::Whole, 0),
                (DepKind::AfterOk, 13, DepTask::Task(2), 0),
                (DepKind::After, 9, DepTask::Whole, 5),
                (DepKind::Singleton, 0, DepTask::Whole, 0),
            ]
        );
        let d = Dependency::parse("afterany:4?afternotok:5_*").unwrap();
        assert!(d.any);
        assert_eq!(d.conditions[1].task, DepTask::Whole);
        // A bare id list is afterany.
        let d = Dependency::parse("7:8").unwrap();
        assert_eq!(d.conditions.len(), 2);
        assert!(d.conditions.iter().all(|c| c.kind == DepKind::AfterAny));
    }

    #[test]
    fn names_the_bad_part() {
        for (bad, needle) in [
            ("afterok:x", "bad job id `x`"),
            ("afterfoo:1", "unknown dependency type `afterfoo`"),
            ("afterok:1,afterany:2?after:3", "mixes"),
            ("afterok:1+5", "only with `after`"),
            ("afterok", "names no job id"),
            ("singleton:4", "takes no job id"),
            ("afterok:1,", "empty element"),
            ("afterok:0", "bad job id `0`"),
        ] {
            let e = Dependency::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn readiness_all_and_any() {
        let mut d = Dependency::parse("afterok:1,afterok:2").unwrap();
        assert_eq!(d.readiness(0), Readiness::Waiting);
        d.conditions[0].status = DepStatus::Satisfied { at: 10 };
        assert_eq!(d.readiness(20), Readiness::Waiting);
        d.conditions[1].status = DepStatus::Satisfied { at: 30 };
        assert_eq!(d.readiness(20), Readiness::Waiting);
        assert_eq!(d.readiness(30), Readiness::Ready);
        d.conditions[0].status = DepStatus::Failed;
        assert_eq!(d.readiness(30), Readiness::Never);

        let mut d = Dependency::parse("afterok:1?afterok:2").unwrap();
        d.conditions[0].status = DepStatus::Failed;
        assert_eq!(d.readiness(0), Readiness::Waiting);
        d.conditions[1].status = DepStatus::Satisfied { at: 0 };
        assert_eq!(d.readiness(0), Readiness::Ready);
        d.conditions[1].status = DepStatus::Failed;
        assert_eq!(d.readiness(0), Readiness::Never);
    }

    #[test]
    fn remaining_spells_like_slurm() {
        let mut d = Dependency::parse("afterok:12,after:9+5,singleton").unwrap();
        let arrays = |id: JobId| id.0 == 12;
        assert_eq!(
            d.remaining(0, &arrays),
            "afterok:12_*(unfulfilled),after:9+5(unfulfilled),singleton(unfulfilled)"
        );
        d.conditions[1].status = DepStatus::Satisfied { at: 0 };
        d.conditions[0].status = DepStatus::Failed;
        assert_eq!(
            d.remaining(0, &arrays),
            "afterok:12_*(failed),singleton(unfulfilled)"
        );
    }

    #[test]
    fn arrays_parse_and_print() {
        let a = parse_array("0-15:4%2", MAX_ARRAY_SIZE).unwrap();
        assert_eq!(
            a.tasks.iter().copied().collect::<Vec<_>>(),
            vec![0, 4, 8, 12]
        );
        assert_eq!(a.max_running, 2);
        let a = parse_array("1,3,5-7", MAX_ARRAY_SIZE).unwrap();
        assert_eq!(format_indices(&a.tasks), "1,3,5-7");
        assert_eq!(a.max_running, 0);
        for (bad, needle) in [
            ("1-x", "bad array range `1-x`"),
            ("5-1", "ends before"),
            ("0-1001", "MaxArraySize=1001"),
            ("1-4%z", "bad throttle"),
            ("1,,2", "empty element"),
            ("1-4:0", "step 0"),
        ] {
            let e = parse_array(bad, MAX_ARRAY_SIZE).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
