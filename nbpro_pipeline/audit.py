"""The invariants a cell run must satisfy, as plain functions over what the run produced (its
``CellResult``) and the ledger; Dagster asset checks call these, tests call them too: every eligible
prompt accounted for, every stored image what was ordered, and the money in the ledger equal to what
the provider says it charged. Nothing here runs the engine or talks to a provider."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from nbpro_pipeline.engine.reconcile import ProviderCharges
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.run import CellResult
from nbpro_pipeline.image_files import ImageProblem, check_image, inspect_image
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.provenance import verify_marks
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger import read_ledger


def _ids(ids: list[str]) -> str:
    """A few ids for a check description (which the UI may render as markdown: ids are table text)."""
    return ", ".join(md.code(i, limit=80) for i in ids[:5]) or "none"


class CheckOutcome(BaseModel):
    passed: bool
    description: str
    metadata: dict[str, Any] = Field(default_factory=dict)


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
        passed=ok,
        description=desc,
        metadata={
            "tasks_checked": charges.asked,
            "mismatched": len(mismatched),
            "unreachable": unreachable,
            "unverifiable": unverifiable,
        },
    )


def check_rejections(rows_read: int, rejected: pa.Table) -> CheckOutcome:
    """Rejected prompt rows are worth a warning, never a failure: the valid rows still run."""
    n = rejected.num_rows
    by_code = Counter(rejected["code"].to_pylist()) if n else Counter()
    return CheckOutcome(
        passed=n == 0,
        description="no prompt rows rejected"
        if n == 0
        else f"{n} rejections over {rows_read} rows read: {dict(by_code)}",
        metadata={"rejected": n, **{f"rejected_{k}": v for k, v in by_code.items()}},
    )


class AuditedCell(BaseModel):
    """A run's report with the outcome of every check over what it produced."""

    report: CellReport
    checks: dict[str, CheckOutcome]


def audit_cell(result: CellResult, storage: Storage, *, require_c2pa: bool = False) -> AuditedCell:
    """Every cell check over what ``run_cell`` produced: reads the ledger and the stored images
    (``require_c2pa``: signing is on, so every stored image must carry a valid manifest)."""
    report = result.report
    cell_ledger = read_ledger(storage, provider=report.provider, resolution=report.resolution)
    run_rows = cell_ledger.filter(pc.equal(cell_ledger["run_id"], result.run_id))
    checks = {
        "all_rows_accounted": check_accounting(result.eligible, cell_ledger),
        "images_valid": check_stored_images(run_rows, storage, require_c2pa=require_c2pa),
        "ledger_reconciles": check_reconciles(result.provider_charges, cell_ledger),
    }
    return AuditedCell(report=report, checks=checks)
