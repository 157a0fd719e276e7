"""Typed resources over the library: one provider resource class (an instance per registered provider,
its key from the environment), storage, budget and the pipeline's own settings. Defaults point at the
local sandbox (``make sandbox``/``make dev``), so the code location runs with no real keys; moving to a
real provider is one env var for its key plus its URL."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Optional

import dagster as dg
import pydantic
from pydantic import Field

from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.costs import BudgetGuard, BudgetLimits, PriceTable, parse_cells
from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.providers.factory import make_client
from nbpro_pipeline.storage import Storage

# Request logs carry signed result URLs; keep them out of run logs.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _run_settings_config() -> type[dg.Config]:
    """Every tunable of ``EngineSettings`` as optional launchpad config (unset: its default), derived so
    that a setting declared there is settable here; words a setting allows are checked by EngineSettings."""
    fields: dict[str, Any] = {
        t.name: (Optional[t.kind], Field(default=None, description=t.description))  # noqa: UP045 - Dagster reads it
        for t in EngineSettings.tunables()
    }
    return pydantic.create_model("RunSettings", __base__=dg.Config, **fields)


RunSettings = _run_settings_config()


class ProviderResource(dg.ConfigurableResource):
    """One provider: which (its registered name), where, with which key, and how hard each run may push it."""

    provider: str = Field(description="the provider's registered name")
    api_key: str = Field(description="API key; set through EnvVar, never inline")
    base_url: str
    run: RunSettings = Field(default_factory=RunSettings, description="run settings; unset ones take their default")

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(**{k: v for k, v in self.run.model_dump().items() if v is not None})

    def client(self) -> ProviderClient:
        return make_client(self.engine_settings().client_spec(self.provider, self.base_url, self.api_key))


class StorageResource(dg.ConfigurableResource):
    root: str = Field(default=".nbpro/storage", description="local path or fsspec URI (s3://bucket/prefix)")

    def storage(self) -> Storage:
        return Storage(self.root)


class BudgetResource(dg.ConfigurableResource):
    """Spending limits per provider name, in its unit; a provider not listed is unlimited. Reserved
    amounts count."""

    max_per_run: dict[str, float] = Field(default_factory=dict, description="provider -> limit per run")
    max_per_day: dict[str, float] = Field(default_factory=dict, description="provider -> limit per UTC day")
    usd_per_unit: dict[str, float] = Field(
        default_factory=dict, description="provider -> USD per unit of its cost (e.g. per credit), for reports"
    )

    def limits(self, provider: str) -> BudgetLimits:
        run, day = self.max_per_run.get(provider), self.max_per_day.get(provider)
        return BudgetLimits(
            max_per_run=None if run is None else Decimal(str(run)),
            max_per_day=None if day is None else Decimal(str(day)),
        )

    def guard(self, provider: str, spent_today: Decimal) -> BudgetGuard:
        return BudgetGuard(self.limits(provider), spent_today=spent_today, unit=self.prices().unit(provider))

    def prices(self) -> PriceTable:
        """The environment's prices (``PriceTable.from_env``) with this resource's USD rates over them."""
        rates = {p: Decimal(str(r)) for p, r in self.usd_per_unit.items()}
        return PriceTable.from_env().with_usd_per_unit(rates)


class PipelineResource(dg.ConfigurableResource):
    """Where prompt tables come from and which cells the schedule and sensor run."""

    prompt_sources: list[str] = Field(default_factory=lambda: ["examples/prompts"])
    reference_roots: list[str] | None = Field(
        default=None, description="reference images (local paths or s3://, gs:// objects) must be under these"
    )
    reference_allow_networks: list[str] = Field(
        default_factory=list,
        description="reference URLs may also reach these networks (CIDR); loopback and private ones are refused "
        "otherwise (NBPRO_REFERENCE_ALLOW_NETWORKS)",
    )
    reference_allow_hosts: list[str] = Field(
        default_factory=list,
        description="reference URL hosts allowed whatever they resolve to ('.corp.example': subdomains too) "
        "(NBPRO_REFERENCE_ALLOW_HOSTS)",
    )
    cells: str = Field(default="all", description="cells to run on schedule/sensor, e.g. 'NAME|2K,NAME|4K'")
    failure_rate_warn: float = Field(
        default=0.0, ge=0, le=1, description="failure_rate check warns above this share of a cell's prompts"
    )
    failure_rate_error: float = Field(
        default=0.2, ge=0, le=1, description="failure_rate check is an error above this share"
    )

    def reference_network(self) -> NetworkPolicy:
        return NetworkPolicy(
            allow_networks=tuple(self.reference_allow_networks), allow_hosts=tuple(self.reference_allow_hosts)
        )

    def failure_thresholds(self) -> FailureThresholds:
        return FailureThresholds(warn_above=self.failure_rate_warn, error_above=self.failure_rate_error)

    def cell_list(self) -> list[tuple[str, Resolution]]:
        return parse_cells(self.cells)
