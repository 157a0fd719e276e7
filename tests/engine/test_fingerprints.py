"""The run's compact per-row memory answers exactly what the dicts and sets it replaced answered."""

from __future__ import annotations

import hashlib
import random

import pytest

from nbpro_pipeline.cell.checks import check_accounting
from nbpro_pipeline.engine.booking import TaskSample
from nbpro_pipeline.engine.fingerprints import EligibleLog, EligibleRows, FingerprintSet
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA


def fp(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_a_fingerprint_set_is_exact_across_its_packed_levels():
    rng = random.Random(7)
    members = [fp(i) for i in range(10_000)] + ["00" * 31 + "01", "01" + "00" * 31, "00" * 32]  # zero bytes
    rng.shuffle(members)
    found, reference = FingerprintSet(), set()
    for f in members[:6_000]:
        found.add(f)
        reference.add(f)
    for f in members[:3_000]:  # again: already there, not counted twice
        found.add(f)
    assert len(found) == len(reference) == 6_000
    assert all(f in found for f in members[:6_000])
    assert not any(f in found for f in members[6_000:])


def test_a_fingerprint_set_refuses_what_is_not_a_fingerprint():
    with pytest.raises(ValueError):
        FingerprintSet().add("fp-1")


def test_the_eligible_log_keeps_what_the_dict_it_replaced_kept():
    """``note`` is ``dict.setdefault``, ``claim`` is ``d[fp] = pid``; order is first seen."""
    rng = random.Random(3)
    log, reference = EligibleLog(), {}
    for i in range(12_000):  # several packed chunks
        f, pid = fp(rng.randrange(5_000)), f"p{i}"
        if rng.random() < 0.2 and f not in reference:
            log.claim(f, pid)
            reference[f] = pid
        else:
            log.note(f, pid)
            reference.setdefault(f, pid)
    f = next(iter(reference))
    log.claim(f, "claimed-late")  # the row submitted for a fingerprint first noted by another
    reference[f] = "claimed-late"
    rows = log.rows()
    assert list(rows.items()) == list(reference.items())
    assert len(rows) == len(reference) and list(rows) == list(reference)
    assert rows[f] == "claimed-late" and dict(rows) == reference
    with pytest.raises(KeyError):
        rows["nope"]


def test_eligible_rows_are_what_the_accounting_check_reads():
    empty = LEDGER_SCHEMA.empty_table()
    assert len(EligibleLog().rows()) == 0 and check_accounting(EligibleRows(), empty).passed
    log = EligibleLog()
    log.note(fp(1), "p1")
    outcome = check_accounting(log.rows(), empty)
    assert not outcome.passed and outcome.metadata["missing"] == 1 and "p1" in outcome.description


def test_the_task_sample_is_the_smallest_ids_booked():
    rng = random.Random(5)
    ids = [f"task-{rng.randrange(500):03d}" for _ in range(2_000)]
    for size in (0, 1, 50, 1_000):
        sample = TaskSample(size)
        for t in ids:
            sample.add(t)
        assert sample.ids == sorted(set(ids))[:size]


def test_history_forgets_a_done_fingerprint_but_keeps_one_still_to_finish():
    from datetime import UTC, datetime
    from decimal import Decimal

    from nbpro_pipeline.engine.history import CellHistory
    from nbpro_pipeline.storage.journal import JournalEntry
    from nbpro_pipeline.storage.past import FingerprintFacts, TaskFacts

    def entry(kind: str, f: str, task: str | None = None) -> JournalEntry:
        return JournalEntry(kind=kind, fingerprint=f, run_id="r", at=datetime.now(UTC), task_id=task)

    history = CellHistory()
    for f, task in ((fp(1), "t1"), (fp(2), "t2")):
        history.facts[f] = FingerprintFacts(tasks={task: TaskFacts(Decimal(1), None, "succeeded")})
        history.stored[f], history.intents[f] = True, entry("intent", f)
        history.charged_by_task[task] = Decimal(1)
    history.unresolved[fp(2)] = entry("task", fp(2), "t9")  # finished at the run's end: keeps what it needs
    history.net_of_earlier("t3", Decimal(2))
    history.forget(fp(1), "t3")
    history.forget(fp(2))
    assert fp(1) not in history.facts and fp(1) not in history.stored and fp(1) not in history.intents
    assert history.charged_by_task == {"t2": Decimal(1)}
    assert fp(2) in history.facts and fp(2) in history.intents
