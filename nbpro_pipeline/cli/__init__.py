"""The ``nbpro`` command: the sandbox, table checks and estimates, a cell run without Dagster, and the
ledger's tools. One module per group of commands; this one only assembles them."""

from __future__ import annotations

import click

from nbpro_pipeline.cli.ledger import compact_ledger_command, export_focus_command, inspect_command
from nbpro_pipeline.cli.run_cell import run_cell_command
from nbpro_pipeline.cli.tables import estimate, validate
from nbpro_pipeline.sandbox.cli import sandbox


@click.group()
def main() -> None:
    """nbpro: generate Nano Banana Pro images from prompt tables and account for every credit."""


for _command in (sandbox, validate, estimate, run_cell_command, compact_ledger_command, inspect_command,
                 export_focus_command):  # fmt: skip
    main.add_command(_command)

__all__ = ["main"]
