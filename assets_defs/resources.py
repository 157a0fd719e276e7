"""Typed resources over the library: provider clients (keys from the environment), storage, budget and
the pipeline's own settings. Defaults point at the local sandbox (``make sandbox``/``make dev``), so the
code location runs with no real keys; moving to the real providers is one env var per key plus URLs."""

from __future__ import annotations

import logging
from decimal import Decimal

import dagster as dg
from pydantic import Field

from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.costs import BudgetGuard, BudgetLimits, PriceTable, parse_cells
from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.models.common import Provider, Resolution
from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.providers import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.factory import ClientSpec, make_client
from nbpro_pipeline.providers.http import HttpProviderClient
from nbpro_pipeline.storage import Storage

SANDBOX_URL = "http://127.0.0.1:8787"

# Request logs carry signed result URLs; keep them out of run logs.
logging.getLogger("httpx").setLevel(logging.WARNING)


class _ProviderResource(dg.ConfigurableResource):
    api_key: str = Field(description="API key; set through EnvVar, never inline")
    base_url: str
    max_in_flight: int = Field(default=32, ge=1, description="tasks in flight per run")
    requests_per_s: float = Field(default=20.0, gt=0, description="API calls per second per run")
    burst: int = Field(default=40, ge=1)
    poll_first_delay_s: float = Field(default=2.0, ge=0)
    poll_max_interval_s: float = Field(default=8.0, gt=0)
    task_deadline_s: float = Field(default=900.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, description="HTTP attempts per call (retries + 1)")
    admission_kind: str | None = Field(
        default=None, description="'reject' (429) or 'queue' beyond the provider's limit; unset: the provider's"
    )
    max_held: int | None = Field(default=None, ge=1, description="cap on tasks held; unset: 1.5 x max_in_flight")
    queue_allowance: int | None = Field(default=None, ge=0, description="queue providers: tasks waiting beyond C")
    admission_429_share: float | None = Field(default=0.03, gt=0, lt=1, description="reject: 429 share aimed at")

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            max_in_flight=self.max_in_flight,
            requests_per_s=self.requests_per_s,
            burst=self.burst,
            task_deadline_s=self.task_deadline_s,
            admission_kind=self.admission_kind,
            max_held=self.max_held,
            queue_allowance=self.queue_allowance,
            admission_429_share=self.admission_429_share,
        )

    def client_spec(self, provider: Provider) -> ClientSpec:
        return ClientSpec(
            provider=provider,
            base_url=self.base_url,
            api_key=self.api_key,
            poll=PollPolicy(
                first_delay_s=self.poll_first_delay_s,
                max_interval_s=self.poll_max_interval_s,
                deadline_s=self.task_deadline_s,
            ),
            retry=RetryPolicy(max_attempts=self.max_attempts),
            requests_per_s=self.requests_per_s,
            burst=self.burst,
            max_in_flight=self.max_in_flight,
        )


class RivyaResource(_ProviderResource):
    base_url: str = Field(default=SANDBOX_URL, description="https://rivya.ai for the real API")

    def client(self) -> HttpProviderClient:
        return make_client(self.client_spec(Provider.RIVYA))


class OdiRouterResource(_ProviderResource):
    base_url: str = Field(default=SANDBOX_URL + "/model", description="https://odirouter.ai/model for the real API")

    def client(self) -> HttpProviderClient:
        return make_client(self.client_spec(Provider.ODIROUTER))


class StorageResource(dg.ConfigurableResource):
    root: str = Field(default=".nbpro/storage", description="local path or fsspec URI (s3://bucket/prefix)")

    def storage(self) -> Storage:
        return Storage(self.root)


class BudgetResource(dg.ConfigurableResource):
    """Spending limits in each provider's unit; unset means unlimited. Reserved amounts count."""

    rivya_max_credits_per_run: float | None = None
    rivya_max_credits_per_day: float | None = None
    odirouter_max_usd_per_run: float | None = None
    odirouter_max_usd_per_day: float | None = None
    rivya_usd_per_credit: float = Field(default=0.0168, description="assumed USD price of a credit, for reports")

    def limits(self, provider: Provider) -> BudgetLimits:
        if provider is Provider.RIVYA:
            run, day = self.rivya_max_credits_per_run, self.rivya_max_credits_per_day
        else:
            run, day = self.odirouter_max_usd_per_run, self.odirouter_max_usd_per_day
        return BudgetLimits(
            max_per_run=None if run is None else Decimal(str(run)),
            max_per_day=None if day is None else Decimal(str(day)),
        )

    def guard(self, provider: Provider, spent_today: Decimal) -> BudgetGuard:
        return BudgetGuard(self.limits(provider), spent_today=spent_today, unit=PriceTable().unit(provider))

    def prices(self) -> PriceTable:
        return PriceTable(rivya_usd_per_credit=Decimal(str(self.rivya_usd_per_credit)))


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
    cells: str = Field(default="all", description="cells to run on schedule/sensor, e.g. 'rivya|2K,odirouter|4K'")
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

    def cell_list(self) -> list[tuple[Provider, Resolution]]:
        return parse_cells(self.cells)
