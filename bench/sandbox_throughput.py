"""End-to-end throughput of the sandbox: create -> poll until terminal -> download, per provider.

Starts ``nbpro sandbox --port 0 --latency zero`` as a subprocess (so the server has its own core)
and drives it with raw ``httpx.AsyncClient``s, exactly as providers.md reads. Each worker owns a
one-connection client: httpcore's pool costs grow with the number of pooled connections, and one
shared 64-connection pool made the *client* the bottleneck (~3x slower) on a 2-core machine.

    .venv/bin/python bench/sandbox_throughput.py [--tasks 3000] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ODIROUTER_KEY, RIVYA_KEY, cpu_seconds, launch_sandbox  # noqa: E402

QUEUE = "/model/v1/queue/nano_banana_pro"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POLL_SLEEP_S = 0.02


@dataclass
class PhaseResult:
    provider: str
    tasks: int
    seconds: float
    requests: int
    bytes_downloaded: int
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "provider": self.provider,
            "tasks": self.tasks,
            "seconds": round(self.seconds, 3),
            "tasks_per_s": round(self.tasks_per_s, 1),
            "requests_per_s": round(self.requests / self.seconds, 1),
            "task_latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
            "task_latency_ms_p95": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
            "mb_downloaded": round(self.bytes_downloaded / 1e6, 1),
            "failures": len(self.failures),
            "server_cpu_ms_per_task": _per_task_ms(self.server_cpu_s, self.tasks),
            "client_cpu_ms_per_task": _per_task_ms(self.client_cpu_s, self.tasks),
        }


def _per_task_ms(cpu_s: float | None, tasks: int) -> float | None:
    return round(1000 * cpu_s / tasks, 2) if cpu_s is not None and tasks else None


def start_sandbox(state_dir: str) -> tuple[subprocess.Popen, str]:
    return launch_sandbox(["--state", state_dir, "--latency", "zero"])


class Worker:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            trust_env=False,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
        )
        self.requests = 0
        self.bytes = 0

    async def request(self, method: str, url: str, **kw) -> httpx.Response:
        self.requests += 1
        response = await self.client.request(method, url, **kw)
        return response

    async def download(self, url: str) -> bytes:
        response = await self.request("GET", url)
        response.raise_for_status()
        data = response.content
        if not data.startswith(PNG_SIGNATURE) or len(data) != int(response.headers["content-length"]):
            raise RuntimeError(f"bad image from {url}")
        self.bytes += len(data)
        return data

    async def rivya_task(self, prompt: str) -> None:
        auth = {"Authorization": f"Bearer {RIVYA_KEY}"}
        body = {"model": "nano-banana-pro", "prompt": prompt, "params": {"aspect_ratio": "1:1", "resolution": "1K"}}
        created = await self.request(
            "POST", "/api/v1/generations", json=body, headers={**auth, "Idempotency-Key": secrets.token_hex(8)}
        )
        created.raise_for_status()
        task_id = created.json()["id"]
        while True:
            task = (await self.request("GET", f"/api/v1/generations/{task_id}", headers=auth)).json()
            if task["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(POLL_SLEEP_S)
        if task["status"] != "succeeded":
            raise RuntimeError(f"{task_id} failed: {task['error']}")
        await self.download(task["result"]["primary_url"])

    async def odirouter_task(self, prompt: str) -> None:
        auth = {"Authorization": f"Bearer {ODIROUTER_KEY}"}
        submitted = await self.request("POST", QUEUE, json={"prompt": prompt, "resolution": "1K"}, headers=auth)
        submitted.raise_for_status()
        urls = submitted.json()
        while True:
            status = (await self.request("GET", urls["status_url"], headers=auth)).json()
            if status["status"] == "COMPLETED":
                break
            await asyncio.sleep(POLL_SLEEP_S)
        if status.get("error_type"):
            raise RuntimeError(f"{urls['request_id']} failed: {status['error_type']}")
        result = await self.request("GET", urls["response_url"], headers=auth)
        result.raise_for_status()
        image = next(o for o in result.json()["outputs"] if o["type"] == "image")
        await self.download(image["url"])


async def run_phase(
    base_url: str, provider: str, tasks: int, concurrency: int, run_id: str, server_pid: int | None = None
) -> PhaseResult:
    workers = [Worker(base_url) for _ in range(concurrency)]
    next_index = iter(range(tasks))
    failures: list[str] = []
    latencies: list[float] = []

    async def drive(worker: Worker) -> None:
        job = worker.rivya_task if provider == "rivya" else worker.odirouter_task
        for i in next_index:
            prompt = f"bench {run_id} #{i}: a lighthouse on a basalt cliff at dusk, oil painting, {provider}"
            t0 = time.perf_counter()
            try:
                await job(prompt)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # record and go on: the summary reports failures
                failures.append(f"{type(exc).__name__}: {exc}")

    server_cpu0, client_cpu0 = cpu_seconds(server_pid), cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(drive(w) for w in workers))
    seconds = time.perf_counter() - start
    server_cpu1, client_cpu1 = cpu_seconds(server_pid), cpu_seconds()
    for w in workers:
        await w.client.aclose()
    return PhaseResult(
        provider=provider,
        tasks=tasks - len(failures),
        seconds=seconds,
        requests=sum(w.requests for w in workers),
        bytes_downloaded=sum(w.bytes for w in workers),
        failures=failures,
        latencies=latencies,
        server_cpu_s=server_cpu1 - server_cpu0 if server_pid and server_cpu0 is not None and server_cpu1 else None,
        client_cpu_s=client_cpu1 - client_cpu0 if client_cpu0 is not None and client_cpu1 is not None else None,
    )


async def bench(base_url: str, server_pid: int, args: argparse.Namespace) -> dict:
    run_id = secrets.token_hex(3)
    # Warm-up: template caches and connection setup are not what we measure.
    await run_phase(base_url, "rivya", 64, 16, run_id + "w")
    await run_phase(base_url, "odirouter", 64, 16, run_id + "w")
    phases = [await run_phase(base_url, p, args.tasks, args.concurrency, run_id, server_pid) for p in args.providers]
    async with httpx.AsyncClient(base_url=base_url) as client:
        stats = (await client.get("/_sandbox/stats")).json()
    total_tasks = sum(p.tasks for p in phases)
    total_seconds = sum(p.seconds for p in phases)
    server_errors = {
        provider: {code: n for code, n in stats[provider]["responses"].items() if code.startswith("5")}
        for provider in ("rivya", "odirouter")
    }
    return {
        "phases": [p.summary() for p in phases],
        "overall_tasks_per_s": round(total_tasks / total_seconds, 1),
        "concurrency": args.concurrency,
        "server_5xx": server_errors,
        "sample_failures": [f for p in phases for f in p.failures[:3]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per provider")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--providers", default="rivya,odirouter")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    parser.add_argument("--target", type=float, default=300.0, help="tasks/s per provider to call it a pass")
    args = parser.parse_args()
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]

    state_dir = tempfile.mkdtemp(prefix="nbpro-bench-")
    proc, base_url = start_sandbox(state_dir)
    try:
        try:
            import uvloop

            result = uvloop.run(bench(base_url, proc.pid, args))
        except ImportError:
            result = asyncio.run(bench(base_url, proc.pid, args))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(state_dir, ignore_errors=True)

    ok = all(p["tasks_per_s"] >= args.target and p["failures"] == 0 for p in result["phases"])
    result["target_tasks_per_s"] = args.target
    result["pass"] = ok
    print(f"sandbox end-to-end throughput, {args.tasks} tasks per provider, concurrency {args.concurrency},")
    print(f"cpus available: {os.cpu_count()}; server in a subprocess, zero latency, 1K PNG")
    for p in result["phases"]:
        print(
            f"  {p['provider']:<10} {p['tasks_per_s']:>7.1f} tasks/s  {p['requests_per_s']:>7.1f} req/s  "
            f"p50 {p['task_latency_ms_p50']} ms  p95 {p['task_latency_ms_p95']} ms  failures {p['failures']}  "
            f"cpu/task: server {p['server_cpu_ms_per_task']} ms, client {p['client_cpu_ms_per_task']} ms"
        )
    print(
        f"  overall    {result['overall_tasks_per_s']:>7.1f} tasks/s   (target {args.target:g}/provider: "
        f"{'PASS' if ok else 'FAIL'})"
    )
    if result["sample_failures"]:
        print("  sample failures:", *result["sample_failures"], sep="\n    ")
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
