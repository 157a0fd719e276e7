"""The prompt table's asset check: rejected rows are a warning, never a failure (the valid rows still
run), and the shipped examples' deliberate bad rows are said to be deliberate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from nbpro_pipeline.models.check import CheckOutcome, Severity, count_phrase

EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples" / "prompts"


class RejectionsCheck(BaseModel):
    check: CheckOutcome
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
        else f"{n} of {rows_read} prompt rows rejected: {count_phrase(codes)}"
        + (" (deliberate: the shipped examples include bad rows)" if on_purpose else "")
    )
    check = CheckOutcome(
        name="no_rejected_rows",
        passed=n == 0,
        severity=Severity.WARN,
        description=desc,
        metadata={"rejected": n, "rows_read": rows_read, **{f"rejected_{k}": v for k, v in codes.items()}},
    )
    return RejectionsCheck(check=check, note=EXAMPLES_NOTE if on_purpose else None)
