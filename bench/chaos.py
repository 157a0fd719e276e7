"""Crash and resume: SIGKILL real cell runs at random moments, re-run them, then audit the money.

Each trial starts a fresh sandbox (its own process and state dir, small latencies) and, per provider,
a fresh storage root and prompt table. It runs the cell as a subprocess (``bench/chaos_cell.py``, i.e.
``nbpro run-cell`` with phase markers) and kills it with SIGKILL at a random moment: in a submit (request
in flight), right after a submit answered (OdiRouter's unjournaled window), in a poll, mid-download, or
in the middle of a ledger part, journal segment or image write, or after a random delay. Then it runs
the cell again, kills again, and so on, until a run finishes; one more run must then pay nothing.

Then it checks, against the sandbox's billing ledger (``GET /_sandbox/ledger``) and task store:

* ``duplicate_charges``: billed tasks beyond the first for one fingerprint (prompt + params). On
  OdiRouter, which has no idempotency key, a duplicate is *explained* when the extra task was created
  by the server but its id never reached the journal (the process died inside the submit window);
  an unexplained duplicate is a violation. On Rivya every duplicate is a violation.
* ``lost_paid_results``: billed tasks whose image is not stored with a succeeded ledger row (window
  tasks the pipeline never learned of are counted apart, as ``unjournaled_submit_window_tasks``).
* ``unaccounted_rows``: eligible rows without exactly one final ledger row (succeeded, or failed with
  a reason that is not a resumable one) after the last run; ledger rows for no eligible row count too.
* ``cost_mismatches``: tasks whose ledger net cost differs from the sandbox's billing (window tasks
  excepted); also every ledger part must read on its own and every stored image match its row.

    .venv/bin/python bench/chaos.py [--trials 5] [--provider rivya|odirouter|both] [--n 30] [--seed 1]
                                    [--kills 3] [--faults none|light] [--json]

``--json`` makes the last line one JSON object keyed by provider. Exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import chaos_cell  # bench/ is on sys.path when this file runs as a script
import httpx
import pyarrow.parquet as pq
from _common import launch_sandbox

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.engine.settings import EngineSettings
from nbpro_pipeline.engine.standalone import load_cell_rows
from nbpro_pipeline.image_files import inspect_image
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_journal, read_ledger
from nbpro_pipeline.storage.filesystem import cell_dir

KEYS = {"RIVYA_API_KEY": "rvya_sk_chaos_0123456789", "ODIROUTER_API_KEY": "odr_chaos_key_0123456789"}
RESOLUTION = Resolution.R1K
RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
# (phase, has a mid-phase pause in chaos_cell.py, how far into the run the n-th occurrence may be)
PHASES: dict[str, tuple[bool, float]] = {
    "submit": (True, 1.0),  # the create request is in flight
    "submitted": (True, 1.0),  # answered, task id not yet journaled (OdiRouter's window)
    "poll": (False, 2.0),
    "download": (True, 1.0),
    "ledger-write": (True, 0.25),
    "journal-write": (True, 0.5),
    "image-write": (True, 1.0),
    "timer": (False, 0.0),
}
PAUSE_MS = 300  # how long the child holds still mid-phase: ample for the parent's kill to land
# a killed run keeps the cell's lease until it expires: short here, so the next run waits only this long
LEASE = ["--lease-ttl", "1", "--lease-heartbeat", "0.2", "--lease-clock-skew", "0"]
LEASE_TTL_S = 1.0
LIGHT_FAULTS = [  # faults that never make a second charge legitimate (no failed or bad paid results)
    "--fault-5xx", "0.02", "--fault-drop", "0.01", "--fault-rate-limited", "0.01",
    "--fault-expired-url", "0.05", "--fault-drop-download", "0.02", "--retry-after", "0.2",
]  # fmt: skip


# -- the sandbox -------------------------------------------------------------------------------------
def start_sandbox(state_dir: Path, seed: int, faults: str) -> tuple[subprocess.Popen, str]:
    args = [
        "--state", str(state_dir), "--seed", str(seed),
        "--queued-latency", "uniform:0.02,0.1", "--processing-latency", "uniform:0.1,0.5",
    ]  # fmt: skip
    return launch_sandbox(args + (LIGHT_FAULTS if faults == "light" else []), stderr=subprocess.DEVNULL)


def wait_settled(url: str, provider: Provider, timeout_s: float = 20.0) -> None:
    """Until no task is unfinished: OdiRouter bills at completion, so audit only once all are done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/_sandbox/stats", timeout=10).json()
        if stats[provider.value]["active_tasks"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("sandbox tasks still unfinished after 20 s")


def billed_by_task(url: str, provider: Provider) -> dict[str, Decimal]:
    entries = httpx.get(f"{url}/_sandbox/ledger", params={"provider": provider.value}, timeout=10).json()["entries"]
    out: dict[str, Decimal] = {}
    for e in entries:
        out[e["task_id"]] = out.get(e["task_id"], Decimal(0)) + Decimal(str(e["amount"]))
    return out


def sandbox_prompts(state_dir: Path, provider: Provider) -> dict[str, str]:
    """task id -> prompt, from the sandbox's own task store (read-only)."""
    db = sqlite3.connect(f"file:{state_dir / 'sandbox.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, data FROM tasks WHERE provider = ?", (provider.value,)).fetchall()
    finally:
        db.close()
    return {task_id: json.loads(data)["prompt"] for task_id, data in rows}


# -- one run of the cell -----------------------------------------------------------------------------
@dataclass
class Aim:
    phase: str
    nth: int
    delay_s: float = 0.0  # "timer" only


@dataclass
class RunOutcome:
    killed_at: str | None
    returncode: int
    report: dict[str, Any] | None
    seconds: float


_FORKS = multiprocessing.get_context("forkserver")


def run_child(
    table: Path, provider: Provider, storage: Path, url: str, run_id: str, aim: Aim | None, error_rate: float = 0.0
) -> RunOutcome:
    """One real run of the cell in its own process (forked from a server that has the pipeline imported)."""
    base = url if provider is Provider.RIVYA else f"{url}/model"
    argv = [
        str(table), "--cell", f"{provider.value}|{RESOLUTION.value}",
        "--storage", str(storage), "--base-url", base, "--run-id", run_id, "--max-in-flight", "10",
        "--poll-first-delay", "0.1", "--poll-max-interval", "0.3", "--ledger-flush-rows", "4", "--json", *LEASE,
    ]  # fmt: skip
    env = {**KEYS, "CHAOS_ERROR_RATE": str(error_rate), "CHAOS_ERROR_SEED": run_id, "CHAOS_TARGET": ""}
    has_mid = aim is not None and PHASES[aim.phase][0]
    if aim is not None and has_mid:
        env.update(CHAOS_TARGET=aim.phase, CHAOS_NTH=str(aim.nth), CHAOS_PAUSE_MS=str(PAUSE_MS))
    started = time.monotonic()
    reader, writer = _FORKS.Pipe(duplex=False)
    proc = _FORKS.Process(target=chaos_cell.child_main, args=(argv, env, writer), daemon=True)
    proc.start()
    writer.close()
    killed: list[str] = []
    lock = threading.Lock()

    def kill(why: str) -> None:
        with lock:
            if proc.exitcode is None and not killed:
                killed.append(why)
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGKILL)

    timer = None
    if aim is not None and aim.phase == "timer":
        timer = threading.Timer(aim.delay_s, kill, args=("timer",))
        timer.start()
    seen: Counter[str] = Counter()
    last = ""
    for line in _lines(reader, proc):
        line = line.strip()
        if not line.startswith("@@chaos "):
            last = line or last
            continue
        phase = line.split(" ", 1)[1]
        seen[phase] += 1
        if aim is None or killed:
            continue
        at_mid = has_mid and phase == f"{aim.phase}-mid"  # the child is holding still inside the phase
        at_nth = not has_mid and phase == aim.phase and seen[phase] == aim.nth
        if at_mid or at_nth:
            kill(aim.phase)
    proc.join()
    reader.close()
    if timer is not None:
        timer.cancel()
    report = None
    if not killed and last.startswith("{"):
        report = json.loads(last)
    assert proc.exitcode is not None
    return RunOutcome(killed[0] if killed else None, proc.exitcode, report, time.monotonic() - started)


