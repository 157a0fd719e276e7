"""The ``nbpro`` command. Subcommands: ``sandbox`` (more to come: validate, estimate, demo)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from nbpro_pipeline.models.common import Provider, Resolution
from nbpro_pipeline.models.odirouter import ODI_ERROR_TYPES

_RATE = click.FloatRange(0.0, 1.0)
_FAILURE_TYPES = [t for t in ODI_ERROR_TYPES if t != "CANCELED"]


@click.group()
def main() -> None:
    """nbpro: generate Nano Banana Pro images from prompt tables via Rivya and OdiRouter."""


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


@main.command()
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
    seed: int | None,
    latency: str | None,
    queued_latency: str | None,
    processing_latency: str | None,
    time_scale: float | None,
    rate_limit_rps: float | None,
    rate_limit_burst: int | None,
    max_concurrent_tasks: int | None,
    admission: str | None,
    retry_after: float | None,
    fault_5xx: float | None,
    fault_drop: float | None,
    fault_drop_after_processing: float | None,
    fault_rate_limited: float | None,
    fault_rate_limited_burst: float | None,
    fault_task_failed: float | None,
    fault_task_failed_as: tuple[str, ...],
    fault_corrupt_image: float | None,
    fault_wrong_size: float | None,
    fault_expired_url: float | None,
    fault_stuck: float | None,
    fault_drop_download: float | None,
    result_url_ttl: float | None,
    rivya_credits: int | None,
    odirouter_balance: float | None,
    mutate_seed: int | None,
    mutate_rate: float | None,
    mutate_families: tuple[str, ...],
) -> None:
    """Run the local emulator of both providers (Rivya at /api/v1, OdiRouter at /model/v1/queue).

    No keys, no network: any 'rvya_sk_...' key works for Rivya and any key for OdiRouter.
    Admin routes at /_sandbox (ledger, stats, config, topup, reset).
    """
    from pydantic import ValidationError

    from nbpro_pipeline.sandbox.config import SandboxConfig
    from nbpro_pipeline.sandbox.server import serve

    partial: dict[str, Any] = {}
    _set(partial, "seed", seed)
    _set(partial, "time_scale", time_scale)
    _set(partial, "result_url_ttl_s", result_url_ttl)
    if latency == "zero":
        _set(partial, "*.latency.queued", {"dist": "fixed", "value": 0})
        _set(partial, "*.latency.processing", {"dist": "fixed", "value": 0})
    elif latency == "realistic":
        from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

        _set(partial, "*.latency.queued", {"dist": "fixed", "value": 0.5})
        _set(partial, "*.latency.processing_by_resolution", REALISTIC_PROCESSING)
    elif latency == "default":
        _set(partial, "*.latency.queued", {"dist": "uniform", "low": 0.2, "high": 0.8})
        _set(partial, "*.latency.processing", {"dist": "uniform", "low": 0.8, "high": 2.2})
    _set(partial, "*.latency.queued", _dist(queued_latency))
    _set(partial, "*.latency.processing", _dist(processing_latency))
    _set(partial, "*.rate_limit.requests_per_s", rate_limit_rps)
    _set(partial, "*.rate_limit.burst", rate_limit_burst)
    _set(partial, "*.rate_limit.max_concurrent_tasks", max_concurrent_tasks)
    _set(partial, "*.rate_limit.admission", admission)
    _set(partial, "*.rate_limit.retry_after_s", retry_after)
    _set(partial, "*.faults.http_5xx", fault_5xx)
    _set(partial, "*.faults.drop_connection", fault_drop)
    _set(partial, "*.faults.drop_after_processing", fault_drop_after_processing)
    _set(partial, "*.faults.rate_limited", fault_rate_limited)
    _set(partial, "*.faults.rate_limited_burst_s", fault_rate_limited_burst)
    _set(partial, "*.faults.task_failed.INFERENCE_FAILURE", fault_task_failed)
    for item in fault_task_failed_as:
        kind, _, rate = item.partition("=")
        if kind not in _FAILURE_TYPES:
            raise click.BadParameter(
                f"{kind!r} is not one of {', '.join(_FAILURE_TYPES)}", param_hint="--fault-task-failed-as"
            )
        try:
            _set(partial, f"*.faults.task_failed.{kind}", float(rate))
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: use TYPE=RATE", param_hint="--fault-task-failed-as") from exc
    _set(partial, "*.faults.corrupt_image", fault_corrupt_image)
    _set(partial, "*.faults.wrong_size", fault_wrong_size)
    _set(partial, "*.faults.expired_url", fault_expired_url)
    _set(partial, "*.faults.stuck_task", fault_stuck)
    _set(partial, "*.faults.drop_download", fault_drop_download)
    _set(partial, "billing.rivya_initial_credits", rivya_credits)
    _set(partial, "billing.odirouter_initial_usd", odirouter_balance)
    _set(partial, "wire.mutations.seed", mutate_seed)
    _set(partial, "wire.mutations.rate", mutate_rate)
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


@main.command()
@click.argument("tables", nargs=-1, required=True)
@click.option(
    "--cells",
    default="all",
    show_default=True,
    metavar="CELLS",
    help="Comma-separated PROVIDER|RESOLUTION cells, e.g. 'rivya|2K,odirouter|4K'; '*' matches any "
    "provider or resolution; 'all' is all six. Quote it: '|' is a shell pipe.",
)
@click.option(
    "--ledger-root",
    metavar="DIR",
    help="Storage root (local path or URI) whose ledger (DIR/ledger) shows what already succeeded.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (decimals as strings) instead of a table.")
def estimate(tables: tuple[str, ...], cells: str, ledger_root: str | None, as_json: bool) -> None:
    """Estimate what generating TABLE(s) would cost, per provider x resolution cell. Sends nothing.

    TABLE is a CSV, TSV or Parquet prompt table: a path, glob, directory or URI. Prices come from the
    built-in price table, overridable with NBPRO_RIVYA_USD_PER_CREDIT, NBPRO_RIVYA_CREDITS_PER_IMAGE and
    NBPRO_ODIROUTER_USD_1K/_2K/_4K. Exit status 2 when the tables, the ledger or the prices cannot be read.
    """
    import json
    from typing import NoReturn

    from nbpro_pipeline.costs.cli_support import estimates_json
    from nbpro_pipeline.costs.estimate import CellSpecError, parse_cells
    from nbpro_pipeline.costs.prices import PriceTable
    from nbpro_pipeline.presentation.estimate_table import render_estimates
    from nbpro_pipeline.prompts import PromptTableError, load_prompt_tables

    def fail(message: str) -> NoReturn:
        click.echo(f"Error: {message}", err=True)
        raise SystemExit(2)

    try:
        chosen = parse_cells(cells)
    except CellSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--cells") from exc
    try:
        prices = PriceTable.from_env()
    except ValueError as exc:
        fail(f"invalid price setting: {exc}")
    try:
        result = load_prompt_tables(list(tables))
    except PromptTableError as exc:
        fail(f"cannot read the prompt tables: {exc}")
    for source in getattr(result, "unreadable", []):
        click.echo(f"Warning: {source.uri} could not be read: {source.error}", err=True)
    estimates, ledger_rows = _estimate(result.accepted, chosen, prices, ledger_root, fail)
    accepted, rejected = result.accepted.num_rows, result.rejected.num_rows
    if as_json:
        data = estimates_json(estimates, ledger_rows=ledger_rows, accepted=accepted, rejected=rejected)
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{accepted} accepted prompt row(s) from {len(result.sources)} file(s)"
        + (f"; {rejected} rejection(s), see `nbpro validate`" if rejected else "")
        + "\n"
    )
    click.echo(render_estimates(estimates, prices, ledger_known=ledger_root is not None))


def _estimate(accepted: Any, chosen: list, prices: Any, ledger_root: str | None, fail: Any) -> tuple[list, int | None]:
    """The estimates, and the ledger's row count (None without a ledger). The ledger under
    ``ledger_root`` is read a cell at a time while estimating; a read error exits 2 through ``fail``."""
    from nbpro_pipeline.costs.cli_support import ledger_storage
    from nbpro_pipeline.costs.estimate import estimate_cells, storage_done_keys

    storage = None
    if ledger_root is not None:
        try:
            storage = ledger_storage(ledger_root)
        except (OSError, ValueError, TypeError) as exc:
            fail(f"cannot open the ledger under {ledger_root}/ledger: {exc}")
        if storage is None:
            click.echo(f"Note: no ledger under {ledger_root}/ledger yet; nothing is counted as done.", err=True)
    if storage is None:
        return estimate_cells(accepted, chosen, prices), None
    done_keys = storage_done_keys(storage)
    try:
        estimates = estimate_cells(accepted, chosen, prices, done_keys=done_keys)
        return estimates, done_keys.ledger_rows()
    except (OSError, ValueError, TypeError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
        fail(f"cannot read the ledger under {ledger_root}/ledger: {exc}")


@main.command()
@click.argument("tables", nargs=-1, required=True, metavar="TABLE [TABLE...]")
@click.option(
    "--reference-root",
    "reference_roots",
    multiple=True,
    metavar="DIR",
    help="Local reference images must lie under one of these directories (repeatable). "
    "Default: the folder of the table naming them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=0), help="Rejected rows to list at most."
)
def validate(tables: tuple[str, ...], reference_roots: tuple[str, ...], as_json: bool, limit: int) -> None:
    """Check prompt tables without generating anything.

    TABLE: a .csv, .tsv, .csv.gz, .tsv.gz or .parquet/.pq file, a glob, a directory or an fsspec URI.
    Prints a summary per file and one line per rejected row. Exit status: 0 every row is valid for every
    provider it can go to, 1 some rows were rejected, 2 a table could not be read.
    """
    import json

    from nbpro_pipeline.prompts import PromptTableError, check_prompt_tables
    from nbpro_pipeline.prompts.report import EXIT_UNREADABLE, exit_code, render_json, render_text

    try:
        result = check_prompt_tables(list(tables), reference_roots=list(reference_roots) or None)
        code = exit_code(result)
        output = json.dumps(render_json(result, limit), indent=2) if as_json else render_text(result, limit)
    except PromptTableError as exc:
        message = str(exc)
    except Exception as exc:  # a clear line, never a traceback
        message = f"cannot read the tables: {type(exc).__name__}: {exc}"
    else:
        click.echo(output)
        if code == EXIT_UNREADABLE:
            unreadable = len(result.unreadable) or "some"
            click.echo(f"nbpro validate: {unreadable} table(s) could not be read; see above", err=True)
        sys.exit(code)
    if as_json:
        click.echo(json.dumps({"exit_code": EXIT_UNREADABLE, "error": message}, indent=2))
    click.echo(f"nbpro validate: {message}", err=True)
    sys.exit(EXIT_UNREADABLE)


_SANDBOX_BASE = {"rivya": "http://127.0.0.1:8787", "odirouter": "http://127.0.0.1:8787/model"}


def _signer_or_exit() -> Any:
    """The C2PA signer from NBPRO_C2PA_CERT/KEY, or None (saying how to sign); exit 2 if half set."""
    from nbpro_pipeline.provenance import SIGNING_HELP, SigningConfigError, signer_from_env

    try:
        signer = signer_from_env()
    except SigningConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
    if signer is None:
        click.echo(f"Note: {SIGNING_HELP}", err=True)
    return signer


@main.command("run-cell")
@click.argument("tables", nargs=-1, required=True, metavar="TABLE [TABLE...]")
@click.option("--cell", "cell_spec", required=True, metavar="PROVIDER|RESOLUTION", help="e.g. 'rivya|2K' (quote it).")
@click.option("--storage", "storage_root", default=".nbpro/storage", show_default=True, help="Storage root.")
@click.option(
    "--base-url", help="Provider endpoint; default $RIVYA_BASE_URL / $ODIROUTER_BASE_URL, else the local sandbox."
)
@click.option("--run-id", help="Run id written into the ledger, journal and images (default: a fresh one).")
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="C: tasks kept running at the provider at once (its concurrency limit, or this cell's share).",
)
@click.option(
    "--admission-kind",
    type=click.Choice(["reject", "queue"]),
    help="What the provider does beyond C: answer 429 or queue the task (default: the provider's own).",
)
@click.option(
    "--max-held",
    type=click.IntRange(min=1),
    help="Cap on tasks submitted and not yet seen finished (default 1.5 x --max-in-flight).",
)
@click.option(
    "--queue-allowance",
    type=click.IntRange(min=0),
    help="Queue providers: tasks allowed to wait beyond C (default max(4, C/8)).",
)
@click.option("--poll-first-delay", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Seconds.")
@click.option("--poll-max-interval", type=click.FloatRange(min=0), default=8.0, show_default=True, help="Seconds.")
@click.option("--ledger-flush-rows", type=click.IntRange(min=1), default=250, show_default=True)
@click.option(
    "--requests-per-s",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="API calls per second (token bucket), as the Dagster resources' requests_per_s.",
)
@click.option("--burst", type=click.IntRange(min=1), default=40, show_default=True, help="Token-bucket size.")
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds the cell's lease lives unrenewed: a killed run blocks the cell this long (plus the skew).",
)
@click.option(
    "--lease-heartbeat",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds between renewals of the lease (shorter than --lease-ttl).",
)
@click.option(
    "--lease-clock-skew",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds machines' clocks may disagree: an expired lease is taken over only this long after its expiry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the cell report as one JSON line.")
def run_cell_command(
    tables: tuple[str, ...],
    cell_spec: str,
    storage_root: str,
    base_url: str | None,
    run_id: str | None,
    max_in_flight: int,
    admission_kind: str | None,
    max_held: int | None,
    queue_allowance: int | None,
    poll_first_delay: float,
    poll_max_interval: float,
    ledger_flush_rows: int,
    requests_per_s: float,
    burst: int,
    lease_ttl: float,
    lease_heartbeat: float,
    lease_clock_skew: float,
    as_json: bool,
) -> None:
    """Run one provider x resolution cell of TABLE(s) without Dagster: same engine, journal and ledger.

    The key comes from RIVYA_API_KEY or ODIROUTER_API_KEY (never a flag, so it stays out of shell
    history). Re-running pays only for gaps; after a crash, journaled tasks are polled, not resubmitted.
    One run per cell and storage root at a time: the run holds a lease under ROOT/leases/, and a second
    run refuses, naming the holder; a killed run's lease expires after --lease-ttl.

    \b
    Exit status:
      0  every eligible row has an outcome
      1  some did not (see the summary)
      2  bad input
      3  another run holds the cell: nothing was submitted; stderr names the holder
      4  this run lost the cell's lease mid-run: it stopped submitting new
         prompts; what it had submitted is in the ledger
    """
    import json
    import os

    from nbpro_pipeline.costs.estimate import CellSpecError, parse_cells
    from nbpro_pipeline.engine.settings import EngineSettings
    from nbpro_pipeline.engine.standalone import CellJob, load_cell_rows, run_job
    from nbpro_pipeline.prompts import PromptTableError
    from nbpro_pipeline.providers import PollPolicy
    from nbpro_pipeline.storage.lease import CellBusy, LeaseLost, check_lease_timings

    try:
        cells = parse_cells(cell_spec)
    except CellSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--cell") from exc
    if len(cells) != 1:
        raise click.BadParameter(f"{cell_spec!r} names {len(cells)} cells; give exactly one", param_hint="--cell")
    provider, resolution = cells[0]
    try:
        check_lease_timings(lease_ttl, lease_heartbeat)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lease-heartbeat") from None
    env = provider.value.upper()
    key = os.environ.get(f"{env}_API_KEY")
    if not key:
        click.echo(f"Error: set {env}_API_KEY (any 'rvya_sk_…' / non-empty key works on the sandbox)", err=True)
        raise SystemExit(2)
    try:
        rows, rejected = load_cell_rows(tables, provider, resolution)
    except PromptTableError as exc:
        click.echo(f"Error: cannot read the prompt tables: {exc}", err=True)
        raise SystemExit(2) from None
    if rejected:
        click.echo(f"Note: {rejected} rejection(s) in the tables; see `nbpro validate`", err=True)
    job = CellJob(
        provider=provider,
        resolution=resolution,
        storage_root=storage_root,
        base_url=base_url or os.environ.get(f"{env}_BASE_URL") or _SANDBOX_BASE[provider.value],
        api_key=key,
        settings=EngineSettings(
            max_in_flight=max_in_flight,
            admission_kind=admission_kind,
            max_held=max_held,
            queue_allowance=queue_allowance,
            ledger_flush_rows=ledger_flush_rows,
            progress_interval_s=60,
            requests_per_s=requests_per_s,
            burst=burst,
            lease_ttl_s=lease_ttl,
            lease_heartbeat_s=lease_heartbeat,
            lease_clock_skew_s=lease_clock_skew,
            signer=_signer_or_exit(),
            reference_network=_network_or_exit(),
        ),
        poll=PollPolicy(first_delay_s=poll_first_delay, max_interval_s=max(poll_max_interval, poll_first_delay)),
        **({"run_id": run_id} if run_id else {}),
    )
    try:
        report = run_job(job, rows)
    except CellBusy as exc:
        click.echo(f"nbpro run-cell: {exc}", err=True)
        raise SystemExit(3) from None
    except LeaseLost as exc:
        click.echo(f"nbpro run-cell: {exc}", err=True)
        raise SystemExit(4) from None
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json", exclude={"images"})))
    else:
        click.echo(report.summary())
    sys.exit(0 if report.accounted == report.eligible else 1)


def _network_or_exit():
    """Where reference downloads may connect besides public addresses (NBPRO_REFERENCE_ALLOW_*)."""
    from nbpro_pipeline.network_policy import NetworkPolicy

    try:
        return NetworkPolicy.from_env()
    except ValueError as exc:
        click.echo(f"Error: NBPRO_REFERENCE_ALLOW_NETWORKS: {exc}", err=True)
        raise SystemExit(2) from None


@main.command("compact-ledger")
@click.argument("storage_root", metavar="ROOT")
@click.option("--provider", type=click.Choice([p.value for p in Provider]), help="Only this provider's cells.")
@click.option("--resolution", type=click.Choice([r.value for r in Resolution]), help="Only this resolution.")
@click.option(
    "--min-age",
    "min_age_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Leave parts younger than this many seconds (time in their name) for incremental loaders.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def compact_ledger_command(
    storage_root: str, provider: str | None, resolution: str | None, min_age_s: float, as_json: bool
) -> None:
    """Merge the small ledger parts under ROOT/ledger into one part per cell and month, then write each
    cell's fingerprint index and prune its journal to the entries a later run may need.

    Safe beside running cells and against a kill at any point: no row is lost or counted twice.
    ROOT is a local path or URI (s3://bucket/prefix, credentials from the environment).
    """
    import json

    from nbpro_pipeline.storage import Storage, compact_ledger

    result = compact_ledger(Storage(storage_root), provider=provider, resolution=resolution, min_age_s=min_age_s)
    if as_json:
        cells = [
            {
                "cell": c.cell,
                "sources": c.sources,
                "written": c.written,
                "rows": c.rows,
                "deleted": c.deleted,
                "busy": c.busy,
                "index_rows": c.index_rows,
                "journal_entries": list(c.journal_entries) if c.journal_entries else None,
            }
            for c in result.cells
        ]
        click.echo(json.dumps({"sources": result.sources, "rows": result.rows, "cells": cells}))
        return
    for c in result.cells:
        if c.busy:
            click.echo(f"{c.cell}: skipped, another compaction holds the lock")
        elif c.written or c.deleted or c.index_rows is not None:
            journal = f"; journal {c.journal_entries[0]} -> {c.journal_entries[1]} entries" if c.journal_entries else ""
            click.echo(
                f"{c.cell}: {c.sources} part(s) -> {len(c.written)} ({c.rows} rows); {c.deleted} file(s) removed; "
                f"index of {c.index_rows or 0} rows{journal}"
            )
    click.echo(f"compacted {result.sources} part(s) into {result.written}; {result.rows} rows rewritten")


@main.command("inspect")
@click.argument("image")
@click.option(
    "--ledger-root",
    envvar="NBPRO_STORAGE_ROOT",
    metavar="DIR",
    help="Storage root whose ledger to match the image against (default: $NBPRO_STORAGE_ROOT).",
)
@click.option(
    "--trust-anchors",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM file of CA certificates to trust when validating the C2PA signer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def inspect_command(image: str, ledger_root: str | None, trust_anchors: str | None, as_json: bool) -> None:
    """Print IMAGE's provenance: its XMP fields, its C2PA manifest's validation state, and the ledger
    row it came from. Exit status 1 when the marks are missing or do not validate, 2 when unreadable."""
    from nbpro_pipeline.provenance.inspect import describe_image, render

    anchors = Path(trust_anchors).read_text() if trust_anchors else None
    try:
        info = describe_image(image, ledger_root, anchors)
    except OSError as exc:
        click.echo(f"Error: cannot read {image}: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(info.model_dump_json(indent=2) if as_json else render(info))
    sys.exit(0 if info.marks is not None and info.marks.ok else 1)


@main.command("export-focus")
@click.option(
    "--ledger-root",
    envvar="NBPRO_STORAGE_ROOT",
    required=True,
    metavar="DIR",
    help="Storage root (local path or URI) whose ledger to export; writes DIR/reports/focus_cost_export.*",
)
@click.option("--csv", "as_csv", is_flag=True, help="Write focus_cost_export.csv beside the Parquet file.")
def export_focus_command(ledger_root: str, as_csv: bool) -> None:
    """Export the ledger as FinOps FOCUS 1.2 cost rows (Parquet; CSV too with --csv), without Dagster.

    Prices come from the same environment as `nbpro estimate` (NBPRO_RIVYA_USD_PER_CREDIT, ...)."""
    from nbpro_pipeline.costs.focus import export_focus
    from nbpro_pipeline.costs.prices import PriceTable
    from nbpro_pipeline.storage import Storage

    try:
        prices = PriceTable.from_env()
    except ValueError as exc:
        click.echo(f"Error: invalid price setting: {exc}", err=True)
        raise SystemExit(2) from None
    result = export_focus(Storage(ledger_root), prices, csv=as_csv)
    click.echo(f"{result.rows} FOCUS rows written to {', '.join(result.paths)}")
    for name in sorted(result.billed):
        click.echo(f"  {name:<10} BilledCost {result.billed[name]:f} USD; in pricing currency {result.priced[name]:f}")


if __name__ == "__main__":
    main()
