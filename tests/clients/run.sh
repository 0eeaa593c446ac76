#!/usr/bin/env bash
# Real clients, end to end (issue 6, "Real clients"): submitit and dask-jobqueue, installed from
# PyPI into a venv, drive real jobs through a `drover up` cluster, unchanged.
#
#   tests/clients/run.sh                 # from the repository root; needs network for PyPI
#
# Environment: DROVER_BIN (default: build and use target/debug/drover), CLIENTS_VENV (reuse a
# venv that already has the packages), CLIENTS_WORK (keep the cluster's files there; default a
# fresh temp dir, removed on success). Exit 0 only if every check in clients.py passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${CLIENTS_WORK:-$(mktemp -d /tmp/drover-clients.XXXXXX)}"
mkdir -p "$WORK"
log() { printf '[clients %s] %s\n' "$(date +%T)" "$*" >&2; }

DROVER="${DROVER_BIN:-}"
if [[ -z "$DROVER" ]]; then
    log "building drover (debug)"
    (cd "$ROOT" && cargo build --quiet --bin drover)
    DROVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/drover"
fi
[[ -x "$DROVER" ]] || { log "no drover binary at $DROVER"; exit 2; }

VENV="${CLIENTS_VENV:-$WORK/venv}"
if ! "$VENV/bin/python" -c 'import submitit, dask_jobqueue, distributed' 2>/dev/null; then
    log "creating $VENV and installing submitit dask-jobqueue dask distributed from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        submitit dask-jobqueue dask distributed
fi
"$VENV/bin/pip" list --disable-pip-version-check 2>/dev/null \
    | grep -E -i '^(submitit|dask-jobqueue|dask|distributed) ' >&2 || true

log "starting drover up in $WORK/cluster"
"$DROVER" up --dir "$WORK/cluster" --replicas 3 --nodes 2 --cpus-per-node 2 \
    --mem-per-node 4000 >"$WORK/up.log" 2>&1 &
UP=$!
stop() {
    kill -TERM "$UP" 2>/dev/null || true
    wait "$UP" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 1 600); do
    [[ -f "$WORK/cluster/env" ]] && break
    kill -0 "$UP" 2>/dev/null || { cat "$WORK/up.log" >&2; exit 2; }
    sleep 0.2
done
[[ -f "$WORK/cluster/env" ]] || { log "cluster not ready"; cat "$WORK/up.log" >&2; exit 2; }

# sbatch, srun, squeue, scancel, sacct, … on PATH, pointed at this cluster; no SLURM_* needed.
# shellcheck disable=SC1091
source "$WORK/cluster/env"
unset SLURM_CONF
# The commands remember the highest log index they have seen (read-your-writes); that memory
# is not keyed by cluster, so a fresh cluster gets its own.
export DROVER_STATE_CACHE="$WORK/client-state"
log "commands: $(command -v sbatch) $(command -v srun) $(command -v sacct)"

cd "$WORK"
rc=0
"$VENV/bin/python" "$ROOT/tests/clients/clients.py" "$WORK" || rc=$?
if [[ $rc -ne 0 ]]; then
    log "FAILED (rc=$rc); cluster files kept in $WORK"
    exit "$rc"
fi
log "all client checks passed"
stop
trap - EXIT
[[ -n "${CLIENTS_WORK:-}" ]] || rm -rf "$WORK"
