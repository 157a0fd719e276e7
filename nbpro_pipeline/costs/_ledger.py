"""Ledger rows as every cost function takes them: a ``pa.Table`` in ``LEDGER_SCHEMA``.

Callers may hand over what ``storage.ledger.read_ledger`` returns, a raw hive dataset read (provider and
resolution as dictionary columns), a pandas DataFrame, or a table written by an older pipeline version
that lacks newer columns. All of them are brought to the one schema here, so the cost code never guesses.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.ledger import LEDGER_SCHEMA

LedgerLike = Any  # pa.Table | pd.DataFrame; kept loose so this module never imports pandas

# Columns the cost code cannot work without; every other missing column is filled with nulls.
REQUIRED_COLUMNS = ("prompt_id", "provider", "resolution", "status", "final_cost")


def as_ledger_table(ledger: LedgerLike | None, columns: Sequence[str] | None = None) -> pa.Table:
    """``ledger`` as a table with exactly the ``LEDGER_SCHEMA`` columns and types (empty for ``None``);
    only ``columns`` of them, in that order, when given (a report over a million rows then never builds
    the thirty columns it does not read)."""
    schema = LEDGER_SCHEMA if columns is None else pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
    if ledger is None:
        return schema.empty_table()
    if not isinstance(ledger, pa.Table):
        if hasattr(ledger, "to_dict") and hasattr(ledger, "columns"):  # a pandas DataFrame
            ledger = pa.Table.from_pandas(ledger, preserve_index=False)
        else:
            raise TypeError(f"expected a pyarrow Table or pandas DataFrame of ledger rows, got {type(ledger).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c in schema.names and c not in ledger.column_names]
    if missing and ledger.num_rows:
        raise ValueError(f"ledger rows lack the column(s) {', '.join(missing)}; pass rows in LEDGER_SCHEMA")
    arrays = []
    for field in schema:
        if field.name not in ledger.column_names:
            arrays.append(pa.nulls(ledger.num_rows, field.type))
            continue
        column = ledger[field.name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")  # naive times in the ledger are UTC by contract
        arrays.append(column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


MICRO = Decimal("0.000001")


def quantize_cost(amount: Decimal) -> Decimal:
    """``amount`` at the ledger's 6 decimal places (half-even), so it fits decimal128(18|38, 6) exactly."""
    return amount.quantize(MICRO, rounding=ROUND_HALF_EVEN)
