"""The ``usable_images`` check of a cell: every image it holds is usable (not blank, not a near-duplicate
of an earlier paid image of the cell or of its own reference). A WARN: the images are paid and kept, and
``billing_claims`` lists them for the provider; nothing is bought again. Multi-image answers and their
drafts are counted here too."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.check import CheckOutcome, Severity, count_phrase
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.usability import UNUSABLE, Usability

FLAGGED_ROWS = 20  # rows of the flagged-images table; the claims report has them all


def usable_images(cell: str, cell_ledger: pa.Table) -> CheckOutcome:
    """Over the cell's stored images (succeeded rows of ``CellLedger.table``)."""
    stored = cell_ledger.filter(pc.fill_null(pc.equal(cell_ledger["status"], OutcomeStatus.SUCCEEDED.value), False))
    rows = stored.select(["prompt_id", "task_id", "usability", "duplicate_of", "answer_images"]).to_pylist()
    verdicts = Counter(r["usability"] or "not_judged" for r in rows)
    flagged = [r for r in rows if r["usability"] in UNUSABLE]
    usable = verdicts[Usability.USABLE.value]
    multi = [r["answer_images"] for r in rows if (r["answer_images"] or 0) > 1]
    if not flagged:
        desc = f"{cell}: all {usable} judged stored images are usable"
    else:
        named = ", ".join(md.code(r["prompt_id"], limit=80) for r in flagged[:10])
        more = f" and {len(flagged) - 10} more" if len(flagged) > 10 else ""
        bad = Counter({k: n for k, n in verdicts.items() if k in UNUSABLE})
        desc = (
            f"{cell}: {len(flagged)} of {len(rows)} stored images are not usable ({count_phrase(bad)}): {named}{more}"
        )
    return CheckOutcome(
        name="usable_images",
        passed=not flagged,
        severity=Severity.WARN,
        description=desc + (f"; {len(multi)} answers held several images" if multi else ""),
        metadata={
            "cell": cell,
            "stored": len(rows),
            "usable": usable,
            **{v.value: verdicts[v.value] for v in Usability if v is not Usability.USABLE},
            "not_judged": verdicts["not_judged"],
            "multi_image_answers": len(multi),
            "draft_images": sum(n - 1 for n in multi),
        },
        markdown={"flagged": _flagged_table(flagged)} if flagged else {},
    )


def _flagged_table(flagged: list[dict]) -> str:
    header = ["prompt", "verdict", "task", "duplicate of"]
    rows = [
        [md.text(r["prompt_id"]), r["usability"], md.text(r["task_id"]), md.text(r["duplicate_of"])]
        for r in flagged[:FLAGGED_ROWS]
    ]
    more = len(flagged) - FLAGGED_ROWS
    return md.table(header, rows, "llll") + (f"\n\n_{more} more; `billing_claims` lists them all_" if more > 0 else "")
