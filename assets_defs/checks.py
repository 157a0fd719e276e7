"""Asset checks of DESIGN.md, declared as specs on their assets and evaluated in the same step from the
library's check functions. Cell checks are partitioned like ``generated_images``, so each result belongs
to its cell in the UI (one cell's pass never hides another's failure)."""

import warnings

import dagster as dg

from nbpro_pipeline.models.check import CheckOutcome, Severity

PROMPT_TABLE_CHECKS = [
    dg.AssetCheckSpec(
        "no_rejected_rows", asset="prompt_table", description="warns when prompt rows were rejected (with reasons)"
    )
]

_CELL_CHECK_DESCRIPTIONS = {
    "all_rows_accounted": "every eligible prompt has a ledger outcome: succeeded, or failed/skipped with a reason",
    "images_valid": "every image stored by the run decodes at the expected pixel size and format, with its "
    "provenance marks and the stored sha256",
    "ledger_reconciles": "the ledger's cost per task equals what the provider reports for it",
    "failure_rate": "share of the cell's eligible prompts without an image: WARN above "
    "NBPRO_FAILURE_RATE_WARN (default 0), ERROR above NBPRO_FAILURE_RATE_ERROR (default 0.2)",
    "prompts_resolved": "names every prompt of the cell that is unaccounted (ERROR) or failed, skipped or "
    "quarantined (WARN)",
}


def cell_check_specs(partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The per-cell checks, partitioned like ``generated_images``."""
    # partitions_def on a check spec is a preview feature in Dagster 1.13: say so once here, not on every load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(name, asset="generated_images", description=text, partitions_def=partitions)
            for name, text in _CELL_CHECK_DESCRIPTIONS.items()
        ]


_SEVERITY = {Severity.WARN: dg.AssetCheckSeverity.WARN, Severity.ERROR: dg.AssetCheckSeverity.ERROR}


def check_result(check: CheckOutcome) -> dg.AssetCheckResult:
    metadata: dict = dict(check.metadata)
    metadata.update({k: dg.MetadataValue.md(v) for k, v in check.markdown.items()})
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=check.passed,
        severity=_SEVERITY[check.severity],
        description=check.description,
        metadata=metadata,
    )
