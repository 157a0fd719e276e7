"""Helpers shared by the bench scripts: a sandbox in its own process, CPU and peak-RSS readings.

Every figure a bench prints is about *one* process: the sandbox runs in a subprocess (so it has its
own core and its CPU is not billed to the pipeline), and each measured phase runs in a fresh
subprocess of the bench, so its peak RSS (``VmHWM``) is its own and not left over from a phase before.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RIVYA_KEY = "rvya_sk_bench_0123456789"
ODIROUTER_KEY = "odr_bench_key_0123456789"
REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which a child inherits at fork)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def cpu_seconds(pid: int | None = None) -> float | None:
    """User+system CPU of a process: this one (``pid`` None), or another by /proc (Linux; None elsewhere)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def latency_dist(spec: str) -> dict[str, Any]:
    """A sandbox latency distribution from ``fixed:S``, ``uniform:LO,HI`` or ``lognormal:MEDIAN,SIGMA``."""
    from nbpro_pipeline.sandbox.config import Dist

    return Dist.parse(spec).model_dump(mode="json", exclude_none=True)


def mean_latency(dist: dict[str, Any], time_scale: float = 1.0) -> float:
    """The distribution's mean in seconds: the L of the bound N·L/C."""
    import math

    kind = dist["dist"]
    if kind == "fixed":
        mean = dist["value"]
    elif kind == "uniform":
        mean = (dist["low"] + dist["high"]) / 2
    else:
        mean = dist["median"] * math.exp(dist["sigma"] ** 2 / 2)
    return mean * time_scale


def launch_sandbox(args: list[str], **popen: Any) -> tuple[subprocess.Popen, str]:
    """``nbpro sandbox --port 0 ARGS`` in a subprocess, and the URL it printed it listens on."""
    cmd = [sys.executable, "-m", "nbpro_pipeline.cli", "sandbox", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **popen)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        proc.wait(timeout=15)
        raise RuntimeError(f"sandbox did not start; first line was {line!r}")
    return proc, match.group(1)


class Sandbox:
    """``nbpro sandbox`` in a subprocess on a free port, with a latency and a concurrency limit.

    Latency is all in ``processing`` (queued is 0), so the task's latency is exactly the distribution.
    Wallets are made big enough for any N.
    """

    def __init__(
        self,
        latency: dict[str, Any] | None,
        max_concurrent: int | None,
        time_scale: float = 1.0,
        *,
        admission: str = "reject",
    ) -> None:
        """``latency`` None: the realistic per-resolution processing times (``REALISTIC_PROCESSING``).
        ``admission``: what the sandbox does with a create beyond ``max_concurrent`` (429 or queue it)."""
        self.dir = tempfile.mkdtemp(prefix="nbpro-bench-sandbox-")
        zero = {"dist": "fixed", "value": 0}
        if latency is None:
            from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

            timing = {"queued": zero, "processing": REALISTIC_PROCESSING["1K"]}
            timing["processing_by_resolution"] = REALISTIC_PROCESSING
        else:
            timing = {"queued": zero, "processing": latency}
        section = {
            "latency": timing,
            "rate_limit": {"max_concurrent_tasks": max_concurrent or 0, "admission": admission},
        }
        config = {
            "time_scale": time_scale,
            "billing": {"rivya_initial_credits": 10**12, "odirouter_initial_usd": 10.0**9},
            "rivya": section,
            "odirouter": section,
        }
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as fh:
            json.dump(config, fh)
        try:
            self.proc, self.url = launch_sandbox(
                ["--state", os.path.join(self.dir, "state"), "--config", self.config_path], cwd=REPO
            )
        except RuntimeError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def rivya_url(self) -> str:
        return self.url

    @property
    def odirouter_url(self) -> str:
        return self.url + "/model"

    def cpu_s(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def stats(self) -> dict[str, Any]:
        import httpx

        return httpx.get(self.url + "/_sandbox/stats", timeout=30, trust_env=False).json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # state is throwaway; no graceful shutdown needed
            self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_phase(script: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --phase ...`` in a fresh interpreter; its last stdout line is its JSON result."""
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"phase {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
