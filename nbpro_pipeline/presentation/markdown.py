"""Table and provider text in metadata markdown, made inert: one place says how.

Ids, prompts, file names and provider messages come from people and servers we do not control; in the
Dagster UI (GFM, links and images allowed) an id like ``x](…) ![b](http://host/beacon.png)`` would become
an image every viewer's browser fetches, and a ``|`` would shift a table's columns. ``text`` escapes every
ASCII punctuation character (CommonMark renders ``\\`` + punctuation as that character, whatever it is),
which also breaks the GFM autolink literals (``http://``, ``www.``, ``a@b``); ``code`` puts a value in a
code span, where nothing is markup. Line breaks and invisible characters (controls, bidi overrides,
zero-width spaces) are shown as ``U+XXXX`` so a value cannot break a line or masquerade as another.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LONGEST_TICKS = re.compile("`+")


def _visible(value: object, limit: int | None) -> str:
    """``str(value)`` on one line, every control or format character spelled ``U+XXXX``, cut at ``limit``."""
    raw = "" if value is None else str(value)
    if limit is not None and len(raw) > limit:
        raw = raw[: limit - 1] + "…"
    out = []
    for ch in raw:
        if ch in "\t\n\r":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"U+{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def text(value: object, *, limit: int | None = None) -> str:
    """``value`` as literal text, safe in a paragraph, a list item, a table cell or an image's alt text."""
    return _PUNCTUATION.sub(r"\\\1", _visible(value, limit))


def code(value: object, *, limit: int | None = None) -> str:
    """``value`` as an inline code span (for ids in prose; in table cells use ``text``, which escapes pipes)."""
    body = _visible(value, limit)
    ticks = "`" * (max((len(m) for m in _LONGEST_TICKS.findall(body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{ticks}{pad}{body}{pad}{ticks}"


def code_block(lines: Iterable[str]) -> str:
    """Lines as a fenced code block whose fence no line can close (one backtick longer than any run)."""
    body = [_visible(line, None) for line in lines]
    longest = max((len(m) for line in body for m in _LONGEST_TICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence, *body, fence])


def row(cells: Sequence[str]) -> str:
    """A table row of cells already made safe (``text`` for data; our own ``**bold**`` as is)."""
    return "| " + " | ".join(cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A GFM table of cells made safe by the caller (``text`` for anything from a table or a provider;
    our own labels and numbers as they are). ``align``: one letter per column, ``l``, ``r`` or ``c``."""
    align = align or "l" * len(header)
    rule = "|" + "|".join({"r": "--:", "c": ":-:"}.get(a, "---") for a in align) + "|"
    return "\n".join([row(header), rule, *(row(r) for r in rows)])


def counts_table(counts: Mapping[str, int], header: str, unit: str = "rows") -> str:
    """``counts`` (e.g. rejections by reason) as a two-column table, largest first."""
    if not counts:
        return "_none_"
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return table([header, unit], ([text(k), str(v)] for k, v in ordered), "lr")


def bullets(items: Iterable[str]) -> str:
    """A list of lines of literal text."""
    return "\n".join(f"- {text(item)}" for item in items) or "_none_"
