"""What earlier runs of a cell left behind, and the net-of-earlier-rows booking that keeps every credit
in the ledger exactly once.

Read once at the start of a run (ledger rows, stored images, journal): which fingerprints already have
a stored image, what each task id has been charged so far, which terminal failures count towards a new
idempotency key, and which journaled tasks have no final outcome yet (polled again, never resubmitted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.cell_history import load_cell_history
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.journal import JournalEntry, read_journal


def idempotency_key(ledger_id: str, fingerprint: str, generation: int) -> str:
    """Same ledger, fingerprint and generation, same key: a resubmit after a crash replays the original
    task for free. The ledger id keeps two storage roots on one account apart; after a terminal failure
    a new generation needs a new key, else the provider would replay the failure."""
    base = fingerprint if generation == 0 else f"{fingerprint}#retry{generation}"
    return "nbpro-" + hashlib.sha256(f"idem:{ledger_id}:{base}".encode()).hexdigest()[:40]


@dataclass
class CellHistory:
    succeeded: set[str] = field(default_factory=set)  # fingerprints with a stored, valid image
    charged_by_task: dict[str, Decimal] = field(default_factory=dict)  # total booked per task id
    failed_generations: dict[str, set[str]] = field(default_factory=dict)  # fingerprint -> failed tasks
    intents: dict[str, JournalEntry] = field(default_factory=dict)
    unresolved: dict[str, JournalEntry] = field(default_factory=dict)  # fingerprint -> task to poll again

    def generation(self, fingerprint: str) -> int:
        return len(self.failed_generations.get(fingerprint, ()))

    def earlier(self, task_id: str | None) -> Decimal:
        return self.charged_by_task.get(task_id, Decimal(0)) if task_id else Decimal(0)

    def book(self, task_id: str | None, charged: Decimal) -> Decimal:
        """The net amount a new row of ``task_id`` charges when the task has cost ``charged`` in total:
        a resumed, replayed or re-polled task already booked is not booked again."""
        if task_id is None:
            return charged
        net = charged - self.earlier(task_id)
        self.charged_by_task[task_id] = charged
        return net


def load_history(storage: Storage, provider: str, resolution: Resolution) -> CellHistory:
    """Blocking (one listing of the cell's own ledger directory, its live parts' seven columns, the journal):
    run it in a thread. ``storage.load_cell_history`` reads the ledger without scanning other cells or
    days; a fingerprint counts as stored only if its image is still there (``CellHistory.stored``)."""
    past = load_cell_history(storage, provider, resolution)
    tasks = past.tasks()
    history = CellHistory(succeeded=past.stored(storage))
    history.charged_by_task = {task: t.charged for task, t in tasks.items()}
    resumable = {task for task, t in tasks.items() if t.latest_error_code in RESUMABLE_CODES}
    resolved = set(tasks) - resumable
    history.failed_generations = {
        fp: live for fp, failed in past.failed_tasks().items() if (live := failed - resumable)
    }
    journal = read_journal(storage, provider, resolution)
    history.intents = journal.intents
    history.unresolved = journal.unresolved_tasks(resolved)
    return history
