"""The code location: one ``defs`` (``dg dev -w workspace.yaml`` and Dagster+ load it).

Keys come from the environment through ``EnvVar`` (resolved at launch, never stored in run config);
base URLs, the storage root and the prompt sources are ordinary settings with local defaults, so the
location runs against the sandbox out of the box. For the real providers set ``RIVYA_BASE_URL`` and
``ODIROUTER_BASE_URL`` (see docs/deployment.md).
"""

import os

import dagster as dg

from assets_defs.assets import (
    credit_cost_report,
    focus_cost_export,
    generated_images,
    prompt_table,
    provider_comparison,
)
from assets_defs.jobs import cells_job, prompt_table_job, reports_job
from assets_defs.resources import (
    SANDBOX_URL,
    BudgetResource,
    OdiRouterResource,
    PipelineResource,
    RivyaResource,
    StorageResource,
)
from assets_defs.schedules import nightly_cells
from assets_defs.sensors import cells_after_prompt_table, prompt_sources_changed
from nbpro_pipeline.network_policy import NetworkPolicy


def _float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


def _sources() -> list[str]:
    raw = os.environ.get("NBPRO_PROMPT_SOURCES", "examples/prompts")
    return [s.strip() for s in raw.split(",") if s.strip()]


def _provider_limits(provider: str) -> dict:
    """Per-run limits of one provider from ``NBPRO_<PROVIDER>_MAX_IN_FLIGHT``, ``_REQUESTS_PER_S``,
    ``_BURST``, ``_ADMISSION_KIND``, ``_MAX_HELD`` and ``_QUEUE_ALLOWANCE`` (unset: the
    resource's defaults), so a deployment sets them in its environment (a Kubernetes
    env var, a Dagster+ variable) like every other setting; the run queue bounds how many runs share them."""
    limits: dict = {}
    fields = (
        ("max_in_flight", int),
        ("requests_per_s", float),
        ("burst", int),
        ("admission_kind", str),
        ("max_held", int),
        ("queue_allowance", int),
    )
    for field, cast in fields:
        name = f"NBPRO_{provider}_{field.upper()}"
        value = os.environ.get(name)
        if not value:
            continue
        try:
            limits[field] = cast(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a{'n integer' if cast is int else ' number'}") from None
    return limits


def build_resources() -> dict:
    poll_first = float(os.environ.get("NBPRO_POLL_FIRST_DELAY_S", "2.0"))
    network = NetworkPolicy.from_env()  # NBPRO_REFERENCE_ALLOW_NETWORKS / _HOSTS
    return {
        "rivya": RivyaResource(
            api_key=dg.EnvVar("RIVYA_API_KEY"),
            base_url=os.environ.get("RIVYA_BASE_URL", SANDBOX_URL),
            poll_first_delay_s=poll_first,
            **_provider_limits("RIVYA"),
        ),
        "odirouter": OdiRouterResource(
            api_key=dg.EnvVar("ODIROUTER_API_KEY"),
            base_url=os.environ.get("ODIROUTER_BASE_URL", SANDBOX_URL + "/model"),
            poll_first_delay_s=poll_first,
            **_provider_limits("ODIROUTER"),
        ),
        "storage": StorageResource(root=os.environ.get("NBPRO_STORAGE_ROOT", ".nbpro/storage")),
        "budget": BudgetResource(
            rivya_max_credits_per_run=_float("NBPRO_RIVYA_MAX_CREDITS_PER_RUN"),
            rivya_max_credits_per_day=_float("NBPRO_RIVYA_MAX_CREDITS_PER_DAY"),
            odirouter_max_usd_per_run=_float("NBPRO_ODIROUTER_MAX_USD_PER_RUN"),
            odirouter_max_usd_per_day=_float("NBPRO_ODIROUTER_MAX_USD_PER_DAY"),
        ),
        "pipeline": PipelineResource(
            prompt_sources=_sources(),
            cells=os.environ.get("NBPRO_CELLS", "all"),
            failure_rate_warn=_float("NBPRO_FAILURE_RATE_WARN") or 0.0,
            failure_rate_error=_float("NBPRO_FAILURE_RATE_ERROR") or 0.2,
            reference_allow_networks=list(network.allow_networks),
            reference_allow_hosts=list(network.allow_hosts),
        ),
    }


defs = dg.Definitions(
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
