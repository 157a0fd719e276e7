"""Jobs: one per shape of run (the prompt table; one cell per run; the reports)."""

import dagster as dg

from assets_defs.assets import (
    GENERATED_IMAGES,
    credit_cost_report,
    focus_cost_export,
    prompt_table,
    provider_comparison,
)

prompt_table_job = dg.define_asset_job("prompt_table_job", selection=[prompt_table])
# One run per cell: the run queue then limits runs per provider (dagster/partition/provider tag).
cells_job = dg.define_asset_job("cells_job", selection=dg.AssetSelection.assets(GENERATED_IMAGES))
reports_job = dg.define_asset_job("reports_job", selection=[credit_cost_report, provider_comparison, focus_cost_export])
