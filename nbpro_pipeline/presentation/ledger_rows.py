"""Ledger rows as the pages show them: a stored image with why it is where it is (``ImageRef``), and rows
of a frame as plain dicts (``records``)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
from pydantic import BaseModel


class ImageRef(BaseModel):
    """One stored image (kept or quarantined) and why it is where it is."""

    prompt_id: str
    uri: str
    width: int | None = None
    height: int | None = None
    error_code: str | None = None
    latency_s: float | None = None
    cost: Decimal = Decimal(0)


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts with missing values (NaN, NA) as None, so pydantic sees what the ledger holds."""
    return [
        {k: (None if not isinstance(v, Decimal) and pd.isna(v) else v) for k, v in r.items()}
        for r in df.to_dict("records")
    ]