def _lines(reader: Any, proc: Any) -> Any:
    """The child's stdout, line by line, until it exits (or is killed) and the pipe is drained."""
    buf = b""
    while True:
        if reader.poll(0.05):
            try:
                buf += reader.recv_bytes()
            except EOFError:
                break
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode()
        elif not proc.is_alive() and not reader.poll(0):
            break
    if buf:
        yield buf.decode()


# -- one trial of one provider -----------------------------------------------------------------------
@dataclass
class ProviderTotals:
    trials: int = 0
    runs: int = 0
    kills: int = 0
    kills_by_phase: Counter = field(default_factory=Counter)
    runs_failed: int = 0  # finished without killing and without a complete cell
    incomplete_trials: int = 0
    rows: int = 0
    tasks_created: int = 0
    tasks_billed: int = 0
    resumed_tasks: int = 0
    duplicate_charges: int = 0
    duplicates_explained_by_submit_window: int = 0
    unexplained_duplicates: int = 0
    unjournaled_submit_window_tasks: int = 0
    window_bound: int = 0  # kills x max_unjournaled_submits: what the engine promises a crash can cost
    window_bound_exceeded: int = 0  # trials with more window tasks than their kills allow
    lost_paid_results: int = 0
    unaccounted_rows: int = 0
    cost_mismatches: int = 0
    image_mismatches: int = 0
    unreadable_ledger_parts: int = 0
    torn_tmp_files_left: int = 0  # hidden temp files of killed writes: never read, never counted
    reruns_that_paid: int = 0
    injected_errors: int = 0  # unexpected exceptions after a paid submit (--errors), as internal_error rows
    ledger_cost: Decimal = Decimal(0)
    sandbox_billed: Decimal = Decimal(0)
    window_billed: Decimal = Decimal(0)
    max_submit_window_ms: float = 0.0
    wall_s: float = 0.0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)

    def violations(self, provider: Provider) -> int:
        dups = self.duplicate_charges if provider is Provider.RIVYA else self.unexplained_duplicates
        return (
            dups
            + self.lost_paid_results
            + self.unaccounted_rows
            + self.cost_mismatches
            + self.image_mismatches
            + self.unreadable_ledger_parts
            + self.reruns_that_paid
            + self.incomplete_trials
            + self.window_bound_exceeded
        )

    def as_json(self, provider: Provider) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if isinstance(v, Decimal):
                out[k] = f"{v.normalize():f}"
            elif isinstance(v, Counter):
                out[k] = dict(sorted(v.items()))
            elif isinstance(v, float):
                out[k] = round(v, 3)
            else:
                out[k] = v
        out["violations"] = self.violations(provider)
        out["ok"] = out["violations"] == 0
        return out


