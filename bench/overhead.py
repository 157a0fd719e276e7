"""The fixed cost of a Dagster run of one cell, against the fixed cost of any Dagster run.

Materializes, on one ephemeral instance in this process (after a warm-up of each): a trivial asset
that returns at once, and generated_images[rivya|1K] for a prompt table with no row eligible for that
cell (its one row asks for 2K), against a sandbox in a subprocess. Both are timed over --repeat runs;
the difference of the medians is the project's own share: resources, reading the prompt table and
the ledger history, the engine's setup and the cell's asset checks.

    .venv/bin/python bench/overhead.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RIVYA_KEY, Sandbox, latency_dist  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()

    import dagster as dg

    from assets_defs.assets import prompt_table
    from assets_defs.definitions import generated_images
    from assets_defs.resources import BudgetResource, PipelineResource, ProviderResource, StorageResource

    @dg.asset
    def trivial():  # unannotated: dagster cannot resolve a string annotation in a local scope
        return dg.MaterializeResult(metadata={"rows": 0})

    work = tempfile.mkdtemp(prefix="nbpro-bench-overhead-")
    table = os.path.join(work, "prompts.csv")
    with open(table, "w") as fh:
        fh.write("id,prompt,resolution\nonly-2k,a lighthouse at dusk,2K\n")
    with Sandbox(latency_dist("fixed:0"), 64) as sandbox:
        resources = {
            "rivya": ProviderResource(provider="rivya", api_key=RIVYA_KEY, base_url=sandbox.rivya_url),
            "odirouter": ProviderResource(provider="odirouter", api_key="unused", base_url=sandbox.odirouter_url),
            "storage": StorageResource(root=os.path.join(work, "storage")),
            "budget": BudgetResource(),
            "pipeline": PipelineResource(prompt_sources=[table]),
        }
        instance = dg.DagsterInstance.ephemeral()
        dg.materialize([prompt_table], instance=instance, resources=resources)

        def cell() -> None:
            result = dg.materialize(
                [generated_images], partition_key="rivya|1K", instance=instance, resources=resources
            )
            assert result.success

        def plain() -> None:
            assert dg.materialize([trivial], instance=instance).success

        times: dict[str, list[float]] = {"trivial": [], "cell": []}
        for name, fn in (("trivial", plain), ("cell", cell)):
            fn()  # warm-up: imports and first-use caches are not a run's overhead
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    figures = {
        "trivial_run_s": round(medians["trivial"], 3),
        "cell_0_prompts_run_s": round(medians["cell"], 3),
        "project_overhead_s": round(medians["cell"] - medians["trivial"], 3),
        "runs": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"trivial asset run:           {figures['trivial_run_s']:.3f} s (median of {args.repeat})")
    print(f"generated_images, 0 prompts: {figures['cell_0_prompts_run_s']:.3f} s")
    print(f"the project's own share:     {figures['project_overhead_s']:.3f} s")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
