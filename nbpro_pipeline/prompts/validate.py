"""The row rules, vectorized: one batch of staged rows in, accepted rows (``SPILL_SCHEMA``: the
``ACCEPTED_SCHEMA`` columns a batch knows) and ``REJECTED_SCHEMA`` rows out.

Every rule is a boolean mask computed with pyarrow.compute over the batch. Each row gets at most
one reason per provider: the first failing rule in ``REJECTION_CODES`` order. Rules that do not depend on
the provider (``GLOBAL_CODES``) come first, so a row that breaks one of them has exactly one rejected
entry, with ``provider`` null. Otherwise each provider the row can go to (both, or the one its
``provider`` column names) is checked on its own: the row is accepted if at least one passes, and each
provider that fails gets one entry naming it. When every provider fails with the same code, the entries
merge into one with ``provider`` null.

Python loops run only over rows with reference images, rows with a rejection, rows sharing an id, and
the sha256 of each accepted prompt (pyarrow has no hash kernel).

Duplicates span batches and files, so they are decided by ``duplicates`` once every file was read, from
the keys each batch returns (``CandidateKeys``), over all files of one load, in the order the files and
rows were given:

* ``duplicate_row``: the same ``prompt_id`` with the same prompt and parameters (aspect ratio, resolution,
  output format, provider, references) as an earlier row: the first is kept, every later one is rejected,
  naming the first, so the image is generated (and paid for) once. Extra columns of the later rows are
  not kept. Rows without an ``id`` get an id derived from exactly that content, so identical rows
  without ids are duplicates too.
* ``duplicate_id_conflict``: one ``id`` on rows whose prompt or parameters differ: *every* row of that id
  is rejected, each naming the others. Picking one would generate an image nobody can be sure was meant,
  under an id that then means two things in the ledger; fixing the ids in the table is cheap.

Only rows that pass every other rule take part, so a broken row never blocks or shadows a good one.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution
from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA
from nbpro_pipeline.prompts.references import ReferenceChecker
from nbpro_pipeline.providers.registry import PROVIDERS

# What a batch knows of an accepted row: the source file's columns are added when the file was read to its
# end (its sha256 is known only then).
SOURCE_COLUMNS = ("source_uri", "source_sha256")
SPILL_SCHEMA = pa.schema([f for f in ACCEPTED_SCHEMA if f.name not in SOURCE_COLUMNS])

MAX_ID_CHARS = 200

# Rules in priority order; the reference rule reports one of REFERENCE_CODES.
REFERENCE_CODES = (
    "reference_url_scheme",
    "reference_url_invalid",
    "reference_outside_roots",
    "reference_unreadable",
    "reference_too_large",
    "reference_not_image",
)
GLOBAL_RULES = (
    "encoding_invalid",
    "id_invalid",
    "prompt_empty",
    "prompt_control_chars",
    "provider_unknown",
    "aspect_ratio_unknown",
    "resolution_unknown",
    "output_format_unknown",
    "reference",
)
PROVIDER_RULES = (
    "prompt_too_long",
    "aspect_ratio_unsupported",
    "output_format_unsupported",
    "too_many_references",
    "reference_needs_url",
)
DUPLICATE_CODES = ("duplicate_row", "duplicate_id_conflict")
FILE_CODES = (  # row_number null: the whole file
    "unreadable_file",
    "table_empty",
    "format_unknown",
    "prompt_column_missing",
    "column_duplicate",
    "prompt_not_text",
    "column_not_text",
)
ROW_CODES = ("row_malformed",)  # found by the reader: a CSV row with the wrong number of fields
GLOBAL_CODES = (*GLOBAL_RULES[:-1], *REFERENCE_CODES, *DUPLICATE_CODES, *ROW_CODES)
REJECTION_CODES = (*FILE_CODES, *ROW_CODES, *GLOBAL_RULES[:-1], *REFERENCE_CODES, *PROVIDER_RULES, *DUPLICATE_CODES)

RULE_COLUMN = {
    "id_invalid": "id",
    "prompt_empty": "prompt",
    "prompt_control_chars": "prompt",
    "provider_unknown": "provider",
    "aspect_ratio_unknown": "aspect_ratio",
    "resolution_unknown": "resolution",
    "output_format_unknown": "output_format",
    "reference": "reference_images",
    "prompt_too_long": "prompt",
    "aspect_ratio_unsupported": "aspect_ratio",
    "output_format_unsupported": "output_format",
    "too_many_references": "reference_images",
    "reference_needs_url": "reference_images",
}
_SEP, _REF_SEP = "\x1f", "\x1e"  # field and reference separators of the canonical string behind derived ids
# controls, and the invisible format characters (bidi overrides, zero-width spaces, BOM) that make one id
# display like another, and line separators
_CONTROL = r"[\x00-\x1f\x7f\x{80}-\x{9f}\p{Cf}\p{Zl}\p{Zp}]"
_HASH_SLICE = 1 << 16  # rows whose derived ids are built and hashed at a time
_PROMPT_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # tabs and newlines are fine in a prompt


@dataclass(frozen=True)
class FileContext:
    uri: str
    sha256: str | None  # of the whole file: known only once it was read to its end
    base_dir: str | None  # relative reference paths resolve here; None for remote tables


@dataclass
class CandidateKeys:
    """What the duplicate rules need of each accepted row of a batch (aligned with ``Validated.accepted``):
    8 bytes of the sha256 of its ``prompt_id`` (rows sharing it are compared by their ids, exactly) and
    of its content (the canonical string a derived id hashes), and whether the id was given."""

    id_key: np.ndarray  # uint64
    content_key: np.ndarray  # uint64
    id_given: np.ndarray  # bool


@dataclass
class Validated:
    accepted: pa.Table  # SPILL_SCHEMA
    entries: list[dict[str, Any]]  # REJECTED_SCHEMA rows (with a private "_order" sort key)
    keys: CandidateKeys


def _mask(arr: Any) -> np.ndarray:
    """A (chunked) boolean array as numpy, null as False."""
    filled = pc.fill_null(arr, False)
    if isinstance(filled, pa.ChunkedArray):
        if filled.num_chunks == 0:
            return np.zeros(0, dtype=bool)
        filled = filled.combine_chunks()
    return filled.to_numpy(zero_copy_only=False)


def _blank(arr: Any) -> np.ndarray:
    return _mask(pc.or_kleene(pc.is_null(arr), pc.equal(arr, "")))


def _set_null(arr: Any, where: np.ndarray) -> Any:
    return pc.if_else(pa.array(where), pa.scalar(None, pa.string()), arr)


def _trimmed(values: pa.ChunkedArray, batch: int = 1 << 16) -> pa.ChunkedArray:
    """``utf8_trim_whitespace`` that shares the input's memory where trimming changes nothing (the usual
    case): a big text column is then not held twice, once as read and once trimmed."""
    out = []
    for chunk in values.chunks:
        for start in range(0, len(chunk), batch):
            part = chunk.slice(start, batch)
            trimmed = pc.utf8_trim_whitespace(part)
            same = pc.equal(pc.binary_length(trimmed), pc.binary_length(part))
            out.append(part if pc.all(pc.fill_null(same, True)).as_py() else trimmed)
    return pa.chunked_array(out, type=values.type)


def _values_of(enum: Any) -> pa.Array:
    return pa.array([m.value for m in enum], pa.string())


def sha256_prefixes(values: Any, nbytes: int = 8) -> np.ndarray:
    """The first ``nbytes`` of the sha256 of every value (null hashes like empty), as an (n, nbytes) uint8
    array (one C call per value over the Arrow buffer, as in ``sha256_column``)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [_digests(chunk, nbytes) for chunk in chunks if len(chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, nbytes), dtype=np.uint8)


