"""The checks of a cell after a run, as plain data (``models.check.CheckOutcome``): every eligible prompt
accounted for, every stored image what was ordered, the money in the ledger equal to what the provider
says it charged (``run_checks``, over what the run produced), and the cell's failure rate and unresolved
prompts (judged on the cell's state, so a no-op re-run cannot turn a broken cell green). Nothing here
runs the engine or talks to a provider; descriptions name prompts as inert markdown.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator

from nbpro_pipeline.cell.ledger import CellLedger
from nbpro_pipeline.cell.state import CellState, FailedPrompt, RunDelta
from nbpro_pipeline.engine.reconcile import ProviderCharges
from nbpro_pipeline.engine.run import CellResult
from nbpro_pipeline.image_files import ImageProblem, check_image, inspect_image
from nbpro_pipeline.models.check import CheckOutcome, Severity, count_phrase
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.provenance import verify_marks
from nbpro_pipeline.redaction import redact_text
from nbpro_pipeline.storage.filesystem import Storage

NAMED_MAX = 25  # prompt ids named in a description; the rest are counted, and all are in the table


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


def _ids(ids: list[str]) -> str:
    """A few ids for a check description (which the UI may render as markdown: ids are table text)."""
    return ", ".join(md.code(i, limit=80) for i in ids[:5]) or "none"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%".replace(".0%", "%")


def _named(ids: list[str]) -> str:
    shown = ", ".join(md.code(i, limit=80) for i in ids[:NAMED_MAX])  # ids are table text: inert in markdown
    return shown + (f" and {len(ids) - NAMED_MAX} more" if len(ids) > NAMED_MAX else "")


# -- over what the run produced -------------------------------------------------------------------------
def run_checks(
    result: CellResult, ledger: CellLedger, storage: Storage, *, require_c2pa: bool = False
) -> list[CheckOutcome]:
    """``all_rows_accounted``, ``images_valid`` and ``ledger_reconciles`` over what ``run_cell`` produced,
    each naming its cell (``require_c2pa``: signing is on, so every stored image must carry a valid
    manifest)."""
    cell = f"{ledger.provider}|{ledger.resolution.value}"
    checks = [
        check_accounting(result.eligible, ledger.table),
        check_stored_images(ledger.run_rows, storage, require_c2pa=require_c2pa),
        check_reconciles(result.provider_charges, ledger.table),
    ]
    return [c.for_cell(cell) for c in checks]


def _latest_per_fingerprint(ledger: pa.Table) -> dict[str, dict[str, Any]]:
    rows = ledger.select(["fingerprint", "status", "error_code", "recorded_at", "prompt_id"]).to_pylist()
    latest: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["recorded_at"]):
        latest[r["fingerprint"]] = r
    return latest


def check_accounting(eligible: Mapping[str, str], cell_ledger: pa.Table) -> CheckOutcome:
    """Every eligible fingerprint has a ledger outcome: succeeded, or failed/skipped with a reason."""
    latest = _latest_per_fingerprint(cell_ledger)
    missing = [pid for fp, pid in eligible.items() if fp not in latest]
    reasonless = [
        pid
        for fp, pid in eligible.items()
        if fp in latest and latest[fp]["status"] != OutcomeStatus.SUCCEEDED and not latest[fp]["error_code"]
    ]
    statuses = Counter(latest[fp]["status"] for fp in eligible if fp in latest)
    ok = not missing and not reasonless
    desc = (
        f"all {len(eligible)} eligible prompts accounted for"
        if ok
        else f"{len(missing)} eligible prompts have no ledger row (e.g. {_ids(missing)}); "
        f"{len(reasonless)} failed without a reason (e.g. {_ids(reasonless)})"
    )
    return CheckOutcome(
        name="all_rows_accounted",
        passed=ok,
        description=desc,
        metadata={"eligible": len(eligible), "missing": len(missing), "reasonless": len(reasonless), **statuses},
    )


def check_stored_images(
    run_rows: pa.Table, storage: Storage | None = None, *, limit: int = 1000, require_c2pa: bool = False
) -> CheckOutcome:
    """Every image this run stored decodes, in the ordered format and at the table pixel size, and
    carries its provenance marks: the IPTC source type in XMP, bytes equal to the ledger's
    ``image_sha256``, and (``require_c2pa``: signing is on) a C2PA manifest that validates against
    them. Images are read through the storage's filesystem, so this works on object stores too."""
    succeeded = run_rows.filter(pc.equal(run_rows["status"], OutcomeStatus.SUCCEEDED.value))
    columns = ["image_uri", "image_sha256", "aspect_ratio", "output_format", "resolution", "prompt_id"]
    rows = succeeded.select(columns).to_pylist()
    checked = rows[:limit]
    bad: list[str] = []
    unmarked = 0
    for r in checked:
        try:
            problem = _stored_image_problem(r, storage, require_c2pa)
        except ImageProblem as exc:
            problem = exc.code
        except OSError as exc:  # FileNotFoundError and friends: the file is gone, not corrupt
            problem = f"missing or unreadable ({type(exc).__name__})"
        if problem:
            unmarked += problem.startswith("marks:")
            bad.append(f"{md.code(r['prompt_id'], limit=80)}: {problem}")  # the problem is our own words
    sampled = f" (first {limit} of {len(rows)})" if len(rows) > limit else ""
    marks = "IPTC XMP and a valid C2PA manifest" if require_c2pa else "IPTC XMP"
    return CheckOutcome(
        name="images_valid",
        passed=not bad,
        description=(
            f"{len(checked)} stored images decode at the expected size and format and carry {marks}{sampled}"
            if not bad
            else f"{len(bad)} stored images are not what was ordered or lack their marks: {'; '.join(bad[:5])}"
        ),
        metadata={"checked": len(checked), "bad": len(bad), "bad_marks": unmarked},
    )


