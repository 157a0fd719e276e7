"""How hard one cell may push a provider, and who is running it; plain data the Dagster resources fill."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.provenance import ProvenanceSigner


class EngineSettings(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_in_flight: int = Field(
        default=32, ge=1, description="tasks submitted and not yet finished at the provider, per cell"
    )
    requests_per_s: float = Field(default=20.0, gt=0, description="token-bucket rate for API calls")
    burst: int = Field(default=40, ge=1, description="token-bucket size")
    task_deadline_s: float = Field(default=900.0, gt=0, description="submit-to-terminal limit per task")
    progress_interval_s: float = Field(default=5.0, gt=0)
    ledger_flush_rows: int = Field(default=250, ge=1)
    ledger_flush_interval_s: float = Field(default=2.0, ge=0)
    thumbnails: int = Field(default=12, ge=0, description="images kept in the report for a contact sheet")
    max_unjournaled_submits: int = Field(
        default=4,
        ge=1,
        description="providers without an idempotency key (OdiRouter): submits sent whose task id is not "
        "yet journaled, at most; a crash can pay at most this many requests twice",
    )
    reconcile_sample: int = Field(
        default=50, ge=0, description="tasks of the run whose charge is asked of the provider again, at the end"
    )
    reference_roots: list[str] | None = Field(
        default=None, description="local reference images must be under these; None: the row's own table folder"
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
    signer: ProvenanceSigner | None = Field(
        default=None, exclude=True, description="C2PA signer for stored images (signer_from_env); None: XMP only"
    )


class RunInfo(BaseModel):
    """Lineage of the run doing the work; written into every ledger row and image."""

    run_id: str
    partition_key: str
    pipeline_version: str
