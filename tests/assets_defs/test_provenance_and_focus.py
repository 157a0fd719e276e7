"""Through Dagster: a cell signs with the certificate the environment names (and only then), and
``focus_cost_export`` writes FOCUS rows whose totals equal what the sandbox billed."""

import os
from decimal import Decimal

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets_defs.assets import focus_cost_export, prompt_table
from assets_defs.definitions import generated_images
from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.provenance import verify_marks
from nbpro_pipeline.provenance.democert import make_demo_credential
from nbpro_pipeline.storage import read_ledger

pytestmark = pytest.mark.slow  # Dagster runs of whole cells


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def cells(instance, resources, tmp_path_factory):
    """rivya|1K signed with a test certificate from the environment, odirouter|1K with none."""
    cred = make_demo_credential(tmp_path_factory.mktemp("c2pa"))
    assert dg.materialize([prompt_table], instance=instance, resources=resources).success
    os.environ.update({"NBPRO_C2PA_CERT": str(cred.cert_path), "NBPRO_C2PA_KEY": str(cred.key_path)})
    try:
        signed = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=resources)
    finally:
        del os.environ["NBPRO_C2PA_CERT"], os.environ["NBPRO_C2PA_KEY"]
    unsigned = dg.materialize([generated_images], partition_key="odirouter|1K", instance=instance, resources=resources)
    return signed, unsigned


def test_only_the_cell_given_a_certificate_signs(cells, resources):
    signed, unsigned = cells
    assert signed.success and unsigned.success
    assert "valid C2PA manifest" in _checks(signed)["images_valid"].description
    assert "C2PA" not in _checks(unsigned)["images_valid"].description
    ledger = read_ledger(resources["storage"].storage()).to_pylist()
    states = {}
    for row in ledger:
        with open(row["image_uri"], "rb") as fh:
            check = verify_marks(fh.read(), OutputFormat(row["output_format"]), expected_sha256=row["image_sha256"])
        assert check.ok, check.problems
        states.setdefault(row["provider"], set()).add(check.c2pa.validation_state)
    assert states == {"rivya": {"Valid"}, "odirouter": {None}}


def test_focus_export_totals_equal_the_sandbox_billing(cells, instance, resources, sandbox):
    result = dg.materialize(
        [focus_cost_export],
        instance=instance,
        resources=resources,
        run_config={"ops": {"focus_cost_export": {"config": {"csv": True}}}},
    )
    assert result.success
    storage = resources["storage"].storage()
    focus = pq.read_table(storage.path("reports", "focus_cost_export.parquet"))
    assert storage.exists(storage.path("reports", "focus_cost_export.csv"))
    priced: dict[str, Decimal] = {}
    for name, amount in zip(
        focus["ProviderName"].to_pylist(), focus["PricingCurrencyEffectiveCost"].to_pylist(), strict=True
    ):
        priced[name.lower()] = priced.get(name.lower(), Decimal(0)) + amount
    billed: dict[str, Decimal] = {}
    for entry in sandbox.ledger():
        billed[entry["provider"]] = billed.get(entry["provider"], Decimal(0)) + Decimal(str(entry["amount"]))
    assert priced == billed
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["rows"].value == focus.num_rows
