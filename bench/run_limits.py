"""Runs per provider: the run queue's tag limits (what deploy/local/dagster.yaml uses) against Dagster pools.

    .venv/bin/python bench/run_limits.py [--runs 4] [--sleep 4] [--json]

A throwaway instance (SQLite, the queued run coordinator) with a daemon and a webserver, and a toy code
location: one asset per provider whose step sleeps ``--sleep`` seconds and records when it ran. Per mode,
``--runs`` runs for provider a and half as many for b are launched at once, limited to 2 at a time per
provider three ways: ``tags`` (``tag_concurrency_limits`` on a provider tag, per unique value), ``pools_op``
(each asset in a pool per provider, default limit 2, enforced on the step) and ``pools_run`` (the same
pools enforced by the run queue). Printed per mode: the makespan, the most runs of one provider started
at once (each a worker process), the most steps of one provider executing at once, and the mean time a
run waited in the queue. The last line is JSON with ``--json``.

The toy needs one asset per provider for a pool to tell providers apart: ``generated_images`` is one
partitioned asset, so a pool on it limits all cells together (docs/ui.md, "Concurrency").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deploy.dagster_stack import (  # noqa: E402 - the repo's stack helpers, importable once on the path
    BIN,
    LAUNCH_RUN,
    LOCATION,
    REPOSITORY,
    GraphQL,
    Processes,
    dagster_env,
    max_overlap,
    run_tags,
)
from tests.deploy.postgres import free_port  # noqa: E402

TOY = """
import json, os, time
import dagster as dg

def _work(name):
    @dg.asset(name=f"work_{name}", pool=f"provider_{name}")
    def work(context):
        started = time.time()
        time.sleep(float(os.environ["TOY_SLEEP_S"]))
        with open(os.environ["TOY_MARKS"], "a") as fh:
            fh.write(json.dumps({"provider": name, "start": started, "end": time.time()}) + "\\n")
    return work

defs = dg.Definitions(
    assets=[_work("a"), _work("b")],
    jobs=[dg.define_asset_job("job_a", selection=["work_a"]), dg.define_asset_job("job_b", selection=["work_b"])],
)
"""

RUNS = "    max_concurrent_runs: 10\n"
MODES = {
    "tags": "concurrency:\n  runs:\n" + RUNS + "    tag_concurrency_limits:\n      - key: provider\n"
    "        value:\n          applyLimitPerUniqueValue: true\n        limit: 2\n",
    "pools_op": "concurrency:\n  runs:\n" + RUNS + "  pools:\n    default_limit: 2\n    granularity: op\n",
    "pools_run": "concurrency:\n  runs:\n" + RUNS + "  pools:\n    default_limit: 2\n    granularity: run\n",
}


def _launch(gql: GraphQL, provider: str) -> str:
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": f"job_{provider}"},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "provider", "value": provider}]},
    }
    result = gql(LAUNCH_RUN, executionParams=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _stack(home: Path, mode: str, sleep_s: float) -> tuple[Processes, GraphQL, Path]:
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + MODES[mode])
    (home / "toy_defs.py").write_text(TOY)
    workspace = home / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: toy_defs.py\n      location_name: {LOCATION}\n"
        f"      working_directory: {home}\n"
    )
    marks = home / "marks.jsonl"
    env = dagster_env(home / "dagster_home", {"TOY_SLEEP_S": str(sleep_s), "TOY_MARKS": str(marks)})
    procs, port = Processes(home), free_port()
    web = [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
    procs.start("webserver", web, env)
    gql = GraphQL(f"http://127.0.0.1:{port}")
    gql.wait_loaded(time.monotonic() + 180, procs)  # the instance's SQLite is created once, before the daemon
    procs.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env)
    return procs, gql, marks


def measure(mode: str, runs: int, sleep_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"nbpro-limits-{mode}-") as tmp:
        procs, gql, marks = _stack(Path(tmp), mode, sleep_s)
        try:
            started = time.time()
            ids = [_launch(gql, p) for p in ["a"] * runs + ["b"] * (runs // 2)]
            done = gql.wait_runs(ids, time.monotonic() + 60 + 4 * runs * sleep_s)
            makespan = max(r["endTime"] for r in done) - started
        finally:
            procs.stop()
        steps = [json.loads(line) for line in marks.read_text().splitlines()]
    by_run, by_step = defaultdict(list), defaultdict(list)
    for r in done:
        by_run[run_tags(r)["provider"]].append((r["startTime"], r["endTime"]))
    for s in steps:
        by_step[s["provider"]].append((s["start"], s["end"]))
    return {
        "makespan_s": round(makespan, 1),
        "max_runs_started_per_provider": max(max_overlap(v) for v in by_run.values()),
        "max_steps_per_provider": max(max_overlap(v) for v in by_step.values()),
        "mean_queue_wait_s": round(sum(r["startTime"] - r["creationTime"] for r in done) / len(done), 1),
        "failed_runs": sum(r["status"] != "SUCCESS" for r in done),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs for provider a (b gets half as many)")
    parser.add_argument("--sleep", type=float, default=4.0, help="seconds each step works")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for mode in MODES:
        results[mode] = measure(mode, args.runs, args.sleep)
        print(f"{mode:<10} " + ", ".join(f"{k} {v}" for k, v in results[mode].items()), flush=True)
    if args.json:
        print(json.dumps({"runs_a": args.runs, "runs_b": args.runs // 2, "sleep_s": args.sleep, **results}))


if __name__ == "__main__":
    main()
