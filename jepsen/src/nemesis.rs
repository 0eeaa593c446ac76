//! Nemeses: faults on real processes, one at a time, each recorded as a `fault` invoke (start)
//! and ok (healed) in the history.
//!
//! - `kill`: kill -9 of the leader (half the time) or a random replica; restarted after the hold.
//! - `pause`: SIGSTOP of the leader or a random replica; SIGCONT after the hold.
//! - `restart`: kill -9 of every replica and node daemon at once; all restarted together.
//! - `kill-node`: kill -9 of a random node daemon; restarted after the hold.
//! - `clock`: the leader's (half the time) or a random replica's clock runs 1–120 s ahead or
//!   behind (drover's `DROVER_TEST_CLOCK_SKEW_FILE` hook: time enters the state only as the
//!   leader's stamp); set right after the hold.
//!
//! - `partition`: replicas run in network namespaces; cut replica-to-replica links: the leader
//!   isolated, random minority/majority halves, or a bridge (two sides that each still reach one
//!   middle replica). Clients and node daemons still reach every replica. Healed after the hold.
//! - `partition-ring`: the replicas in a random ring; each reaches only its two neighbours (with
//!   5 replicas every replica still sees a majority, but no two majorities are the same, as in
//!   Jepsen's `majorities-ring`; with 3 replicas a ring cuts nothing).

use crate::cluster::{ctld_label, noded_label, Cluster};
use crate::history::{Event, Kind, Recorder, F};
use crate::rng::Rng;
use crate::workload::find_leader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

pub const ALL: [&str; 7] = [
    "kill",
    "pause",
    "restart",
    "kill-node",
    "clock",
    "partition",
    "partition-ring",
];

/// Whether a nemesis needs the replicas in network namespaces.
pub fn is_partition(n: &str) -> bool {
    n.starts_with("partition")
}

/// The links a ring partition cuts: `ring` in order, each replica keeps its two neighbours.
pub fn ring_cuts(ring: &[u64]) -> Vec<(u64, u64)> {
    let n = ring.len();
    let mut cuts = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let d = j - i;
            if d != 1 && d != n - 1 {
                cuts.push((ring[i], ring[j]));
            }
        }
    }
    cuts
}

pub fn parse(list: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for n in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match n {
            "all" => out.extend(ALL.iter().map(|s| s.to_string())),
            "none" => {}
            _ if ALL.contains(&n) => out.push(n.to_string()),
            _ => anyhow::bail!(
                "unknown nemesis `{n}`; known: {}, all, none",
                ALL.join(", ")
            ),
        }
    }
    out.dedup();
    Ok(out)
}

pub struct Nemesis {
    pub cluster: Arc<Cluster>,
    pub channels: Vec<Channel>,
    pub rec: Recorder,
    pub faults: Vec<String>,
    /// Quiet time between faults, and how long each fault is held (ms).
    pub interval_ms: u64,
    pub hold_ms: u64,
}

impl Nemesis {
    fn fault_event(&self, kind: Kind, op: u64, info: String) {
        self.rec.record(Event {
            process: "nemesis".into(),
            kind: Some(kind),
            f: Some(F::Fault),
            op,
            info: Some(info),
            ..Default::default()
        });
    }

    async fn pick_replica(&self, rng: &mut Rng) -> (u64, &'static str) {
        if rng.below(2) == 0 {
            if let Some(l) = find_leader(&self.channels).await {
                return (l, "leader");
            }
        }
        let k = rng.below(self.cluster.ctlds.len() as u64) as usize;
        (self.cluster.ctlds[k].0, "random replica")
    }

