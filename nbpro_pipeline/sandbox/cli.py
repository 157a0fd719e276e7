"""``nbpro sandbox``: run the local emulator of both providers, its knobs as flags.

Every flag maps onto one path of ``SandboxConfig`` (a ``*`` path sets both providers' sections); the
mapping is data (``_FLAG_PATHS``), so a knob is added in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nbpro_pipeline.providers.odirouter.wire import ODI_ERROR_TYPES

_RATE = click.FloatRange(0.0, 1.0)
_FAILURE_TYPES = [t for t in ODI_ERROR_TYPES if t != "CANCELED"]
# flag (its parameter name) -> where its value goes in the config
_FLAG_PATHS = {
    "seed": "seed",
    "time_scale": "time_scale",
    "result_url_ttl": "result_url_ttl_s",
    "rate_limit_rps": "*.rate_limit.requests_per_s",
    "rate_limit_burst": "*.rate_limit.burst",
    "max_concurrent_tasks": "*.rate_limit.max_concurrent_tasks",
    "admission": "*.rate_limit.admission",
    "retry_after": "*.rate_limit.retry_after_s",
    "fault_5xx": "*.faults.http_5xx",
    "fault_drop": "*.faults.drop_connection",
    "fault_drop_after_processing": "*.faults.drop_after_processing",
    "fault_rate_limited": "*.faults.rate_limited",
    "fault_rate_limited_burst": "*.faults.rate_limited_burst_s",
    "fault_task_failed": "*.faults.task_failed.INFERENCE_FAILURE",
    "fault_corrupt_image": "*.faults.corrupt_image",
    "fault_wrong_size": "*.faults.wrong_size",
    "fault_expired_url": "*.faults.expired_url",
    "fault_stuck": "*.faults.stuck_task",
    "fault_drop_download": "*.faults.drop_download",
    "rivya_credits": "billing.rivya_initial_credits",
    "odirouter_balance": "billing.odirouter_initial_usd",
    "mutate_seed": "wire.mutations.seed",
    "mutate_rate": "wire.mutations.rate",
}
_LATENCY = {
    "zero": {"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "fixed", "value": 0}},
    "default": {
        "queued": {"dist": "uniform", "low": 0.2, "high": 0.8},
        "processing": {"dist": "uniform", "low": 0.8, "high": 2.2},
    },
}


def _dist(spec: str | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    from nbpro_pipeline.sandbox.config import Dist

    try:
        return Dist.parse(spec).model_dump(mode="json", exclude_none=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    """Put ``value`` at a dotted path, for both provider sections when the path starts with ``*``."""
    if value is None:
        return
    heads = ("rivya", "odirouter") if path.startswith("*.") else (None,)
    for head in heads:
        keys = ([head] if head else []) + path.removeprefix("*.").split(".")
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8799, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option(
    "--state",
    "state_dir",
    default=".nbpro/sandbox",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (SQLite wallets, ledger, tasks, uploads); reused across restarts.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .json or .toml file shaped like SandboxConfig (per-provider sections 'rivya' and "
    "'odirouter'); the flags below override it and apply to both providers.",
)
@click.option("--seed", type=int, help="Seed of every random decision (latency, faults). Default 0.")
@click.option(
    "--latency",
    type=click.Choice(["zero", "default", "realistic"]),
    help="Shortcut: 'zero' finishes tasks instantly (tests, benchmarks); 'default' is queued "
    "uniform 0.2-0.8 s, processing uniform 0.8-2.2 s; 'realistic' is Nano Banana Pro's measured "
    "processing time, lognormal with median 17/35/60 s at 1K/2K/4K (p95 25/50/90 s), queued 0.5 s "
    "(use --time-scale to run it faster).",
)
@click.option(
    "--queued-latency",
    metavar="SPEC",
    help="Time in the queue: SECONDS, fixed:S, uniform:LOW,HIGH or lognormal:MEDIAN,SIGMA.",
)
@click.option("--processing-latency", metavar="SPEC", help="Time processing; same SPEC forms.")
@click.option("--time-scale", type=click.FloatRange(min=0), help="Multiply every sampled latency.")
@click.option(
    "--rate-limit-rps", type=click.FloatRange(min=0), help="Requests/s per provider API (token bucket); 0 = off."
)
@click.option("--rate-limit-burst", type=click.IntRange(min=1), help="Token bucket size (default: ceil(rps)).")
@click.option(
    "--max-concurrent-tasks",
    type=click.IntRange(min=0),
    help="Unfinished tasks per provider; a create beyond it gets 429 (or is queued: --admission queue). 0 = off.",
)
@click.option(
    "--admission",
    type=click.Choice(["reject", "queue"]),
    help="Beyond --max-concurrent-tasks: 'reject' with 429 (default), or 'queue' (accepted, queued until a "
    "slot frees, as fal-style queues do).",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(min=0, min_open=True),
    help="Fix Retry-After on every 429 (may be fractional); default: computed, whole seconds, min 1.",
)
@click.option("--fault-5xx", type=_RATE, help="Rate of 500/502/503 answers (nothing created).")
@click.option("--fault-drop", type=_RATE, help="Rate of connections cut before processing.")
@click.option(
    "--fault-drop-after-processing",
    type=_RATE,
    help="Rate of create calls whose task IS created (and billable) but whose answer is cut.",
)
@click.option("--fault-rate-limited", type=_RATE, help="Rate of spurious 429 bursts (with Retry-After).")
@click.option(
    "--fault-rate-limited-burst",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a spurious 429 burst lasts (default 1; --retry-after overrides).",
)
@click.option("--fault-task-failed", type=_RATE, help="Rate of tasks ending failed (as INFERENCE_FAILURE).")
@click.option(
    "--fault-task-failed-as",
    multiple=True,
    metavar="TYPE=RATE",
    help=f"Rate of failures of one type ({', '.join(_FAILURE_TYPES)}); repeatable.",
)
@click.option("--fault-corrupt-image", type=_RATE, help="Rate of results served as damaged bytes (200).")
@click.option(
    "--fault-wrong-size", type=_RATE, help="Rate of results at the wrong size (4K/2K as 1K; 1K at another ratio)."
)
@click.option("--fault-expired-url", type=_RATE, help="Rate of tasks whose first result URL is already expired.")
@click.option("--fault-stuck", type=_RATE, help="Rate of tasks that never leave processing.")
@click.option("--fault-drop-download", type=_RATE, help="Rate of image downloads cut mid-body.")
@click.option("--result-url-ttl", type=click.FloatRange(min=0, min_open=True), help="Result URL lifetime, s.")
@click.option("--rivya-credits", type=click.IntRange(min=0), help="Rivya wallet of a fresh state dir.")
@click.option("--odirouter-balance", type=click.FloatRange(min=0), help="OdiRouter wallet (USD) of a fresh state dir.")
@click.option(
    "--mutate",
    "mutate_seed",
    type=int,
    metavar="SEED",
    help="Mutation mode: answer the plausible undocumented ways (other state words, numbers as strings, "
    "missing fields, the image elsewhere or inline, other URLs, read lag, ...), reproducibly from SEED. "
    "Billing, states and image bytes stay true. Off by default.",
)
@click.option("--mutate-rate", type=_RATE, help="Probability that an answer is varied (default 0.6).")
@click.option(
    "--mutate-family",
    "mutate_families",
    multiple=True,
    metavar="NAME",
    help="Vary only these families (repeatable; default all): state_words, number_strings, missing_fields, "
    "image_location, returned_urls, read_lag, minimal_create, stated_cost, error_envelopes, extra_fields.",
)
def sandbox(
    host: str,
    port: int,
    state_dir: Path,
    config_file: Path | None,
    latency: str | None,
    queued_latency: str | None,
    processing_latency: str | None,
    fault_task_failed_as: tuple[str, ...],
    mutate_families: tuple[str, ...],
    **knobs: Any,
) -> None:
    """Run the local emulator of both providers (Rivya at /api/v1, OdiRouter at /model/v1/queue).

    No keys, no network: any 'rvya_sk_...' key works for Rivya and any key for OdiRouter.
    Admin routes at /_sandbox (ledger, stats, config, topup, reset).
    """
    from pydantic import ValidationError

    from nbpro_pipeline.sandbox.config import SandboxConfig
    from nbpro_pipeline.sandbox.server import serve

    partial: dict[str, Any] = {}
    for name, value in knobs.items():
        _set(partial, _FLAG_PATHS[name], value)
    _latency(partial, latency, queued_latency, processing_latency)
    _failures_as(partial, fault_task_failed_as)
    _set(partial, "wire.mutations.families", list(mutate_families) or None)
    try:
        base = SandboxConfig.from_file(config_file) if config_file else SandboxConfig()
        config = base.updated(partial)
    except (ValidationError, ValueError, OSError) as exc:
        raise click.ClickException(f"invalid sandbox configuration: {exc}") from exc
    state = state_dir.resolve()

    def announce(url: str) -> None:
        click.echo(f"nbpro sandbox listening on {url} (state {state})")
        sys.stdout.flush()

    serve(host, port, state, config, on_ready=announce)


def _latency(partial: dict[str, Any], shortcut: str | None, queued: str | None, processing: str | None) -> None:
    if shortcut == "realistic":
        from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

        _set(partial, "*.latency.queued", {"dist": "fixed", "value": 0.5})
        _set(partial, "*.latency.processing_by_resolution", REALISTIC_PROCESSING)
    elif shortcut is not None:
        for state, dist in _LATENCY[shortcut].items():
            _set(partial, f"*.latency.{state}", dist)
    _set(partial, "*.latency.queued", _dist(queued))
    _set(partial, "*.latency.processing", _dist(processing))


def _failures_as(partial: dict[str, Any], items: tuple[str, ...]) -> None:
    for item in items:
        kind, _, rate = item.partition("=")
        if kind not in _FAILURE_TYPES:
            raise click.BadParameter(
                f"{kind!r} is not one of {', '.join(_FAILURE_TYPES)}", param_hint="--fault-task-failed-as"
            )
        try:
            _set(partial, f"*.faults.task_failed.{kind}", float(rate))
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: use TYPE=RATE", param_hint="--fault-task-failed-as") from exc
