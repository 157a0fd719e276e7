"""A nightly schedule yielding one run per configured cell (static × static partitions cannot use
``build_schedule_from_partitioned_job``)."""

import dagster as dg

from assets_defs.jobs import cells_job
from assets_defs.partitions import cell_key
from assets_defs.resources import PipelineResource


@dg.schedule(cron_schedule="0 2 * * *", job=cells_job, execution_timezone="UTC")
def nightly_cells(context: dg.ScheduleEvaluationContext, pipeline: PipelineResource):
    """Every configured cell once a night; re-running a cell pays only for prompts without an image."""
    tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M") if context.scheduled_execution_time else "now"
    for provider, resolution in pipeline.cell_list():
        key = cell_key(provider, resolution)
        yield dg.RunRequest(run_key=f"{key}@{tick}", partition_key=key)
