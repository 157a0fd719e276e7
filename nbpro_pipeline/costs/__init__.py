"""Costs: price tables (``prices``), pre-flight estimates (``estimate``), the run budget guard (``budget``) and
report tables over the ledger (``reports``, which needs pandas; import it directly)."""

from nbpro_pipeline.costs.budget import BudgetGuard, BudgetLimits
from nbpro_pipeline.costs.estimate import CellEstimate, CellSpecError, all_cells, estimate_cells, parse_cells
from nbpro_pipeline.costs.prices import PriceTable

__all__ = [
    "all_cells",
    "BudgetGuard",
    "BudgetLimits",
    "CellEstimate",
    "CellSpecError",
    "PriceTable",
    "estimate_cells",
    "parse_cells",
]