def _digests(values: pa.Array, nbytes: int) -> np.ndarray:
    if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
        values = values.cast(pa.binary())
    n = len(values)
    if n == 0:
        return np.zeros((0, nbytes), dtype=np.uint8)
    sha = hashlib.sha256
    _, offsets_buf, data_buf = values.buffers()[:3]
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=n + 1, offset=values.offset * 4)
    data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    bounds = zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    digests = [sha(data[a:b]).digest()[:nbytes] for a, b in bounds]
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(n, nbytes)


def _hex_strings(digests: np.ndarray, prefix: str = "") -> pa.StringArray:
    """``prefix + hex`` of each row of an (n, k) uint8 array, built as one Arrow buffer."""
    n = len(digests)
    text = np.frombuffer(digests.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 2 * digests.shape[1])
    if prefix:
        head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
        text = np.concatenate([np.broadcast_to(head, (n, len(head))), text], axis=1)
    width = text.shape[1]
    out_offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_offsets), pa.py_buffer(np.ascontiguousarray(text).tobytes()))


def sha256_column(values: Any, batch: int = 1 << 16) -> pa.ChunkedArray:
    """``sha256(value).hexdigest()`` for every value of a string or binary array (null hashes like empty).
    pyarrow has no hash kernel, so the loop is one C call per value over slices of the Arrow buffer (no
    Python object per value besides the digest), and the hex text is built per batch."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = [
        _hex_strings(_digests(chunk.slice(start, batch), 32))
        for chunk in chunks
        for start in range(0, len(chunk), batch)
    ]
    return pa.chunked_array(out, type=pa.string())


@dataclass
class _Normalized:
    """The batch's columns as the rules read them: trimmed, case-folded, defaults filled in."""

    n: int
    prompt: Any
    prompt_len: np.ndarray
    id_trim: Any
    id_given: np.ndarray
    id_flags: tuple[np.ndarray, np.ndarray, np.ndarray]  # only whitespace, control characters, too long
    aspect: Any
    resolution: Any
    resolution_blank: np.ndarray
    output_format: Any
    provider: Any
    provider_blank: np.ndarray


