//! `squeue -s/--steps`: the running steps of running jobs (the batch step and srun's), pure.
//! Reference: src/squeue/squeue.c `_print_job_steps` (default format
//! `%.15i %.8j %.9P %.8u %.9M %N`), print.c `_filter_step` and the `_print_step_*` fields,
//! opts.c `_build_step_list` (`job.step`, `job_task.step`, `batch`). The steps come from the
//! same records `scontrol show step` reads (`ListRecords`).

use crate::format::{elapsed, format_specs, print_str, timestamp};
use drover_proto::JobRecord;
use std::cmp::Ordering;

/// squeue's step format when none is given.
pub const DEFAULT_FORMAT: &str = "%.15i %.8j %.9P %.8u %.9M %N";

/// A step a `-s LIST` names: `12.0`, `12.batch`, `10_3.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSel {
    pub job: u64,
    pub task: Option<u32>,
    pub step: String,
}

/// Parses `-s`'s list; `None` names the bad item.
pub fn parse_list(list: &str) -> Result<Vec<StepSel>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("squeue: error: Invalid job step id: {item}\n");
        let (job, step) = item.split_once('.').ok_or_else(bad)?;
        let step = match step {
            "batch" => "batch".to_string(),
            s => s.parse::<u32>().map_err(|_| bad())?.to_string(),
        };
        let (job, task) = match job.split_once('_') {
            Some((j, t)) => (j, Some(t.parse::<u32>().map_err(|_| bad())?)),
            None => (job, None),
        };
        let job = job.parse::<u64>().ok().filter(|&j| j > 0).ok_or_else(bad)?;
        out.push(StepSel { job, task, step });
    }
    Ok(out)
}

/// One running step, as squeue lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRow {
    pub job_id: u64,
    pub array_job_id: u64,
    pub array_task_id: Option<u32>,
    /// `batch`, or srun's step number.
    pub step: String,
    pub name: String,
    pub partition: String,
    pub user: String,
    pub uid: u32,
    pub start_time: i64,
    pub node_list: String,
    pub ntasks: u32,
}

impl StepRow {
    /// `12.0`, `12.batch`, `10_3.0` (an array task's steps carry the array's id).
    pub fn id(&self) -> String {
        match (self.array_job_id, self.array_task_id) {
            (a, Some(t)) if a > 0 => format!("{a}_{t}.{}", self.step),
            _ => format!("{}.{}", self.job_id, self.step),
        }
    }

    /// Slurm orders the batch step after every numbered step (`SLURM_BATCH_SCRIPT` is large).
    fn step_key(&self) -> u64 {
        self.step.parse::<u64>().unwrap_or(u64::from(u32::MAX))
    }
}

/// The running steps of the running jobs among `records`.
pub fn rows(records: &[JobRecord]) -> Vec<StepRow> {
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.state == "RUNNING") {
        let row = |step: String, name: &str, start: i64, nodes: &str, ntasks: u32| StepRow {
            job_id: r.job_id,
            array_job_id: r.array_job_id,
            array_task_id: r.array_task_id,
            step,
            name: name.to_string(),
            partition: r.partition.clone(),
            user: r.user.clone(),
            uid: r.uid,
            start_time: start,
            node_list: nodes.to_string(),
            ntasks,
        };
        if let Some(b) = r.batch.as_ref().filter(|b| b.state == "RUNNING") {
            out.push(row("batch".into(), "batch", b.start_time, &b.node, 1));
        }
        for st in r.steps.iter().filter(|s| s.state == "RUNNING") {
            out.push(row(
                st.step_id.to_string(),
                &st.name,
                st.start_time,
                &st.node_list,
                st.ntasks,
            ));
        }
    }
    out
}

/// What `-s` keeps (print.c `_filter_step`).
#[derive(Clone, Debug, Default)]
pub struct StepFilter {
    pub jobs: Vec<u64>,
    pub steps: Vec<StepSel>,
    pub partitions: Vec<String>,
    pub uids: Option<Vec<u32>>,
    pub nodes: Vec<String>,
}

