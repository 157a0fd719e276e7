"""Arrow (what the reports use) against DuckDB for the reports' heavy aggregations, side by side in one run.

Over a synthetic year of history (``bench/history.py``'s generator; as written, then compacted), each in
a fresh process so that its peak RSS is its own:
- ``arrow_cost``: ``credit_cost_report_for`` (``costs.scan`` + ``costs.cost_report``);
- ``duckdb_cost``: the same groups (sums, ``failed_unresolved`` by a window, failures by reason) by one
  DuckDB query per cell over the cell's live parts, then the same frame (``cost_report_frame``);
- ``arrow_comparison`` / ``duckdb_comparison``: ``provider_comparison_for``, and DuckDB's per-cell sums,
  distinct images, latency quantiles (``quantile_cont``: numpy's linear interpolation) and common prompts.
Each prints its time, peak RSS and a digest of its figures; the two engines' digests must be equal.
DuckDB is not a dependency of the project: ``pip install duckdb`` to run this.

    .venv/bin/python bench/report_engines.py [--rows 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import peak_rss_mb  # noqa: E402

CELLS = [(p, r) for p in ("rivya", "odirouter") for r in ("1K", "2K", "4K")]


def _duckdb():
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "256MB", "preserve_insertion_order": False})
    con.execute("SET TimeZone = 'UTC'")  # the report's day is the UTC date of recorded_at
    return con


def _parts(storage, provider: str, resolution: str) -> list[str]:
    from nbpro_pipeline.storage.ledger_parts import cell_parts

    return [p.path for p in cell_parts(storage, provider, resolution)]


_COST_SQL = """
WITH rows AS (
  SELECT ? AS provider, ? AS resolution, CAST(recorded_at AS DATE) AS day, source_uri, status,
         coalesce(error_code, 'unknown') AS error_code, fingerprint, recorded_at,
         row_number() OVER () AS seq, credits_reserved, credits_final,
         coalesce(CAST(final_cost AS DECIMAL(38, 6)), 0) AS final_cost, coalesce(cost_is_estimate, false) AS est
  FROM read_parquet(?)
), latest AS (
  SELECT fingerprint, arg_max(seq, (recorded_at, seq)) AS seq FROM rows GROUP BY fingerprint
)
SELECT provider, resolution, day, source_uri,
       count(*)::BIGINT AS one,
       sum((status = 'succeeded')::BIGINT) AS succeeded, sum((status = 'failed')::BIGINT) AS failed,
       sum((status = 'skipped')::BIGINT) AS skipped,
       sum((status = 'failed' AND seq IN (SELECT seq FROM latest))::BIGINT) AS failed_unresolved,
       sum(credits_reserved)::BIGINT AS credits_reserved, sum(credits_final)::BIGINT AS credits_final,
       sum(final_cost)::DECIMAL(38, 6) AS final_cost,
       sum(CASE WHEN status = 'failed' THEN final_cost ELSE 0 END)::DECIMAL(38, 6) AS failed_cost,
       bool_or(est) AS cost_is_estimate
FROM rows GROUP BY ALL
"""

_REASONS_SQL = """
SELECT ? AS provider, ? AS resolution, CAST(recorded_at AS DATE) AS day, source_uri, status,
       coalesce(error_code, 'unknown') AS error_code, count(*)::BIGINT AS rows
FROM read_parquet(?) WHERE status IN ('failed', 'skipped') GROUP BY ALL
"""


def phase_arrow_cost(root: str) -> dict[str, Any]:
    from nbpro_pipeline.costs import PriceTable
    from nbpro_pipeline.costs.reports import credit_cost_report_for
    from nbpro_pipeline.storage import Storage

    t0 = time.perf_counter()
    df = credit_cost_report_for(Storage(root), PriceTable())
    return {"s": round(time.perf_counter() - t0, 3), "digest": _cost_digest(df)}


def phase_duckdb_cost(root: str) -> dict[str, Any]:
    import pyarrow as pa

    from nbpro_pipeline.costs import PriceTable
    from nbpro_pipeline.costs.cost_report import _PARTIAL_COLUMNS, cost_report_frame
    from nbpro_pipeline.storage import Storage

    storage = Storage(root)
    t0 = time.perf_counter()
    con = _duckdb()
    groups, reasons = [], []
    for provider, resolution in CELLS:
        parts = _parts(storage, provider, resolution)
        if parts:
            groups.append(con.execute(_COST_SQL, [provider, resolution, parts]).to_arrow_table())
            reasons.append(con.execute(_REASONS_SQL, [provider, resolution, parts]).to_arrow_table())
    merged = pa.concat_tables([g.select(_PARTIAL_COLUMNS) for g in groups], promote_options="permissive")
    df = cost_report_frame(merged, pa.concat_tables(reasons, promote_options="permissive"), PriceTable())
    return {"s": round(time.perf_counter() - t0, 3), "digest": _cost_digest(df)}


def _money(amount: Any) -> str:
    from decimal import Decimal

    return format(Decimal(amount or 0).normalize(), "f")


def _cost_digest(df) -> dict[str, Any]:
    from decimal import Decimal

    return {
        "groups": len(df),
        "final_cost": _money(sum(df["final_cost"], Decimal(0))),
        "failed_unresolved": int(df["failed_unresolved"].sum()),
        "succeeded": int(df["succeeded"].sum()),
        "reasons": sorted(set(df["failures_by_reason"]))[:3],
    }


_CELL_SQL = """
SELECT count(*)::BIGINT AS requests, sum((status = 'succeeded')::BIGINT) AS succeeded,
       count(DISTINCT CASE WHEN status = 'succeeded' THEN fingerprint END)::BIGINT AS images,
       sum(coalesce(CAST(final_cost AS DECIMAL(38, 6)), 0))::DECIMAL(38, 6) AS final_cost,
       quantile_cont(CASE WHEN status = 'succeeded' THEN latency_s END, [0.5, 0.95]) AS latency