    pub async fn run(self, seed: u64, stop: Arc<AtomicBool>) {
        if self.faults.is_empty() {
            return;
        }
        let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
        let mut op = 0;
        loop {
            let quiet = self.interval_ms / 2 + rng.below(self.interval_ms.max(1));
            tokio::time::sleep(Duration::from_millis(quiet)).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            op += 1;
            let fault = self.faults[rng.below(self.faults.len() as u64) as usize].clone();
            let hold = Duration::from_millis(self.hold_ms / 2 + rng.below(self.hold_ms.max(1)));
            let c = self.cluster.clone();
            match fault.as_str() {
                "kill" => {
                    let (id, why) = self.pick_replica(&mut rng).await;
                    let l = ctld_label(id);
                    self.fault_event(Kind::Invoke, op, format!("kill -9 {l} ({why})"));
                    let c2 = c.clone();
                    let l2 = l.clone();
                    let _ = tokio::task::spawn_blocking(move || c2.kill9(&l2)).await;
                    tokio::time::sleep(hold).await;
                    let r = c.start(&l);
                    self.fault_event(Kind::Ok, op, format!("restart {l} {r:?}"));
                }
                "pause" => {
                    let (id, why) = self.pick_replica(&mut rng).await;
                    let l = ctld_label(id);
                    self.fault_event(Kind::Invoke, op, format!("SIGSTOP {l} ({why})"));
                    c.pause(&l);
                    tokio::time::sleep(hold).await;
                    c.resume(&l);
                    self.fault_event(Kind::Ok, op, format!("SIGCONT {l}"));
                }
                "restart" => {
                    self.fault_event(
                        Kind::Invoke,
                        op,
                        "kill -9 every replica and node daemon".into(),
                    );
                    let c2 = c.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        for l in c2.labels() {
                            c2.kill9(&l);
                        }
                    })
                    .await;
                    tokio::time::sleep(hold.min(Duration::from_secs(2))).await;
                    let mut errors = Vec::new();
                    for l in c.labels() {
                        if let Err(e) = c.start(&l) {
                            errors.push(format!("{l}: {e}"));
                        }
                    }
                    self.fault_event(Kind::Ok, op, format!("restart all {errors:?}"));
                }
                "clock" => {
                    let (id, why) = self.pick_replica(&mut rng).await;
                    let ahead = rng.below(2) == 0;
                    let ms = (1 + rng.below(120)) as i64 * 1000 * if ahead { 1 } else { -1 };
                    self.fault_event(
                        Kind::Invoke,
                        op,
                        format!("clock of {} {ms:+} ms ({why})", ctld_label(id)),
                    );
                    let r = c.set_clock_skew(id, ms);
                    tokio::time::sleep(hold).await;
                    let healed = c.set_clock_skew(id, 0);
                    self.fault_event(
                        Kind::Ok,
                        op,
                        format!("clock of {} right {:?}", ctld_label(id), r.and(healed)),
                    );
                }
                "kill-node" => {
                    let k = rng.below(c.nodes.len() as u64) as usize;
                    let l = noded_label(&c.nodes[k]);
                    self.fault_event(Kind::Invoke, op, format!("kill -9 {l}"));
                    let c2 = c.clone();
                    let l2 = l.clone();
                    let _ = tokio::task::spawn_blocking(move || c2.kill9(&l2)).await;
                    tokio::time::sleep(hold).await;
                    let r = c.start(&l);
                    self.fault_event(Kind::Ok, op, format!("restart {l} {r:?}"));
                }
                "partition" | "partition-ring" => {
                    let Some(net) = &c.net else { continue };
                    let mut ids: Vec<u64> = c.ctlds.iter().map(|(id, _)| *id).collect();
                    for i in (1..ids.len()).rev() {
                        ids.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    let kind = if fault == "partition-ring" {
                        3
                    } else {
                        rng.below(3)
                    };
                    let (a, b, what): (Vec<u64>, Vec<u64>, String) = match kind {
                        0 => {
                            let l = find_leader(&self.channels).await.unwrap_or(ids[0]);
                            let rest: Vec<u64> = ids.iter().copied().filter(|&x| x != l).collect();
                            (vec![l], rest, format!("isolate leader ctld-{l}"))
                        }
                        1 => {
                            let k = (ids.len() - 1) / 2;
                            let (x, y) = ids.split_at(k);
                            (x.to_vec(), y.to_vec(), format!("halves {x:?} | {y:?}"))
                        }
                        3 => (Vec::new(), Vec::new(), format!("ring {ids:?}")),
                        _ => {
                            // ids[0] is the bridge; the others split in two sides.
                            let sides = &ids[1..];
                            let k = sides.len() / 2;
                            let (x, y) = sides.split_at(k);
                            (
                                x.to_vec(),
                                y.to_vec(),
                                format!("bridge {x:?} | ctld-{} | {y:?}", ids[0]),
                            )
                        }
                    };
                    self.fault_event(Kind::Invoke, op, format!("partition: {what}"));
                    let mut pairs: Vec<(u64, u64)> = a
                        .iter()
                        .flat_map(|&x| b.iter().map(move |&y| (x, y)))
                        .collect();
                    if kind == 3 {
                        pairs = ring_cuts(&ids);
                    }
                    let mut errors = Vec::new();
                    for (x, y) in pairs {
                        if let Err(e) = net.cut(x, y) {
                            errors.push(e.to_string());
                        }
                    }
                    tokio::time::sleep(hold).await;
                    net.heal();
                    self.fault_event(Kind::Ok, op, format!("healed partition {errors:?}"));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_only_neighbours() {
        assert_eq!(ring_cuts(&[1, 2, 3]), vec![]);
        assert_eq!(
            ring_cuts(&[3, 1, 4, 5, 2]),
            vec![(3, 4), (3, 5), (1, 5), (1, 2), (4, 2)]
        );
        assert!(parse("all")
            .unwrap()
            .contains(&"partition-ring".to_string()));
        assert!(is_partition("partition-ring") && !is_partition("kill"));
    }
}
