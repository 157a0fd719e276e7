"""Peak RSS of one cell run as N grows: image bytes must be streamed to disk, never accumulated.

Runs the engine phase of ``bench/throughput.py`` (``run_cell``, real storage, journal and ledger) in a
fresh process per run, against one sandbox in its own process with near-zero latency (0-20 ms, so
it is quick) and C=64: N=2000 and N=20000 at 1K, and a smaller run at 4K (images ~4x the bytes).
``rss_ratio`` = peak RSS(20000) / peak RSS(2000); the target is <= 1.2.

    .venv/bin/python bench/memory.py [--sizes 2000,20000] [--n-4k 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Sandbox, latency_dist, run_phase  # noqa: E402

THROUGHPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "throughput.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000", help="N of the 1K runs; the first and last give rss_ratio")
    parser.add_argument("--n-4k", type=int, default=500, help="N of the 4K run (0 skips it)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", default="uniform:0,0.02")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    runs = [(n, "1K") for n in sizes] + ([(args.n_4k, "4K")] if args.n_4k else [])

    print(f"memory: engine runs {runs}, C={args.concurrency}, latency {args.latency}; cpus {os.cpu_count()}")
    results: list[dict] = []
    with Sandbox(latency_dist(args.latency), args.concurrency) as sandbox:
        for n, resolution in runs:
            r = run_phase(
                THROUGHPUT,
                [
                    "--phase", "engine", "--url", sandbox.url, "--prefix", secrets.token_hex(4), "--ideal", "1",
                    "--n", str(n), "--concurrency", str(args.concurrency), "--resolution", resolution,
                ],
            )  # fmt: skip
            row = {
                "n": n,
                "resolution": resolution,
                "peak_rss_mb": r["peak_rss_mb"],
                "rss_before_rows_mb": r["rss_before_rows_mb"],
                "wall_s": r["wall_s"],
                "succeeded": r["succeeded"],
                "failed": r["failed"],
            }
            results.append(row)
            print(
                f"  N={n:>6} {resolution}: peak RSS {row['peak_rss_mb']} MB (after imports "
                f"{row['rss_before_rows_mb']} MB), {row['succeeded']} stored, {row['failed']} failed, "
                f"{row['wall_s']} s",
                flush=True,
            )
    one_k = [r for r in results if r["resolution"] == "1K"]
    figures: dict = {"runs": results, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    for r in results:
        figures[f"rss_{r['resolution']}_{r['n']}_mb"] = r["peak_rss_mb"]
    if len(one_k) >= 2:
        figures["rss_ratio"] = round(one_k[-1]["peak_rss_mb"] / one_k[0]["peak_rss_mb"], 3)
        figures["rss_ratio_of"] = f"N={one_k[-1]['n']} / N={one_k[0]['n']}"
        print(f"rss_ratio = {figures['rss_ratio']} ({figures['rss_ratio_of']}; target <= 1.2)")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
