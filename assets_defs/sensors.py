"""Sensors: rebuild the prompt table when a source file appears or changes, then run the cells."""

import json

import dagster as dg

from assets_defs.assets import prompt_table
from assets_defs.jobs import cells_job, prompt_table_job
from assets_defs.partitions import cell_key
from assets_defs.resources import PipelineResource
from nbpro_pipeline.prompts.watch import fingerprint_sources


@dg.sensor(job=prompt_table_job, minimum_interval_seconds=30)
def prompt_sources_changed(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    """One run per distinct content of the sources (run_key = their combined sha256): touching a file
    without changing it launches nothing. The cursor caches hashes by (size, mtime) so unchanged files
    are not re-read every tick."""
    cache = json.loads(context.cursor) if context.cursor else {}
    digest, cache = fingerprint_sources(pipeline.prompt_sources, cache)
    context.update_cursor(json.dumps(cache))
    if digest is None:
        return dg.SkipReason(f"no prompt tables found in {pipeline.prompt_sources}")
    return dg.RunRequest(run_key=f"prompt-sources-{digest[:32]}", tags={"nbpro/sources_sha256": digest})


@dg.asset_sensor(asset_key=prompt_table.key, job=cells_job, minimum_interval_seconds=30)
def cells_after_prompt_table(context: dg.SensorEvaluationContext, asset_event, pipeline: PipelineResource):
    """After each prompt_table materialization, one run per configured cell."""
    stamp = asset_event.run_id  # one set of cell runs per prompt_table run
    for provider, resolution in pipeline.cell_list():
        key = cell_key(provider, resolution)
        yield dg.RunRequest(run_key=f"{key}@prompt_table-{stamp}", partition_key=key)
