"""The deployment path for real: a PostgreSQL-backed instance (deploy/dagster.yaml), the Dagster daemon
and webserver as their own processes on the project's workspace.yaml, and a backfill of all six cells
launched through GraphQL ``launchPartitionBackfill``, the mutation behind the UI's Materialize button.

Checks what a deployment must guarantee: every run succeeds, the run queue never lets more runs of one
provider (or of one cell) run at once than deploy/dagster.yaml allows, every eligible prompt has exactly
one ledger row, the ledger equals the sandbox's own billing, and the reports written afterwards carry
the same totals. Prints the figures (runs, images, wall time) for the log.

Needs the PostgreSQL server binaries: skipped when they are missing, unless NBPRO_REQUIRE_POSTGRES=1
(``.ci/run`` sets it after installing them), which makes a missing server a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from tests.deploy.dagster_stack import (
    POLL_S,
    REPO,
    GraphQL,
    Processes,
    assert_provider_concurrency,
    daemon_cmd,
    pipeline_env,
    run_tags,
    webserver_cmd,
)
from tests.deploy.postgres import PrivatePostgres, find_bin_dir, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(420)]

DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
KEYS = {"RIVYA_API_KEY": "rvya_sk_postgres_backfill_test", "ODIROUTER_API_KEY": "odr_postgres_backfill_test"}
REPORTS = ("credit_cost_report", "provider_comparison")
STARTUP_S, BACKFILL_S = 120, 240


@pytest.fixture(scope="module")
def pg_bin() -> Path:
    pytest.importorskip("dagster_postgres", reason="pip install -e '.[postgres]' (or '.[dev]')")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql, or run .ci/run)"
        if os.environ.get("NBPRO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


def test_backfill_of_all_cells_on_postgres_instance(pg_bin, tmp_path, capsys):
    import pandas as pd
    import psycopg2

    from nbpro_pipeline.costs import all_cells
    from nbpro_pipeline.costs.reports import totals_by_provider
    from nbpro_pipeline.engine import rows_for_cell
    from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
    from nbpro_pipeline.storage import Storage, read_ledger, read_table

    started = time.monotonic()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(DEPLOY_YAML, dagster_home / "dagster.yaml")
    storage_root = tmp_path / "storage"
    procs = Processes(tmp_path)
    web_port = free_port()
    gql = GraphQL(f"http://127.0.0.1:{web_port}")

    with PrivatePostgres(pg_bin) as pg, SandboxServer(tmp_path / "sandbox", SandboxConfig.zero_latency()) as sandbox:
        env = pipeline_env(dagster_home, sandbox, storage_root, KEYS, pg.env())
        try:
            procs.start("daemon", daemon_cmd(), env)
            procs.start("webserver", webserver_cmd(web_port), env)
            gql.wait_loaded(time.monotonic() + STARTUP_S, procs)
            ready_s = time.monotonic() - started

            # 1. the prompt table, as a queued run the daemon launches
            table_run = gql.launch_run("prompt_table_job")
            (run,) = gql.wait_runs([table_run], time.monotonic() + STARTUP_S)
            assert run["status"] == "SUCCESS", procs.tail("daemon")

            # 2. every cell, through the UI's mutation
            partitions = [f"{p}|{r.value}" for p, r in all_cells()]
            backfill_started = time.monotonic()
            backfill_id = gql.launch_backfill("generated_images", partitions)
            # the backfill daemon submits the runs on its next tick and marks the backfill complete on a
            # later one; the runs themselves are what this test waits for
            deadline = time.monotonic() + BACKFILL_S
            while True:
                procs.check_alive()
                cell_runs = gql.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
                done = [r for r in cell_runs if r["status"] in {"SUCCESS", "FAILURE", "CANCELED"}]
                if len(done) >= len(partitions) and len(done) == len(cell_runs):
                    break
                assert time.monotonic() < deadline, f"backfill runs: {[r['status'] for r in cell_runs]}"
                time.sleep(POLL_S)
            backfill_s = time.monotonic() - backfill_started

            # 3. the reports, after every cell (the automation sensor may have run them too)
            gql.wait_idle(time.monotonic() + BACKFILL_S)
            reports_run = gql.launch_run("reports_job")
            (run,) = gql.wait_runs([reports_run], time.monotonic() + STARTUP_S)
            assert run["status"] == "SUCCESS", procs.tail("daemon")
            gql.wait_idle(time.monotonic() + BACKFILL_S)
            report_events = {name: gql.latest_materialization(name) for name in REPORTS}
            all_runs = gql.runs()
            backfill_status = gql.backfill_status(backfill_id)  # marked done on a backfill-daemon tick
            with psycopg2.connect(**pg.connect_kwargs()) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM runs")
                (runs_in_postgres,) = cur.fetchone()
            billed: dict[str, Decimal] = defaultdict(Decimal)
            for entry in sandbox.ledger():
                billed[entry["provider"]] += Decimal(str(entry["amount"]))
        except BaseException:
            for name in procs.procs:
                print(f"--- {name} log (tail) ---\n{procs.tail(name)}")
            raise
        finally:
            procs.stop()

    # -- the runs: one per cell, all succeeded, within the run queue's limits ------------------------
    assert runs_in_postgres == len(all_runs), "the webserver and Postgres disagree on the runs"
    assert sorted(run_tags(r).get("dagster/partition") for r in cell_runs) == sorted(partitions)
    assert [r["status"] for r in cell_runs] == ["SUCCESS"] * len(partitions), procs.tail("daemon")
    overlap, limit = assert_provider_concurrency(cell_runs)
    runs_per_cell = Counter(run_tags(r)["dagster/partition"] for r in all_runs if "dagster/partition" in run_tags(r))
    assert set(runs_per_cell.values()) == {1}, runs_per_cell

    # -- the ledger: every eligible prompt exactly once, and what the sandbox billed -----------------
    storage = Storage(str(storage_root))
    accepted = read_table(storage, "prompt_table/accepted")
    ledger = read_ledger(storage)
    rows = list(zip(ledger["provider"].to_pylist(), ledger["resolution"].to_pylist(),
                    ledger["prompt_id"].to_pylist(), ledger["status"].to_pylist(), strict=True))  # fmt: skip
    images = 0
    for provider, resolution in all_cells():
        eligible = sorted(r.prompt_id for r in rows_for_cell(accepted, provider, resolution))
        recorded = sorted(pid for p, res, pid, _ in rows if (p, res) == (provider, resolution.value))
        assert recorded == eligible, f"{provider}|{resolution.value}"
        images += sum(1 for p, res, _, s in rows if (p, res) == (provider, resolution.value) and s == "succeeded")
    assert images == ledger.num_rows, "the sandbox injects no faults here: every request should succeed"
    ours = totals_by_provider(ledger)
    assert ours == dict(billed), (ours, dict(billed))

    # -- the reports: written after the last cell, from the whole ledger ----------------------------
    last_cell_end = max(r["endTime"] for r in cell_runs)
    for name, event in report_events.items():
        assert event is not None, name
        assert float(event["timestamp"]) / 1000 > last_cell_end, name
    credit_meta = {m["label"]: m.get("floatValue") for m in report_events["credit_cost_report"]["metadataEntries"]}
    units = {"rivya": "credits", "odirouter": "usd"}
    for provider, total in ours.items():
        assert Decimal(str(credit_meta[f"total_{provider}_{units[provider]}"])) == total, (provider, credit_meta)
    for name in REPORTS:
        report = pd.read_parquet(storage_root / "reports" / f"{name}.parquet")
        sums = report.groupby("provider")["final_cost"].apply(lambda s: sum(s, Decimal(0))).to_dict()
        assert sums == ours, (name, sums)

    # the figures go to the terminal even under `pytest -q` (make test, .ci/run)
    with capsys.disabled():
        totals = ", ".join(f"{p} {v.normalize():f}" for p, v in ours.items())
        print(
            f"\npostgres backfill: {len(cell_runs)} cell runs (all SUCCESS), {images} images, "
            f"{ledger.num_rows} ledger rows, totals ({totals}) "
            f"== sandbox billing; max concurrent runs per provider {overlap} (limit "
            f"{limit}); {len(all_runs)} runs in Postgres; "
            f"backfill status {backfill_status}; "
            f"stack ready in {ready_s:.1f}s, backfill {backfill_s:.1f}s, test {time.monotonic() - started:.1f}s"
        )
        t0 = min(r["creationTime"] for r in cell_runs)
        for r in sorted(cell_runs, key=lambda r: r["startTime"]):
            print(
                f"  {run_tags(r)['dagster/partition']:<13} created +{r['creationTime'] - t0:5.1f}s "
                f"started +{r['startTime'] - t0:5.1f}s ended +{r['endTime'] - t0:5.1f}s"
            )
