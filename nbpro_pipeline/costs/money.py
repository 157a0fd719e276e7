"""Exact money in report rows: ``Decimal`` from whatever a column holds, and an amount per item."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from nbpro_pipeline.costs._ledger import quantize_cost

ZERO = Decimal(0)


def is_missing(value: Any) -> bool:
    """None, pandas' NA/NaT or a float NaN: a cell with no value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and np.isnan(value)


def as_decimal(value: Any) -> Decimal:
    """``value`` as a ``Decimal`` (None is 0)."""
    return ZERO if value is None else Decimal(value)


def per_item(amount: Decimal | None, count: int) -> Decimal | None:
    """``amount / count`` at the ledger's 6 places; None without an amount or without items."""
    return None if amount is None or not count else quantize_cost(amount / count)
