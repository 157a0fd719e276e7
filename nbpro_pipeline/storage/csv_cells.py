"""Every CSV the project writes goes through here: text cells a spreadsheet would run as a formula
(OWASP's rule: a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading ``'``.

Only text columns are touched, and a text cell that is a plain number (``-1.5``) is left as it is: it
opens as a number, never a formula. Typed numeric columns stay numeric. Vectorised with pyarrow, so a
ledger-sized export costs a few kernel calls per batch.
"""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

FORMULA_START = r"^[=+\-@\t\r]"
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _neutral(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([_neutral(c) for c in column.chunks], type=column.type)
    if pa.types.is_dictionary(column.type):  # the distinct values are what a spreadsheet sees
        return pa.DictionaryArray.from_arrays(column.indices, _neutral(column.dictionary))
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    risky = pc.and_kleene(
        pc.match_substring_regex(column, FORMULA_START), pc.invert(pc.match_substring_regex(column, PLAIN_NUMBER))
    )
    quoted = pc.binary_join_element_wise(pa.scalar("'", column.type), column, pa.scalar("", column.type))
    return pc.if_else(pc.fill_null(risky, False), quoted, column)


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """``table`` with every formula-leading text cell prefixed by ``'`` (same schema, same rows)."""
    return pa.Table.from_arrays([_neutral(c) for c in table.columns], schema=table.schema)


class CsvWriter:
    """``pyarrow.csv.CSVWriter`` that neutralises formulas in every batch it writes."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self._writer = pcsv.CSVWriter(sink, schema)

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(neutralise_formulas(table))

    def close(self) -> None:
        self._writer.close()


def write_csv(table: pa.Table, sink: BinaryIO | str) -> None:
    """One table as CSV, formulas neutralised."""
    pcsv.write_csv(neutralise_formulas(table), sink)
