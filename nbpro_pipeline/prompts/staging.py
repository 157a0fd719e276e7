"""Staging: one batch of a file's parsed columns mapped to ``STAGED_SCHEMA``, columnar.

A staged table has the known columns as raw strings (null when the file lacks the column),
``reference_images`` as raw list entries, ``extra`` as a JSON object of every other column, the 1-based
``row_number`` and, for rows the reader already condemned, ``pre_code``, ``pre_column`` and
``pre_detail``. Values are not validated here (that is ``validate``'s job) except for bytes that are not
UTF-8 (``encoding_invalid``), which only the reader can see.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.prompts.problems import FileProblem

KNOWN_COLUMNS = ("prompt", "id", "aspect_ratio", "resolution", "output_format", "provider", "reference_images")
# the name every output gives the id: a table written back from a report or ledger reads as it was meant
COLUMN_ALIASES = {"prompt_id": "id"}
TEXT_COLUMNS = ("prompt", "id", "aspect_ratio", "resolution", "output_format", "provider")

STAGED_SCHEMA = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in TEXT_COLUMNS),
        pa.field("reference_images", pa.list_(pa.string())),
        pa.field("extra", pa.string()),
        pa.field("row_number", pa.int64()),
        pa.field("pre_code", pa.string()),
        pa.field("pre_column", pa.string()),
        pa.field("pre_detail", pa.string()),
    ]
)


def canonical_column_name(name: str) -> str:
    """``' Aspect Ratio '`` -> ``aspect_ratio``: BOM and outer whitespace dropped, case folded, inner runs of
    spaces or hyphens made underscores."""
    return re.sub(r"[\s\-]+", "_", name.replace("\ufeff", "").strip()).lower()


@dataclass(frozen=True)
class ColumnLayout:
    """Which file column feeds which staged column, decided once per file from its header."""

    names: tuple[str, ...]
    known: dict[str, tuple[str, int]]  # canonical key -> (name in the file, position)
    extras: tuple[tuple[str, int], ...]  # (name in ``extra``, position), in file order


def nameless_positions(names: list[str]) -> list[int]:
    """Columns without a name: kept in ``extra`` only if some row has a value there (a trailing
    delimiter makes an empty one), which only the whole file can tell."""
    return [position for position, name in enumerate(names) if not canonical_column_name(name)]


def has_values(col: pa.Array) -> bool:
    return not _all_blank(pa.chunked_array([col]))


def column_layout(names: list[str], nameless_with_values: set[int]) -> ColumnLayout:
    """Map the header to the staged columns; raises ``FileProblem`` for a header that cannot be used."""
    known: dict[str, tuple[str, int]] = {}
    extras: list[tuple[str, int]] = []
    for position, name in enumerate(names):
        key = canonical_column_name(name)
        key = COLUMN_ALIASES.get(key, key)
        if key in KNOWN_COLUMNS:
            if key in known:
                raise FileProblem(
                    "column_duplicate",
                    f"columns {known[key][0]!r} and {name!r} both mean {key!r}; keep one of them",
                    column=key,
                )
            known[key] = (name, position)
        elif key:
            extras.append((name.replace("\ufeff", "").strip(), position))
        elif position in nameless_with_values:  # a nameless column with values (a trailing delimiter has none)
            extras.append((f"column_{position + 1}", position))
    if "prompt" not in known:
        shown = ", ".join(repr(name) for name in names[:12]) or "none"
        raise FileProblem(
            "prompt_column_missing",
            f"no 'prompt' column (columns: {shown}); the first row must be a header naming a 'prompt' column"
            + _header_hint(list(names)),
            column="prompt",
        )
    return ColumnLayout(tuple(names), known, tuple(extras))


def stage(columns: list[pa.Array], row_numbers: np.ndarray, layout: ColumnLayout) -> pa.Table:
    """One batch of a file's parsed columns as a ``STAGED_SCHEMA`` table."""
    n = len(row_numbers)
    invalid: dict[int, tuple[str, str]] = {}  # row index -> (column, preview) of the first non-UTF-8 value
    arrays: dict[str, pa.ChunkedArray] = {}
    for key in TEXT_COLUMNS:
        if key not in layout.known:
            arrays[key] = pa.chunked_array([pa.nulls(n, pa.string())])
            continue
        name, position = layout.known[key]
        arrays[key] = _as_text(pa.chunked_array([columns[position]]), name, key, invalid)
    if "reference_images" in layout.known:
        name, position = layout.known["reference_images"]
        arrays["reference_images"] = _as_reference_lists(name, pa.chunked_array([columns[position]]), invalid)
    else:
        arrays["reference_images"] = pa.chunked_array([pa.nulls(n, pa.list_(pa.string()))])
    extra_text = [
        (name, _as_text(pa.chunked_array([columns[position]]), name, None, invalid)) for name, position in layout.extras
    ]
    arrays["extra"] = _json_objects(extra_text, n)
    arrays["row_number"] = pa.chunked_array([pa.array(row_numbers, pa.int64())])
    if invalid:
        codes: list[str | None] = [None] * n
        cols: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        for i, (column, preview) in invalid.items():
            codes[i], cols[i], details[i] = "encoding_invalid", column, preview
        arrays["pre_code"] = pa.chunked_array([pa.array(codes, pa.string())])
        arrays["pre_column"] = pa.chunked_array([pa.array(cols, pa.string())])
        arrays["pre_detail"] = pa.chunked_array([pa.array(details, pa.string())])
    else:
        for key in ("pre_code", "pre_column", "pre_detail"):
            arrays[key] = pa.chunked_array([pa.nulls(n, pa.string())])
    return pa.table([arrays[f.name] for f in STAGED_SCHEMA], schema=STAGED_SCHEMA)