@dataclass
class _References:
    """Rows with references still in the running, checked: counts, local files, issues, resolved paths."""

    rows: np.ndarray
    count: np.ndarray
    has_local: np.ndarray
    issue: dict[int, tuple[str, str]]
    first_local: dict[int, str]
    resolved: list[tuple[str, ...]]
    keys: dict[int, str]


@dataclass
class _Verdicts:
    """Per provider (the registry's, by name): which rows target it, the first rule each fails there, and
    which rows it accepts."""

    target: dict[str, np.ndarray]
    rule: dict[str, np.ndarray]
    eligible: dict[str, np.ndarray]
    accepted: np.ndarray


def validate(table: pa.Table, file: FileContext, checker: ReferenceChecker) -> Validated:
    """One batch of one file's staged rows; duplicates are left to ``duplicates`` (see the module doc)."""
    norm = _normalize(table)
    global_masks, global_rule = _global_rules(table, norm)
    refs = _check_references(table, global_rule, file, checker)
    verdicts = _provider_rules(norm, refs, global_rule == -1)
    prompt_id, usable_id, keys = _prompt_ids(norm, refs, verdicts, global_rule == -1, global_masks["id_invalid"])
    failing = (global_rule != -1) | np.logical_or.reduce([r != -1 for r in verdicts.rule.values()])
    facts = _RowFacts(file, norm, refs, verdicts, global_rule, prompt_id, usable_id)
    entries = _entries(np.nonzero(failing)[0], table, facts)
    columns = _accepted_columns(table, norm, refs, verdicts, prompt_id)
    # from here on only ``columns`` holds the full-length arrays, so each is freed once filtered (the staged
    # table too, when the caller keeps no reference): the accepted copy never coexists with all of them
    keep = pa.array(verdicts.accepted)
    del table, norm, prompt_id, facts
    return Validated(accepted=_accepted_table(columns, keep), entries=entries, keys=keys)


