"""Picking a cell's rows out of the validated prompt table without a Python loop over every row."""

from __future__ import annotations

import pyarrow as pa

from nbpro_pipeline.costs.estimate import eligible_mask
from nbpro_pipeline.models.common import Provider, Resolution
from nbpro_pipeline.models.prompt import PromptRow


def rows_for_cell(accepted: pa.Table, provider: Provider, resolution: Resolution) -> list[PromptRow]:
    """Accepted rows eligible for (provider, resolution): valid for the provider and not restricted
    to another provider or resolution by the table."""
    return PromptRow.from_table(accepted.filter(eligible_mask(accepted, provider, resolution)))
