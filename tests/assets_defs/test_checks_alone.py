"""The cell's checks executed on their own (the UI's Checks tab → Execute): judged from what is stored,
with no engine run, no provider call and no new ledger row."""

from pathlib import Path

import dagster as dg
import pytest

from assets_defs.assets import GENERATED_IMAGES, prompt_table
from assets_defs.definitions import generated_images
from nbpro_pipeline.cell.review import STORED_CHECKS
from nbpro_pipeline.storage import read_ledger

pytestmark = pytest.mark.slow  # a prompt table and one cell first

CELL = "rivya|1K"


def _requests(sandbox) -> dict:
    """Every answer the sandbox gave, per provider: any call (create, poll, download) changes it."""
    stats = sandbox.stats()
    return {p: (stats[p]["responses"], stats[p]["status_polls"], stats[p]["downloads"]) for p in ("rivya", "odirouter")}


def _cell_ledger(resources):
    ledger = read_ledger(resources["storage"].storage(), provider="rivya", resolution="1K")
    assert ledger.num_rows > 0
    return ledger


@pytest.fixture(scope="module")
def materialized(instance, resources):
    assert dg.materialize([prompt_table], instance=instance, resources=resources).success
    cell = dg.materialize([generated_images], partition_key=CELL, instance=instance, resources=resources)
    assert cell.success and all(e.passed for e in cell.get_asset_check_evaluations())
    return cell


def _execute_checks(selection: dg.AssetSelection, instance, resources) -> dg.ExecuteInProcessResult:
    """A run of the checks alone, as the UI launches it: the partition a run tag, no asset selected
    (``dg.materialize(partition_key=…)`` wants a selected asset to validate the key against)."""
    tags = {"dagster/partition": CELL}
    return dg.materialize([generated_images], selection=selection, tags=tags, instance=instance, resources=resources)


def test_the_cells_checks_run_alone_judging_storage_without_a_provider_call(materialized, instance, resources, sandbox):
    ledger = _cell_ledger(resources)
    gone = Path(ledger.column("image_uri").drop_null()[0].as_py())
    gone.unlink()  # a stored image lost by hand: only a fresh look at storage can see it
    before, rows = _requests(sandbox), ledger.num_rows
    result = _execute_checks(dg.AssetSelection.checks_for_assets(generated_images), instance, resources)
    assert result.success
    assert _requests(sandbox) == before and _cell_ledger(resources).num_rows == rows
    assert result.get_asset_materialization_events() == []
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(STORED_CHECKS)  # ledger_reconciles, run_failure_rate need a run: not executed
    assert all(e.asset_key == GENERATED_IMAGES and e.partition == CELL for e in checks.values())
    assert {name: e.passed for name, e in checks.items()} == {name: name != "images_valid" for name in STORED_CHECKS}
    assert "missing or unreadable" in checks["images_valid"].description
    skipped = [
        r.status.value
        for name in ("ledger_reconciles", "run_failure_rate")
        for r in instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(GENERATED_IMAGES, name), limit=1
        )
    ]
    assert skipped == ["PLANNED"] * 2  # never executed, in a run that succeeded: the UI says skipped


def test_one_selected_check_gets_one_result(materialized, instance, resources, sandbox):
    before = _requests(sandbox)
    only = dg.AssetSelection.checks(dg.AssetCheckKey(GENERATED_IMAGES, "failure_rate"))
    result = _execute_checks(only, instance, resources)
    assert result.success and _requests(sandbox) == before
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "failure_rate" and check.passed and check.partition == CELL


def test_the_ui_may_execute_each_check_of_the_cell_on_its_own():
    """A check sharing its asset's execution set must be executed with the materialization (the UI greys
    its Execute out); a subsettable asset gives its checks none."""
    from assets_defs.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get(GENERATED_IMAGES).check_keys
    assert len(keys) == 7 and all(graph.get_execution_set_identifier(k) is None for k in keys)


def test_executing_the_checks_without_a_partition_judges_every_cell(materialized, instance, resources, sandbox):
    """The checks page's "Execute all" launches a run with no partition: every cell is judged, each result
    recorded on its own cell, still with no provider call."""
    before, rows = _requests(sandbox), _cell_ledger(resources).num_rows
    selection = dg.AssetSelection.checks_for_assets(generated_images)
    result = dg.materialize([generated_images], selection=selection, instance=instance, resources=resources)
    assert result.success and _requests(sandbox) == before and _cell_ledger(resources).num_rows == rows
    by_cell: dict[str, set[str]] = {}
    for e in result.get_asset_check_evaluations():
        by_cell.setdefault(e.partition, set()).add(e.check_name)
    partitions = generated_images.partitions_def.get_partition_keys()
    assert len(partitions) == 6 and by_cell == {p: set(STORED_CHECKS) for p in partitions}