def _normalize(table: pa.Table) -> _Normalized:
    col = table.column
    prompt = _trimmed(col("prompt"))
    id_raw = col("id")
    id_trim = pc.utf8_trim_whitespace(id_raw)
    id_given = ~_blank(id_raw)
    id_flags = (
        id_given & _blank(id_trim),
        id_given & _mask(pc.match_substring_regex(id_trim, _CONTROL)),
        id_given & (pc.fill_null(pc.utf8_length(id_trim), 0).to_numpy() > MAX_ID_CHARS),
    )
    aspect = pc.utf8_lower(pc.replace_substring(pc.utf8_trim_whitespace(col("aspect_ratio")), " ", ""))
    aspect = pc.if_else(pa.array(_blank(aspect)), AspectRatio.R1_1.value, aspect)
    resolution = pc.utf8_upper(pc.utf8_trim_whitespace(col("resolution")))
    resolution_blank = _blank(resolution)
    output_format = pc.utf8_lower(pc.utf8_trim_whitespace(col("output_format")))
    output_format = pc.if_else(pa.array(_blank(output_format)), OutputFormat.PNG.value, output_format)
    output_format = pc.if_else(pc.equal(output_format, "jpeg"), OutputFormat.JPG.value, output_format)
    provider = pc.utf8_lower(pc.utf8_trim_whitespace(col("provider")))
    provider_blank = _blank(provider)
    return _Normalized(
        n=table.num_rows,
        prompt=prompt,
        prompt_len=pc.fill_null(pc.utf8_length(prompt), 0).to_numpy(),
        id_trim=id_trim,
        id_given=id_given,
        id_flags=id_flags,
        aspect=aspect,
        resolution=_set_null(resolution, resolution_blank),
        resolution_blank=resolution_blank,
        output_format=output_format,
        provider=_set_null(provider, provider_blank),
        provider_blank=provider_blank,
    )


def _global_rules(table: pa.Table, norm: _Normalized) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rules that hold for every provider, and per row the first it breaks (-1: none)."""
    names = pa.array(PROVIDERS.names(), pa.string())
    masks = {
        "encoding_invalid": ~_mask(pc.is_null(table.column("pre_code"))),
        "id_invalid": np.logical_or.reduce(norm.id_flags),
        "prompt_empty": norm.prompt_len == 0,
        "prompt_control_chars": _mask(pc.match_substring_regex(norm.prompt, _PROMPT_CONTROL)),
        "provider_unknown": ~norm.provider_blank & ~_mask(pc.is_in(norm.provider, value_set=names)),
        "aspect_ratio_unknown": ~_mask(pc.is_in(norm.aspect, value_set=_values_of(AspectRatio))),
        "resolution_unknown": ~norm.resolution_blank
        & ~_mask(pc.is_in(norm.resolution, value_set=_values_of(Resolution))),
        "output_format_unknown": ~_mask(pc.is_in(norm.output_format, value_set=_values_of(OutputFormat))),
    }
    rule = np.full(norm.n, -1, dtype=np.int8)
    for k, name in enumerate(GLOBAL_RULES[:-1]):
        rule[(rule == -1) & masks[name]] = k
    return masks, rule


def _check_references(
    table: pa.Table, global_rule: np.ndarray, file: FileContext, checker: ReferenceChecker
) -> _References:
    """Only rows that have references and are still in the running; a row whose references fail is
    marked with the reference rule in ``global_rule``."""
    n = table.num_rows
    count = pc.fill_null(pc.list_value_length(table.column("reference_images")), 0).to_numpy()
    refs = _References(np.nonzero((count > 0) & (global_rule == -1))[0], np.zeros(n, dtype=np.int64),
                       np.zeros(n, dtype=bool), {}, {}, [], {})  # fmt: skip
    if not len(refs.rows):
        return refs
    raw_lists = table.column("reference_images").take(pa.array(refs.rows)).to_pylist()
    reference_rule = GLOBAL_RULES.index("reference")
    for i, entries in zip(refs.rows.tolist(), raw_lists, strict=True):
        checked = checker.check_row(entries or [], file.base_dir, file.uri)
        refs.resolved.append(checked.resolved)
        refs.count[i] = len(checked.resolved)
        refs.keys[i] = _REF_SEP.join(checked.keys)
        if checked.local:
            refs.has_local[i] = True
            refs.first_local[i] = checked.local[0]
        if checked.issue:
            refs.issue[i] = (checked.issue.code, checked.issue.message)
            global_rule[i] = reference_rule
    return refs


def _provider_rules(norm: _Normalized, refs: _References, alive: np.ndarray) -> _Verdicts:
    """Each registered provider's limits over the rows still alive that may go to it."""
    is_auto = _mask(pc.equal(norm.aspect, AspectRatio.AUTO.value))
    none = np.zeros(norm.n, dtype=bool)
    target, rules, eligible = {}, {}, {}
    for entry in PROVIDERS:
        name, lim = entry.name, entry.traits.limits
        target[name] = norm.provider_blank | _mask(pc.equal(norm.provider, name))
        unsupported_format = ~_mask(pc.is_in(norm.output_format, value_set=_values_of(lim.output_formats)))
        masks = {
            "prompt_too_long": norm.prompt_len > lim.max_prompt_chars,
            "aspect_ratio_unsupported": none if lim.aspect_auto else is_auto,
            "output_format_unsupported": unsupported_format,
            "too_many_references": refs.count > lim.max_references,
            "reference_needs_url": refs.has_local if lim.references == "url" else none,
        }
        rule = np.full(norm.n, -1, dtype=np.int8)
        live = alive & target[name]
        for k, code in enumerate(PROVIDER_RULES):
            rule[live & (rule == -1) & masks[code]] = k
        rules[name] = rule
        eligible[name] = live & (rule == -1)
    accepted = np.logical_or.reduce(list(eligible.values())) if eligible else np.zeros(norm.n, dtype=bool)
    return _Verdicts(target, rules, eligible, accepted)


