"""How fast ``load_prompt_tables`` reads and validates a big prompt table, as Parquet and as CSV.

Generates N rows (default 1,000,000; ~98% valid; the rest: empty prompts, unknown aspect ratios, prompts
too long for OdiRouter, jpg rows that OdiRouter cannot serve, a few exact duplicates) with an extra
column, writes them to a temp dir, and times one load of each file in a fresh subprocess so that the
peak RSS is the loader's own. Each file is loaded the way the ``prompt_table`` asset does it
(``write_prompt_tables``: accepted rows streamed to a Parquet table in a storage root; ``peak_rss_mb``),
and into memory (``load_prompt_tables``, what ``nbpro run`` uses; ``in_memory_peak_rss_mb``).

    .venv/bin/python bench/ingest.py [--rows 1000000] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import peak_rss_mb  # noqa: E402


def generate(rows: int, directory: str) -> dict[str, str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    subjects = pa.array(
        [
            "a red fox",
            "a lighthouse",
            "a glass of water",
            "an old tram",
            "a bowl of ramen",
            "a paper crane",
            "a desert road",
            "a violin on a chair",
        ]
    )
    settings = pa.array(
        ["at dusk", "in heavy rain", "on a white table", "under neon light", "in fog", "at noon, hard shadows"]
    )
    styles = pa.array(["studio photo", "watercolor", "isometric 3D render", "35mm film still", "ink drawing"])
    prompt = pc.binary_join_element_wise(
        subjects.take(pa.array(rng.integers(0, len(subjects), rows))),
        settings.take(pa.array(rng.integers(0, len(settings), rows))),
        pc.binary_join_element_wise(
            styles.take(pa.array(rng.integers(0, len(styles), rows))),
            pc.cast(pa.array(np.arange(rows)), pa.string()),
            ", variant ",
        ),
        " ",
    )
    kind = rng.random(rows)
    prompt = pc.if_else(pa.array(kind < 0.005), "", prompt)
    long_rows = (kind >= 0.005) & (kind < 0.01)  # > 2500 characters: too long for OdiRouter only
    long_prompts = pc.binary_join_element_wise("a very detailed scene " * 120, prompt.filter(pa.array(long_rows)), "")
    prompt = pc.replace_with_mask(prompt, pa.array(long_rows), long_prompts)
    ratios = pa.array(["1:1", "16:9", "9:16", "4:3", "3:2", " 21:9 ", ""])
    aspect = ratios.take(pa.array(rng.integers(0, len(ratios), rows)))
    aspect = pc.if_else(pa.array((kind >= 0.01) & (kind < 0.015)), "17:9", aspect)
    aspect = pc.if_else(pa.array((kind >= 0.02) & (kind < 0.025)), "auto", aspect)  # Rivya only
    output_format = pc.if_else(pa.array((kind >= 0.015) & (kind < 0.02)), "JPEG", "png")
    resolution = pc.if_else(pa.array(rng.random(rows) < 0.1), "2k", "")
    campaign = pa.array(np.array(["spring", "summer", "autumn", "winter"])[rng.integers(0, 4, rows)])
    table = pa.table(
        {
            "prompt": prompt,
            "aspect_ratio": aspect,
            "resolution": resolution,
            "output_format": output_format,
            "campaign": campaign,
        }
    )
    duplicates = table.slice(0, max(1, rows // 1000))  # 0.1% exact repeats of earlier rows
    table = pa.concat_tables([table.slice(0, rows - len(duplicates)), duplicates])
    paths = {"parquet": os.path.join(directory, "prompts.parquet"), "csv": os.path.join(directory, "prompts.csv")}
    pq.write_table(table, paths["parquet"])
    pcsv.write_csv(table, paths["csv"])
    return paths


def load_once(path: str, how: str) -> dict:
    import pyarrow as pa

    from nbpro_pipeline.prompts import load_prompt_tables, write_prompt_tables
    from nbpro_pipeline.storage import Storage

    with tempfile.TemporaryDirectory(prefix="nbpro-ingest-root-") as root:
        storage = Storage(root)
        base = peak_rss_mb()
        start = time.perf_counter()
        if how == "write":
            result = write_prompt_tables([path], storage)
            accepted = result.accepted_rows
        else:
            result = load_prompt_tables([path])
            accepted = result.accepted.num_rows
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(base, 1),
        "arrow_peak_mb": round(max(p.max_memory() for p in _pools(pa)) / 1e6, 1),
        "rows_read": result.rows_read,
        "accepted": accepted,
        "rejections": result.rejected.num_rows,
        "rejected_by_reason": result.rejected_by_reason(),
    }


def _pools(pa) -> list:
    """The default Arrow pool and jemalloc's (the load allocates on jemalloc when pyarrow has it)."""
    pools = [pa.default_memory_pool()]
    with contextlib.suppress(NotImplementedError):
        pools.append(pa.jemalloc_memory_pool())
    return pools


def _run(path: str, how: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load", path, "--how", how], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: time one load in this process
    parser.add_argument("--how", default="write", help=argparse.SUPPRESS)  # internal: write or memory
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load_once(args.load, args.how)))
        return

    with tempfile.TemporaryDirectory(prefix="nbpro-ingest-") as directory:
        t0 = time.perf_counter()
        paths = generate(args.rows, directory)
        sizes = {fmt: round(os.path.getsize(p) / 1e6, 1) for fmt, p in paths.items()}
        print(
            f"generated {args.rows} rows in {time.perf_counter() - t0:.1f} s: parquet {sizes['parquet']} MB, "
            f"csv {sizes['csv']} MB"
        )
        runs, memory = {}, {}
        for fmt, path in paths.items():
            runs[fmt], memory[fmt] = _run(path, "write"), _run(path, "memory")
            for label, r in (("to storage", runs[fmt]), ("in memory", memory[fmt])):
                print(
                    f"{fmt} {label}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB (before load "
                    f"{r['rss_before_mb']} MB, Arrow peak {r['arrow_peak_mb']} MB), {r['accepted']} accepted, "
                    f"rejections {r['rejected_by_reason']}"
                )
    figures = {
        "rows": args.rows,
        "parquet_s": runs["parquet"]["seconds"],
        "csv_s": runs["csv"]["seconds"],
        "peak_rss_mb": max(runs["parquet"]["peak_rss_mb"], runs["csv"]["peak_rss_mb"]),
        "rss_before_mb": max(runs["parquet"]["rss_before_mb"], runs["csv"]["rss_before_mb"]),
        "in_memory_parquet_s": memory["parquet"]["seconds"],
        "in_memory_csv_s": memory["csv"]["seconds"],
        "in_memory_peak_rss_mb": max(memory["parquet"]["peak_rss_mb"], memory["csv"]["peak_rss_mb"]),
        "parquet_mb": sizes["parquet"],
        "csv_mb": sizes["csv"],
        "cpus": os.cpu_count(),
    }
    print(f"parquet_s={figures['parquet_s']} csv_s={figures['csv_s']} peak_rss_mb={figures['peak_rss_mb']}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
