"""``nbpro compact-ledger``, ``nbpro inspect`` and ``nbpro export-focus``: the ledger and the images it
describes, without Dagster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nbpro_pipeline.models.common import Resolution


@click.command("compact-ledger")
@click.argument("storage_root", metavar="ROOT")
@click.option("--provider", metavar="NAME", help="Only this provider's cells.")
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


@click.command("inspect")
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


@click.command("export-focus")
@click.option(
    "--ledger-root",
    envvar="NBPRO_STORAGE_ROOT",
    required=True,
    metavar="DIR",
    help="Storage root (local path or URI) whose ledger to export; writes DIR/reports/focus_cost_export.*",
)
@click.option("--csv", "as_csv", is_flag=True, help="Write focus_cost_export.csv beside the Parquet file.")
def export_focus_command(ledger_root: str, as_csv: bool) -> None:
    """Export the ledger as FinOps FOCUS 1.3 cost rows (Parquet; CSV too with --csv), without Dagster.

    Prices come from the same environment as `nbpro estimate` (NBPRO_<PROVIDER>_USD_PER_UNIT, ...)."""
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