def _prompt_ids(
    norm: _Normalized, refs: _References, verdicts: _Verdicts, alive: np.ndarray, id_invalid: np.ndarray
) -> tuple[Any, np.ndarray, CandidateKeys]:
    """Every row's prompt id (its own, else one derived from its content) and the duplicate keys of the
    accepted ones. One sha256 of the canonical content per row that needs it: rows without an id take
    their id from it, accepted rows keep 8 bytes of it to tell a duplicate from an id conflict."""
    n, accepted = norm.n, verdicts.accepted
    ref_key_arr = np.empty(n, dtype=object)
    for i, key in refs.keys.items():
        ref_key_arr[i] = key
    ref_key_col = pa.array(ref_key_arr, pa.string()) if refs.keys else None
    content = (norm.prompt, norm.aspect, norm.resolution, norm.output_format, norm.provider, ref_key_col)
    derive = alive & ~norm.id_given
    hashed = derive | accepted
    content_digest = np.zeros((n, 8), dtype=np.uint8)
    picks = np.nonzero(hashed)[0]
    for start in range(0, len(picks), _HASH_SLICE):  # in slices: the canonical strings are the biggest temporary
        part = picks[start : start + _HASH_SLICE]
        content_digest[part] = sha256_prefixes(_canonical(content, pa.array(part)), 8)
    derived = pa.nulls(n, pa.string())
    if derive.any():
        derived = pc.replace_with_mask(derived, pa.array(derive), _hex_strings(content_digest[derive], prefix="p-"))
    usable_id = norm.id_given & ~id_invalid
    prompt_id = pc.if_else(pa.array(usable_id), norm.id_trim, derived)
    keys = CandidateKeys(
        id_key=_id_keys(prompt_id, accepted, norm.id_given, content_digest),
        content_key=content_digest[accepted].view("<u8").reshape(-1),
        id_given=norm.id_given[accepted],
    )
    return prompt_id, usable_id, keys


