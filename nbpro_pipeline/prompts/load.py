"""``load_prompt_tables``: find the files, read each, validate all rows together, summarize per file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA, REJECTED_SCHEMA
from nbpro_pipeline.prompts.references import ReferenceChecker
from nbpro_pipeline.prompts.result import PromptTableError, PromptTableResult, SourceFile
from nbpro_pipeline.prompts.sources import STAGED_SCHEMA, FileProblem, StagedFile, read_source, resolve_sources
from nbpro_pipeline.prompts.validate import FileContext, validate


def load_prompt_tables(
    sources: Sequence[str],
    *,
    reference_roots: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> PromptTableResult:
    """Read prompt tables and split their rows into accepted (``ACCEPTED_SCHEMA``) and rejected
    (``REJECTED_SCHEMA``, one reason per row and provider).

    ``sources``: local paths, globs, directories (their table files, top level, sorted) or fsspec URIs
    (``s3://...``, ``memory://...``; ``storage_options`` go to fsspec). Formats by extension: ``.csv``,
    ``.tsv``, ``.csv.gz``, ``.tsv.gz``, ``.parquet``/``.pq``. ``reference_roots``: if given, local
    reference images must lie under one of these directories.

    A file that cannot be read becomes one file-level rejected row (``row_number`` null) and the others
    are still read. Raises ``PromptTableError`` if no source was given, a glob or directory holds no
    table, or no file could be read at all.
    """
    if isinstance(sources, str):
        sources = [sources]
    refs = resolve_sources(list(sources), storage_options)
    staged: list[StagedFile] = []
    summaries: dict[str, SourceFile] = {}
    entries: list[dict[str, Any]] = []
    for position, ref in enumerate(refs):
        try:
            staged_file = read_source(ref)
        except Exception as exc:  # one bad file never stops the others
            problem = exc if isinstance(exc, FileProblem) else FileProblem("unreadable_file", _unexpected(exc))
            summaries[ref.uri] = SourceFile(uri=ref.uri, format=ref.format, sha256=None, error=problem.message)
            entries.append(_file_entry(ref.uri, problem, position))
            continue
        staged.append(staged_file)
        for row_number, message in staged_file.malformed:
            entries.append(
                {
                    "source_uri": ref.uri,
                    "row_number": row_number,
                    "prompt_id": None,
                    "provider": None,
                    "column": None,
                    "code": "row_malformed",
                    "message": message,
                    "_order": (position, row_number),
                }
            )
    if not staged:
        details = "; ".join(f"{s.uri}: {s.error}" for s in summaries.values())
        raise PromptTableError(f"no prompt table could be read: {details}")

    positions = {ref.uri: i for i, ref in enumerate(refs)}
    files = [FileContext(s.ref.uri, s.sha256, s.ref.base_dir) for s in staged]
    pa.default_memory_pool().release_unused()  # what parsing freed, before validation allocates its own
    file_index = np.repeat(np.arange(len(staged), dtype=np.int32), [s.table.num_rows for s in staged])
    # validate holds the only reference to the staged rows, so it can free them before building its output
    result = validate(_take_tables(staged), file_index, files, ReferenceChecker(reference_roots))
    for entry in result.entries:  # order across files as given, not as read
        entry["_order"] = (positions[entry["source_uri"]], entry["_order"][1])
    entries.extend(result.entries)
    entries.sort(key=lambda e: (e["_order"][0], -1 if e["_order"][1] is None else e["_order"][1]))

    per_file_entries = Counter(e["source_uri"] for e in entries)
    for k, s in enumerate(staged):
        accepted = int(result.accepted_per_file[k])
        summaries[s.ref.uri] = SourceFile(
            uri=s.ref.uri,
            format=s.format,
            sha256=s.sha256,
            rows_read=s.rows_read,
            accepted=accepted,
            rejected=s.rows_read - accepted,
            rejections=per_file_entries[s.ref.uri],
        )
    for uri in summaries:
        if summaries[uri].error is not None:
            summaries[uri] = summaries[uri].model_copy(update={"rejections": per_file_entries[uri]})

    rejected = pa.Table.from_pylist(
        [{k: v for k, v in e.items() if k != "_order"} for e in entries], schema=REJECTED_SCHEMA
    )
    accepted_table = result.accepted
    if not accepted_table.schema.equals(ACCEPTED_SCHEMA):  # pragma: no cover - a bug in validate
        raise AssertionError("accepted table drifted from ACCEPTED_SCHEMA")
    return PromptTableResult(
        accepted=accepted_table,
        rejected=rejected,
        sources=[summaries[ref.uri] for ref in refs],
        rows_read=sum(s.rows_read for s in staged),
    )


def _take_tables(staged: list[StagedFile]) -> pa.Table:
    """All staged rows as one table; each ``StagedFile`` keeps an empty table (and its ``rows_read``)."""
    table = pa.concat_tables([s.table for s in staged]) if staged else STAGED_SCHEMA.empty_table()
    for s in staged:
        s.release()
    return table


def _unexpected(exc: Exception) -> str:
    return f"cannot read the file ({type(exc).__name__}: {exc}); check that it is a well-formed table"


def _file_entry(uri: str, problem: FileProblem, position: int) -> dict[str, Any]:
    return {
        "source_uri": uri,
        "row_number": None,
        "prompt_id": None,
        "provider": None,
        "column": problem.column,
        "code": problem.code,
        "message": problem.message,
        "_order": (position, None),
    }
