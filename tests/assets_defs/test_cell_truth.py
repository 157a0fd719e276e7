"""A cell with failures is not green: its checks fail on its partition, every failed prompt is logged at
WARNING, and a no-op re-run still reports the cell's state (and that it was a no-op)."""

import logging

import dagster as dg
import pytest

from assets_defs.assets import prompt_table
from assets_defs.definitions import generated_images
from assets_defs.resources import BudgetResource, PipelineResource, StorageResource
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from tests.assets_defs.conftest import EXAMPLES, provider_resources

pytestmark = pytest.mark.slow  # Dagster runs of whole cells

FAULTS = {"rivya": {"faults": {"task_failed": {"INFERENCE_FAILURE": 0.25}, "wrong_size": 0.17}}}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), SandboxConfig.zero_latency(**FAULTS)) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_resources(faulty, tmp_path_factory) -> dict:
    return {
        **provider_resources(faulty),
        "storage": StorageResource(root=str(tmp_path_factory.mktemp("storage"))),
        "budget": BudgetResource(),
        "pipeline": PipelineResource(prompt_sources=[str(EXAMPLES)], failure_rate_error=0.2),
    }


def _metadata(result) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_failing_cell_fails_its_checks_on_its_partition_and_logs_each_failure(instance, faulty_resources):
    assert dg.materialize([prompt_table], instance=instance, resources=faulty_resources).success
    first = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=faulty_resources)
    meta = _metadata(first)
    assert meta["failed"] > 0 and meta["failures_outstanding"] == meta["failed"]
    assert meta["cost_usd"] > 0 and meta["cost_credits"] == 8 * (meta["images"] + meta["quarantined_total"])
    checks = _checks(first)
    rate = checks["failure_rate"]
    assert not rate.passed and rate.partition == "rivya|1K" and rate.description.startswith("rivya|1K: ")
    assert rate.severity == dg.AssetCheckSeverity.ERROR  # more than 20% of the cell's prompts
    assert not checks["prompts_resolved"].passed
    logs = instance.all_logs(first.run_id)
    warned = [e.user_message for e in logs if e.level == logging.WARNING and "rivya|1K: prompt" in e.user_message]
    assert len(warned) == meta["failed"], warned
    assert all(("generation_failed" in w) or ("size_mismatch" in w) for w in warned)

    again = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=faulty_resources)
    meta2 = _metadata(again)  # failed prompts are tried again; the state counts every image of the cell
    assert meta2["images_total"] == meta["images_total"] + meta2["images"]
    assert meta2["cost_usd_total"] == pytest.approx(meta["cost_usd_total"] + meta2["cost_usd"], abs=1e-3)


def test_a_noop_rerun_says_so_and_still_shows_the_cells_state(instance, faulty_resources):
    assert dg.materialize([prompt_table], instance=instance, resources=faulty_resources).success
    first = dg.materialize(
        [generated_images], partition_key="odirouter|1K", instance=instance, resources=faulty_resources
    )
    again = dg.materialize(
        [generated_images], partition_key="odirouter|1K", instance=instance, resources=faulty_resources
    )
    before, meta = _metadata(first), _metadata(again)
    assert before["run_kind"] == "generated" and meta["run_kind"] == "no-op"
    assert meta["run_summary"].startswith("no-op: all ") and meta["images"] == 0 and meta["cost_usd"] == 0
    assert meta["images_total"] == meta["eligible"] == before["images"] > 0
    assert meta["cost_usd_total"] == before["cost_usd"] > 0 and "cost_credits" not in meta  # USD is native here
    assert all(c.passed for c in _checks(again).values())
