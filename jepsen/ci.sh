#!/usr/bin/env bash
# CI's short jepsen run (~3 minutes): kills, pauses, restart-all, node-daemon kills, clock skew
# and partitions against a debug build of drover (debug builds check the state machine's
# invariants after every apply), with job arrays and (fake) GPUs in the workload.
# Exit 0 only on `valid: true`.
# Partitions need root and iproute2; without them the run leaves partitions out.
# The workload includes hold/release, requeue and dependencies (finding 2 is fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p drover --bin drover
cargo build -p drover-jepsen
target="${CARGO_TARGET_DIR:-target}"
nemeses=kill,pause,restart,kill-node,clock,partition
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
  nemeses=kill,pause,restart,kill-node,clock
fi
dir="$(mktemp -d -t drover-jepsen-ci.XXXXXX)"
status=0
"$target/debug/drover-jepsen" test --time-limit "${JEPSEN_TIME_LIMIT:-140}" --nemesis "$nemeses" \
  --replicas 3 --nodes 3 --clients 8 --interval-ms 4000 --hold-ms 3000 --arrays --gpus-per-node 2 \
  --drover "$target/debug/drover" --dir "$dir" || status=$?
if [ "$status" = 0 ]; then
  rm -rf "$dir"
else
  echo "jepsen: exit $status; the run is kept in $dir (report.txt, timeline.html, cluster/log)" >&2
fi
exit "$status"
