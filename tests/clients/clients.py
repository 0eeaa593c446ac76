"""submitit and dask-jobqueue against a drover cluster (run by tests/clients/run.sh).

Each check prints one line; any failure raises, so the script exits non-zero.
Reference: shared reference/clients.md (what the libraries call and parse).
"""

import subprocess
import sys
import time
from pathlib import Path

WORK = Path(sys.argv[1])


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok - {name}", flush=True)


def sacct_state(job_id):
    out = subprocess.run(
        ["sacct", "-XPn", "-j", str(job_id), "-o", "State"],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.strip()


def wait_for(what, pred, timeout=120):
    deadline = time.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


# Module-level functions, so that submitit pickles them by reference.
def add(a, b):
    return a + b


def square(x):
    import os
    return (x * x, os.environ["SLURM_ARRAY_TASK_ID"])


def fail():
    raise ValueError("this job fails on purpose")


def sleep_long():
    time.sleep(600)


def run_submitit():
    import submitit

    ex = submitit.AutoExecutor(folder=WORK / "submitit" / "%j")
    check("submitit picks the slurm executor (srun on PATH)", ex.cluster == "slurm", ex.cluster)
    ex.update_parameters(timeout_min=10, cpus_per_task=1, mem_gb=1, nodes=1, tasks_per_node=1)

    job = ex.submit(add, 2, 3)
    check("a function returning a value", job.result() == 5, job.result())
    check("  and sacct saw it COMPLETED", sacct_state(job.job_id) == "COMPLETED")

    jobs = ex.map_array(square, range(4))
    results = [j.result() for j in jobs]
    check(
        "an array of 4 (map_array)",
        [r[0] for r in results] == [0, 1, 4, 9] and [r[1] for r in results] == ["0", "1", "2", "3"],
        results,
    )
    check("  as N_i ids", all("_" in j.job_id for j in jobs), [j.job_id for j in jobs])

    bad = ex.submit(fail)
    try:
        bad.result()
        raise AssertionError("the failing job returned")
    except submitit.core.utils.FailedJobError as e:
        check("a failing job raises FailedJobError", "fails on purpose" in str(e), str(e)[-300:])
    state = wait_for("FAILED in sacct", lambda: bad.get_info(mode="force").get("State") == "FAILED" and "FAILED")
    check("  and submitit reads FAILED through sacct", state == "FAILED")

    long = ex.submit(sleep_long)
    wait_for("the long job to run", lambda: long.get_info(mode="force").get("State") == "RUNNING")
    long.cancel(check=True)
    state = wait_for(
        "CANCELLED in sacct",
        lambda: (s := long.get_info(mode="force").get("State", "")).startswith("CANCELLED") and s,
    )
    check("a cancelled job is seen cancelled", state.startswith("CANCELLED by "), state)
    check("  and done() says so", long.done(force_check=True))


def run_dask():
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        walltime="00:10:00",
        log_directory=str(WORK / "dask-logs"),
        scheduler_options={"host": "127.0.0.1"},
        death_timeout=60,
    )
    try:
        print(cluster.job_script(), flush=True)
        cluster.scale(2)
        client = Client(cluster)
        client.wait_for_workers(2, timeout=180)
        check("dask-jobqueue: 2 workers joined", len(client.scheduler_info()["workers"]) == 2)
        squares = client.map(lambda x: x * x, range(10))
        total = client.submit(sum, squares).result(timeout=60)
        check("dask-jobqueue: a sum over the workers", total == 285, total)
        where = set(client.run(lambda: __import__("os").environ["SLURM_JOB_ID"]).values())
        check("  computed in 2 drover jobs", len(where) == 2, where)
        client.close()
    finally:
        cluster.close()
    out = subprocess.run(["squeue", "-h", "-n", "dask-worker", "-t", "PD,R"],
                         capture_output=True, text=True).stdout
    wait_for("the workers' jobs to end", lambda: subprocess.run(
        ["squeue", "-h", "-n", "dask-worker", "-t", "PD,R"], capture_output=True, text=True).stdout == "")
    check("  and their jobs were cancelled on close", True, out)


if __name__ == "__main__":
    run_submitit()
    run_dask()
    print("all checks passed", flush=True)