def _accepted_columns(
    table: pa.Table, norm: _Normalized, refs: _References, verdicts: _Verdicts, prompt_id: Any
) -> dict[str, Any]:
    """The full-length columns of the accepted table, before they are filtered to the accepted rows."""
    lengths = np.zeros(norm.n, dtype=np.int32)
    lengths[refs.rows] = [len(r) for r in refs.resolved]
    offsets = np.zeros(norm.n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = [path for resolved in refs.resolved for path in resolved]
    return {
        "prompt_id": prompt_id,
        "prompt": norm.prompt,
        "aspect_ratio": norm.aspect,
        "resolution": norm.resolution,
        "output_format": norm.output_format,
        "provider": norm.provider,
        "reference_images": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.string())),
        "row_number": table.column("row_number"),
        "eligible_providers": _eligible_lists(verdicts.eligible, norm.n),
        "extra": table.column("extra"),
    }


def _eligible_lists(eligible: dict[str, np.ndarray], n: int) -> pa.ListArray:
    """Per row, the names of the providers that accept it, in the registry's order."""
    names = list(eligible)
    matrix = np.stack([eligible[p] for p in names], axis=1) if names else np.zeros((n, 0), dtype=bool)
    rows, cols = np.nonzero(matrix)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    values = pa.array(np.array(names, dtype=object)[cols] if len(cols) else [], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


_DERIVED_ID = r"^p-[0-9a-f]{16}$"


def _id_keys(prompt_id: Any, accepted: np.ndarray, id_given: np.ndarray, content_digest: np.ndarray) -> np.ndarray:
    """8 bytes per accepted row that only its id string decides: the hex of an id shaped like a derived
    one (``p-`` + 16 hex digits; a derived id's key is thus its content digest, with no hashing), else
    the sha256 of the id. Equal ids have equal keys; unequal ids rarely do, and are told apart later."""
    keys = content_digest.copy()
    given = np.nonzero(accepted & id_given)[0]
    if len(given):
        ids = prompt_id.take(pa.array(given))
        shaped = _mask(pc.match_substring_regex(ids, _DERIVED_ID))
        if (~shaped).any():
            keys[given[~shaped]] = sha256_prefixes(ids.filter(pa.array(~shaped)), 8)
        for i, pid in zip(given[shaped].tolist(), ids.filter(pa.array(shaped)).to_pylist(), strict=True):
            keys[i] = np.frombuffer(bytes.fromhex(pid[2:]), dtype=np.uint8)
    return keys[accepted].view("<u8").reshape(-1)


def _canonical(content: tuple[Any, ...], select: pa.Array) -> Any:
    """What a derived id hashes (and duplicates compare), for the selected rows (mask or indices);
    ``content``: prompt, aspect ratio, resolution, output format, provider and reference keys (or None)."""
    prompt, aspect, resolution, output_format, provider, ref_key_col = content
    pick = (lambda a: a.filter(select)) if pa.types.is_boolean(select.type) else (lambda a: a.take(select))
    return pc.binary_join_element_wise(
        pick(prompt),
        pick(aspect),
        pc.fill_null(pick(resolution), ""),
        pick(output_format),
        pc.fill_null(pick(provider), ""),
        pc.fill_null(pick(ref_key_col), "") if ref_key_col is not None else "",
        _SEP,
    )


def _accepted_table(columns: dict[str, Any], keep: pa.Array) -> pa.Table:
    """The accepted rows of ``columns`` (emptied on the way: each full column is dropped once filtered)."""
    kept = {}
    for name in list(columns):
        kept[name] = columns.pop(name).filter(keep)
    kept["prompt_sha256"] = sha256_column(kept["prompt"])
    return pa.Table.from_arrays([kept[f.name] for f in SPILL_SCHEMA], schema=SPILL_SCHEMA)


@dataclass
class _RowFacts:
    """What the rejected entries of a batch are written from."""

    file: FileContext
    norm: _Normalized
    refs: _References
    verdicts: _Verdicts
    global_rule: np.ndarray
    prompt_id: Any
    usable_id: np.ndarray


def _entries(rows: np.ndarray, table: pa.Table, facts: _RowFacts) -> list[dict[str, Any]]:
    """One rejected entry per failing (row, provider), merged when every provider fails the same way."""
    if not len(rows):
        return []
    take = pa.array(rows)
    raw_rows = (
        table.select(
            ["id", "prompt", "aspect_ratio", "resolution", "output_format", "provider", "row_number"]
            + ["pre_column", "pre_detail"]
        )
        .take(take)
        .to_pylist()
    )
    ids = facts.prompt_id.take(take).to_pylist()
    restricted = facts.norm.provider.take(take).to_pylist()
    out: list[dict[str, Any]] = []
    for k, i in enumerate(rows.tolist()):
        out.extend(_row_entries(i, raw_rows[k], ids[k], restricted[k] is not None, facts))
    return out


def _row_entries(i: int, values: dict[str, Any], prompt_id: str, restricted: bool, f: _RowFacts) -> list[dict]:
    base = {
        "source_uri": f.file.uri,
        "row_number": values["row_number"],
        "prompt_id": prompt_id if (f.usable_id[i] or f.global_rule[i] == -1) else None,
        "_order": (0, values["row_number"]),
    }

    def entry(code: str, column: str | None, message: str, scope: str | None) -> dict[str, Any]:
        return {**base, "provider": scope, "column": column, "code": code, "message": message}

    if f.global_rule[i] != -1:
        return [entry(*_global_entry(GLOBAL_RULES[f.global_rule[i]], values, f, i), None)]
    v = f.verdicts
    failed = [p for p in v.rule if v.target[p][i] and v.rule[p][i] != -1]
    codes = {PROVIDER_RULES[v.rule[p][i]] for p in failed}
    context = {
        "prompt_len": int(f.norm.prompt_len[i]),
        "ref_count": int(f.refs.count[i]),
        "first_local": f.refs.first_local.get(i),
        "restricted": restricted,
        "accepted": bool(v.accepted[i]),
    }
    if not v.accepted[i] and len(failed) > 1 and len(codes) == 1:
        rule = codes.pop()
        return [entry(rule, RULE_COLUMN[rule], _provider_message(rule, failed, context), None)]
    out = []
    for p in failed:
        rule = PROVIDER_RULES[v.rule[p][i]]
        out.append(entry(rule, RULE_COLUMN[rule], _provider_message(rule, [p], context), p))
    return out


def _global_entry(rule: str, values: dict[str, Any], f: _RowFacts, i: int) -> tuple[str, str | None, str]:
    """(code, column, message) of a row that breaks a rule that holds for every provider."""
    if rule == "encoding_invalid":
        column = values["pre_column"]
        return (
            rule,
            column,
            f"the {column!r} value is not valid UTF-8 (it reads as {values['pre_detail']!r}); save the table as "
            "UTF-8 (in Excel: 'CSV UTF-8') and load it again",
        )
    if rule == "reference":
        code, message = f.refs.issue[i]
        return code, "reference_images", message
    return rule, RULE_COLUMN[rule], _global_message(rule, values, f.norm.id_flags, i)


def _allowed(enum: Any) -> str:
    return ", ".join(m.value for m in enum)


_CONTROL_CHARS = frozenset(chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))