def write_table(path: Path, n: int, trial: int, rng: random.Random) -> None:
    lines = ["id,prompt,aspect_ratio"]
    for j in range(n):
        prompt = f"chaos trial {trial} prompt {j} token {rng.getrandbits(32):08x}"
        lines.append(f"c{trial:03d}-{j:04d},{prompt},{rng.choice(RATIOS)}")
    path.write_text("\n".join(lines) + "\n")


def plan(rng: random.Random, n: int, typical_s: float, k: int) -> Aim:
    """Where to kill run ``k``: later runs have less left to do, so they are aimed earlier."""
    phase = rng.choice(list(PHASES))
    if phase == "timer":
        return Aim(phase, 1, rng.uniform(0.3, max(0.6, typical_s / (k + 1))))
    span = max(1, int(n * PHASES[phase][1] / (k + 1)))
    return Aim(phase, rng.randint(1, span))


def run_trial(
    provider: Provider, trial: int, url: str, state_dir: Path, work: Path, args: argparse.Namespace, tot: ProviderTotals
) -> None:
    rng = random.Random(f"{args.seed}-{trial}-{provider.value}")
    table = work / f"prompts-{provider.value}.csv"
    write_table(table, args.n, trial, rng)
    storage_root = work / f"store-{provider.value}"
    started = time.monotonic()
    typical = 2.0
    kills = rng.randint(max(1, args.kills - 1), args.kills + 1)
    kills_before = tot.kills
    done = False
    for k in range(kills + args.max_clean_runs):
        aim = plan(rng, args.n, typical, k) if k < kills else None
        # runs meant to be killed also hit injected errors; the clean runs that finish the cell do not
        errors = args.errors if aim is not None else 0.0
        out = run_child(table, provider, storage_root, url, f"t{trial}-r{k}", aim, errors)
        tot.runs += 1
        if out.killed_at is not None:
            tot.kills += 1
            tot.kills_by_phase[out.killed_at] += 1
            time.sleep(LEASE_TTL_S)  # its lease, renewed at most until the kill, expires
            continue
        rep = out.report
        if rep is None or out.returncode != 0:
            tot.runs_failed += 1
            tot.note(f"trial {trial} run {k}: exit {out.returncode} without a complete report")
            continue
        typical = max(typical, out.seconds)
        tot.resumed_tasks += rep["resumed"]
        tot.max_submit_window_ms = max(tot.max_submit_window_ms, rep.get("submit_window_ms_max") or 0.0)
        tot.injected_errors += rep["failures_by_reason"].get("internal_error", 0)
        if not errors or not rep["failures_by_reason"].get("internal_error"):
            done = True  # a run without injected errors that finished: the cell is complete
            break
    if done:  # every row has an outcome: running again must pay nothing and resume nothing
        again = run_child(table, provider, storage_root, url, f"t{trial}-verify", None)
        tot.runs += 1
        rep = again.report or {}
        if again.returncode != 0 or rep.get("submitted", 1) or rep.get("resumed", 1):
            tot.reruns_that_paid += 1
            tot.note(f"trial {trial}: the re-run after completion submitted {rep.get('submitted')} / "
                     f"resumed {rep.get('resumed')}")  # fmt: skip
    else:
        tot.incomplete_trials += 1
        tot.note(f"trial {trial}: the cell never completed")
    tot.wall_s += time.monotonic() - started
    tot.trials += 1
    trial_kills = tot.kills - kills_before
    wait_settled(url, provider)
    audit(provider, trial, table, storage_root, url, state_dir, tot, trial_kills)


