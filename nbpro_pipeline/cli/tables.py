"""``nbpro validate`` and ``nbpro estimate``: what a prompt table holds and what it would cost, sending nothing."""

from __future__ import annotations

import sys
from typing import Any

import click


@click.command("validate")
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


@click.command("estimate")
@click.argument("tables", nargs=-1, required=True)
@click.option(
    "--cells",
    default="all",
    show_default=True,
    metavar="CELLS",
    help="Comma-separated PROVIDER|RESOLUTION cells, e.g. 'NAME|2K'; '*' matches any provider or "
    "resolution; 'all' is every cell. Quote it: '|' is a shell pipe.",
)
@click.option(
    "--ledger-root",
    metavar="DIR",
    help="Storage root (local path or URI) whose ledger (DIR/ledger) shows what already succeeded.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (decimals as strings) instead of a table.")
def estimate(tables: tuple[str, ...], cells: str, ledger_root: str | None, as_json: bool) -> None:
    """Estimate what generating TABLE(s) would cost, per provider x resolution cell. Sends nothing.

    TABLE is a CSV, TSV or Parquet prompt table: a path, glob, directory or URI. Prices come from each
    provider's own, overridable with NBPRO_<PROVIDER>_PRICE, NBPRO_<PROVIDER>_PRICE_1K/_2K/_4K and
    NBPRO_<PROVIDER>_USD_PER_UNIT. Exit status 2 when the tables, the ledger or the prices cannot be read.
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
