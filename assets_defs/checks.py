"""Asset checks of DESIGN.md, declared as specs on their assets and evaluated in the same step from the
library's audit functions (so they see exactly the run's rows, partition by partition)."""

import dagster as dg

from nbpro_pipeline.audit import CheckOutcome

PROMPT_TABLE_CHECKS = [
    dg.AssetCheckSpec(
        "no_rejected_rows", asset="prompt_table", description="warns when prompt rows were rejected (with reasons)"
    )
]

CELL_CHECKS = [
    dg.AssetCheckSpec(
        "all_rows_accounted",
        asset="generated_images",
        description="every eligible prompt has a ledger outcome: succeeded, or failed/skipped with a reason",
    ),
    dg.AssetCheckSpec(
        "images_valid",
        asset="generated_images",
        description="every image stored by the run decodes at the expected pixel size and format",
    ),
    dg.AssetCheckSpec(
        "ledger_reconciles",
        asset="generated_images",
        description="the ledger's cost per task equals what the provider reports for it",
    ),
]


def check_result(
    name: str, outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={k: v for k, v in outcome.metadata.items() if isinstance(v, int | float | str)},
    )
