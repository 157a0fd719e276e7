"""Per-cell checks: named for their cell, judged on the cell's state, thresholds as configured."""

import pyarrow as pa
import pytest
from pydantic import ValidationError

from nbpro_pipeline.cell.checks import FailureThresholds, failure_rate, prompts_resolved, unaccounted_ids
from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.check import Severity
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from tests.costs.builders import ledger, record


def _state(*records):
    records = [
        r.model_copy(update={"image_uri": r.image_uri or f"/img/{r.prompt_id}.png"}) if r.status == "succeeded" else r
        for r in records
    ]
    return cell_state(ledger(*records), Provider.RIVYA, Resolution.R1K, PriceTable())


def _cell(n_ok: int, n_failed: int):
    ok = [record(f"ok{i}", resolution="1K") for i in range(n_ok)]
    bad = [record(f"bad{i}", resolution="1K", status="failed", error_code="generation_failed") for i in range(n_failed)]
    return _state(*ok, *bad)


@pytest.mark.parametrize(
    ("failed", "passed", "severity"),
    [(0, True, Severity.WARN), (1, False, Severity.WARN), (3, False, Severity.ERROR)],
)
def test_failure_rate_warns_then_errors_above_its_thresholds(failed, passed, severity):
    state = _cell(10 - failed, failed)
    check = failure_rate(state, 10, FailureThresholds(warn_above=0.05, error_above=0.2))
    assert (check.passed, check.severity) == (passed, severity)
    assert check.description.startswith("rivya|1K: ")
    assert "{" not in check.description  # never a raw dict
    if failed:
        assert f"{failed} generation_failed" in check.description


def test_thresholds_must_be_ordered():
    with pytest.raises(ValidationError, match="below the warn threshold"):
        FailureThresholds(warn_above=0.5, error_above=0.1)


def test_prompts_resolved_names_quarantined_failed_and_unaccounted_prompts():
    state = _state(
        record("good", resolution="1K"),
        record("wrong", resolution="1K", status="failed", error_code="size_mismatch", image_uri="/q/w.png"),
        record("gone", resolution="1K", status="failed", error_code="generation_failed"),
    )
    check = prompts_resolved(state, ["lost"])
    assert not check.passed and check.severity is Severity.ERROR  # an unaccounted prompt is an error
    assert "1 unaccounted (no ledger row): `lost`" in check.description  # ids in code spans
    assert "1 quarantined" in check.description and "wrong" in check.description
    assert "gone" in check.description
    assert "| wrong | failed | size\\_mismatch |" in check.markdown["prompts"]
    known_only = prompts_resolved(state, [])
    assert not known_only.passed and known_only.severity is Severity.WARN


def test_unaccounted_ids_compares_id_and_prompt_hash():
    rows = pa.table({"prompt_id": ["a", "b"], "prompt_sha256": ["sha-a", "changed"]})
    assert unaccounted_ids(rows, ledger(record("a"), record("b"))) == ["b"]  # b's prompt text changed