FROM read_parquet(?)
"""

_COMMON_SQL = """
WITH a AS (SELECT DISTINCT prompt_id, prompt_sha256 FROM read_parquet(?) WHERE status = 'succeeded'),
     b AS (SELECT DISTINCT prompt_id, prompt_sha256 FROM read_parquet(?) WHERE status = 'succeeded'),
     common AS (SELECT * FROM a INTERSECT SELECT * FROM b)
SELECT (SELECT count(*) FROM common)::BIGINT AS prompts,
       (SELECT sum(coalesce(CAST(final_cost AS DECIMAL(38, 6)), 0)) FROM read_parquet(?) r
        SEMI JOIN common USING (prompt_id, prompt_sha256))::DECIMAL(38, 6) AS rivya_cost,
       (SELECT sum(coalesce(CAST(final_cost AS DECIMAL(38, 6)), 0)) FROM read_parquet(?) r
        SEMI JOIN common USING (prompt_id, prompt_sha256))::DECIMAL(38, 6) AS odirouter_cost
"""


def phase_arrow_comparison(root: str) -> dict[str, Any]:
    from nbpro_pipeline.costs import PriceTable
    from nbpro_pipeline.costs.reports import provider_comparison_for
    from nbpro_pipeline.storage import Storage

    t0 = time.perf_counter()
    df = provider_comparison_for(Storage(root), PriceTable())
    seconds = time.perf_counter() - t0
    rows = df.to_dict("records")
    digest = {
        f"{r['provider']}|{r['resolution']}": [
            r["requests"],
            r["images"],
            _money(r["final_cost"]),
            round(r["latency_p95_s"], 6),
            r["common_prompts"],
            _money(r["common_cost"]),
        ]
        for r in rows
    }
    return {"s": round(seconds, 3), "digest": digest}


def phase_duckdb_comparison(root: str) -> dict[str, Any]:
    from nbpro_pipeline.storage import Storage

    storage = Storage(root)
    t0 = time.perf_counter()
    con = _duckdb()
    digest = {}
    for resolution in ("1K", "2K", "4K"):
        parts = {p: _parts(storage, p, resolution) for p in ("rivya", "odirouter")}
        common = con.execute(_COMMON_SQL, [parts["rivya"], parts["odirouter"], parts["rivya"], parts["odirouter"]])
        prompts, *costs = common.fetchone()
        for provider, cost in zip(("rivya", "odirouter"), costs, strict=True):
            requests, _, images, final, latency = con.execute(_CELL_SQL, [parts[provider]]).fetchone()
            digest[f"{provider}|{resolution}"] = [
                requests,
                images,
                _money(final),
                round(latency[1], 6),
                prompts,
                _money(cost),
            ]
    return {"s": round(time.perf_counter() - t0, 3), "digest": digest}


PHASES = {
    f.__name__[6:]: f for f in (phase_arrow_cost, phase_duckdb_cost, phase_arrow_comparison, phase_duckdb_comparison)
}


def run_phase(name: str, root: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--root", root], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--root", help="an existing storage root to read (else a synthetic one is written)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        import nbpro_pipeline.engine  # noqa: F401 - Arrow on the system allocator, as in the code location

        figures = PHASES[args.phase](args.root)
        print(json.dumps({**figures, "peak_rss_mb": round(peak_rss_mb(), 1)}))
        return
    import history

    load = os.getloadavg()
    tmp = None if args.root else tempfile.mkdtemp(prefix="nbpro-engines-")
    root = args.root or os.path.join(tmp, "root")
    results: dict[str, Any] = {}
    try:
        if tmp:
            history.run_phase("generate", root, str(args.rows))
        stages = ["as_written", "compacted"] if tmp else ["given"]
        for stage in stages:
            if stage == "compacted":
                history.run_phase("compact", root)
            results[stage] = {name: run_phase(name, root) for name in PHASES}
            for kind in ("cost", "comparison"):
                a, d = results[stage][f"arrow_{kind}"], results[stage][f"duckdb_{kind}"]
                results[stage][f"{kind}_same"] = a["digest"] == d["digest"]
                print(
                    f"{stage} {kind}: arrow {a['s']} s / {a['peak_rss_mb']} MB, duckdb {d['s']} s / "
                    f"{d['peak_rss_mb']} MB, same figures: {results[stage][f'{kind}_same']}",
                    flush=True,
                )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"rows": args.rows, "load_avg": [round(x, 2) for x in load], **results}))


if __name__ == "__main__":
    main()
