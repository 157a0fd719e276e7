import json
import os
import time
from datetime import UTC, datetime

import dagster as dg
import pytest

from assets_defs.assets import prompt_table
from assets_defs.resources import PipelineResource
from assets_defs.schedules import nightly_cells
from assets_defs.sensors import cells_after_prompt_table, prompt_sources_changed


@pytest.mark.slow
def test_the_schedule_yields_one_run_per_configured_cell():
    pipeline = PipelineResource(cells="rivya|2K, odirouter|4K")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 21, 2, 0, tzinfo=UTC), resources={"pipeline": pipeline}
    )
    requests = list(nightly_cells(context))
    assert [str(r.partition_key) for r in requests] == ["rivya|2K", "odirouter|4K"]
    assert len({r.run_key for r in requests}) == 2
    # the next night's ticks are new runs, not duplicates of tonight's
    later = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 22, 2, 0, tzinfo=UTC), resources={"pipeline": pipeline}
    )
    assert not {r.run_key for r in nightly_cells(later)} & {r.run_key for r in requests}


def test_the_schedule_runs_all_six_cells_by_default():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 21, 2, 0, tzinfo=UTC), resources={"pipeline": PipelineResource()}
    )
    assert len(list(nightly_cells(context))) == 6


def _tick(folder, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor, resources={"pipeline": PipelineResource(prompt_sources=[str(folder)])}
    )
    result = prompt_sources_changed(context)
    return result, context.cursor


def test_the_sensor_keys_runs_on_content_not_on_touches(tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("prompt\na red fox\n")
    first, cursor = _tick(tmp_path)
    assert isinstance(first, dg.RunRequest)
    # touched but unchanged: same run key, so Dagster launches nothing new
    os.utime(table, (time.time() + 5, time.time() + 5))
    again, cursor = _tick(tmp_path, cursor)
    assert again.run_key == first.run_key
    assert json.loads(cursor)  # hashes are cached in the cursor
    table.write_text("prompt\na red fox\na blue whale\n")
    changed, cursor = _tick(tmp_path, cursor)
    assert changed.run_key != first.run_key
    (tmp_path / "more.tsv").write_text("prompt\na green owl\n")
    added, _ = _tick(tmp_path, cursor)
    assert added.run_key not in (first.run_key, changed.run_key)


def test_the_sensor_skips_when_there_is_no_table(tmp_path):
    result, _ = _tick(tmp_path)
    assert isinstance(result, dg.SkipReason)


def test_cells_run_after_each_prompt_table_materialization(tmp_path):
    (tmp_path / "p.csv").write_text("prompt\na red fox\n")
    pipeline = PipelineResource(prompt_sources=[str(tmp_path)], cells="rivya|1K,odirouter|1K")
    from assets_defs.resources import StorageResource

    with dg.instance_for_test() as instance:
        dg.materialize(
            [prompt_table],
            instance=instance,
            resources={"pipeline": pipeline, "storage": StorageResource(root=str(tmp_path / "storage"))},
        )
        from assets_defs.definitions import defs

        repo = defs.get_repository_def()
        context = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, repository_def=repo)
        result = cells_after_prompt_table.evaluate_tick(context)
    keys = sorted(str(r.partition_key) for r in result.run_requests)
    assert keys == ["odirouter|1K", "rivya|1K"]
    assert all(r.run_key and "prompt_table" in r.run_key for r in result.run_requests)
