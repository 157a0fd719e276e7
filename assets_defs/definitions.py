"""The code location: one ``defs`` (``dg dev -w workspace.yaml`` and Dagster+ load it), built from the
provider registry by ``build_defs`` (a provider registered before it is called is a partition and a
resource like the shipped ones).

Keys come from the environment through ``EnvVar`` (resolved at launch, never stored in run config);
base URLs, the storage root, the prompt sources and every run setting are ordinary settings read from
the environment with local defaults, so the location runs against the sandbox out of the box. For a real
provider set ``<PROVIDER>_API_KEY`` and ``<PROVIDER>_BASE_URL`` (see docs/deployment.md).
"""

import os

import dagster as dg

from assets_defs.assets import (
    GENERATED_IMAGES,
    credit_cost_report,
    focus_cost_export,
    generated_images_asset,
    prompt_table,
    provider_comparison,
)
from assets_defs.jobs import cells_job, prompt_table_job, reports_job
from assets_defs.partitions import cell_partitions
from assets_defs.resources import BudgetResource, PipelineResource, ProviderResource, RunSettings, StorageResource
from assets_defs.schedules import nightly_cells
from assets_defs.sensors import cells_after_prompt_table, prompt_sources_changed
from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.registry import PROVIDERS


def _float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def _sources() -> list[str]:
    raw = os.environ.get("NBPRO_PROMPT_SOURCES", "examples/prompts")
    return [s.strip() for s in raw.split(",") if s.strip()]


def provider_resource(entry: ProviderEntry) -> ProviderResource:
    """A provider's resource: its key through ``EnvVar``, its URL, and the run settings its environment
    sets (``NBPRO_<PROVIDER>_<SETTING>``, else ``NBPRO_<SETTING>``), checked here so a bad value fails at load."""
    prefix = entry.env_prefix
    EngineSettings.from_env(prefix)  # a bad value names its variable now, not at the first run
    values = {name: text for name, (_, text) in EngineSettings.env_values(prefix).items()}
    return ProviderResource(
        provider=entry.name,
        api_key=dg.EnvVar(f"{prefix}_API_KEY"),
        base_url=os.environ.get(f"{prefix}_BASE_URL") or entry.sandbox_url() or entry.base_url,
        run=RunSettings(**values),
    )


def _budget() -> BudgetResource:
    """Limits per provider from ``NBPRO_<PROVIDER>_MAX_PER_RUN`` / ``_MAX_PER_DAY`` (or its older names)."""
    limits: dict[str, dict[str, float]] = {"max_per_run": {}, "max_per_day": {}}
    for entry in PROVIDERS:
        for field, suffix in (("max_per_run", "MAX_PER_RUN"), ("max_per_day", "MAX_PER_DAY")):
            name = f"NBPRO_{entry.env_prefix}_{suffix}"
            older = [old for old, new in entry.env_aliases.items() if new == name]
            value = next((v for v in map(_float, [name, *older]) if v is not None), None)
            if value is not None:
                limits[field][entry.name] = value
    return BudgetResource(**limits)


def build_resources() -> dict:
    network = NetworkPolicy.from_env()  # NBPRO_REFERENCE_ALLOW_NETWORKS / _HOSTS
    return {
        **{entry.name: provider_resource(entry) for entry in PROVIDERS},
        "storage": StorageResource(root=os.environ.get("NBPRO_STORAGE_ROOT", ".nbpro/storage")),
        "budget": _budget(),
        "pipeline": PipelineResource(
            prompt_sources=_sources(),
            cells=os.environ.get("NBPRO_CELLS", "all"),
            failure_rate_warn=_float("NBPRO_FAILURE_RATE_WARN") or 0.0,
            failure_rate_error=_float("NBPRO_FAILURE_RATE_ERROR") or 0.2,
            reference_allow_networks=list(network.allow_networks),
            reference_allow_hosts=list(network.allow_hosts),
        ),
    }


def build_defs() -> dg.Definitions:
    """The definitions over the providers registered now."""
    generated_images = generated_images_asset(cell_partitions())
    return dg.Definitions(
        assets=[prompt_table, generated_images, credit_cost_report, provider_comparison, focus_cost_export],
        jobs=[prompt_table_job, cells_job, reports_job],
        schedules=[nightly_cells],
        sensors=[
            prompt_sources_changed,
            cells_after_prompt_table,
            dg.AutomationConditionSensorDefinition(
                "reports_automation",
                target=[credit_cost_report, provider_comparison, focus_cost_export],
                default_status=dg.DefaultSensorStatus.RUNNING,
            ),
        ],
        resources=build_resources(),
        # Every run is one step (a cell, the prompt table) or two small ones (the reports): a subprocess per
        # step would only add a second interpreter start and code-location load to each run.
        executor=dg.in_process_executor,
    )


defs = build_defs()
generated_images = next(a for a in defs.assets if a.key == GENERATED_IMAGES)  # of the providers registered at load
