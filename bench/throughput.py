"""How close one cell comes to the providers' bound N·L/C, and what it costs in CPU and memory.

The sandbox runs in a subprocess with task latency L (default uniform 0.8-1.2 s: 1 s with jitter) and
at most C unfinished tasks (default 64; a create beyond that is answered 429). N prompts at 1K go
through Rivya four ways, one after the other against the same sandbox, each phase in a fresh process
(so its CPU and peak RSS are its own, never the sandbox's):

  engine      run_cell with real storage, journal and ledger on a temp dir, max_in_flight = C
  dagster     one materialization of generated_images[rivya|1K] on an ephemeral instance
  sequential  the naive loop: submit, poll every --baseline-poll s, download; one prompt at a time.
              It would take N·L (an hour at N=2000), so it runs --sequential-sample prompts and its
              wall is extrapolated to N (``sample_n`` and ``wall_s_extrapolated`` say so)
  gather      asyncio.gather of all N submit-and-poll coroutines, no throttle: the sandbox answers the
              surplus with 429 (counted) and each waits Retry-After

    .venv/bin/python bench/throughput.py [--n 2000] [--concurrency 64] [--latency uniform:0.8,1.2] [--json]
    .venv/bin/python bench/throughput.py --n 300 --latency lognormal:20,0.5 --phases engine   # polls/task
    .venv/bin/python bench/throughput.py --phases engine --transport httpx,aiohttp --json     # side by side

``--transport`` runs the engine phase once per HTTP stack listed (each in its own process, same
sandbox): ``httpx`` is httpx's own AsyncHTTPTransport, ``aiohttp`` the httpx-aiohttp transport; each
one's figures are under ``transports`` in the JSON line, and the first one's are the headline.

``ideal_s`` = N·L/C with L the mean of the latency distribution (times ``--time-scale``).
``cpu_ms_per_image`` is the pipeline process's user+system CPU over the phase's wall, per prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    ODIROUTER_KEY,
    RIVYA_KEY,
    Sandbox,
    cpu_seconds,
    latency_dist,
    mean_latency,
    peak_rss_mb,
    run_phase,
)

PHASES = ("engine", "dagster", "sequential", "gather")
PROFILES = ("realistic", "1s")
# The realistic profile's default time scale: 1K tasks then take ~1.7 s (4K ~6 s), and the engine at
# C=64 does ~37 images/s at 1K, ~160 ms of CPU per second at ~4.3 ms per image: far from CPU-bound.
REALISTIC_TIME_SCALE = 0.1
# Goals of issue 14 per resolution, for the new admission
GOALS = {"wall_over_ideal": 1.07, "polls_per_task": 3.0, "http_429_share": 0.05}
TRANSPORTS = ("httpx", "aiohttp")
# The sandbox in this bench has no request-rate limit; the pipeline's own token bucket (a guess at a
# real provider's quota, 20/s by default) is set out of the way so that C and L set the bound.
BENCH_RPS = 2000.0
BENCH_BURST = 500


def _prompt(prefix: str, i: int) -> str:
    return f"bench {prefix} #{i}: a lighthouse on a basalt cliff at dusk, oil painting"


def _share(text: str) -> float | None:
    """``--share-429``: the adaptive margin's 429 share, or ``none`` for a fixed margin."""
    return None if text == "none" else float(text)


def _write_prompts(path: str, n: int, prefix: str) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "prompt"])
        writer.writerows([f"b{i:06d}", _prompt(prefix, i)] for i in range(n))


def _figures(
    n: int, wall: float, cpu: float, polls: int, ideal: float, peak_mb: float | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "n": n,
        "wall_s": round(wall, 3),
        "ideal_s": round(ideal, 3),
        "wall_over_ideal": round(wall / ideal, 4) if ideal else None,
        "cpu_ms_per_image": round(1000 * cpu / n, 3) if n else None,
        "polls_per_task": round(polls / n, 3) if n else None,
        "peak_rss_mb": round(peak_mb if peak_mb is not None else peak_rss_mb(), 1),
        **extra,
    }