pub fn select(rows: Vec<StepRow>, f: &StepFilter) -> Vec<StepRow> {
    rows.into_iter()
        .filter(|s| {
            f.jobs.is_empty()
                || f.jobs.contains(&s.job_id)
                || (s.array_job_id > 0 && f.jobs.contains(&s.array_job_id))
        })
        .filter(|s| f.partitions.is_empty() || f.partitions.contains(&s.partition))
        .filter(|s| {
            f.steps.is_empty()
                || f.steps.iter().any(|sel| {
                    sel.step == s.step
                        && match sel.task {
                            None => sel.job == s.job_id || sel.job == s.array_job_id,
                            Some(t) => sel.job == s.array_job_id && s.array_task_id == Some(t),
                        }
                })
        })
        .filter(|s| {
            f.nodes.is_empty()
                || drover_scheduler::hostlist::expand(&s.node_list)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| f.nodes.contains(n))
        })
        .filter(|s| f.uids.as_ref().is_none_or(|u| u.contains(&s.uid)))
        .collect()
}

/// `-S` for steps (src/squeue/sort.c, step keys): `i` id, `j` name, `N` nodes, `P` partition,
/// `S` start, `M` time used, `u` user, `U` uid; `-` reverses; unknown keys are ignored.
/// Without `-S`: `P,i`.
pub fn sort(rows: &mut [StepRow], spec: Option<&str>) {
    let spec = spec.unwrap_or("P,i");
    let keys: Vec<(bool, char)> = spec
        .split(',')
        .filter_map(|k| {
            let (desc, k) = match k.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, k.strip_prefix('+').unwrap_or(k)),
            };
            k.chars().next().map(|c| (desc, c))
        })
        .collect();
    rows.sort_by(|a, b| {
        for &(desc, key) in &keys {
            let o = match key {
                'i' => (a.job_id, a.step_key()).cmp(&(b.job_id, b.step_key())),
                'j' => a.name.cmp(&b.name),
                'N' => a.node_list.cmp(&b.node_list),
                'P' => a.partition.cmp(&b.partition),
                'S' => a.start_time.cmp(&b.start_time),
                // Time used grows as the start goes back.
                'M' => b.start_time.cmp(&a.start_time),
                'u' => a.user.cmp(&b.user),
                'U' => a.uid.cmp(&b.uid),
                _ => Ordering::Equal,
            };
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// The header and the rows in an `-o` step format, and the `Invalid job step format
/// specification` lines for letters squeue has no step field for (printed back literally).
pub fn render(
    rows: &[StepRow],
    format: &str,
    header: bool,
    now: i64,
    utc: i32,
) -> (String, String) {
    let (prefix, specs) = format_specs(format, false);
    let mut errors = String::new();
    for spec in &specs {
        if let Some(c) = spec.letter.filter(|c| field(*c).is_none()) {
            errors.push_str(&format!(
                "squeue: error: Invalid job step format specification: {c}\n"
            ));
        }
    }
    let line = |row: Option<&StepRow>| {
        let mut out = prefix.to_string();
        for spec in &specs {
            let Some((header, right_header)) = spec.letter.and_then(field) else {
                out.push('%');
                out.push_str(spec.token);
                continue;
            };
            let letter = spec.letter.unwrap_or(' ');
            let (text, cut, right) = match row {
                // START_TIME's header is always left-justified (`_print_step_time_start`).
                None => (
                    header.to_string(),
                    letter != 'N',
                    spec.right && right_header,
                ),
                Some(r) => (value(r, letter, now, utc), letter != 'N', spec.right),
            };
            print_str(&mut out, &text, spec.width, right, cut);
            out.push_str(spec.suffix);
        }
        out.push('\n');
        out
    };
    let mut out = String::new();
    if header {
        out.push_str(&line(None));
    }
    for r in rows {
        out.push_str(&line(Some(r)));
    }
    (out, errors)
}

/// A step field's header, and whether the header follows the field's justification.
fn field(letter: char) -> Option<(&'static str, bool)> {
    Some(match letter {
        'A' => ("TASKS", true),
        'b' => ("TRES_PER_NODE", true),
        'i' => ("STEPID", true),
        'j' => ("NAME", true),
        'l' => ("TIME_LIMIT", true),
        'M' => ("TIME", true),
        'N' => ("NODELIST", true),
        'P' => ("PARTITION", true),
        'S' => ("START_TIME", false),
        'u' => ("USER", true),
        'U' => ("UID", true),
        _ => return None,
    })
}

fn value(r: &StepRow, letter: char, now: i64, utc: i32) -> String {
    match letter {
        'A' => r.ntasks.to_string(),
        'b' => "N/A".to_string(),
        'i' => r.id(),
        'j' => r.name.clone(),
        // drover's steps have no time limit of their own.
        'l' => "UNLIMITED".to_string(),
        'M' => elapsed(now.saturating_sub(r.start_time).max(0)),
        'N' => r.node_list.clone(),
        'P' => r.partition.clone(),
        'S' => timestamp(r.start_time, utc, "N/A"),
        'u' => r.user.clone(),
        'U' => r.uid.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::{SrunStepRecord, StepRecord};

    const NOW: i64 = 1_700_000_000;

    fn running(id: u64, user: &str, uid: u32) -> JobRecord {
        JobRecord {
            job_id: id,
            name: "job".into(),
            partition: "debug".into(),
            user: user.into(),
            uid,
            state: "RUNNING".into(),
            start_time: NOW - 65,
            node_list: "n[1-2]".into(),
            batch: Some(StepRecord {
                node: "n1".into(),
                cpus: 2,
                start_time: NOW - 65,
                state: "RUNNING".into(),
                ..Default::default()
            }),
            steps: vec![
                SrunStepRecord {
                    step_id: 0,
                    name: "hostname".into(),
                    node_list: "n[1-2]".into(),
                    num_nodes: 2,
                    ntasks: 4,
                    cpus: 4,
                    start_time: NOW - 5,
                    state: "RUNNING".into(),
                    ..Default::default()
                },
                SrunStepRecord {
                    step_id: 1,
                    name: "done".into(),
                    state: "COMPLETED".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn default_format_lists_batch_and_srun_steps_in_slurms_order() {
        let mut pending = running(9, "bob", 1001);
        pending.state = "PENDING".into();
        let mut rows = rows(&[running(12, "alice", 1000), pending]);
        sort(&mut rows, None);
        let (text, errors) = render(&rows, DEFAULT_FORMAT, true, NOW, 0);
        assert_eq!(errors, "");
        assert_eq!(
            text,
            concat!(
                "         STEPID     NAME PARTITION     USER      TIME NODELIST\n",
                "           12.0 hostname     debug    alice      0:05 n[1-2]\n",
                "       12.batch    batch     debug    alice      1:05 n1\n",
            )
        );
    }

    #[test]
    fn filters_and_step_lists() {
        let mut task = running(20, "bob", 1001);
        task.array_job_id = 19;
        task.array_task_id = Some(3);
        task.partition = "gpu".into();
        let all = rows(&[running(12, "alice", 1000), task]);
        let ids = |f: &StepFilter| {
            let mut r = select(all.clone(), f);
            sort(&mut r, None);
            r.iter().map(StepRow::id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&StepFilter::default()),
            ["12.0", "12.batch", "19_3.0", "19_3.batch"],
            "partition first (P,i): debug < gpu"
        );
        let by_steps = |list: &str| StepFilter {
            steps: parse_list(list).unwrap(),
            ..StepFilter::default()
        };
        assert_eq!(ids(&by_steps("12.0,19_3.batch")), ["12.0", "19_3.batch"]);
        assert_eq!(
            ids(&by_steps("19.0")),
            ["19_3.0"],
            "the array's id names its tasks"
        );
        assert_eq!(
            ids(&StepFilter {
                uids: Some(vec![1000]),
                ..StepFilter::default()
            }),
            ["12.0", "12.batch"]
        );
        assert_eq!(
            ids(&StepFilter {
                partitions: vec!["gpu".into()],
                jobs: vec![19],
                ..StepFilter::default()
            }),
            ["19_3.0", "19_3.batch"]
        );
        assert_eq!(
            ids(&StepFilter {
                nodes: vec!["n2".into()],
                ..StepFilter::default()
            }),
            ["12.0", "19_3.0"]
        );
        assert!(parse_list("12").is_err());
        assert!(parse_list("12.x").is_err());
        assert_eq!(
            parse_list("0.1").unwrap_err(),
            "squeue: error: Invalid job step id: 0.1\n"
        );
    }

    #[test]
    fn other_fields_and_an_unknown_letter() {
        let mut r = rows(&[running(12, "alice", 1000)]);
        sort(&mut r, None);
        let (text, errors) = render(&r[..1], "%i|%A|%l|%U|%b|%S|%q", true, NOW, 0);
        assert_eq!(
            errors,
            "squeue: error: Invalid job step format specification: q\n"
        );
        assert_eq!(
            text,
            "STEPID|TASKS|TIME_LIMIT|UID|TRES_PER_NODE|START_TIME|%q\n12.0|4|UNLIMITED|1000|N/A|2023-11-14T22:13:15|%q\n"
        );
    }
}