def _invisible_in_id(text: str) -> str:
    hits = ((k, c) for k, c in enumerate(text) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"))
    at, ch = next(hits, (0, "\0"))
    kind = "control character" if unicodedata.category(ch) == "Cc" else "invisible formatting character"
    return (
        f"the id contains the {kind} U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}) at character {at + 1} "
        "(such characters can make one id look like another); retype the id with printable characters only"
    )


def _global_message(rule: str, values: dict[str, Any], id_flags: tuple[np.ndarray, ...], i: int) -> str:
    only_space, control, long = id_flags
    if rule == "id_invalid":
        if only_space[i]:
            return "the id is only whitespace; leave the cell empty to derive an id from the prompt, or write an id"
        if control[i]:
            return _invisible_in_id(values["id"])
        if long[i]:
            return f"the id has {len(values['id'].strip())} characters; use at most {MAX_ID_CHARS}"
    if rule == "prompt_control_chars":
        text = values["prompt"]
        at, ch = next((k, c) for k, c in enumerate(text) if c in _CONTROL_CHARS)
        return (
            f"the prompt contains the control character U+{ord(ch):04X} at character {at + 1} (invisible, and "
            "refused by some APIs); remove it (tabs and newlines are fine)"
        )
    if rule == "prompt_empty":
        return "the prompt is empty; write what the image should show, or delete the row"
    if rule == "provider_unknown":
        return (
            f"provider {values['provider']!r} is not one of {', '.join(PROVIDERS.names())}; use one of them, or "
            "leave it empty to run the row on every provider"
        )
    if rule == "aspect_ratio_unknown":
        return (
            f"aspect ratio {values['aspect_ratio']!r} is not one of {_allowed(AspectRatio)}; use one of them, or "
            "leave it empty for 1:1"
        )
    if rule == "resolution_unknown":
        return (
            f"resolution {values['resolution']!r} is not one of {_allowed(Resolution)}; use one of them, or leave it "
            "empty to run the row at every resolution"
        )
    if rule == "output_format_unknown":
        return (
            f"output format {values['output_format']!r} is not one of png, jpg (or jpeg); use one of them, or "
            "leave it empty for png"
        )
    raise AssertionError(rule)


def _display(names: list[str]) -> str:
    return " and ".join(PROVIDERS.traits(p).display_name for p in names)


def _supporting(test: Any) -> list[str]:
    """The registered providers whose limits pass ``test``."""
    return [e.name for e in PROVIDERS if test(e.traits.limits)]


def _provider_message(rule: str, providers: list[str], ctx: dict[str, Any]) -> str:
    names = _display(providers)
    # the row goes to other providers: fixing it is what running it on these takes
    rest = f" to run it on {names} too" if ctx["accepted"] and not ctx["restricted"] else ""
    limits = [PROVIDERS.traits(p).limits for p in providers]
    if rule == "prompt_too_long":
        n = ctx["prompt_len"]
        caps = " and ".join(f"{lim.display_name} accepts at most {lim.max_prompt_chars}" for lim in limits)
        cut = min(n - lim.max_prompt_chars for lim in limits)
        return f"the prompt has {n} characters; {caps}; shorten it by at least {cut}{rest}"
    if rule == "aspect_ratio_unsupported":
        can = _supporting(lambda lim: lim.aspect_auto)
        where = f"exists only on {_display(can)}" if can else "is accepted by no provider"
        other = f" (or set provider to {can[0]})" if can else ""
        return f"aspect ratio 'auto' {where}; name a ratio such as 1:1 or 16:9" + (rest or other)
    if rule == "output_format_unsupported":
        allowed = ", ".join(sorted({fmt.value for lim in limits for fmt in lim.output_formats}))
        can = _supporting(lambda lim: OutputFormat.JPG in lim.output_formats)
        other = f" (or set provider to {can[0]} for jpg)" if can else ""
        return f"{names} answers only in {allowed}; use {allowed}" + (rest or other)
    if rule == "too_many_references":
        k = ctx["ref_count"]
        caps = " and ".join(f"{lim.display_name} accepts at most {lim.max_references}" for lim in limits)
        drop = min(k - lim.max_references for lim in limits)
        return f"{k} reference images; {caps}; drop {drop} or more{rest}"
    if rule == "reference_needs_url":
        uploaders = _display(_supporting(lambda lim: lim.references == "upload"))
        hint = f" ({uploaders} uploads local files itself)" if uploaders else ""
        return (
            f"reference {ctx['first_local']!r} is a file, not a URL, and {names} cannot receive uploads; host it at "
            f"an http(s) URL{rest}{hint}"
        )
    raise AssertionError(rule)
