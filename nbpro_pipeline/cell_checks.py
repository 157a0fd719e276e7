"""Asset checks as plain data, per cell: each names its cell, never prints a raw dict, and judges the
cell's state (what the ledger holds now), so a no-op re-run cannot turn a broken cell green.

``assets_defs`` turns each ``CellCheck`` into an ``AssetCheckResult`` on the cell's partition.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from nbpro_pipeline.cell_state import CellState
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.redaction import redact_text

NAMED_MAX = 25  # prompt ids named in a description; the rest are counted, and all are in the table
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "prompts"


class Severity(StrEnum):
    WARN = "WARN"
    ERROR = "ERROR"


class CellCheck(BaseModel):
    name: str
    passed: bool
    severity: Severity = Severity.ERROR
    description: str
    metadata: dict[str, int | float | str] = Field(default_factory=dict)
    markdown: dict[str, str] = Field(default_factory=dict)  # rendered as markdown metadata


class FailureThresholds(BaseModel):
    """Share of a cell's eligible prompts without an image above which ``failure_rate`` warns / errors."""

    warn_above: float = Field(default=0.0, ge=0, le=1)
    error_above: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> FailureThresholds:
        if self.error_above < self.warn_above:
            raise ValueError(
                f"failure_rate error threshold {self.error_above} is below the warn threshold {self.warn_above}"
            )
        return self


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%".replace(".0%", "%")


def _named(ids: list[str]) -> str:
    shown = ", ".join(md.code(i, limit=80) for i in ids[:NAMED_MAX])  # ids are table text: inert in markdown
    return shown + (f" and {len(ids) - NAMED_MAX} more" if len(ids) > NAMED_MAX else "")


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {code}" for code, n in counter.most_common())


def failure_rate(state: CellState, eligible: int, thresholds: FailureThresholds) -> CellCheck:
    """Outstanding failures (latest outcome failed or skipped) over the cell's eligible prompts."""
    bad = len(state.outstanding)
    share = bad / eligible if eligible else 0.0
    codes = Counter(f.error_code for f in state.outstanding)
    severity = Severity.ERROR if share > thresholds.error_above else Severity.WARN
    passed = share <= thresholds.warn_above
    if passed:
        desc = f"{state.cell}: {bad} of {eligible} eligible prompts without an image ({_pct(share)})"
    else:
        limit = thresholds.error_above if severity is Severity.ERROR else thresholds.warn_above
        desc = (
            f"{state.cell}: {bad} of {eligible} eligible prompts have no image ({_pct(share)}, above "
            f"{_pct(limit)}): {_counts(codes)}"
        )
    return CellCheck(
        name="failure_rate",
        passed=passed,
        severity=severity,
        description=desc,
        metadata={
            "cell": state.cell,
            "failure_rate": round(share, 4),
            "without_image": bad,
            "eligible": eligible,
            "warn_above": thresholds.warn_above,
            "error_above": thresholds.error_above,
            **{f"failed_{code}": n for code, n in codes.items()},
        },
    )


def unaccounted_ids(cell_rows: pa.Table, cell_ledger: pa.Table) -> list[str]:
    """Prompt ids of the cell's eligible rows (``CellRows.table``) with no ledger row in the cell."""
    seen = set(zip(cell_ledger["prompt_id"].to_pylist(), cell_ledger["prompt_sha256"].to_pylist(), strict=True))
    pairs = zip(cell_rows["prompt_id"].to_pylist(), cell_rows["prompt_sha256"].to_pylist(), strict=True)
    return sorted({pid for pid, sha in pairs if (pid, sha) not in seen})