# -- phases (each runs in its own process) -----------------------------------------------------------
async def engine_phase(args: argparse.Namespace) -> dict[str, Any]:
    from nbpro_pipeline.engine import EngineSettings, RunInfo, rows_for_cell, run_cell
    from nbpro_pipeline.models.common import Resolution
    from nbpro_pipeline.prompts import load_prompt_tables
    from nbpro_pipeline.providers import PollPolicy
    from nbpro_pipeline.providers.factory import ClientSpec, make_client
    from nbpro_pipeline.providers.registry import Provider
    from nbpro_pipeline.storage import Storage

    rss_before_rows = peak_rss_mb()
    # the rows as the generated_images asset gets them: a validated table, then the cell's lazy view
    work = tempfile.mkdtemp(prefix="nbpro-bench-rows-")
    table = os.path.join(work, "prompts.csv")
    _write_prompts(table, args.n, args.prefix)
    provider = Provider(args.provider)
    rows = rows_for_cell(load_prompt_tables([table]).accepted, provider, Resolution(args.resolution))
    settings = EngineSettings(
        max_in_flight=args.concurrency,
        requests_per_s=BENCH_RPS,
        burst=BENCH_BURST,
        progress_interval_s=5.0,
        admission_kind=args.admission_kind,
        **({"admission_margin_sd": args.margin_sd} if args.margin_sd is not None else {}),
        **({"admission_429_share": _share(args.share_429)} if args.share_429 is not None else {}),
    )
    storage_dir = tempfile.mkdtemp(prefix="nbpro-bench-storage-")
    # the client from the one factory the resources, the CLI and the benches share
    # a time-scaled sandbox gets a time-scaled cold poll schedule (before any completion is learned)
    cold = PollPolicy()
    spec = ClientSpec(
        provider=provider,
        base_url=args.url if provider is Provider.RIVYA else args.url + "/model",
        api_key=RIVYA_KEY if provider is Provider.RIVYA else ODIROUTER_KEY,
        poll=PollPolicy(
            deadline_s=settings.task_deadline_s,
            first_delay_s=cold.first_delay_s * args.time_scale,
            max_interval_s=cold.max_interval_s * args.time_scale,
            **({"quantiles": tuple(float(q) for q in args.poll_quantiles.split(","))} if args.poll_quantiles else {}),
        ),
        requests_per_s=settings.requests_per_s,
        burst=settings.burst,
        max_in_flight=settings.max_in_flight,
    )
    profiler = _profiler(args)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    # --transport: the HTTP stack under test, injected (the provider client's own default otherwise)
    http = _http_client(args.transport, max(16, settings.max_in_flight * 2))
    result = await run_cell(
        rows,
        client=lambda: make_client(spec, **({"http_client": http} if http is not None else {})),
        resolution=Resolution(args.resolution),
        storage=Storage(storage_dir),
        run=RunInfo(
            run_id=f"bench-{args.prefix}", partition_key=f"{provider.value}|{args.resolution}", pipeline_version="bench"
        ),
        settings=settings.model_copy(update={"reconcile_sample": 0}),
    )
    report = result.report
    if http is not None:
        await http.aclose()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    peak_mb = peak_rss_mb()  # before the bench reads the ledger back below
    _profile_done(profiler, args)
    held = _held(storage_dir)
    shutil.rmtree(storage_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return _figures(
        args.n,
        wall,
        cpu,
        report.polls,
        args.ideal,
        peak_mb,
        succeeded=report.succeeded,
        failed=report.failed,
        failures=report.failures_by_reason,
        http_429=report.client_counters.get("rate_limited", 0),
        create_429=report.create_429,
        submits=report.submitted,
        requests=report.client_counters.get("requests", 0),
        # submit -> ledger row per task, and how many slots were busy on average: tells a slow task
        # (polling, storing) from an idle slot (the engine not keeping C tasks in flight)
        held_s_mean=round(held / max(1, report.submitted), 4),
        rss_before_rows_mb=round(rss_before_rows, 1),
        busy_slots_mean=round(held / wall, 2),
    )


def _http_client(transport: str | None, max_connections: int):
    """The HTTP stack under test, with the limits and timeouts the provider client gives its own."""
    if transport is None:
        return None  # the provider client's own default
    import httpx

    from nbpro_pipeline.providers.http_stack import DEFAULT_TIMEOUT, build_http_client

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport == "aiohttp":  # what the provider clients ship: httpx-aiohttp (its errors re-mapped)
        return build_http_client(max_connections=max_connections)
    return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=limits)  # httpx's own AsyncHTTPTransport


