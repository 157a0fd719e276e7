"""How hard one cell may push a provider, and who is running it: every run setting, declared once here.
The Dagster resource's config, ``nbpro run-cell``'s flags and the environment variables are derived from
``EngineSettings.tunables()``, so a setting added here appears in all three."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.provenance import ProvenanceSigner
from nbpro_pipeline.providers.factory import ClientSpec
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.storage.lease import LeasePolicy, check_lease_timings

_SCALARS = (int, float, str, bool)


@dataclass(frozen=True)
class Tunable:
    """One run setting as the surfaces that expose it need it: its type, default, meaning and choices."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    description: str
    choices: tuple[str, ...] = ()  # for a setting that takes one of a few words
    optional: bool = False  # None means "derived from the others" (see its description)


class EngineSettings(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_in_flight: int = Field(
        default=32,
        ge=1,
        description="C: tasks this cell keeps running at the provider at once (its concurrency limit, or "
        "this cell's share of it); the cell submits while the tasks *expected* to be still running (from the "
        "learned completion times and each task's age) leave room under it",
    )
    admission_kind: Literal["reject", "queue"] | None = Field(
        default=None,
        description="how the provider admits work beyond its limit ('reject': 429, 'queue': queued); None: "
        "the provider's own traits",
    )
    max_held: int | None = Field(
        default=None,
        ge=1,
        description="cap on tasks submitted and not yet seen finished, whatever the estimate; None: 1.5 x "
        "max_in_flight",
    )
    queue_allowance: int | None = Field(
        default=None,
        ge=0,
        description="queue providers: tasks allowed to wait in the provider's queue beyond max_in_flight, "
        "so a freed slot starts the next task at once; None: max(4, max_in_flight // 8)",
    )
    admission_margin_sd: float = Field(
        default=1.0,
        ge=0,
        description="reject providers: standard deviations of the estimate kept free at first; more means "
        "fewer 429s (each is counted, retried and never charged) and a little idle capacity",
    )
    admission_429_share: float | None = Field(
        default=0.03,
        gt=0,
        lt=1,
        description="reject providers: the margin adapts so about this share of creates is answered 429; "
        "None: admission_margin_sd stays fixed",
    )
    requests_per_s: float = Field(default=20.0, gt=0, description="token-bucket rate for API calls, per run")
    burst: int = Field(default=40, ge=1, description="token-bucket size")
    task_deadline_s: float = Field(default=900.0, gt=0, description="submit-to-terminal limit per task, seconds")
    poll_first_delay_s: float = Field(default=2.0, ge=0, description="first poll after a submit, seconds")
    poll_max_interval_s: float = Field(default=8.0, gt=0, description="longest gap between polls, seconds")
    max_attempts: int = Field(default=6, ge=1, description="HTTP attempts per API call (retries + 1)")
    progress_interval_s: float = Field(default=5.0, gt=0)
    ledger_flush_rows: int = Field(default=250, ge=1)
    ledger_flush_interval_s: float = Field(default=2.0, ge=0)
    thumbnails: int = Field(default=12, ge=0, description="images kept in the report for a contact sheet")
    max_unjournaled_submits: int = Field(
        default=4,
        ge=1,
        description="providers without an idempotency key: submits sent whose task id is not "
        "yet journaled, at most; a crash can pay at most this many requests twice",
    )
    reconcile_sample: int = Field(
        default=50, ge=0, description="tasks of the run whose charge is asked of the provider again, at the end"
    )
    reference_roots: list[str] | None = Field(
        default=None, description="local reference images must be under these; None: the row's own table folder"
    )
    reference_network: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description="reference URLs may reach public addresses, plus these networks and hosts "
        "(NBPRO_REFERENCE_ALLOW_NETWORKS / _HOSTS); loopback, private and metadata addresses are refused",
    )
    compact_tail_parts: int = Field(
        default=64,
        ge=0,
        description="at the end of a run, compact the cell (and rewrite its fingerprint index) when this many "
        "live ledger parts are not covered by the index; 0: never (the report asset still compacts)",
    )
    prune_journal_at_end: bool = Field(
        default=True, description="a run that journaled submits prunes the cell's journal when it ends"
    )
    compact_min_age_s: float = Field(
        default=3600.0, ge=0, description="the end-of-run compaction leaves parts younger than this alone"
    )
    lease_ttl_s: float = Field(
        default=60.0,
        gt=0,
        description="the cell's lease on the storage root lives this long unrenewed: a killed run blocks the "
        "cell for at most this (plus lease_clock_skew_s)",
    )
    lease_heartbeat_s: float = Field(default=10.0, gt=0, description="the holder renews its lease this often")
    lease_clock_skew_s: float = Field(
        default=5.0, ge=0, description="how far machines' clocks may disagree before a lease is taken over early"
    )
    prompt_in_images: bool = Field(
        default=True,
        description="stored images carry their prompt: in IPTC AIPromptInformation where the table's "
        "share_prompt column says yes, and in the private lineage blob; False: no prompt text in any image",
    )
    signer: ProvenanceSigner | None = Field(
        default=None, exclude=True, description="C2PA signer for stored images (signer_from_env); None: XMP only"
    )

    @model_validator(mode="after")
    def _lease_renews_in_time(self) -> EngineSettings:
        check_lease_timings(self.lease_ttl_s, self.lease_heartbeat_s)
        return self

    def lease_policy(self) -> LeasePolicy:
        """The cell lease's timings."""
        return LeasePolicy(
            ttl_s=self.lease_ttl_s, heartbeat_s=self.lease_heartbeat_s, clock_skew_s=self.lease_clock_skew_s
        )

    def client_spec(self, provider: str, base_url: str, api_key: Any) -> ClientSpec:
        """The provider client these settings ask for (its rate limit, polls, retries and pool)."""
        return ClientSpec(
            provider=provider,
            base_url=base_url,
            api_key=api_key,
            poll=PollPolicy(
                first_delay_s=self.poll_first_delay_s,
                max_interval_s=max(self.poll_max_interval_s, self.poll_first_delay_s),
                deadline_s=self.task_deadline_s,
            ),
            retry=RetryPolicy(max_attempts=self.max_attempts),
            requests_per_s=self.requests_per_s,
            burst=self.burst,
            max_in_flight=self.max_in_flight,
        )

    @classmethod
    def tunables(cls) -> list[Tunable]:
        """Every setting of a plain type (a number, a word, a flag), in declaration order: what the
        resource, the CLI and the environment expose."""
        out = []
        for name, field in cls.model_fields.items():
            found = _tunable(name, field.annotation, field.default, field.description or "")
            if found is not None and not field.exclude:
                out.append(found)
        return out

    @classmethod
    def env_values(cls, prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
        """The tunables set in the environment, as {setting: (variable, text)}: ``NBPRO_<PREFIX>_<NAME>``
        (one provider's), else ``NBPRO_<NAME>`` (every provider's)."""
        env = os.environ if environ is None else environ
        found: dict[str, tuple[str, str]] = {}
        for t in cls.tunables():
            for var in (f"NBPRO_{prefix}_{t.name.upper()}", f"NBPRO_{t.name.upper()}"):
                if env.get(var, "").strip():
                    found[t.name] = (var, env[var].strip())
                    break
        return found

    @classmethod
    def from_env(cls, prefix: str, environ: Mapping[str, str] | None = None, **given: Any) -> EngineSettings:
        """``given`` over the tunables set in the environment (``env_values``); a bad value names its variable."""
        found = cls.env_values(prefix, environ)
        try:
            return cls(**{**{k: text for k, (_, text) in found.items()}, **given})
        except ValidationError as exc:
            names = {k: var for k, (var, _) in found.items()}
            bad = ", ".join(f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"run settings: {bad}") from None

    def held_cap(self) -> int:
        """The most tasks held (submitted, not yet seen finished) at once."""
        return self.max_held or self.max_in_flight + self.max_in_flight // 2

    def allowance(self) -> int:
        return self.queue_allowance if self.queue_allowance is not None else max(4, self.max_in_flight // 8)


class RunInfo(BaseModel):
    """Lineage of the run doing the work; written into every ledger row and image."""

    run_id: str
    partition_key: str
    pipeline_version: str


def _tunable(name: str, annotation: Any, default: Any, description: str) -> Tunable | None:
    """The ``Tunable`` of a field typed as a scalar, a ``Literal`` of words, or either ``| None``."""
    args = typing.get_args(annotation)
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    inner = next((a for a in args if a is not type(None)), None) if optional else annotation
    if typing.get_origin(inner) is Literal:
        return Tunable(name, str, default, description, tuple(typing.get_args(inner)), optional)
    if inner in _SCALARS:
        return Tunable(name, inner, default, description, (), optional)
    return None
