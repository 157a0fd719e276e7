"""What a year of history costs: a cell run's fixed cost, the reports, the estimate and a compaction over
synthetic ledgers of 10K, 100K and 1M rows, on local disk and on a moto S3 server.

The history is a year of nightly runs of the six cells, each run writing parts of at most 250 rows, one
UTC day per part, as ``LedgerWriter`` does: ~2,200 files at 10K rows, ~4,400 at 1M. Then, per size and
backend, each phase in a fresh subprocess (its peak RSS is its own):
- ``seed``: 20 prompts generated for real (sandbox, Rivya 1K) so that a no-op run has stored images;
- ``fixed``: the engine's start-to-first-submit (one new prompt) and a no-op run of the 20 end to end,
  and ``spent_on`` (the day's spend the daily budget starts from);
- ``report``: ``credit_cost_report`` + ``provider_comparison`` over ``read_ledger``;
- ``estimate``: ``nbpro estimate`` of a 1,000-row table with ``--ledger-root``;
- ``compact``: ``compact_ledger``, with the row multiset (an order-free digest of every row's identity)
  and the exact totals checked before and after; then ``fixed``, ``report``, ``comparison`` and
  ``estimate`` again on the compacted ledger;
- ``floor``: a process that only imports what a report process imports (``floor_rss_mb``: the part of
  ``report_rss_mb`` no report can save).

    .venv/bin/python bench/history.py [--sizes 10000,100000,1000000] [--backends local,s3]
        [--s3-sizes 10000,100000] [--skip-reports] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RIVYA_KEY, Sandbox, peak_rss_mb  # noqa: E402

PART_ROWS = 250
DAYS = 365
NOOP_ROWS = 20
FIXED_REPEATS = 3
CELLS = [
    ("rivya", "1K"),
    ("rivya", "2K"),
    ("rivya", "4K"),
    ("odirouter", "1K"),
    ("odirouter", "2K"),
    ("odirouter", "4K"),
]


# -- the synthetic history ----------------------------------------------------------------------------
def _cell_table(n: int, provider: str, resolution: str, offset: int, days: list[date]) -> Any:
    """``n`` ledger rows of one cell in the file schema, spread evenly over ``days`` (charge-time order)."""
    import numpy as np
    import pyarrow as pa

    from nbpro_pipeline.models.ledger import LEDGER_PARTITION_COLUMNS, LEDGER_SCHEMA

    rng = np.random.default_rng(offset)
    ids = np.arange(offset, offset + n)
    day_of = (np.arange(n) * len(days)) // max(n, 1)
    start = np.array([np.datetime64(datetime.combine(d, datetime.min.time()), "us") for d in days])
    at = start[day_of] + np.timedelta64(2, "h") + (np.arange(n) % 3000) * np.timedelta64(1, "s")
    status = rng.choice(np.array(["succeeded", "failed", "skipped"]), n, p=[0.93, 0.05, 0.02])
    rivya = provider == "rivya"
    price = {"1K": 8, "2K": 12, "4K": 18}[resolution] if rivya else {"1K": 0.134, "2K": 0.134, "4K": 0.24}[resolution]
    cost = np.where(status == "succeeded", price, np.where(status == "failed", price * 0.0, 0))
    fp = [f"{provider[0]}{resolution}{i:059x}" for i in ids]
    cols: dict[str, Any] = {
        "prompt_id": [f"prompt-{i}" for i in ids],
        "prompt_sha256": [f"{i * 7919:064x}" for i in ids],
        "source_uri": pa.array([f"s3://team/prompts/batch-{i % 40:02d}.csv" for i in range(40)]).take(
            pa.array(ids % 40)
        ),
        "source_sha256": pa.array([f"{i:064x}" for i in range(40)]).take(pa.array(ids % 40)),
        "row_number": ids % 5000,
        "aspect_ratio": pa.array(["1:1"] * n),
        "output_format": pa.array(["png"] * n),
        "model_requested": pa.array(["nano-banana-pro"] * n),
        "model_served": pa.array(["nano-banana-pro"] * n),
        "params": pa.array(['{"aspect_ratio": "1:1", "output_format": "png"}'] * n),
        "fingerprint": fp,
        "task_id": [f"task-{i}" for i in ids],
        "status": status,
        "error_code": np.where(status == "failed", "content_policy", np.where(status == "skipped", "budget", None)),
        "final_cost": [str(round(c, 6)) for c in cost],
        "cost_unit": pa.array(["credits" if rivya else "usd"] * n),
        "cost_is_estimate": np.full(n, not rivya),
        "finished_at": at,
        "latency_s": rng.lognormal(np.log(20), 0.5, n),
        "attempts": np.ones(n, dtype=np.int64),
        "polls": np.full(n, 3, dtype=np.int64),
        "image_uri": [f"/images/provider={provider}/resolution={resolution}/prompt-{i}.png" for i in ids],
        "run_id": [f"nightly-{d}" for d in day_of],
        "partition_key": pa.array([f"{provider}|{resolution}"] * n),
        "pipeline_version": pa.array(["0.1.0"] * n),
        "recorded_at": at,
    }
    arrays = []
    schema = pa.schema([f for f in LEDGER_SCHEMA if f.name not in LEDGER_PARTITION_COLUMNS])
    for field in schema:
        value = cols.get(field.name)
        if value is None:
            arrays.append(pa.nulls(n, field.type))
        elif field.name == "final_cost":
            arrays.append(pa.array(value).cast(field.type))
        elif pa.types.is_timestamp(field.type):
            arrays.append(pa.array(value).cast(pa.timestamp("us")).cast(field.type))
        else:
            arrays.append(
                pa.array(value).cast(field.type) if not isinstance(value, pa.Array) else value.cast(field.type)
            )
    return pa.Table.from_arrays(arrays, schema=schema), day_of


def generate(root: str, rows: int) -> dict[str, Any]:
    """A year of nightly parts (one UTC day each, at most PART_ROWS rows) of the six cells under ``root``."""
    import pyarrow.parquet as pq

    from nbpro_pipeline.storage import Storage

    storage = Storage(root)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=DAYS - i) for i in range(DAYS)]
    jobs, tables = [], {}
    for k, (provider, resolution) in enumerate(CELLS):
        n = rows // len(CELLS)
        table, day_of = _cell_table(n, provider, resolution, k * n, days)
        tables[(provider, resolution)] = table
        bounds = [0]
        for i in range(1, n):  # split at day changes and every PART_ROWS rows
            if day_of[i] != day_of[i - 1] or i - bounds[-1] >= PART_ROWS:
                bounds.append(i)
        bounds.append(n)
        directory = storage.path("ledger", f"provider={provider}", f"resolution={resolution}")
        for seq, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            day = days[day_of[lo]]
            name = f"part-{day:%Y%m%d}-02{seq % 60:02d}00-nightly{day:%m%d}-{seq:05d}-{uuid.uuid4().hex[:6]}.parquet"
            jobs.append((f"{directory}/{name}", table.slice(lo, hi - lo)))

    def write(job) -> None:
        path, part = job
        with storage.open_atomic(path) as fh:
            pq.write_table(part, fh, compression="zstd")

    with ThreadPoolExecutor(max_workers=1 if storage.is_local else 16) as pool:
        list(pool.map(write, jobs))
        segments = list(pool.map(lambda job: storage.write_bytes(*job), _journal_segments(storage, tables)))
    return {"files": len(jobs), "rows": sum(t.num_rows for _, t in jobs), "journal_segments": len(segments)}


def _journal_segments(storage, tables):
    """The journal those nightly runs wrote: per submitted row an intent (with its row and request, ~0.7 KB,
    the generation-0 key) and its task id, 64 entries a segment (a group commit of a full window), one
    directory per run. Every task has its ledger row, as after clean runs: pruning keeps none of it."""
    from nbpro_pipeline.providers.base import idempotency_key
    from nbpro_pipeline.storage import ledger_id

    lid = ledger_id(storage)
    for (provider, resolution), table in tables.items():
        rows = table.select(["fingerprint", "task_id", "status", "prompt_id", "run_id", "recorded_at"]).to_pylist()
        by_run: dict[str, list[str]] = {}
        for r in rows:
            if r["status"] == "skipped":
                continue  # never submitted
            at = (r["recorded_at"] - timedelta(seconds=20)).isoformat()
            fp, pid = r["fingerprint"], r["prompt_id"]
            key = idempotency_key(lid, fp, 0) if provider == "rivya" else None
            key_field = f'"idempotency_key":"{key}",' if key else ""
            row = (
                f'{{"prompt_id":"{pid}","prompt":"a lighthouse at dusk, {pid}, oil on canvas, warm light",'
                f'"prompt_sha256":"{fp[-64:]:0>64}","source_uri":"s3://team/prompts/batch-07.csv",'
                f'"source_sha256":"{"7" * 64}","row_number":17,"aspect_ratio":"1:1","output_format":"png",'
                f'"resolution":"{resolution}","provider":"{provider}","reference_images":[],'
                f'"eligible_providers":["rivya","odirouter"],"extra":"{{}}"}}'
            )
            request = (
                f'{{"prompt":"a lighthouse at dusk, {pid}, oil on canvas, warm light","aspect_ratio":"1:1",'
                f'"resolution":"{resolution}","output_format":"png","references":[]}}'
            )
            lines = by_run.setdefault(r["run_id"], [])
            lines.append(
                f'{{"kind":"intent","fingerprint":"{fp}","run_id":"{r["run_id"]}","at":"{at}",{key_field}'
                f'"row":{row},"request":{request}}}'
            )
            lines.append(
                f'{{"kind":"task","fingerprint":"{fp}","run_id":"{r["run_id"]}","at":"{at}",{key_field}'
                f'"task_id":"{r["task_id"]}"}}'
            )
        directory = storage.journal_dir(provider, resolution)
        for run_id, lines in by_run.items():
            for seq, lo in enumerate(range(0, len(lines), 64), start=1):
                data = ("\n".join(lines[lo : lo + 64]) + "\n").encode()
                yield f"{directory}/{run_id}/seg-{seq:06d}-{uuid.uuid4().hex[:8]}.jsonl", data


# -- phases (each in its own process) ------------------------------------------------------------------
def _rows(n: int, prefix: str):
    from nbpro_pipeline.models.prompt import PromptRow

    return [
        PromptRow(
            prompt_id=f"{prefix}{i:03d}",
            prompt=f"a lighthouse at dusk, study {prefix}{i}",
            prompt_sha256=f"{i:064x}",
            source_uri="bench://history",
            source_sha256="0" * 64,
            row_number=i + 1,
        )
        for i in range(n)
    ]


def _job(root: str, url: str):
    from nbpro_pipeline.engine.settings import EngineSettings
    from nbpro_pipeline.engine.standalone import CellJob

    return CellJob(
        provider="rivya",
        resolution="1K",
        storage_root=root,
        base_url=url,
        api_key=RIVYA_KEY,
        settings=EngineSettings(
            max_in_flight=8,
            progress_interval_s=600,
            # "as written" phases keep the year as written: no end-of-run compaction or journal pruning
            compact_tail_parts=64 if _maintain() else 0,
            prune_journal_at_end=_maintain(),
            poll_first_delay_s=0.02,
            poll_max_interval_s=0.05,
        ),
    )


def _maintain() -> bool:
    return os.environ.get("BENCH_MAINTAIN", "1") == "1"


def phase_seed(root: str, url: str) -> dict[str, Any]:
    from nbpro_pipeline.engine.standalone import run_job

    report = run_job(_job(root, url), _rows(NOOP_ROWS, "noop"))
    return {"succeeded": report.succeeded}


def phase_fixed(root: str, url: str) -> dict[str, Any]:
    """The fixed cost, each figure the median of ``FIXED_REPEATS``: the engine's ``load_history`` with the
    no-op fingerprints learned (what a run reads from the past), a no-op run end to end, and start to
    first submit of a one-new-prompt run; plus ``spent_on`` (the daily budget's read)."""
    import statistics

    from nbpro_pipeline.engine.history import load_history
    from nbpro_pipeline.engine.standalone import run_job
    from nbpro_pipeline.models.common import Resolution
    from nbpro_pipeline.storage import Storage, spent_on

    t0 = time.perf_counter()
    spent = spent_on(Storage(root), "rivya", datetime.now(UTC).date())
    spent_on_s = time.perf_counter() - t0
    load_s, noop_s, first_s = [], [], []
    for _ in range(FIXED_REPEATS if _maintain() else 1):  # as written, one round is slow enough
        t0 = time.perf_counter()
        engine_history = load_history(Storage(root), "rivya", Resolution.R1K, _noop_fingerprints())
        load_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = run_job(_job(root, url), _rows(NOOP_ROWS, "noop"))
        noop_s.append(time.perf_counter() - t0)
        assert report.succeeded == 0 and report.failed == 0, "the no-op run submitted something"
        first_s.append(asyncio.run(_time_to_first_submit(root, url)))
    past = engine_history.past
    return {
        "noop_s": round(statistics.median(noop_s), 4),
        "first_submit_s": round(statistics.median(first_s), 4),
        "load_history_s": round(statistics.median(load_s), 4),
        "samples": {"noop_s": noop_s, "first_submit_s": first_s, "load_history_s": load_s},
        "history_source": engine_history.past_source,
        "indexed_rows": past.indexed_rows if past else 0,
        "tail_parts": past.tail_parts if past else 0,
        "stored_of_noop_engine": len(engine_history.succeeded),
        "spent_on_s": round(spent_on_s, 3),
        "spent_today": str(spent),
    }


async def _time_to_first_submit(root: str, url: str) -> float:
    """Seconds from the start of a one-new-prompt run to its first submit request."""
    import nbpro_pipeline
    from nbpro_pipeline.engine import RunInfo, run_cell
    from nbpro_pipeline.engine.standalone import job_client
    from nbpro_pipeline.storage import Storage

    job = _job(root, url)
    first: list[float] = []

    def client():
        c = job_client(job)
        real = c.submit

        async def submit(*args, **kw):
            if not first:
                first.append(time.perf_counter())
            return await real(*args, **kw)

        c.submit = submit
        return c

    t0 = time.perf_counter()
    await run_cell(
        _rows(1, f"new{uuid.uuid4().hex[:6]}-"),
        client=client,
        provider=job.provider,
        resolution=job.resolution,
        storage=Storage(root),
        run=RunInfo(run_id=job.run_id, partition_key=job.partition_key, pipeline_version=nbpro_pipeline.__version__),
        settings=job.settings,
    )
    return first[0] - t0


def _noop_fingerprints() -> set[str]:
    from nbpro_pipeline.models.common import Resolution
    from nbpro_pipeline.models.request import GenerationRequest
    from nbpro_pipeline.providers.registry import Provider

    return {
        GenerationRequest(
            prompt=r.prompt, aspect_ratio=r.aspect_ratio, resolution=Resolution.R1K, output_format=r.output_format
        ).fingerprint(Provider.RIVYA)
        for r in _rows(NOOP_ROWS, "noop")
    }


def phase_report(root: str, url: str) -> dict[str, Any]:
    """What the ``credit_cost_report`` asset computes: the report a cell at a time, and the totals."""
    from nbpro_pipeline.costs import PriceTable
    from nbpro_pipeline.costs.reports import credit_cost_report_for, totals_of_report
    from nbpro_pipeline.storage import Storage

    storage = Storage(root)
    t0 = time.perf_counter()
    cost = credit_cost_report_for(storage, PriceTable())
    totals = totals_of_report(cost)
    return {
        "report_s": round(time.perf_counter() - t0, 3),
        "report_rows": len(cost),
        "totals": {k: str(v) for k, v in totals.items()},
    }


def phase_comparison(root: str, url: str) -> dict[str, Any]:
    """What the ``provider_comparison`` asset computes (its own materialization, its own process)."""
    from nbpro_pipeline.costs import PriceTable
    from nbpro_pipeline.costs.reports import provider_comparison_for
    from nbpro_pipeline.storage import Storage

    t0 = time.perf_counter()
    comparison = provider_comparison_for(Storage(root), PriceTable())
    return {"comparison_s": round(time.perf_counter() - t0, 3), "comparison_rows": len(comparison)}


def phase_estimate(root: str, url: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from click.testing import CliRunner

    from nbpro_pipeline.cli import main

    table_dir = tempfile.mkdtemp(prefix="nbpro-history-est-")
    path = os.path.join(table_dir, "prompts.csv")
    pcsv.write_csv(
        pa.table({"id": [f"e{i}" for i in range(1000)], "prompt": [f"a paper crane, {i}" for i in range(1000)]}), path
    )
    t0 = time.perf_counter()
    out = CliRunner().invoke(main, ["estimate", path, "--ledger-root", root, "--json"])
    seconds = time.perf_counter() - t0
    shutil.rmtree(table_dir, ignore_errors=True)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    return {
        "estimate_s": round(seconds, 3),
        "estimate_ledger_rows": data["ledger_rows"],
        "estimate_to_generate": sum(c["to_generate"] for c in data["cells"]),
    }


def phase_floor(root: str, url: str) -> dict[str, Any]:
    """Nothing but the imports of a report process: the floor under ``report_rss_mb``."""
    import nbpro_pipeline.cli  # noqa: F401
    import nbpro_pipeline.costs.comparison  # noqa: F401
    import nbpro_pipeline.costs.cost_report  # noqa: F401
    import nbpro_pipeline.costs.scan  # noqa: F401

    return {}


def phase_digest(root: str, url: str) -> dict[str, Any]:
    """An order-free digest of the row multiset (sum of per-row hashes mod 2^64), row count, exact totals."""
    import numpy as np
    import pandas as pd

    from nbpro_pipeline.costs.reports import totals_by_provider
    from nbpro_pipeline.storage import Storage, read_ledger

    cols = [
        "provider",
        "resolution",
        "run_id",
        "prompt_id",
        "fingerprint",
        "task_id",
        "status",
        "recorded_at",
        "final_cost",
    ]
    ledger = read_ledger(Storage(root), columns=cols)
    frame = ledger.drop_columns(["final_cost"]).to_pandas()
    frame["final_cost"] = ledger["final_cost"].cast("string").to_pandas()
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest = int(hashes.sum(dtype=np.uint64))  # wraps mod 2^64: order-free, unlike a float sum
    return {
        "rows": ledger.num_rows,
        "digest": f"{digest:016x}",
        "totals": {k: str(v) for k, v in totals_by_provider(ledger).items()},
    }


def phase_compact(root: str, url: str) -> dict[str, Any]:
    from nbpro_pipeline.storage import Storage, compact_ledger

    t0 = time.perf_counter()
    result = compact_ledger(Storage(root), min_age_s=0)  # also writes each cell's index, prunes its journal
    journal = [c.journal_entries for c in result.cells if c.journal_entries]
    return {
        "compact_s": round(time.perf_counter() - t0, 3),
        "sources": result.sources,
        "written": result.written,
        "indexed_rows": sum(c.index_rows or 0 for c in result.cells),
        "journal_entries_before": sum(j[0] for j in journal),
        "journal_entries_kept": sum(j[1] for j in journal),
    }


PHASES = {
    f.__name__[6:]: f
    for f in (
        phase_seed,
        phase_fixed,
        phase_report,
        phase_comparison,
        phase_estimate,
        phase_floor,
        phase_digest,
        phase_compact,
    )
}


def run_phase(name: str, root: str, url: str = "", env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--root", root, "--url", url],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- driver ---------------------------------------------------------------------------------------------
def one_history(rows: int, root: str, url: str, env: dict[str, str] | None, reports: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    gen = run_phase("generate", root, str(rows), env)
    figures: dict[str, Any] = {
        "rows": gen["rows"],
        "files": gen["files"],
        "journal_segments": gen["journal_segments"],
        "generate_s": round(time.perf_counter() - t0, 1),
    }
    as_written = {**(env or {}), "BENCH_MAINTAIN": "0"}
    run_phase("seed", root, url, as_written)
    for name in ("fixed", "report", "comparison", "estimate") if reports else ("fixed",):
        figures[name] = run_phase(name, root, url, as_written)
    before = run_phase("digest", root, url, env)
    figures["compact"] = run_phase("compact", root, url, env)
    after = run_phase("digest", root, url, env)
    same = ("rows", "digest", "totals")
    figures["compact"]["exact"] = all(before[k] == after[k] for k in same)
    figures["compact"]["rows_before"], figures["compact"]["rows_after"] = before["rows"], after["rows"]
    figures["compact"]["totals"] = after["totals"]
    after_names = ("fixed", "report", "comparison", "estimate") if reports else ("fixed",)
    figures["after_compaction"] = {name: run_phase(name, root, url, env) for name in after_names}
    return figures


def _print(backend: str, f: dict[str, Any]) -> None:
    fx, c, ac = f["fixed"], f["compact"], f["after_compaction"]
    print(
        f"{backend} {f['rows']:>8} rows in {f['files']} files, {f['journal_segments']} journal segments "
        f"(generated in {f['generate_s']} s):\n"
        f"  as written: {_fixed_line(fx)}{_reports_line(f)}\n"
        f"  compaction: {c['sources']} -> {c['written']} parts in {c['compact_s']} s / {c['peak_rss_mb']} MB, "
        f"rows {c['rows_before']} -> {c['rows_after']}, multiset and totals equal: {c['exact']}; index "
        f"{c['indexed_rows']} rows; journal entries {c['journal_entries_before']} -> {c['journal_entries_kept']}\n"
        f"  compacted: {_fixed_line(ac['fixed'])}{_reports_line(ac)}",
        flush=True,
    )


def _fixed_line(fx: dict[str, Any]) -> str:
    return (
        f"first submit {fx['first_submit_s']} s, no-op run {fx['noop_s']} s, load_history {fx['load_history_s']} s "
        f"({fx['history_source']}), spent_on {fx['spent_on_s']} s"
    )


def _reports_line(f: dict[str, Any]) -> str:
    if "report" not in f:
        return ""
    rp, cp = f["report"], f["comparison"]
    line = (
        f"; credit_cost_report {rp['report_s']} s / {rp['peak_rss_mb']} MB, "
        f"provider_comparison {cp['comparison_s']} s / {cp['peak_rss_mb']} MB"
    )
    if "estimate" in f:
        line += f"; estimate {f['estimate']['estimate_s']} s / {f['estimate']['peak_rss_mb']} MB"
    return line


def _s3(backends: list[str]):
    if "s3" not in backends:
        return None, None
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        **{"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"},
    ).create_bucket(Bucket="history")
    return server, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--s3-sizes", help="sizes on S3 if not --sizes (moto answers ~10-30 ms per request)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    parser.add_argument(
        "--skip-reports", action="store_true", help="only the fixed cost and compaction (no report/estimate phases)"
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "generate":
            print(json.dumps(generate(args.root, int(args.url))))
            return
        import nbpro_pipeline.engine  # noqa: F401 - Arrow on the system allocator, as in the code location

        figures = PHASES[args.phase](args.root, args.url)
        print(json.dumps({**figures, "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    s3_sizes = [int(s) for s in args.s3_sizes.split(",")] if args.s3_sizes else sizes
    backends = args.backends.split(",")
    server, s3_env = _s3(backends)
    results: dict[str, dict[str, Any]] = {}
    load = os.getloadavg()
    try:
        with Sandbox({"dist": "fixed", "value": 0.05}, None) as sandbox:
            for backend in backends:
                results[backend] = {}
                for rows in s3_sizes if backend == "s3" else sizes:
                    if backend == "local":
                        tmp = tempfile.mkdtemp(prefix="nbpro-history-")
                        root, env = os.path.join(tmp, "root"), None
                    else:
                        tmp, root, env = None, f"s3://history/r{rows}-{uuid.uuid4().hex[:6]}", s3_env
                    try:
                        figures = one_history(rows, root, sandbox.rivya_url, env, reports=not args.skip_reports)
                    finally:
                        if tmp:
                            shutil.rmtree(tmp, ignore_errors=True)
                    results[backend][str(rows)] = figures
                    _print(backend, figures)
    finally:
        if server is not None:
            server.stop()
    summary = _summary(results)
    summary["floor_rss_mb"] = run_phase("floor", tempfile.gettempdir())["peak_rss_mb"]
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    if args.json:
        print(json.dumps({**summary, "load_avg": [round(x, 2) for x in load], "cpus": os.cpu_count(), "runs": results}))


def _fixed(fixed: dict[str, Any]) -> float:
    return fixed["first_submit_s"] + fixed["noop_s"]


def _summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Goals at the largest size against the smallest; the compacted ledger is the steady state (the report
    asset and a run with a long tail compact), the figures as written are beside it."""
    out: dict[str, Any] = {}
    for backend, by_size in results.items():
        lo, hi = min(by_size, key=int), max(by_size, key=int)
        out[f"{backend}_rows"] = int(hi)
        a, b = by_size[lo], by_size[hi]
        ac, bc = a["after_compaction"], b["after_compaction"]
        out[f"{backend}_history_ratio"] = round(_fixed(bc["fixed"]) / _fixed(ac["fixed"]), 2)
        out[f"{backend}_load_history_ratio"] = round(bc["fixed"]["load_history_s"] / ac["fixed"]["load_history_s"], 2)
        out[f"{backend}_history_ratio_as_written"] = round(_fixed(b["fixed"]) / _fixed(a["fixed"]), 2)
        out[f"{backend}_fixed_s"] = round(_fixed(bc["fixed"]), 3)
        out[f"{backend}_fixed_by_size"] = {
            size: {k: f["after_compaction"]["fixed"][k] for k in ("first_submit_s", "noop_s", "load_history_s")}
            | {"as_written_fixed_s": round(_fixed(f["fixed"]), 3)}
            for size, f in sorted(by_size.items(), key=lambda kv: int(kv[0]))
        }
        if "report" in bc:
            out[f"{backend}_report_s"] = max(bc["report"]["report_s"], bc["comparison"]["comparison_s"])
            out[f"{backend}_report_rss_mb"] = max(bc["report"]["peak_rss_mb"], bc["comparison"]["peak_rss_mb"])
            out[f"{backend}_report_s_as_written"] = max(b["report"]["report_s"], b["comparison"]["comparison_s"])
            out[f"{backend}_report_rss_mb_as_written"] = max(b["report"]["peak_rss_mb"], b["comparison"]["peak_rss_mb"])
            out[f"{backend}_estimate_s"] = bc["estimate"]["estimate_s"]
            out[f"{backend}_estimate_rss_mb"] = bc["estimate"]["peak_rss_mb"]
            out[f"{backend}_estimate_s_as_written"] = b["estimate"]["estimate_s"]
            out[f"{backend}_estimate_rss_mb_as_written"] = b["estimate"]["peak_rss_mb"]
        out[f"{backend}_compact_s"] = b["compact"]["compact_s"]
        out[f"{backend}_compaction_exact"] = all(f["compact"]["exact"] for f in by_size.values())
    if "local_history_ratio" in out:  # the goal's name; the S3 one is s3_history_ratio already
        out["history_ratio"] = out["local_history_ratio"]
    return out


if __name__ == "__main__":
    main()