def _header_hint(names: list[str]) -> str:
    """Why a header has no 'prompt' column, when the reason is visible: another delimiter, Excel's
    ``sep=`` line above the header."""
    if names and canonical_column_name(names[0]).startswith("sep="):
        return "; the first line is Excel's 'sep=' line: delete it so the header comes first"
    for name in names:
        for sep, label in ((";", "';'"), ("\t", "tabs"), (",", "','"), ("|", "'|'")):
            if sep in name and "prompt" in (canonical_column_name(part) for part in name.split(sep)):
                return (
                    f"; the header looks separated by {label}: .csv files must use ',' and .tsv files tabs, so "
                    "re-export the table with that delimiter or give the file the matching extension"
                )
    return ""


def _all_blank(col: pa.ChunkedArray) -> bool:
    if pa.types.is_binary(col.type) or pa.types.is_string(col.type):
        lengths = pc.binary_length(col)
        return (pc.max(lengths).as_py() or 0) == 0
    return col.null_count == len(col)


def _as_text(col: pa.ChunkedArray, name: str, key: str | None, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """The column as UTF-8 strings. Bytes that are not UTF-8 become null and mark their row in ``invalid``.

    Numbers, booleans, decimals and dates (Parquet) are cast to their text; nested values are written as
    JSON for extra columns and refused for known ones (``prompt_not_text`` / ``column_not_text``).
    """
    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = t.value_type
    if pa.types.is_string(t):
        return col
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(col, pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        col = pc.cast(col, pa.binary()) if not pa.types.is_binary(t) else col
        return _decode_utf8(col, key or name, invalid)
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(col), pa.string())])
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
    ):
        try:
            return pc.cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if key is None:  # an extra column of a nested or exotic type: keep each value, as JSON text
        values = [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in col.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])
    code = "prompt_not_text" if key == "prompt" else "column_not_text"
    raise FileProblem(
        code,
        f"column {name!r} holds {t} values, which cannot be read as text; store it as a string column",
        column=key,
    )