# -- the audit -----------------------------------------------------------------------------------------
def audit(
    provider: Provider, trial: int, table: Path, root: Path, url: str, state_dir: Path, tot: ProviderTotals, kills: int
) -> None:
    rows, _ = load_cell_rows([str(table)], provider, RESOLUTION)
    fp_of_prompt = {
        r.prompt: GenerationRequest(
            prompt=r.prompt, aspect_ratio=r.aspect_ratio, resolution=RESOLUTION, output_format=r.output_format
        ).fingerprint(provider)
        for r in rows
    }
    eligible = set(fp_of_prompt.values())
    tot.rows += len(eligible)
    storage = Storage(root)

    billed = {t: a for t, a in billed_by_task(url, provider).items() if a > 0}
    prompts = sandbox_prompts(state_dir, provider)
    tot.tasks_created += len(prompts)
    tot.tasks_billed += len(billed)
    journal = read_journal(storage, provider, RESOLUTION)

    # every ledger part must read on its own (a kill mid-write may leave only hidden temp files)
    ledger_dir = storage.path("ledger", cell_dir(provider, RESOLUTION))
    for part in storage.find(ledger_dir):
        try:
            pq.read_table(part)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            tot.unreadable_ledger_parts += 1
            tot.note(f"trial {trial}: ledger part {part} unreadable: {exc}")
    for d in ("ledger", "images", "journal"):
        base = Path(root, d)
        tot.torn_tmp_files_left += sum(1 for p in base.rglob(".tmp-*")) if base.exists() else 0
    ledger = read_ledger(storage, provider=provider, resolution=RESOLUTION).to_pylist()
    # tasks the pipeline learned of: journaled, or in a ledger row (a Rivya task id is journaled lazily)
    known = {e.task_id for entries in journal.tasks.values() for e in entries} | {r["task_id"] for r in ledger}

    # duplicates and the submit window
    tasks_by_fp: dict[str, list[str]] = {}
    for task_id in billed:
        fp = fp_of_prompt.get(prompts.get(task_id, ""))
        if fp is None:
            tot.lost_paid_results += 1
            tot.note(f"trial {trial}: billed task {task_id} matches no prompt of the table")
            continue
        tasks_by_fp.setdefault(fp, []).append(task_id)
    window: set[str] = set()
    for fp, tasks in tasks_by_fp.items():
        unjournaled = [t for t in tasks if t not in known]
        window.update(unjournaled)
        dups = len(tasks) - 1
        if dups <= 0:
            continue
        explained = min(dups, len(unjournaled))
        tot.duplicate_charges += dups
        tot.duplicates_explained_by_submit_window += explained
        tot.unexplained_duplicates += dups - explained
        if dups - explained or provider is Provider.RIVYA:
            tot.note(f"trial {trial}: fingerprint {fp[:12]} billed {len(tasks)} times ({len(unjournaled)} unjournaled)")
    tot.unjournaled_submit_window_tasks += len(window)
    if provider is Provider.ODIROUTER:
        bound = kills * EngineSettings().max_unjournaled_submits
        tot.window_bound += bound
        if len(window) > bound:
            tot.window_bound_exceeded += 1
            tot.note(f"trial {trial}: {len(window)} window tasks after {kills} kills (bound {bound})")

    # paid results: each billed task has a succeeded row whose image is on disk and intact
    succeeded_by_task: dict[str, dict[str, Any]] = {}
    for r in ledger:
        if r["status"] == "succeeded" and r["task_id"]:
            succeeded_by_task[r["task_id"]] = r
    stored_fps = {r["fingerprint"] for r in succeeded_by_task.values()}
    for task_id in billed:
        if task_id in succeeded_by_task:
            continue
        fp = fp_of_prompt.get(prompts.get(task_id, ""))
        if task_id in window and fp in stored_fps:
            continue  # paid twice inside the window; the row's result came from the journaled task
        if fp is not None:
            tot.lost_paid_results += 1
            tot.note(f"trial {trial}: billed task {task_id} has no stored succeeded row")
    for r in succeeded_by_task.values():
        path = r["image_uri"]
        try:
            info = inspect_image(path)
            ok = (info.width, info.height) == (r["width"], r["height"])
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            tot.image_mismatches += 1
            tot.note(f"trial {trial}: stored image {path} missing or not as recorded")
    image_files = storage.find(storage.path("images", cell_dir(provider, RESOLUTION)))
    if len(image_files) != len(stored_fps):
        tot.image_mismatches += abs(len(image_files) - len(stored_fps))
        tot.note(f"trial {trial}: {len(image_files)} image files for {len(stored_fps)} succeeded fingerprints")

    # every eligible row: exactly one final row, and the latest row final
    by_fp: dict[str, list[dict[str, Any]]] = {}
    for r in ledger:
        by_fp.setdefault(r["fingerprint"], []).append(r)
    for fp in eligible:
        rs = sorted(by_fp.get(fp, []), key=lambda r: r["recorded_at"])
        final = [r for r in rs if not (r["status"] == "failed" and r["task_id"] and r["error_code"] in RESUMABLE_CODES)]
        if len(final) != 1 or rs[-1] is not final[-1]:
            tot.unaccounted_rows += 1
            codes = [(r["status"], r["error_code"]) for r in rs]
            tot.note(f"trial {trial}: fingerprint {fp[:12]} has rows {codes}")
    for fp in set(by_fp) - eligible:
        tot.unaccounted_rows += 1
        tot.note(f"trial {trial}: ledger rows for fingerprint {fp[:12]}, which is no eligible row")

    # money: per task, the ledger's net equals the sandbox's billing (window tasks never reached it)
    ledger_by_task: dict[str, Decimal] = {}
    for r in ledger:
        if r["task_id"]:
            ledger_by_task[r["task_id"]] = ledger_by_task.get(r["task_id"], Decimal(0)) + r["final_cost"]
        elif r["final_cost"]:
            tot.cost_mismatches += 1
            tot.note(f"trial {trial}: a row without a task id costs {r['final_cost']}")
    for task_id in set(billed) | {t for t, a in ledger_by_task.items() if a}:
        if task_id in window and task_id not in ledger_by_task:
            continue
        if billed.get(task_id, Decimal(0)) != ledger_by_task.get(task_id, Decimal(0)):
            tot.cost_mismatches += 1
            tot.note(f"trial {trial}: {task_id}: ledger {ledger_by_task.get(task_id)}, billed {billed.get(task_id)}")
    tot.ledger_cost += sum(ledger_by_task.values(), Decimal(0))
    tot.sandbox_billed += sum(billed.values(), Decimal(0))
    tot.window_billed += sum((billed[t] for t in window), Decimal(0))


