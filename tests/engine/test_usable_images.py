"""Usability over real HTTP: a sandbox told to return blank images, duplicates and multi-image answers.
Every stored image is judged as the sandbox's truth says; every image of a multi-image answer is kept
(the final one stored, the others as drafts) while its task is booked once, at what the provider billed."""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.cell.review import review_cell
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.costs.claims import billing_claims
from tests.engine.conftest import prompt_rows

FAULTS = {"blank_image": 0.2, "duplicate_image": 0.2, "multi_image": 0.3}


def expected_usability(task: dict) -> str:
    return "duplicate" if task["duplicate"] else "blank" if task["blank"] else "usable"


async def test_blank_duplicate_and_multi_image_answers_are_judged_and_booked_once(harness, provider):
    harness.configure(provider, faults=FAULTS)
    rows_in = prompt_rows(30)
    await harness.run(provider, rows_in)
    tasks = {t["id"]: t for t in harness.sandbox.tasks(provider.value)}
    rows = harness.rows(provider)
    assert sorted(r["task_id"] for r in rows) == sorted(tasks)  # one row per task
    assert {r["status"] for r in rows} == {"succeeded"}
    seen = {r["task_id"]: r["usability"] for r in rows}
    want = {t: expected_usability(task) for t, task in tasks.items()}
    originals = [t for t, task in tasks.items() if task["duplicate"] and seen[t] == "usable"]
    assert len(originals) == 1  # the first stock picture stored stays usable; the later ones are its copies
    assert seen == {**want, originals[0]: "usable"}
    assert all(r["duplicate_of"] == originals[0] for r in rows if r["usability"] == "duplicate")
    counts = Counter(seen.values())
    assert counts["blank"] and counts["duplicate"] and counts["usable"]
    for r in rows:
        task = tasks[r["task_id"]]
        assert r["provider_sha256"] == task["image_sha256"]  # the final image is the one stored
        assert r["answer_images"] == task["images"] and len(r["drafts"]) == task["images"] - 1
        assert all(Path(d["uri"]).is_file() and "/drafts/" in d["uri"] for d in r["drafts"])
    assert any(r["drafts"] for r in rows)
    harness.assert_reconciles(provider)

    cell_rows = pa.table(
        {"prompt_id": [r.prompt_id for r in rows_in], "prompt_sha256": [r.prompt_sha256 for r in rows_in]}
    )
    review = review_cell(harness.results[-1], harness.storage, cell_rows, PriceTable(), FailureThresholds())
    check = next(c for c in review.checks if c.name == "usable_images")
    flagged = {r["prompt_id"] for r in rows if r["task_id"] in want and seen[r["task_id"]] != "usable"}
    assert not check.passed and check.metadata["stored"] == 30
    assert check.metadata["blank"] + check.metadata["duplicate"] == len(flagged) == 30 - counts["usable"]
    assert check.metadata["draft_images"] == sum(t["images"] - 1 for t in tasks.values())
    assert all(pid in check.markdown["flagged"] for pid in flagged)
    page = Path(review.view.gallery.uri).read_text()
    assert page.count('class="badge unusable"') == len(flagged) and page.count('class="badge usable"') == 30 - len(
        flagged
    )


# The examples share the harness's storage: each gets prompts of its own from this counter. A drawn tag
# was not enough: hypothesis may draw the same value twice, and the second example then found the first's
# rows (made with another max_images_per_answer) and failed.
_EXAMPLES = itertools.count()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.floats(0.2, 1.0), count=st.integers(2, 6), keep=st.integers(1, 4))
async def test_drafts_are_never_billed_on_their_own(harness, provider, rate, count, keep):
    """Randomised multi-image answers: every task one ledger row at the provider's billing, the final
    image its own, at most ``max_images_per_answer - 1`` drafts kept, and a re-run pays nothing."""
    from tests.engine.conftest import SETTINGS

    tag = next(_EXAMPLES)
    harness.configure(provider, faults={"multi_image": rate, "multi_image_count": count})
    settings_ = SETTINGS.model_copy(update={"max_images_per_answer": keep})
    rows = prompt_rows(6, prefix=f"m{tag}-")
    await harness.run(provider, rows, settings=settings_, run_id=f"a{tag}")
    again = await harness.run(provider, rows, settings=settings_, run_id=f"b{tag}")
    assert (again.submitted, again.final_cost) == (0, 0)
    tasks = {t["id"]: t for t in harness.sandbox.tasks(provider.value)}
    mine = [r for r in harness.rows(provider) if r["prompt_id"].startswith(f"m{tag}-")]
    assert len(mine) == len({r["task_id"] for r in mine}) == 6
    for r in mine:
        task = tasks[r["task_id"]]
        assert r["provider_sha256"] == task["image_sha256"]
        assert len(r["drafts"]) == min(task["images"] - 1, keep - 1)
    harness.assert_reconciles(provider)


async def test_the_claims_list_exactly_the_paid_unusable_images_and_equal_their_ledger_cost(harness, provider):
    """The must-show run: blank, duplicate, multi-image, corrupt and wrong-size answers. The claims are
    the blank ones, every duplicate but the first stored, and the quarantined ones; never a multi-image
    answer's drafts. Their total is the ledger's cost of exactly those tasks."""
    faults = {**FAULTS, "corrupt_image": 0.1, "wrong_size": 0.1}
    harness.configure(provider, faults=faults)
    await harness.run(provider, prompt_rows(40))
    tasks = {t["id"]: t for t in harness.sandbox.tasks(provider.value)}
    rows = {r["task_id"]: r for r in harness.rows(provider)}
    stored_dups = [t for t, task in tasks.items() if task["duplicate"] and rows[t]["status"] == "succeeded"]
    originals = [t for t in stored_dups if rows[t]["usability"] == "usable"]
    assert len(originals) == 1  # the first judged
    first = originals[0]
    expected = {
        t
        for t, task in tasks.items()
        if rows[t]["status"] == "failed"
        or (task["duplicate"] and t != first)
        or (task["blank"] and not task["duplicate"])
    }
    report = billing_claims(harness.storage, PriceTable())
    claimed = set(report.claims["task_id"])
    assert claimed == expected and len(claimed) >= 5
    assert {rows[t]["error_code"] for t in claimed if rows[t]["status"] == "failed"} <= {
        "corrupt_image",
        "size_mismatch",
    }
    ledger_cost = sum((r["final_cost"] for t, r in rows.items() if t in expected), Decimal(0))
    assert sum(report.claims["amount"], Decimal(0)) == ledger_cost and report.reconciles
    harness.assert_reconciles(provider)
    print(
        f"\n{provider.value}: {len(tasks)} tasks; claims {len(claimed)} (expected {len(expected)}): "
        f"{dict(Counter(report.claims['reason']))}; claims total {sum(report.claims['amount'], Decimal(0))} "
        f"= ledger cost of those rows {ledger_cost}"
    )
