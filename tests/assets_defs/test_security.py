"""Secrets never leave: the demo flow, run with recognisable canary keys, must not write them anywhere.

Scanned: every file under the demo's storage root (ledger and tables Parquet decoded, since zstd pages
would hide a string from a byte scan; journal; images and their embedded lineage; reports; reference
records), the whole Dagster home (the SQLite event log, compute logs), every run and every event in
the instance through its API (metadata, check results, errors with their causes), and the process's
stdout and stderr with Python logging at DEBUG. Once on a clean run, once against a hostile sandbox
(revoked key, 5xx, dropped connections, failed tasks, bad images) so the error paths are scanned too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._serdes import serialize_value

from nbpro_pipeline.image_files import read_lineage
from nbpro_pipeline.storage import Storage, read_ledger
from tests.assets_defs.conftest import EXAMPLES
from tests.assets_defs.security_driver import ODIROUTER_CANARY, RIVYA_CANARY

# two demo processes at once, each a whole `make demo`: beside the other workers of a parallel run they
# get a fraction of 2 cores, so the setup's deadline is the fixture's own DEMO_S, not the default 120 s
DEMO_S = 300
pytestmark = [pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(DEMO_S + 60)]

REPO = Path(__file__).resolve().parents[2]
# the distinctive parts too: a redaction that kept the key's tail would still leak it
NEEDLES = (RIVYA_CANARY, ODIROUTER_CANARY, "CANARY")


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        return [n for n in NEEDLES if n.encode() in text or n.encode("utf-16-le") in text]
    return [n for n in NEEDLES if n in text]


def _start_demo(home: Path, mode: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIVYA_", "ODIROUTER_", "NBPRO_", "DAGSTER_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.assets_defs.security_driver", str(home), str(EXAMPLES), mode],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _scan_files(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing was written under {root}"
    for path in files:
        hits = _leaks(path.read_bytes())
        if path.suffix == ".parquet":
            hits += _leaks(repr(pq.read_table(path).to_pylist()))
        if path.suffix in (".png", ".jpg"):
            hits += _leaks(repr(read_lineage(path)))
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def _scan_instance(dagster_home: Path) -> tuple[dict[str, list[str]], int]:
    found: dict[str, list[str]] = {}
    events = 0
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert runs, "the demo left no runs in its instance"
        for run in runs:
            if hits := _leaks(serialize_value(run)):
                found[f"run {run.run_id}"] = hits
            for record in instance.all_logs(run.run_id):
                events += 1
                if hits := _leaks(serialize_value(record)):
                    found[f"event {record.dagster_event_type or 'log'} of {run.run_id}"] = hits
    return found, events


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    started = {}
    for mode in ("ok", "errors"):  # both at once: each spends most of its time importing and waiting
        home = tmp_path_factory.mktemp(f"demo-{mode}")
        started[mode] = (home, _start_demo(home, mode))
    out = {}
    deadline = time.monotonic() + DEMO_S
    try:
        for mode, (home, proc) in started.items():
            try:
                stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            out[mode] = (home, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:  # a pytest-timeout or Ctrl-C lands here too: leave no demo running
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


@pytest.mark.parametrize("mode", ["ok", "errors"])
def test_canary_keys_appear_in_no_output_of_the_demo(demo_runs, mode):
    home, proc = demo_runs[mode]
    assert b"where things are" in proc.stdout, proc.stderr[-3000:].decode(errors="replace")
    if mode == "ok":
        assert proc.returncode == 0, proc.stderr[-3000:].decode(errors="replace")
    assert len(proc.stderr) > 10_000  # DEBUG logging really was captured: the scan is not of nothing
    leaks = {"stdout": _leaks(proc.stdout), "stderr": _leaks(proc.stderr)}
    leaks |= _scan_files(home / "storage")
    leaks |= {f"dagster_home/{k}": v for k, v in _scan_files(home / "dagster_home").items()}
    from_instance, events = _scan_instance(home / "dagster_home")
    leaks |= from_instance
    assert events > 50
    assert {k: v for k, v in leaks.items() if v} == {}


def test_the_error_run_really_went_down_the_error_paths(demo_runs):
    """The hostile run is only worth scanning if the errors happened and were recorded."""
    home, _ = demo_runs["errors"]
    ledger = read_ledger(Storage(home / "storage")).to_pylist()
    codes = {r["error_code"] for r in ledger}
    assert "auth_failed" in codes  # 401 api_key_revoked: every Rivya row skipped, the message kept
    assert {r["error_message"] for r in ledger if r["error_code"] == "auth_failed"} != {None}
    assert codes & {"submit_outcome_unknown", "INFERENCE_FAILURE", "CONTENT_BLOCKED", "corrupt_image"}
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        failures = [
            r
            for run in instance.get_runs()
            for r in instance.all_logs(run.run_id)
            if r.dagster_event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
        ]
    # Rivya's cells stop on the revoked key; whether that fails the step or only a check, an error is on record
    assert failures or any(r["status"] == "skipped" for r in ledger)
