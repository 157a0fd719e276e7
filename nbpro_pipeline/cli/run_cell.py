"""``nbpro run-cell``: one provider x resolution cell without Dagster, through the engine's one entry point.

Its run-setting flags are derived from ``EngineSettings.tunables()`` (``--max-in-flight``,
``--lease-ttl-s`` or ``--lease-ttl``...): a setting declared there is a flag here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from nbpro_pipeline.engine.settings import EngineSettings, Tunable

_CLI_DEFAULTS = {"progress_interval_s": 60.0}  # a terminal wants fewer progress lines than a run log


def _flag_names(name: str) -> list[str]:
    """``--lease-ttl-s``, and ``--lease-ttl`` too for a setting in seconds."""
    names = ["--" + name.replace("_", "-")]
    if name.endswith("_s") and not name.endswith("_per_s"):
        names.append("--" + name[:-2].replace("_", "-"))
    return names


def _option(t: Tunable) -> Callable[[Callable], Callable]:
    kind: Any = click.Choice(t.choices) if t.choices else (click.BOOL if t.kind is bool else t.kind)
    default = _CLI_DEFAULTS.get(t.name, t.default)
    shown = "derived, see above" if default is None else default
    return click.option(
        *_flag_names(t.name), t.name, type=kind, default=None, help=f"{t.description} [default: {shown}]"
    )


def settings_options(command: Callable) -> Callable:
    """Every tunable run setting as a flag of ``command`` (unset flags stay None)."""
    for t in reversed(EngineSettings.tunables()):
        command = _option(t)(command)
    return command


@click.command("run-cell")
@click.argument("tables", nargs=-1, required=True, metavar="TABLE [TABLE...]")
@click.option("--cell", "cell_spec", required=True, metavar="PROVIDER|RESOLUTION", help="e.g. 'NAME|2K' (quote it).")
@click.option("--storage", "storage_root", default=".nbpro/storage", show_default=True, help="Storage root.")
@click.option("--base-url", help="Provider endpoint; default $<PROVIDER>_BASE_URL, else the local sandbox.")
@click.option("--run-id", help="Run id written into the ledger, journal and images (default: a fresh one).")
@click.option("--json", "as_json", is_flag=True, help="Print the cell report as one JSON line.")
@settings_options
def run_cell_command(
    tables: tuple[str, ...],
    cell_spec: str,
    storage_root: str,
    base_url: str | None,
    run_id: str | None,
    as_json: bool,
    **settings: Any,
) -> None:
    """Run one provider x resolution cell of TABLE(s) without Dagster: same engine, journal and ledger.

    The key comes from <PROVIDER>_API_KEY (never a flag, so it stays out of shell history); a run setting
    not given as a flag comes from NBPRO_<PROVIDER>_<SETTING> or NBPRO_<SETTING>, else its default.
    Re-running pays only for gaps; after a crash, journaled tasks are polled, not resubmitted. One run per
    cell and storage root at a time: the run holds a lease under ROOT/leases/, and a second run refuses,
    naming the holder; a killed run's lease expires after --lease-ttl.

    \b
    Exit status:
      0  every eligible row has an outcome
      1  some did not (see the summary)
      2  bad input
      3  another run holds the cell: nothing was submitted; stderr names the holder
      4  this run lost the cell's lease mid-run: it stopped submitting new
         prompts; what it had submitted is in the ledger
    """
    from nbpro_pipeline.engine.standalone import CellJob, run_job
    from nbpro_pipeline.storage.lease import CellBusy, LeaseLost

    provider, resolution = _one_cell(cell_spec)
    entry = _entry(provider)
    job = CellJob(
        provider=provider,
        resolution=resolution,
        storage_root=storage_root,
        base_url=base_url or os.environ.get(f"{entry.env_prefix}_BASE_URL") or entry.sandbox_url() or entry.base_url,
        api_key=_key_or_exit(entry),
        settings=_settings_or_exit(entry.env_prefix, {k: v for k, v in settings.items() if v is not None}),
        **({"run_id": run_id} if run_id else {}),
    )
    rows = _rows_or_exit(tables, provider, resolution)
    try:
        report = run_job(job, rows)
    except (CellBusy, LeaseLost) as exc:
        click.echo(f"nbpro run-cell: {exc}", err=True)
        raise SystemExit(3 if isinstance(exc, CellBusy) else 4) from None
    import json

    click.echo(json.dumps(report.model_dump(mode="json", exclude={"images"})) if as_json else report.summary())
    sys.exit(0 if report.accounted == report.eligible else 1)


def _one_cell(spec: str) -> tuple[str, Any]:
    from nbpro_pipeline.costs.estimate import CellSpecError, parse_cells

    try:
        cells = parse_cells(spec)
    except CellSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--cell") from exc
    if len(cells) != 1:
        raise click.BadParameter(f"{spec!r} names {len(cells)} cells; give exactly one", param_hint="--cell")
    return cells[0]


def _entry(provider: str) -> Any:
    from nbpro_pipeline.providers.registry import PROVIDERS

    return PROVIDERS[provider]


def _key_or_exit(entry: Any) -> str:
    key = os.environ.get(f"{entry.env_prefix}_API_KEY")
    if not key:
        hint = f" ({entry.sandbox_key!r} works on the sandbox)" if entry.sandbox_key else ""
        click.echo(f"Error: set {entry.env_prefix}_API_KEY{hint}", err=True)
        raise SystemExit(2)
    return key


def _settings_or_exit(prefix: str, given: dict[str, Any]) -> EngineSettings:
    """The run settings: flags, then the environment, then the defaults; a bad value exits 2 naming it."""
    given = {**{k: v for k, v in _CLI_DEFAULTS.items() if k not in given}, **given}
    try:
        return EngineSettings.from_env(prefix, signer=_signer_or_exit(), reference_network=_network_or_exit(), **given)
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None


def _rows_or_exit(tables: tuple[str, ...], provider: str, resolution: Any) -> list:
    from nbpro_pipeline.engine.standalone import load_cell_rows
    from nbpro_pipeline.prompts import PromptTableError

    try:
        rows, rejected = load_cell_rows(tables, provider, resolution)
    except PromptTableError as exc:
        click.echo(f"Error: cannot read the prompt tables: {exc}", err=True)
        raise SystemExit(2) from None
    if rejected:
        click.echo(f"Note: {rejected} rejection(s) in the tables; see `nbpro validate`", err=True)
    return rows


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


def _network_or_exit() -> Any:
    """Where reference downloads may connect besides public addresses (NBPRO_REFERENCE_ALLOW_*)."""
    from nbpro_pipeline.network_policy import NetworkPolicy

    try:
        return NetworkPolicy.from_env()
    except ValueError as exc:
        click.echo(f"Error: NBPRO_REFERENCE_ALLOW_NETWORKS: {exc}", err=True)
        raise SystemExit(2) from None