def _held(storage_dir: str) -> float:
    import pyarrow.compute as pc

    from nbpro_pipeline.storage import Storage, read_ledger

    ledger = read_ledger(Storage(storage_dir), columns=["latency_s"])
    return float(pc.sum(ledger["latency_s"]).as_py() or 0.0)


def dagster_phase(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    from assets_defs.assets import prompt_table
    from assets_defs.definitions import generated_images
    from assets_defs.resources import BudgetResource, PipelineResource, ProviderResource, RunSettings, StorageResource

    work = tempfile.mkdtemp(prefix="nbpro-bench-dagster-")
    table = os.path.join(work, "prompts.csv")
    _write_prompts(table, args.n, args.prefix)
    knobs = {"max_in_flight": args.concurrency, "requests_per_s": BENCH_RPS, "burst": BENCH_BURST}
    resources = {
        "rivya": ProviderResource(provider="rivya", api_key=RIVYA_KEY, base_url=args.url, run=RunSettings(**knobs)),
        "odirouter": ProviderResource(provider="odirouter", api_key="unused", base_url=args.url + "/model"),
        "storage": StorageResource(root=os.path.join(work, "storage")),
        "budget": BudgetResource(),
        "pipeline": PipelineResource(prompt_sources=[table]),
    }
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([prompt_table], instance=instance, resources=resources)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    result = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=resources)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    shutil.rmtree(work, ignore_errors=True)
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    polls = round(float(meta["polls_per_task"]) * args.n)
    return _figures(
        args.n,
        wall,
        cpu,
        polls,
        args.ideal,
        succeeded=meta["images"],
        failed=meta["failed"],
        engine_wall_s=meta["wall_s"],
        dagster_share_s=round(wall - float(meta["wall_s"]), 3),
    )


class _Naive:
    """What a hand-written client does: submit (waiting out 429s), poll at a fixed interval, download."""

    def __init__(self, url: str, poll_s: float, max_connections: int | None) -> None:
        import httpx

        limits = httpx.Limits() if max_connections is None else httpx.Limits(max_connections=max_connections)
        self.http = httpx.AsyncClient(base_url=url, timeout=120, trust_env=False, limits=limits)
        self.auth = {"Authorization": f"Bearer {RIVYA_KEY}"}
        self.poll_s = poll_s
        self.polls = 0
        self.rate_limited = 0
        self.dir = tempfile.mkdtemp(prefix="nbpro-bench-naive-")

    async def one(self, prompt: str, i: int) -> None:
        body = {"model": "nano-banana-pro", "prompt": prompt, "params": {"aspect_ratio": "1:1", "resolution": "1K"}}
        headers = {**self.auth, "Idempotency-Key": secrets.token_hex(12)}
        while True:
            created = await self.http.post("/api/v1/generations", json=body, headers=headers)
            if created.status_code != 429:
                break
            self.rate_limited += 1
            await asyncio.sleep(float(created.headers.get("Retry-After", "1")))
        created.raise_for_status()
        task_id = created.json()["id"]
        while True:
            await asyncio.sleep(self.poll_s)
            self.polls += 1
            task = (await self.http.get(f"/api/v1/generations/{task_id}", headers=self.auth)).json()
            if task["status"] in ("succeeded", "failed"):
                break
        if task["status"] != "succeeded":
            raise RuntimeError(f"{task_id} failed")
        image = await self.http.get(task["result"]["primary_url"])
        image.raise_for_status()
        with open(os.path.join(self.dir, f"{i}.png"), "wb") as fh:
            fh.write(image.content)


async def sequential_phase(args: argparse.Namespace) -> dict[str, Any]:
    naive = _Naive(args.url, args.baseline_poll, 4)
    sample = min(args.n, args.sequential_sample)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for i in range(sample):
        await naive.one(_prompt(args.prefix, i), i)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    await naive.http.aclose()
    shutil.rmtree(naive.dir, ignore_errors=True)
    extrapolated = wall / sample * args.n
    out = _figures(sample, wall, cpu, naive.polls, args.ideal * sample / args.n, http_429=naive.rate_limited)
    out.update(
        sample_n=sample,
        n=args.n,
        wall_s_sample=out["wall_s"],
        wall_s=round(extrapolated, 1),
        wall_s_extrapolated=round(extrapolated, 1),
        ideal_s=round(args.ideal, 3),
        wall_over_ideal=round(extrapolated / args.ideal, 2),
        note=f"measured on {sample} prompts; wall_s extrapolated to n={args.n}",
    )
    return out


