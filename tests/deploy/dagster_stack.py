"""The Dagster daemon and webserver as separate processes on one instance, and a small GraphQL client.

This is how a deployment runs them (``dagster-daemon run``, ``dagster-webserver``), with the project's
``workspace.yaml``; the test drives the webserver's GraphQL API exactly as the UI does. The daemon's
backfill loop ticks every second (fast_daemon.py), and every wait polls its condition twice a second.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.deploy import fast_daemon

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "nbpro-pipeline"
REPOSITORY = "__repository__"

LAUNCH_RUN = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

# What the UI's "Materialize" button sends for a selection of partitions of one asset.
LAUNCH_PARTITION_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""

# The run's log messages with their times (ms since the epoch, as text), as the run page shows them.
RUN_LOGS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message timestamp } } }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId jobName status creationTime startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

LATEST_MATERIALIZATION = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        timestamp
        metadataEntries { label ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""

LAUNCH_REEXECUTION = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

# Every metadata entry of the latest materialization of one partition (or of an unpartitioned asset).
MATERIALIZATION_METADATA = """
query($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1, partitions: $partitions) {
        runId
        partition
        metadataEntries {
          label
          __typename
          ... on PathMetadataEntry { path }
          ... on FloatMetadataEntry { floatValue }
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on MarkdownMetadataEntry { mdStr }
        }
      }
    }
  }
}
"""

LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# the load error of a location whose gRPC server is not answering (yet)
UNREACHABLE = "DagsterUserCodeUnreachableError"
# how often a wait looks again: a GraphQL query costs the webserver a few ms, a run takes seconds
POLL_S = 0.5


class GraphQL:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def __call__(self, query: str, **variables: Any) -> dict:
        response = self.client.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_run(self, job_name: str) -> str:
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job_name},
            "runConfigData": {},
        }
        result = self(LAUNCH_RUN, executionParams=params)["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def launch_cell(self, partition: str, extra_tags: dict[str, str] | None = None) -> str:
        """One ``cells_job`` run of one cell, tagged as the UI tags it (the run queue limits read these)."""
        provider, resolution = partition.split("|")
        tags = {"dagster/partition": partition, "dagster/partition/provider": provider,
                "dagster/partition/resolution": resolution, **(extra_tags or {})}  # fmt: skip
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "cells_job"},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self(LAUNCH_RUN, executionParams=params)["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def reexecute(self, parent_run_id: str, strategy: str = "FROM_FAILURE", tags: dict[str, str] | None = None) -> str:
        params: dict[str, Any] = {"parentRunId": parent_run_id, "strategy": strategy}
        if tags:
            params["extraTags"] = [{"key": k, "value": v} for k, v in tags.items()]
        result = self(LAUNCH_REEXECUTION, params=params)
        result = result["launchRunReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def metadata(self, asset: str, partition: str | None = None) -> dict[str, Any]:
        """The latest materialization's metadata of ``asset`` (one partition), label -> value."""
        partitions = [partition] if partition else None
        result = self(MATERIALIZATION_METADATA, path=[asset], partitions=partitions)["assetOrError"]
        events = result.get("assetMaterializations") or []
        if not events:
            return {}
        out: dict[str, Any] = {"__run_id": events[0]["runId"]}
        for entry in events[0]["metadataEntries"]:
            values = [v for k, v in entry.items() if k not in ("label", "__typename")]
            out[entry["label"]] = values[0] if values else None
        return out

    def launch_backfill(self, asset: str, partitions: list[str]) -> str:
        params = {"partitionNames": partitions, "assetSelection": [{"path": [asset]}]}
        result = self(LAUNCH_PARTITION_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        result = self(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        assert result["__typename"] == "PartitionBackfill", result
        return result["status"]

    def runs(self, **filter_: Any) -> list[dict]:
        result = self(RUNS, filter=filter_ or None)["runsOrError"]
        assert result["__typename"] == "Runs", result
        return result["results"]

    def logs(self, run_id: str) -> list[tuple[float, str]]:
        """(seconds since the epoch, message) of every message event of a run."""
        result = self(RUN_LOGS, runId=run_id)["logsForRun"]
        assert result["__typename"] == "EventConnection", result
        return [(int(e["timestamp"]) / 1000, e["message"]) for e in result["events"] if e.get("message")]

    def wait_runs(self, run_ids: list[str], deadline: float) -> list[dict]:
        while True:
            runs = [r for r in self.runs(runIds=run_ids)]
            if len(runs) == len(run_ids) and all(r["status"] in TERMINAL for r in runs):
                return runs
            assert time.monotonic() < deadline, f"runs still going: {[(r['runId'], r['status']) for r in runs]}"
            time.sleep(POLL_S)

    def wait_idle(self, deadline: float) -> None:
        """Until no run is queued or in progress (a sensor may have launched some of its own)."""
        busy = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
        while self.runs(statuses=busy):
            assert time.monotonic() < deadline, "runs still in progress"
            time.sleep(POLL_S)

    def latest_materialization(self, asset: str) -> dict | None:
        result = self(LATEST_MATERIALIZATION, path=[asset])["assetOrError"]
        events = result.get("assetMaterializations") or []
        return events[0] if events else None

    def wait_loaded(self, deadline: float, procs: Processes) -> None:
        """Until the location is loaded; a code server not reachable yet (one started beside the webserver)
        is "not yet": the webserver's server watcher reloads the location once it answers."""
        while True:
            procs.check_alive()
            try:
                entries = self(LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
                entry = next(e for e in entries if e["name"] == LOCATION)
                error = entry["locationOrLoadError"] or {}
                unreachable = UNREACHABLE in (error.get("message") or "")
                if entry["loadStatus"] == "LOADED" and not unreachable:
                    kind = error["__typename"]
                    assert kind == "RepositoryLocation", f"code location failed to load: {entry}"
                    return
            except (httpx.TransportError, StopIteration):
                pass
            assert time.monotonic() < deadline, "the webserver did not load the code location in time"
            time.sleep(POLL_S)


class Processes:
    """Started processes, each its own process group, all killed (SIGKILL) by ``stop``."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}: {self.tail(name)}"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        # the daemon and the webserver each spawn a code server, and the daemon's launcher spawns run
        # workers: kill the whole group of each process we started, never anything by name
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=30)


def dagster_env(dagster_home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "NBPRO_"))}
    env.update({"DAGSTER_HOME": str(dagster_home), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


PROVIDER_TAG = "dagster/partition/provider"


def run_tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def queue_limits() -> dict[str, int]:
    """The run coordinator's tag concurrency limits, as deploy/dagster.yaml sets them."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_coordinator"]["config"]
    return {limit["key"]: limit["limit"] for limit in config["tag_concurrency_limits"]}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t frees its place before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def assert_provider_concurrency(cell_runs: list[dict]) -> tuple[dict[str, int], int]:
    """Per provider, the most of its runs that ran at once, checked against the run queue's limit; returns
    (those maxima, the limit) for the test's summary line."""
    limit = queue_limits()[PROVIDER_TAG]
    by_provider: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in cell_runs:
        by_provider[run_tags(r)[PROVIDER_TAG]].append((r["startTime"], r["endTime"]))
    overlap = {p: max_overlap(iv) for p, iv in by_provider.items()}
    assert max(overlap.values()) <= limit, overlap
    return overlap, limit


def pipeline_env(
    dagster_home: Path,
    sandbox: Any,
    storage_root: Path,
    keys: dict[str, str],
    extra: dict[str, str] | None = None,
    sources: Path | None = None,
) -> dict[str, str]:
    """The environment every Dagster process of a stack test runs with: both providers pointed at the
    test's sandbox, its storage root, the prompt tables (``sources``, else the examples) and a fast first
    poll."""
    return dagster_env(
        dagster_home,
        {
            **(extra or {}),
            **keys,
            "RIVYA_BASE_URL": sandbox.rivya_url,
            "ODIROUTER_BASE_URL": sandbox.odirouter_url,
            "NBPRO_STORAGE_ROOT": str(storage_root),
            "NBPRO_PROMPT_SOURCES": str(sources or REPO / "examples" / "prompts"),
            "NBPRO_POLL_FIRST_DELAY_S": "0.05",
        },
    )


def daemon_cmd() -> list[str]:
    # workspace.yaml's python_module location: the daemon's code server, kept for the whole test
    return fast_daemon.daemon_cmd(REPO / "workspace.yaml", keep_workspace=True)


def webserver_cmd(port: int) -> list[str]:
    return [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
