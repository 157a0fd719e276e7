"""Hostile table values at validation: ids with invisible control or format characters (bidi overrides,
zero-width spaces, BOM) are rejected naming file, row, column and the character; reference URLs with
credentials are rejected without the credentials being repeated anywhere."""

from __future__ import annotations

import pytest

from tests.prompts.helpers import by_row

INVISIBLE = {
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u202a": "LEFT-TO-RIGHT EMBEDDING",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200d": "ZERO WIDTH JOINER",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",
    "\u2028": "LINE SEPARATOR",
    "\x85": "unnamed",
}


@pytest.mark.parametrize(("char", "name"), INVISIBLE.items(), ids=lambda v: f"U+{ord(v):04X}" if len(v) == 1 else v)
def test_ids_with_invisible_characters_are_rejected_with_where_and_what(write, load, char, name):
    path = write("t.csv", f"id,prompt\nsku{char}-1,a red chair\nsku-1,a red chair\n")
    result = load(path)
    (entry,) = result.rejected.to_pylist()
    assert (entry["source_uri"], entry["row_number"], entry["column"], entry["code"]) == (
        str(path), 1, "id", "id_invalid"
    )  # fmt: skip
    assert f"U+{ord(char):04X} ({name}) at character 4" in entry["message"] and "retype the id" in entry["message"]
    assert list(by_row(result)) == [2]  # the look-alike's twin is untouched: one bad row never sinks a table


def test_ordinary_unicode_ids_are_fine(write, load):
    path = write("t.csv", "id,prompt\ncafé-été-ü,a red chair\n東京-1,a tower\n")
    assert sorted(r["prompt_id"] for r in by_row(load(path)).values()) == ["café-été-ü", "東京-1"]


def test_a_reference_url_with_credentials_is_rejected_without_repeating_them(write, load):
    path = write(
        "t.csv",
        "prompt,reference_images\n"
        "with userinfo,https://alice:hunter2@images.example/a.png\n"
        "signed,https://images.example/a.png?X-Amz-Signature=SIGSECRET&w=1\n",
    )
    result = load(path)
    (entry,) = result.rejected.to_pylist()
    assert (entry["row_number"], entry["column"], entry["code"]) == (1, "reference_images", "reference_url_invalid")
    assert "user name or password" in entry["message"] and "hunter2" not in entry["message"]
    assert "https://images.example/a.png" in entry["message"]
    # a signed URL is valid and kept whole in the accepted table (the engine must fetch it or send it)
    assert [r["reference_images"] for r in by_row(result).values()] == [
        ["https://images.example/a.png?X-Amz-Signature=SIGSECRET&w=1"]
    ]