async def gather_phase(args: argparse.Namespace) -> dict[str, Any]:
    naive = _Naive(args.url, args.baseline_poll, None)  # httpx's default pool: what a naive script gets
    failures = 0
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    results = await asyncio.gather(
        *(naive.one(_prompt(args.prefix, i), i) for i in range(args.n)), return_exceptions=True
    )
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    failures = sum(isinstance(r, BaseException) for r in results)
    await naive.http.aclose()
    shutil.rmtree(naive.dir, ignore_errors=True)
    return _figures(args.n, wall, cpu, naive.polls, args.ideal, http_429=naive.rate_limited, failed=failures)


def _profiler(args: argparse.Namespace):
    if not args.pyinstrument:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="enabled")
    profiler.start()
    return profiler


def _profile_done(profiler, args: argparse.Namespace) -> None:
    if profiler is None:
        return
    profiler.stop()
    with open(args.pyinstrument, "w") as fh:
        fh.write(profiler.output_text(unicode=False, color=False, show_all=False))


def run_one_phase(args: argparse.Namespace) -> None:
    if args.phase == "engine":
        result = asyncio.run(engine_phase(args))
    elif args.phase == "dagster":
        result = dagster_phase(args)
    elif args.phase == "sequential":
        result = asyncio.run(sequential_phase(args))
    else:
        result = asyncio.run(gather_phase(args))
    print(json.dumps(result))


# -- the realistic profile ----------------------------------------------------------------------------
KIND_PROVIDER = {"reject": "rivya", "queue": "odirouter"}  # each kind on the provider whose traits it is
KEPT = (
    "wall_s", "ideal_s", "wall_over_ideal", "polls_per_task", "http_429", "create_429", "submits", "requests",
    "succeeded", "failed", "busy_slots_mean", "held_s_mean", "cpu_ms_per_image", "peak_rss_mb",
    "sandbox_cpu_ms_per_task",
)  # fmt: skip


def _realistic_l(resolution: str, time_scale: float) -> float:
    from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

    return mean_latency(REALISTIC_PROCESSING[resolution], time_scale)


def _goals(r: dict[str, Any]) -> dict[str, bool]:
    share = r["http_429"] / max(1, r["submits"])
    return {
        "wall_over_ideal": r["wall_over_ideal"] <= GOALS["wall_over_ideal"],
        "polls_per_task": r["polls_per_task"] <= GOALS["polls_per_task"],
        "http_429_share": share <= GOALS["http_429_share"],
    }


def _realistic_cell(args, sandbox: Sandbox, kind: str, resolution: str) -> dict[str, Any]:
    ideal = args.n * _realistic_l(resolution, args.time_scale) / args.concurrency
    passthrough = [
        "--phase", "engine", "--url", sandbox.url, "--prefix", secrets.token_hex(4), "--ideal", str(ideal),
        "--n", str(args.n), "--concurrency", str(args.concurrency), "--resolution", resolution,
        "--provider", KIND_PROVIDER[kind], "--admission-kind", kind,
        "--time-scale", str(args.time_scale),
    ]  # fmt: skip
    before = sandbox.cpu_s()
    r = run_phase(__file__, passthrough)
    after = sandbox.cpu_s()
    r["sandbox_cpu_ms_per_task"] = round(1000 * (after - before) / r["n"], 3) if before is not None else None
    out = {k: r.get(k) for k in KEPT}
    out["http_429_share"] = round(r["http_429"] / max(1, r["submits"]), 4)
    out["goals_met"] = _goals(r)
    print(
        f"  {resolution} {kind:<6} wall {r['wall_s']:>7} s (ideal {r['ideal_s']})  "
        f"wall/ideal {r['wall_over_ideal']}  polls/task {r['polls_per_task']}  429s {r['http_429']} "
        f"of {r['submits']} submits  busy slots {r['busy_slots_mean']}  cpu {r['cpu_ms_per_image']} ms/image  "
        f"failed {r['failed']}",
        flush=True,
    )
    return out


