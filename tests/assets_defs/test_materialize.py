"""Materializing the real assets against the sandbox over HTTP, on one shared Dagster instance."""

from decimal import Decimal

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets_defs.assets import credit_cost_report, prompt_table, provider_comparison
from assets_defs.definitions import generated_images
from assets_defs.partitions import cell_partitions
from assets_defs.resources import ProviderResource, RunSettings, StorageResource
from nbpro_pipeline.image_files import inspect_image
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_ledger
from nbpro_pipeline.storage.lease import LeasePolicy, acquire_cell_lease

pytestmark = pytest.mark.slow  # the module builds every cell on one instance first


def _billed(sandbox) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for entry in sandbox.ledger():
        totals[entry["provider"]] = totals.get(entry["provider"], Decimal(0)) + Decimal(str(entry["amount"]))
    return totals


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def first_pass(instance, resources):
    table = dg.materialize([prompt_table], instance=instance, resources=resources)
    cells = {
        key: dg.materialize([generated_images], partition_key=key, instance=instance, resources=resources)
        for key in cell_partitions().get_partition_keys()
    }
    return table, cells


def test_prompt_table_accepts_valid_rows_and_explains_rejections(first_pass):
    table, _ = first_pass
    assert table.success
    meta = _metadata(table)
    assert meta["accepted"] > 0
    assert meta["rows_read"] >= meta["accepted"]
    (check,) = table.get_asset_check_evaluations()
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed == (meta["rejected"] == 0)


def test_every_cell_materializes_valid_images_and_passes_its_checks(first_pass, resources):
    _, cells = first_pass
    storage = resources["storage"].storage()
    ledger = read_ledger(storage)
    for key, result in cells.items():
        assert result.success, key
        meta = _metadata(result)
        assert meta["images"] == meta["eligible"] > 0, key
        assert meta["failed"] == 0 and meta["skipped"] == 0
        assert len(meta["contact_sheet"]) < 50_000  # thumbnails, not images, in the event log
        checks = _checks(result)
        expected = {"all_rows_accounted", "images_valid", "ledger_reconciles", "failure_rate", "prompts_resolved"}
        assert set(checks) == expected
        assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}
        provider, resolution = key.split("|")
        rows = ledger.filter(
            (ledger["provider"].to_numpy(zero_copy_only=False) == provider)
            & (ledger["resolution"].to_numpy(zero_copy_only=False) == resolution)
        ).to_pylist()
        assert len(rows) == meta["images"]
        for row in rows:
            info = inspect_image(row["image_uri"])
            assert (info.width, info.height) == (row["width"], row["height"])
            assert row["partition_key"] == key and row["run_id"] == result.run_id


def test_rematerializing_a_cell_charges_nothing_new(first_pass, instance, resources, sandbox):
    before = sandbox.ledger()
    again = dg.materialize([generated_images], partition_key="rivya|2K", instance=instance, resources=resources)
    assert again.success
    meta = _metadata(again)
    assert meta["images"] == 0 and meta["cost_usd"] == 0 and meta["run_kind"] == "no-op"
    assert meta["images_total"] == meta["eligible"] and meta["cost_usd_total"] > 0
    assert meta["already_done"] == meta["eligible"] > 0
    assert sandbox.ledger() == before


def test_reports_total_exactly_what_the_sandbox_billed(first_pass, instance, resources, sandbox):
    result = dg.materialize([credit_cost_report, provider_comparison], instance=instance, resources=resources)
    assert result.success
    storage: Storage = resources["storage"].storage()
    report = pq.read_table(storage.path("reports", "credit_cost_report.parquet")).to_pylist()
    totals: dict[str, Decimal] = {}
    for row in report:
        totals[row["provider"]] = totals.get(row["provider"], Decimal(0)) + row["final_cost"]
    billed = _billed(sandbox)
    assert totals == billed
    ledger = read_ledger(storage).to_pylist()
    by_provider: dict[str, Decimal] = {}
    for row in ledger:
        by_provider[row["provider"]] = by_provider.get(row["provider"], Decimal(0)) + row["final_cost"]
    assert by_provider == billed
    comparison = pq.read_table(storage.path("reports", "provider_comparison.parquet"))
    assert comparison.num_rows > 0


def test_a_cell_without_a_prompt_table_fails_with_a_clear_message(instance, resources, tmp_path):
    empty = dict(resources, storage=StorageResource(root=str(tmp_path / "empty")))
    result = dg.materialize(
        [generated_images], partition_key="rivya|1K", instance=instance, resources=empty, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "materialize prompt_table first" in failure.message


def test_a_refused_key_fails_the_run_without_leaking_the_key(first_pass, instance, resources, sandbox, tmp_path):
    secret = "rvya_sk_REVOKED_4242_secret"
    sandbox.set_config({"rivya": {"auth": {"revoked_keys": [secret]}}})
    try:
        storage = StorageResource(root=str(tmp_path / "revoked"))
        dg.materialize([prompt_table], instance=instance, resources=dict(resources, storage=storage))
        bad = dict(
            resources,
            storage=storage,
            rivya=ProviderResource(
                provider="rivya", api_key=secret, base_url=sandbox.rivya_url, run=RunSettings(poll_first_delay_s=0.01)
            ),
        )
        result = dg.materialize(
            [generated_images], partition_key="rivya|1K", instance=instance, resources=bad, raise_on_error=False
        )
    finally:
        sandbox.set_config({"rivya": {"auth": {"revoked_keys": []}}})
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert "key" in error.message.lower()
    logs = instance.all_logs(result.run_id)
    assert all(secret not in (e.message or "") and secret not in str(e.dagster_event or "") for e in logs)


def test_a_cell_another_run_holds_fails_naming_the_holder(first_pass, instance, resources, sandbox):
    storage = resources["storage"].storage()
    holder = acquire_cell_lease(storage, Provider.RIVYA, Resolution.R1K, "run-elsewhere", LeasePolicy())
    billed_before = len(sandbox.ledger())
    try:
        result = dg.materialize(
            [generated_images], partition_key="rivya|1K", instance=instance, resources=resources, raise_on_error=False
        )
    finally:
        holder.release()
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "cell rivya|1K is busy" in failure.error.message and "run-elsewhere" in failure.error.message
    metadata = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
    assert metadata["holder_run_id"] == "run-elsewhere"
    assert metadata["holder_host"].startswith(holder.info.host) and metadata["holder_since"]
    assert len(sandbox.ledger()) == billed_before  # refused before submitting anything
