"""The end of a cell run: keep what the next run reads bounded, without waiting for the report asset.

A run that journaled submits or resumed journaled tasks prunes the cell's journal (those now have final
ledger rows);
a run that leaves a long uncovered tail (``EngineSettings.compact_tail_parts`` live parts the index
does not cover, its own included) compacts the cell, which also rewrites the index and prunes the
journal. Both take the cell's compaction lock and are skipped when another compaction holds it; both
are derived work, so a failure here is logged and never fails the run (the next one falls back or
reads a longer tail).
"""

from __future__ import annotations

import logging

from nbpro_pipeline.engine.settings import EngineSettings
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.compaction import compact_cell, prune_cell_journal
from nbpro_pipeline.storage.filesystem import Storage

log = logging.getLogger(__name__)


def after_run(
    storage: Storage,
    provider: str,
    resolution: Resolution,
    settings: EngineSettings,
    *,
    tail_parts: int,
    wrote_journal: bool,
) -> str | None:
    """Blocking: compact or prune as above; returns what was done, for the log (None: nothing)."""
    try:
        if settings.compact_tail_parts and tail_parts >= settings.compact_tail_parts:
            done = compact_cell(storage, provider, resolution, min_age_s=settings.compact_min_age_s)
            if done.busy:
                return "compaction skipped: another one holds the cell"
            kept = done.journal_entries
            return f"compacted {done.sources} parts, indexed {done.index_rows} rows, journal {kept}"
        if wrote_journal and settings.prune_journal_at_end:
            pruned = prune_cell_journal(storage, provider, resolution)
            if pruned is None:
                return "journal pruning skipped: a compaction holds the cell"
            return f"journal pruned: {pruned.entries_before} entries -> {pruned.entries_kept}"
    except Exception:  # noqa: BLE001 - derived data: the next run reads the ledger and journal as they are
        log.exception("%s|%s: end-of-run compaction failed; the next run reads a longer tail", provider, resolution)
    return None