def _simulated(resolutions: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per resolution, at the real latencies: the poll schedule's frontier (polls per task -> detection
    lag, ``_frontier``) and what admission can reach at a reject provider with the information it has
    (``_admission_bound``: oracle, held and the engine's admission, simulated)."""
    from _admission_bound import bound
    from _frontier import frontier

    from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

    fronts, bounds = {}, {}
    for resolution in resolutions:
        dist = REALISTIC_PROCESSING[resolution]
        fronts[resolution] = frontier(dist["median"], dist["sigma"])
        line = ", ".join(f"{p['polls_per_task']} polls -> {p['detection_lag_pct']}%" for p in fronts[resolution])
        print(f"  frontier {resolution} (simulated at real latency): {line}", flush=True)
        bounds[resolution] = bound(dist["median"], dist["sigma"], n=args.n, slots=args.concurrency)
        line = ", ".join(
            f"{name} {b['span_over_ideal']} ({100 * b['busy_share']:.1f}% busy, {100 * b['http_429_share']:.1f}% 429)"
            for name, b in bounds[resolution].items()
        )
        print(f"  reject admission bound {resolution} (simulated, span/ideal): {line}", flush=True)
    return fronts, bounds


def realistic_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Every resolution x admission kind, at Nano Banana Pro's latencies."""
    from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

    resolutions = [r.strip() for r in args.resolutions.split(",") if r.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(resolutions) - set(REALISTIC_PROCESSING) or set(kinds) - set(KIND_PROVIDER):
        parser.error(f"resolutions from {sorted(REALISTIC_PROCESSING)}, kinds from {sorted(KIND_PROVIDER)}")
    print(
        f"throughput, realistic profile: n={args.n}, C={args.concurrency}, time scale {args.time_scale:g}, "
        f"mean L " + ", ".join(f"{r} {_realistic_l(r, 1.0):.1f} s" for r in resolutions) + f"; cpus {os.cpu_count()}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    results: dict[str, Any] = {r: {} for r in resolutions}
    for kind in kinds:
        with Sandbox(None, args.concurrency, args.time_scale, admission=kind) as sandbox:
            for resolution in resolutions:
                results[resolution][kind] = _realistic_cell(args, sandbox, kind, resolution)
    fronts, bounds = _simulated(resolutions, args)
    figures = {
        "profile": "realistic",
        "n": args.n,
        "concurrency": args.concurrency,
        "time_scale": args.time_scale,
        "goals": GOALS,
        "resolutions": results,
        "frontier": fronts,
        "reject_admission_bound": bounds,
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(figures))
    return 0


# -- the driver ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="prompts per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="C: the sandbox's max_concurrent_tasks")
    parser.add_argument(
        "--latency", default="uniform:0.8,1.2", help="task latency: fixed:S, uniform:LO,HI or lognormal:MEDIAN,SIGMA"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help=f"the sandbox's time_scale (scales latency; default {REALISTIC_TIME_SCALE:g} realistic, 1 for 1s)",
    )
    parser.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    parser.add_argument("--sequential-sample", type=int, default=30, help="prompts the sequential baseline runs")
    parser.add_argument("--baseline-poll", type=float, default=0.25, help="the baselines' fixed poll interval, s")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="realistic",
        help="realistic (default): Nano Banana Pro's latency per resolution, both admission kinds; 1s: the "
        "1-second tasks of the CPU-per-image measurement",
    )
    parser.add_argument("--pyinstrument", help="write a pyinstrument profile of the engine phase to this file")
    parser.add_argument("--resolutions", default="1K,2K,4K", help="realistic profile: resolutions to run")
    parser.add_argument("--kinds", default="reject,queue", help="realistic profile: sandbox admission kinds")
    parser.add_argument(
        "--transport", default=None, help=f"engine phase once per HTTP stack, comma-separated: {','.join(TRANSPORTS)}"
    )
    parser.add_argument("--json", action="store_true", help="print all figures as one JSON line at the end")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase here
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", default="1K", help=argparse.SUPPRESS)  # engine phase (bench/memory.py)
    parser.add_argument("--provider", default="rivya", help=argparse.SUPPRESS)  # engine phase
    parser.add_argument("--admission-kind", default=None, help=argparse.SUPPRESS)  # engine phase
    parser.add_argument("--margin-sd", type=float, default=None, help=argparse.SUPPRESS)  # engine phase
    parser.add_argument("--share-429", default=None, help=argparse.SUPPRESS)  # engine phase: float or none
    parser.add_argument("--poll-quantiles", default=None, help=argparse.SUPPRESS)  # engine phase
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--ideal", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_scale is None:
        args.time_scale = 1.0 if args.phase or args.profile == "1s" else REALISTIC_TIME_SCALE
    if args.phase:
        run_one_phase(args)
        return 0
    if args.profile == "realistic":
        return realistic_main(args, parser)

    dist = latency_dist(args.latency)
    mean_l = mean_latency(dist, args.time_scale)
    ideal = args.n * mean_l / args.concurrency
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    print(
        f"throughput: n={args.n}, C={args.concurrency}, latency {args.latency} x{args.time_scale:g} "
        f"(mean L={mean_l:.3f} s), ideal N*L/C = {ideal:.2f} s; cpus: {os.cpu_count()}",
        flush=True,
    )
    transports = [t.strip() for t in (args.transport or "").split(",") if t.strip()]
    if set(transports) - set(TRANSPORTS):
        parser.error(f"unknown transports {sorted(set(transports) - set(TRANSPORTS))}; choose from {TRANSPORTS}")
    runs = [(p, t) for p in phases for t in ((transports or [None]) if p == "engine" else [None])]
    results: dict[str, Any] = {}
    by_transport: dict[str, Any] = {}
    with Sandbox(dist, args.concurrency, args.time_scale) as sandbox:
        for phase, transport in runs:
            prefix = secrets.token_hex(4)  # fresh prompts: idempotency keys must not replay older tasks
            passthrough = [
                "--phase", phase, "--url", sandbox.url, "--prefix", prefix, "--ideal", str(ideal),
                "--n", str(args.n), "--concurrency", str(args.concurrency),
                "--sequential-sample", str(args.sequential_sample), "--baseline-poll", str(args.baseline_poll),
            ]  # fmt: skip
            if args.pyinstrument and phase == "engine":
                passthrough += ["--pyinstrument", args.pyinstrument]
            if transport:
                passthrough += ["--transport", transport]
            before = sandbox.cpu_s()
            r = run_phase(__file__, passthrough)
            results.setdefault(phase, r)  # several transports: the first one's is the headline
            if transport:
                by_transport[transport] = r
            after = sandbox.cpu_s()
            r["sandbox_cpu_ms_per_task"] = round(1000 * (after - before) / r["n"], 3) if before is not None else None
            extra = f" (sample of {r['sample_n']}, extrapolated)" if "sample_n" in r else ""
            label = f"{phase}/{transport}" if transport else phase
            print(
                f"  {label:<10} wall {r['wall_s']:>8} s{extra}  wall/ideal {r['wall_over_ideal']}  "
                f"cpu {r['cpu_ms_per_image']} ms/image  polls/task {r['polls_per_task']}  "
                f"peak RSS {r['peak_rss_mb']} MB  429s {r.get('http_429', 0)}  "
                f"sandbox cpu {r['sandbox_cpu_ms_per_task']} ms/task",
                flush=True,
            )
    head = results.get("engine") or next(iter(results.values()))
    figures = {
        "n": args.n,
        "concurrency": args.concurrency,
        "latency": args.latency,
        "time_scale": args.time_scale,
        "mean_latency_s": round(mean_l, 4),
        "wall_s": head["wall_s"],
        "ideal_s": round(ideal, 3),
        "wall_over_ideal": head["wall_over_ideal"],
        "cpu_ms_per_image": head["cpu_ms_per_image"],
        "polls_per_task": head["polls_per_task"],
        "peak_rss_mb": head["peak_rss_mb"],
        "phases": results,
        "baselines": {k: results[k] for k in ("sequential", "gather") if k in results},
        "transports": by_transport,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if "engine" in results and "dagster" in results:
        figures["dagster_wall_over_ideal"] = results["dagster"]["wall_over_ideal"]
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