def _decode_utf8(col: pa.ChunkedArray, name: str, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """Binary -> string, vectorized: one validating cast per chunk; only a failing chunk is bisected
    (a validating cast per half), so k bad values cost about k·log(n) casts, never a Python loop per row."""
    chunks = []
    offset = 0
    for chunk in col.chunks:
        try:
            chunks.append(chunk.cast(pa.string()))
        except pa.ArrowInvalid:
            bad = _invalid_utf8_positions(chunk)
            mask = np.zeros(len(chunk), dtype=bool)
            mask[bad] = True
            raw = chunk.take(pa.array(bad, pa.int64())).to_pylist()
            for i, value in zip(bad, raw, strict=True):
                preview = value.decode("utf-8", errors="replace")
                preview = preview if len(preview) <= 60 else preview[:57] + "..."
                invalid.setdefault(offset + i, (name, preview))
            nulled = pc.if_else(pa.array(mask), pa.scalar(None, pa.binary()), chunk)
            chunks.append(pc.cast(nulled, pa.string(), safe=False))
        offset += len(chunk)
    return pa.chunked_array(chunks, type=pa.string())


def _invalid_utf8_positions(arr: pa.Array, start: int = 0) -> list[int]:
    try:
        arr.cast(pa.string())
        return []
    except pa.ArrowInvalid:
        pass
    if len(arr) <= 16:
        out = []
        for i, value in enumerate(arr.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                out.append(start + i)
        return out
    mid = len(arr) // 2
    return _invalid_utf8_positions(arr.slice(0, mid), start) + _invalid_utf8_positions(arr.slice(mid), start + mid)


def _as_reference_lists(name: str, col: pa.ChunkedArray, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """``a.png | https://x/b.png`` (text) or a list column -> list<string> of raw entries (null: none)."""
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t):
        try:
            return pc.cast(col, pa.list_(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FileProblem(
                "column_not_text",
                f"column {name!r} is a list of {t.value_type}; make it a list of strings (paths or URLs)",
                column="reference_images",
            ) from exc
    text = _as_text(col, name, "reference_images", invalid)
    trimmed = pc.utf8_trim_whitespace(text)
    blank = pc.fill_null(pc.equal(trimmed, ""), True)
    trimmed = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
    return pc.split_pattern(trimmed, "|")


def _json_string_values(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each value as a JSON string literal (``"..."``), null as ``null``; identical to ``json.dumps``."""
    s = pc.replace_substring(col, "\\", "\\\\")
    s = pc.replace_substring(s, '"', '\\"')
    s = pc.replace_substring(s, "\n", "\\n")
    s = pc.replace_substring(s, "\r", "\\r")
    s = pc.replace_substring(s, "\t", "\\t")
    quoted = pc.binary_join_element_wise('"', s, '"', "")
    rare = pc.fill_null(pc.match_substring_regex(col, r"[\x00-\x08\x0b\x0c\x0e-\x1f]"), False)
    if pc.any(rare).as_py():  # other control characters: let json do it, for those rows only
        positions = pc.indices_nonzero(rare).to_numpy()
        values = quoted.to_pylist()
        originals = col.take(pa.array(positions)).to_pylist()
        for i, original in zip(positions, originals, strict=True):
            values[i] = json.dumps(original, ensure_ascii=False)
        quoted = pa.chunked_array([pa.array(values, pa.string())])
    return pc.fill_null(quoted, "null")


def _json_objects(columns: list[tuple[str, pa.ChunkedArray]], n: int) -> pa.ChunkedArray:
    if not columns:
        return pa.chunked_array([pa.repeat("{}", n)]) if n else pa.chunked_array([], type=pa.string())
    parts: list[Any] = []
    seen: dict[str, int] = {}
    for i, (name, col) in enumerate(columns):
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}_{seen[name]}"
        parts.append(("{" if i == 0 else ",") + json.dumps(key, ensure_ascii=False) + ":")
        parts.append(_json_string_values(col))
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")
