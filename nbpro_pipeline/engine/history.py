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
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.journal import JournalEntry, read_journal
from nbpro_pipeline.storage.ledger import read_ledger

_COLUMNS = ["fingerprint", "status", "task_id", "error_code", "final_cost", "image_uri", "recorded_at"]


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
    """Blocking (reads the ledger, lists images, reads the journal): run it in a thread."""
    prev = read_ledger(storage, provider=provider, resolution=resolution, columns=_COLUMNS)
    stored = {storage.uri(p) for p in storage.find(storage.path("images", cell_dir(provider, resolution)))}
    history = CellHistory()
    latest_code: dict[str, str | None] = {}
    for r in prev.sort_by([("recorded_at", "ascending")]).to_pylist():
        fp, task = r["fingerprint"], r["task_id"]
        if r["status"] == OutcomeStatus.SUCCEEDED and r["image_uri"] in stored:
            history.succeeded.add(fp)
        if task:
            history.charged_by_task[task] = history.earlier(task) + (r["final_cost"] or 0)
            latest_code[task] = r["error_code"]
            if r["status"] == OutcomeStatus.FAILED:
                history.failed_generations.setdefault(fp, set()).add(task)
    resolved = {t for t, code in latest_code.items() if code not in RESUMABLE_CODES}
    for tasks in history.failed_generations.values():
        tasks.difference_update([t for t in tasks if latest_code.get(t) in RESUMABLE_CODES])
    journal = read_journal(storage, provider, resolution)
    history.intents = journal.intents
    history.unresolved = journal.unresolved_tasks(resolved)
    return history
