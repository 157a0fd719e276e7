"""Named Parquet tables under ``tables/`` (the validated prompt table and its rejections)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.storage.filesystem import Storage


def table_path(storage: Storage, name: str) -> str:
    return storage.path("tables", *name.split("/")) + ".parquet"


def write_table(storage: Storage, name: str, table: pa.Table) -> str:
    """Write atomically; returns the URI written."""
    path = table_path(storage, name)
    with storage.open_atomic(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return storage.uri(path)


def read_table(storage: Storage, name: str) -> pa.Table:
    path = table_path(storage, name)
    if not storage.exists(path):
        raise FileNotFoundError(f"{storage.uri(path)} does not exist yet")
    with storage.fs.open(path, "rb") as fh:
        return pq.read_table(fh)
