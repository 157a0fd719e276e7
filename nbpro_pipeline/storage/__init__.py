"""Images, journal, ledger and reports under one storage root on any fsspec filesystem."""

from nbpro_pipeline.storage.compaction import CompactionResult, compact_ledger
from nbpro_pipeline.storage.day_spend import spent_on
from nbpro_pipeline.storage.filesystem import Storage, cell_dir, safe_component
from nbpro_pipeline.storage.journal import Journal, JournalState, read_journal
from nbpro_pipeline.storage.ledger import LedgerWriter, read_ledger
from nbpro_pipeline.storage.ledger_id import ledger_id
from nbpro_pipeline.storage.tables import read_table, table_path, write_table

__all__ = [
    "CompactionResult",
    "compact_ledger",
    "spent_on",
    "Journal",
    "JournalState",
    "LedgerWriter",
    "Storage",
    "cell_dir",
    "ledger_id",
    "read_journal",
    "read_ledger",
    "read_table",
    "safe_component",
    "table_path",
    "write_table",
]