def prompts_resolved(state: CellState, unaccounted: list[str]) -> CellCheck:
    """Names every prompt of the cell that has no ledger outcome (an ERROR: the ledger lost track) or whose
    latest outcome is quarantined, failed or skipped (a WARN: known, explained, re-run to retry)."""
    quarantined = sorted(f.prompt_id for f in state.outstanding if f.quarantined_uri)
    other = sorted(f.prompt_id for f in state.outstanding if not f.quarantined_uri)
    parts = []
    if unaccounted:
        parts.append(f"{len(unaccounted)} unaccounted (no ledger row): {_named(unaccounted)}")
    if quarantined:
        parts.append(f"{len(quarantined)} quarantined (image kept aside, paid): {_named(quarantined)}")
    if other:
        parts.append(f"{len(other)} failed or skipped without an image: {_named(other)}")
    passed = not parts
    return CellCheck(
        name="prompts_resolved",
        passed=passed,
        severity=Severity.ERROR if unaccounted else Severity.WARN,
        description=f"{state.cell}: every eligible prompt has an image or a ledger outcome"
        if passed
        else f"{state.cell}: " + "; ".join(parts),
        metadata={
            "cell": state.cell,
            "unaccounted": len(unaccounted),
            "quarantined": len(quarantined),
            "failed_or_skipped": len(other),
        },
        markdown={"prompts": failed_prompts_markdown(state)} if state.outstanding else {},
    )


def failed_prompts_markdown(state: CellState, max_rows: int = 20) -> str:
    """A small table of the cell's outstanding failures: id, status, code, message, cost, where kept."""
    if not state.outstanding:
        return "_no failed prompts_"
    header = ["prompt", "status", "code", "message", f"cost ({state.cost_unit})", "quarantined"]
    rows = [
        [md.text(f.prompt_id), f.status.value, md.text(f.error_code), md.text(redact_text(f.message), limit=300),
         f"{f.cost.normalize():f}", "yes" if f.quarantined_uri else ""]
        for f in state.outstanding[:max_rows]
    ]  # fmt: skip
    out = md.table(header, rows, "llllrl")
    more = len(state.outstanding) - max_rows
    return out + (f"\n\n_{more} more not shown; the ledger has them all_" if more > 0 else "")


def named_for_cell(cell: str, name: str, passed: bool, description: str, metadata: dict) -> CellCheck:
    """An outcome of the audit functions, with its cell named and only scalar metadata kept."""
    scalars = {k: v for k, v in metadata.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
    return CellCheck(name=name, passed=passed, description=f"{cell}: {description}", metadata={"cell": cell, **scalars})


def run_status_counts(run_rows: pa.Table) -> dict[str, int]:
    counts = Counter(run_rows["status"].to_pylist())
    return {s.value: counts.get(s.value, 0) for s in OutcomeStatus}


# -- prompt_table --------------------------------------------------------------------------------------
class RejectionsCheck(BaseModel):
    check: CellCheck
    note: str | None = None  # why the rejections are there, when they are on purpose


def ships_examples(source_uris: list[str]) -> bool:
    """True when a prompt source is the project's own examples/prompts (whose bad row is deliberate)."""
    for uri in source_uris:
        path = Path(uri.removeprefix("file://"))
        try:
            if path.resolve().is_relative_to(EXAMPLES_DIR):
                return True
        except OSError:
            continue
    return False


EXAMPLES_NOTE = (
    "The shipped examples (examples/prompts) include rows a provider cannot run, on purpose, to show how a "
    "rejection is reported (a prompt longer than one provider accepts, a format one provider cannot answer "
    "in: see the rejections); they still run on the others. This warning is expected here; your own tables "
    "should pass."
)


def rejections(rows_read: int, rejected: pa.Table, source_uris: list[str]) -> RejectionsCheck:
    """Rejected prompt rows are a warning, never a failure: the valid rows still run."""
    n = rejected.num_rows
    codes = Counter(rejected["code"].to_pylist()) if n else Counter()
    on_purpose = n > 0 and ships_examples(source_uris)
    desc = (
        "no prompt rows rejected"
        if n == 0
        else f"{n} of {rows_read} prompt rows rejected: {_counts(codes)}"
        + (" (deliberate: the shipped examples include bad rows)" if on_purpose else "")
    )
    check = CellCheck(
        name="no_rejected_rows",
        passed=n == 0,
        severity=Severity.WARN,
        description=desc,
        metadata={"rejected": n, "rows_read": rows_read, **{f"rejected_{k}": v for k, v in codes.items()}},
    )
    return RejectionsCheck(check=check, note=EXAMPLES_NOTE if on_purpose else None)
