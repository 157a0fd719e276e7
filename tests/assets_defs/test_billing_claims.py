"""Through Dagster: a cell whose provider returns blank and duplicate images fails its ``usable_images``
check (a WARN) and ``billing_claims`` lists those images, its totals equal to the ledger's cost of them,
with a CSV to send the provider."""

from decimal import Decimal

import dagster as dg

from assets_defs.assets import billing_claims, prompt_table
from assets_defs.definitions import generated_images
from nbpro_pipeline.storage import read_ledger


def test_unusable_images_are_checked_and_claimed(instance, resources, sandbox):
    sandbox.set_config({"rivya": {"faults": {"blank_image": 0.3, "duplicate_image": 0.3}}})
    assert dg.materialize([prompt_table], instance=instance, resources=resources).success
    cell = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=resources)
    (check,) = [e for e in cell.get_asset_check_evaluations() if e.check_name == "usable_images"]
    storage = resources["storage"].storage()
    rows = read_ledger(storage).to_pylist()
    unusable = {r["task_id"] for r in rows if r["usability"] in ("blank", "duplicate")}
    assert unusable and not check.passed and check.severity is dg.AssetCheckSeverity.WARN

    result = dg.materialize([billing_claims], instance=instance, resources=resources)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["claims"].value == len(unusable) and metadata["reconciles_with_ledger"].value is True
    owed = sum((r["final_cost"] for r in rows if r["task_id"] in unusable), Decimal(0))
    assert metadata["claimed_rivya_credits"].value == float(owed)
    assert storage.exists(storage.path("reports", "billing_claims", "rivya.csv"))
