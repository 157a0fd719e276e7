"""A report frame written as one Parquet file: money as ``decimal128(38, 6)``, dates as ``date32``."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.money import is_missing
from nbpro_pipeline.costs.report_columns import MONEY_COLUMNS, REPORT_COST_TYPE
from nbpro_pipeline.storage.filesystem import Storage


def report_to_arrow(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table: Decimal columns as decimal128(38, 6), date columns as date32."""
    arrays, names = [], []
    for name in df.columns:
        series = df[name]
        values = [None if is_missing(v) else v for v in series.tolist()]
        present = [v for v in values if v is not None]
        if series.dtype == object and present and all(isinstance(v, Decimal) for v in present):
            array = pa.array([None if v is None else quantize_cost(v) for v in values], REPORT_COST_TYPE)
        elif series.dtype == object and present and all(type(v) is date for v in present):
            array = pa.array(values, pa.date32())
        elif series.dtype == object and not present and name in MONEY_COLUMNS:
            array = pa.array(values, REPORT_COST_TYPE)
        else:
            array = pa.Array.from_pandas(series)
            if pa.types.is_large_string(array.type):
                array = array.cast(pa.string())
        arrays.append(array)
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


def write_report(df: pd.DataFrame, uri_or_path: str | os.PathLike[str], *, storage_options: dict | None = None) -> str:
    """Write ``df`` as one Parquet file (money as decimal128) to a local path or an fsspec URI
    (``s3://…``, ``gs://…``, ``memory://…``); returns where it went.

    Atomic everywhere (through ``Storage.open_atomic``): a report that fails half-way, locally or on an
    object store, leaves the previous report in place rather than a truncated Parquet file.
    """
    table = report_to_arrow(df)
    target = os.fspath(uri_or_path)
    parent, _, name = target.rstrip("/").rpartition("/")
    if not name:
        raise ValueError(f"{target!r} names no file; pass a path or URI ending in a file name")
    storage = Storage(parent or ".", storage_options)
    path = f"{storage.root.rstrip('/')}/{name}"
    with storage.open_atomic(path) as fh:
        pq.write_table(table, fh)
    return storage.uri(path) if storage.is_local else target
