"""Picking a cell's rows out of the validated prompt table without a Python loop over every row."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from nbpro_pipeline.costs.estimate import eligible_mask
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow

_BATCH = 1024


class CellRows:
    """A cell's eligible rows, kept columnar: each ``PromptRow`` is built when a worker takes it, one
    batch at a time, so a 20,000-row cell does not hold 20,000 pydantic objects (about 1.5 KB each)
    for the whole run. Sized, so the engine knows the total without materializing the rows."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[PromptRow]:
        for batch in self.table.to_batches(max_chunksize=_BATCH):
            for record in batch.to_pylist():
                yield PromptRow.model_validate(record)


def rows_for_cell(accepted: pa.Table, provider: str, resolution: Resolution) -> CellRows:
    """Accepted rows eligible for (provider, resolution): valid for the provider and not restricted
    to another provider or resolution by the table."""
    return CellRows(accepted.filter(eligible_mask(accepted, provider, resolution)))