def _stored_image_problem(r: dict[str, Any], storage: Storage | None, require_c2pa: bool) -> str | None:
    """What is wrong with one stored image (None: nothing); raises ImageProblem for a bad decode."""
    if storage is None:
        with open(r["image_uri"], "rb") as fh:
            data = fh.read()
    else:
        with storage.fs.open(r["image_uri"], "rb") as fh:
            data = fh.read()
    fmt = OutputFormat(r["output_format"])
    info = inspect_image(io.BytesIO(data))
    check_image(info, fmt, AspectRatio(r["aspect_ratio"]), Resolution(r["resolution"]))
    marks = verify_marks(data, fmt, expected_sha256=r["image_sha256"], require_c2pa=require_c2pa)
    return None if marks.ok else "marks: " + "; ".join(marks.problems)


def check_reconciles(charges: ProviderCharges, cell_ledger: pa.Table) -> CheckOutcome:
    """The ledger's net total per task equals what the provider's answer proves it charged (asked by the
    run, by the provider's own billing rule), for every task the run asked about."""
    totals: dict[str, Decimal] = {}
    for t, cost in zip(cell_ledger["task_id"].to_pylist(), cell_ledger["final_cost"].to_pylist(), strict=True):
        if t:
            totals[t] = totals.get(t, Decimal(0)) + (cost or Decimal(0))
    mismatched = [
        f"{md.code(t, limit=80)}: ledger {totals.get(t, 0)} vs provider {v}"
        for t, v in sorted(charges.charged.items())
        if v != totals.get(t, 0)
    ]
    unreachable, unverifiable = len(charges.unreachable), len(charges.unverifiable)
    ok = not mismatched
    desc = (
        f"{len(charges.charged)} tasks reconcile with the provider"
        + (f"; {unreachable} could not be asked" if unreachable else "")
        + (f"; {unverifiable} cancelled tasks cannot be verified" if unverifiable else "")
        if ok
        else f"{len(mismatched)} tasks disagree with the provider: {'; '.join(mismatched[:5])}"
    )
    return CheckOutcome(
        name="ledger_reconciles",
        passed=ok,
        description=desc,
        metadata={
            "tasks_checked": charges.asked,
            "mismatched": len(mismatched),
            "unreachable": unreachable,
            "unverifiable": unverifiable,
        },
    )


