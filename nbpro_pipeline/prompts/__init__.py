"""Reading and validating prompt tables (CSV, TSV, gzip CSV/TSV, Parquet; local paths, globs, directories,
fsspec URIs) into the accepted and rejected Arrow tables of ``nbpro_pipeline.models.prompt``.

    from nbpro_pipeline.prompts import load_prompt_tables

    result = load_prompt_tables(["examples/prompts"], reference_roots=["examples/prompts/refs"])
    result.accepted            # pa.Table, ACCEPTED_SCHEMA
    result.rejected_by_reason()  # {"prompt_too_long": 1}

    write_prompt_tables(["examples/prompts"], storage)  # the same, accepted rows streamed to storage

Rules, their order and the duplicate policy are documented in ``nbpro_pipeline.prompts.validate``.
"""

from nbpro_pipeline.prompts.load import check_prompt_tables, load_prompt_tables, write_prompt_tables
from nbpro_pipeline.prompts.result import (
    PromptTableError,
    PromptTableResult,
    PromptTableSummary,
    SourceFile,
    WrittenPromptTables,
)
from nbpro_pipeline.prompts.sources import FORMATS
from nbpro_pipeline.prompts.validate import REJECTION_CODES

__all__ = [
    "FORMATS",
    "REJECTION_CODES",
    "PromptTableError",
    "PromptTableResult",
    "PromptTableSummary",
    "SourceFile",
    "WrittenPromptTables",
    "check_prompt_tables",
    "load_prompt_tables",
    "write_prompt_tables",
]