# -- main ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5, help="fresh sandbox + storage each (default 5)")
    ap.add_argument("--provider", choices=["rivya", "odirouter", "both"], default="both")
    ap.add_argument("--n", type=int, default=30, help="prompts per cell (default 30)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=3, help="kills per trial, on average (default 3: 2-4)")
    ap.add_argument("--max-clean-runs", type=int, default=3, help="runs without kills allowed to finish a trial")
    ap.add_argument(
        "--errors", type=float, default=0.05, help="share of paid results hit by an injected exception (default 0.05)"
    )
    ap.add_argument("--faults", choices=["none", "light"], default="none", help="sandbox faults besides the kills")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object keyed by provider")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _FORKS.set_forkserver_preload(["chaos_cell"])
    providers = list(Provider) if args.provider == "both" else [Provider(args.provider)]
    totals = {p: ProviderTotals() for p in providers}
    work_root = Path(tempfile.mkdtemp(prefix="nbpro-chaos-"))
    started = time.monotonic()
    try:
        for trial in range(args.trials):
            work = work_root / f"trial-{trial:03d}"
            state = work / "sandbox"
            work.mkdir(parents=True)
            proc, url = start_sandbox(state, args.seed * 1000 + trial, args.faults)
            try:  # both providers at once, against the same sandbox, each in its own storage root
                with ThreadPoolExecutor(len(providers)) as pool:
                    jobs = [pool.submit(run_trial, p, trial, url, state, work, args, totals[p]) for p in providers]
                    for job in jobs:
                        job.result()
            finally:
                proc.kill()
                proc.wait()
            line = "  ".join(
                f"{p.value}: runs {totals[p].runs} kills {totals[p].kills} violations {totals[p].violations(p)}"
                for p in providers
            )
            progress = sys.stderr if args.json else sys.stdout  # stdout's last line is the JSON
            print(f"trial {trial + 1}/{args.trials}  {line}", flush=True, file=progress)
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    elapsed = time.monotonic() - started
    result = {p.value: totals[p].as_json(p) for p in providers}
    for p in providers:
        t = totals[p]
        print(
            f"\n{p.value}: {t.trials} trials, {t.runs} runs, {t.kills} kills {dict(t.kills_by_phase)}\n"
            f"  rows {t.rows}, tasks created {t.tasks_created}, billed {t.tasks_billed}, resumed {t.resumed_tasks}\n"
            f"  duplicate charges {t.duplicate_charges} (explained by the unjournaled submit window: "
            f"{t.duplicates_explained_by_submit_window}; window tasks {t.unjournaled_submit_window_tasks} "
            f"of at most {t.window_bound}; "
            f"max submit window {t.max_submit_window_ms:.1f} ms)\n"
            f"  lost paid results {t.lost_paid_results}, unaccounted rows {t.unaccounted_rows}, "
            f"cost mismatches {t.cost_mismatches}, image mismatches {t.image_mismatches}, "
            f"unreadable ledger parts {t.unreadable_ledger_parts}, re-runs that paid {t.reruns_that_paid}\n"
            f"  ledger cost {t.ledger_cost.normalize():f}, sandbox billed {t.sandbox_billed.normalize():f} "
            f"(of which window tasks {t.window_billed.normalize():f}); torn temp files left {t.torn_tmp_files_left}\n"
            f"  violations {t.violations(p)}" + "".join(f"\n    - {e}" for e in t.examples),
            file=sys.stderr if args.json else sys.stdout,
        )
    print(f"\n{elapsed:.1f} s", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0 if all(totals[p].violations(p) == 0 for p in providers) else 1


if __name__ == "__main__":
    sys.exit(main())