# -- over the cell's state ------------------------------------------------------------------------------
def _judged(share: float, thresholds: FailureThresholds) -> tuple[Severity, bool, float]:
    """A failure share against the thresholds: its severity, whether it passes, and the limit it crossed."""
    severity = Severity.ERROR if share > thresholds.error_above else Severity.WARN
    limit = thresholds.error_above if severity is Severity.ERROR else thresholds.warn_above
    return severity, share <= thresholds.warn_above, limit


def failure_rate(state: CellState, eligible: int, thresholds: FailureThresholds) -> CheckOutcome:
    """Outstanding failures (latest outcome failed or skipped) over the cell's eligible prompts."""
    bad = len(state.outstanding)
    share = bad / eligible if eligible else 0.0
    codes = Counter(f.error_code for f in state.outstanding)
    severity, passed, limit = _judged(share, thresholds)
    if passed:
        desc = f"{state.cell}: {bad} of {eligible} eligible prompts without an image ({_pct(share)})"
    else:
        desc = (
            f"{state.cell}: {bad} of {eligible} eligible prompts have no image ({_pct(share)}, above "
            f"{_pct(limit)}): {count_phrase(codes)}"
        )
    return CheckOutcome(
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


def run_failure_rate(
    cell: str, delta: RunDelta, failed_this_run: list[FailedPrompt], unit: str, thresholds: FailureThresholds
) -> CheckOutcome:
    """This run's new work without an image (failed or skipped) over the new work it took on, against the
    same thresholds as ``failure_rate``: the cell's rate dilutes a bad run with older images, this does
    not. An ERROR fails the run (``CellReview.lost_run``)."""
    new = delta.images + delta.failed + delta.skipped
    bad = delta.failed + delta.skipped
    share = bad / new if new else 0.0
    codes = Counter(f.error_code for f in failed_this_run)
    paid = sum((f.cost for f in failed_this_run), Decimal(0))
    severity, passed, limit = _judged(share, thresholds)
    if not new:
        desc = f"{cell}: this run had no new work ({delta.already_done} prompts already done)"
    elif passed:
        desc = f"{cell}: this run: {bad} of {new} new prompts without an image ({_pct(share)})"
    else:
        desc = (
            f"{cell}: this run: {bad} of {new} new prompts without an image ({_pct(share)}, above {_pct(limit)}): "
            f"{count_phrase(codes)}; {paid.normalize():f} {unit} paid for them"
        )
    return CheckOutcome(
        name="run_failure_rate",
        passed=passed,
        severity=severity,
        description=desc,
        metadata={
            "cell": cell,
            "run_failure_rate": round(share, 4),
            "new_work": new,
            "without_image": bad,
            f"paid_for_failures_{unit}": float(paid),
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


def ledger_eligible(cell_rows: pa.Table, cell_ledger: pa.Table) -> dict[str, str]:
    """The cell's eligible rows keyed as a run keys them (fingerprint -> prompt id, as ``CellResult.eligible``),
    read back from the ledger when there is no run: each (prompt id, prompt sha256) of ``cell_rows`` takes the
    fingerprint of its latest ledger row. A row with no ledger row keys on its id and sha256 instead, which is
    no fingerprint, so ``check_accounting`` counts it missing."""
    rows = cell_ledger.select(["prompt_id", "prompt_sha256", "fingerprint", "recorded_at"]).to_pylist()
    latest = {
        (r["prompt_id"], r["prompt_sha256"]): r["fingerprint"] for r in sorted(rows, key=lambda r: r["recorded_at"])
    }
    pairs = zip(cell_rows["prompt_id"].to_pylist(), cell_rows["prompt_sha256"].to_pylist(), strict=True)
    return {latest.get((pid, sha), f"no ledger row: {pid} {sha}"): pid for pid, sha in pairs}


def prompts_resolved(state: CellState, unaccounted: list[str]) -> CheckOutcome:
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
    return CheckOutcome(
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
