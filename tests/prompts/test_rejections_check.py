"""The prompt table's check: rejected rows warn, never fail, and the shipped examples' are explained."""

import pyarrow as pa

from nbpro_pipeline.models.check import Severity
from nbpro_pipeline.models.prompt import REJECTED_SCHEMA
from nbpro_pipeline.prompts.rejections_check import EXAMPLES_DIR, rejections


def test_rejections_warn_but_never_fail_the_cell():
    assert rejections(10, REJECTED_SCHEMA.empty_table(), []).check.passed
    rejected = pa.Table.from_pylist(
        [
            {"source_uri": "f", "row_number": 1, "code": "prompt_empty", "message": "m"},
            {"source_uri": "f", "row_number": 2, "code": "prompt_empty", "message": "m"},
        ],
        schema=REJECTED_SCHEMA,
    )
    outcome = rejections(10, rejected, ["f"]).check
    assert not outcome.passed and outcome.severity is Severity.WARN
    assert outcome.metadata == {"rejected": 2, "rows_read": 10, "rejected_prompt_empty": 2}


def test_shipped_example_rejections_are_explained():
    rejected = pa.table({"code": ["prompt_too_long"]})
    on_purpose = rejections(12, rejected, [str(EXAMPLES_DIR / "catalog.parquet")])
    assert on_purpose.note and "on purpose" in on_purpose.note
    assert (
        on_purpose.check.description
        == "1 of 12 prompt rows rejected: 1 prompt_too_long (deliberate: the shipped examples include bad rows)"
    )
    mine = rejections(12, rejected, ["/data/prompts.csv"])
    assert mine.note is None and not mine.check.passed and mine.check.severity is Severity.WARN
