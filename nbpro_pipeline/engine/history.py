"""What earlier runs of a cell left behind, and the net-of-earlier-rows booking that keeps every credit
in the ledger exactly once.

Asked per fingerprint of the run's own rows (the cell's fingerprint index, see ``storage.past``): which
already have a stored image, what each of their tasks has been charged so far, which terminal failures
count towards a new idempotency key; and from the (pruned) journal, which journaled tasks have no final
outcome yet (polled again, never resubmitted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.journal import JournalEntry, read_journal
from nbpro_pipeline.storage.past import FingerprintFacts, PastRows, open_past


@dataclass
class CellHistory:
    """What the ledger and journal hold about the fingerprints this run asks about (``ensure`` them first).

    Answers are per fingerprint, read from the cell's index bucket and tail (``storage.past``) the first
    time a fingerprint is asked about, and kept until its row is done (``forget``): what a run holds grows
    with its rows in flight, not with its rows. A task's rows all carry the fingerprint of the request
    that made it (the engine books every attempt under its fingerprint), so the charges of a task a run
    books again are known once its fingerprint is.
    """

    past: PastRows | None = None
    storage: Storage | None = None
    charged_by_task: dict[str, Decimal] = field(default_factory=dict)  # total booked per task id
    intents: dict[str, JournalEntry] = field(default_factory=dict)
    unresolved: dict[str, JournalEntry] = field(default_factory=dict)  # fingerprint -> task to poll again
    facts: dict[str, FingerprintFacts] = field(default_factory=dict)
    stored: dict[str, bool] = field(default_factory=dict)  # fingerprint -> its latest image is still there
    resumable: set[str] = field(default_factory=set)  # tasks (of known fingerprints) to poll again

    @property
    def past_rows(self) -> int:
        return self.past.rows if self.past else 0

    @property
    def past_source(self) -> str:
        """How the past was read, for the start-of-run message."""
        if self.past is None:
            return "none"
        if self.past.reader is not None:
            return f"fingerprint index + {self.past.tail_parts} newer parts"
        return f"{self.past.tail_parts} parts read in full: {self.past.why_no_index}"

    @property
    def succeeded(self) -> set[str]:
        """Fingerprints (of those ensured) with a stored, valid image."""
        return {fp for fp, ok in self.stored.items() if ok}

    def is_stored(self, fingerprint: str) -> bool:
        self._known(fingerprint)
        return self.stored.get(fingerprint, False)

    def generation(self, fingerprint: str) -> int:
        self._known(fingerprint)
        return len(self.failed_generation_tasks(fingerprint))

    def _known(self, fingerprint: str) -> None:
        """Asking before ``ensure`` would answer "never seen" and could pay for a stored image again."""
        if self.past is not None and fingerprint not in self.facts:
            raise LookupError(f"fingerprint {fingerprint} was not ensured before it was asked about")

    def failed_generation_tasks(self, fingerprint: str) -> set[str]:
        """Tasks of ``fingerprint`` that failed for good (a resumable one is polled again instead)."""
        facts = self.facts.get(fingerprint)
        return facts.failed_tasks - self.resumable if facts else set()

    def earlier(self, task_id: str | None) -> Decimal:
        return self.charged_by_task.get(task_id, Decimal(0)) if task_id else Decimal(0)

    def net_of_earlier(self, task_id: str | None, charged: Decimal) -> Decimal:
        """The net amount a new row of ``task_id`` charges when the task has cost ``charged`` in total:
        a resumed, replayed or re-polled task already booked is not booked again."""
        if task_id is None:
            return charged
        net = charged - self.earlier(task_id)
        self.charged_by_task[task_id] = charged
        return net

    def forget(self, fingerprint: str, task_id: str | None = None) -> None:
        """``fingerprint``'s row is done (booked, or found stored): drop what was learned about it and its
        tasks (``task_id``: the one this run booked for it). The run asks about it no more, except for a
        journaled task of it still unresolved, which the run finishes at its end with all of that kept."""
        if fingerprint in self.unresolved:
            return
        facts = self.facts.pop(fingerprint, None)
        self.stored.pop(fingerprint, None)
        self.intents.pop(fingerprint, None)
        for task in [*(facts.tasks if facts else ()), *([task_id] if task_id else [])]:
            self.charged_by_task.pop(task, None)
            self.resumable.discard(task)

    async def ensure(self, fingerprint: str) -> None:
        """Make the answers about ``fingerprint`` known (a bucket read and a stat, in a thread off local disk)."""
        if fingerprint in self.facts or self.past is None:
            return
        if self.past.storage.is_local:
            self.learn([fingerprint])
        else:
            await asyncio.to_thread(self.learn, [fingerprint])

    def learn(self, fingerprints: Iterable[str]) -> None:
        """Blocking: read the facts of the fingerprints not known yet, and stat their latest images."""
        assert self.past is not None
        missing = [fp for fp in dict.fromkeys(fingerprints) if fp not in self.facts]
        if not missing:
            return
        for fp, facts in self.past.facts(missing).items():
            for task, t in facts.tasks.items():
                self.charged_by_task.setdefault(task, t.charged)  # never over this run's own bookings
                if t.latest_error_code in RESUMABLE_CODES:
                    self.resumable.add(task)
            self.stored[fp] = facts.image_uri is not None and _exists(self.past.storage, facts.image_uri)
            self.facts[fp] = facts


def _exists(storage: Storage, uri: str) -> bool:
    return storage.fs.exists(uri if storage.is_local else storage.fs._strip_protocol(uri))


def load_history(
    storage: Storage, provider: str, resolution: Resolution, fingerprints: Iterable[str] = ()
) -> CellHistory:
    """Blocking (one listing of the cell's ledger directory, the index manifest, the tail, the journal): run
    it in a thread. It learns the journaled tasks' fingerprints (to know which are unresolved) and
    ``fingerprints``; a run ``ensure``s every other fingerprint before asking about it."""
    past = open_past(storage, provider, resolution)
    journal = read_journal(storage, provider, resolution)
    history = CellHistory(past=past, storage=storage, intents=journal.intents)
    history.learn([*journal.tasks, *fingerprints])
    booked = {task for fp in journal.tasks for task in history.facts[fp].tasks}
    history.unresolved = journal.unresolved_tasks(
        {e.task_id for entries in journal.tasks.values() for e in entries if e.task_id in booked} - history.resumable
    )
    return history
