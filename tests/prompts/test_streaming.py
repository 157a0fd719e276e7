"""Streamed loading: a file is read and validated a batch at a time, and the result does not depend on where
the batches are cut. Every case here is loaded with tiny batches (many of them, so bad rows fall in the
first and the last batch and on their boundaries) and with batches bigger than the file (one batch: what
the whole-table validation gave), and both must give exactly the same accepted and rejected tables."""

from __future__ import annotations

import functools
import gzip
import io
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.prompts import PromptTableError, load_prompt_tables, readers, write_prompt_tables
from nbpro_pipeline.prompts import load as load_module
from nbpro_pipeline.prompts.byte_streams import Throttle
from nbpro_pipeline.storage import Storage, read_table
from tests.prompts.helpers import rejections


def _rows() -> list[list[str]]:
    """id, prompt, aspect_ratio, campaign: bad rows first, last and spread; ids repeated far apart."""
    rows = [["", "", "1:1", "c0"]]  # row 1: empty prompt
    for i in range(2, 300):
        rows.append(["", f"a lighthouse, variant {i}", "16:9" if i % 3 else "", f"c{i % 4}"])
    rows[10] = ["", "a fox", "17:9", "c1"]  # unknown aspect ratio
    rows[30] = ["dup-a", "same prompt", "1:1", "first"]
    rows[90] = ["dup-a", "same prompt", "1:1", "later"]  # duplicate_row of row 31, batches apart
    rows[40] = ["clash", "one prompt", "1:1", ""]
    rows[100] = ["clash", "another prompt", "1:1", ""]  # duplicate_id_conflict: both rejected
    rows[50] = ["", "a lighthouse, variant 7", "16:9", "c3"]  # same content as row 7 without id: duplicate_row
    rows[60] = ["", 'a multi\nline "quoted" prompt', "4:3", "c0"]
    rows[70] = ["", "x" * 2600, "1:1", "c2"]  # too long for OdiRouter only
    rows.append(["", "the last row", "auto", "c1"])  # auto: OdiRouter cannot, Rivya can
    rows.append(["", "", "9:16", "c1"])  # the very last row is bad
    return rows


def _csv(rows: list[list[str]], delimiter: str = ",", bom: bool = False, ragged_at: tuple[int, ...] = ()) -> bytes:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in f'"\n{delimiter}') else v

    lines = [delimiter.join(["id", "prompt", "aspect_ratio", "campaign"])]
    for k, row in enumerate(rows, start=1):
        lines.append(delimiter.join(cell(v) for v in row) + (delimiter + "extra" if k in ragged_at else ""))
    return (("\ufeff" if bom else "") + "\n".join(lines) + "\n").encode()


def _load_both(monkeypatch, sources: list[str], block: int, batch_rows: int):
    """(small-batch result, number of validated batches, one-batch result) of one load."""
    calls = []
    validate = load_module.validate
    monkeypatch.setattr(load_module, "validate", lambda *a, **k: calls.append(1) or validate(*a, **k))
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", block)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", batch_rows)
    small = load_prompt_tables(sources)
    batches = len(calls)
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 24)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 1 << 20)
    whole = load_prompt_tables(sources)
    return small, batches, whole


def _same(small, whole) -> None:
    assert small.accepted.to_pylist() == whole.accepted.to_pylist()
    assert small.rejected.to_pylist() == whole.rejected.to_pylist()
    assert small.sources == whole.sources and small.rows_read == whole.rows_read


@pytest.mark.parametrize("block", [2700, 3001, 3500, 4096])
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.csv", lambda: _csv(_rows())),
        ("bom.csv", lambda: _csv(_rows(), bom=True)),
        ("t.tsv", lambda: _csv(_rows(), delimiter="\t")),
        ("ragged.csv", lambda: _csv(_rows(), ragged_at=(1, 33, 77, len(_rows())))),
        ("t.csv.gz", lambda: gzip.compress(_csv(_rows()), mtime=0)),
    ],
)
def test_text_tables_give_the_same_result_whatever_the_blocks(write, monkeypatch, name, content, block):
    path = write(name, content())
    small, batches, whole = _load_both(monkeypatch, [str(path)], block, 1 << 20)
    assert batches >= 3  # the file was really cut
    _same(small, whole)
    codes = {(row, code) for row, _, _, code in rejections(small)}
    last = len(_rows())
    edge = "row_malformed" if name == "ragged.csv" else "prompt_empty"  # the first and the last row
    assert (1, edge) in codes and (last, edge) in codes
    assert {(91, "duplicate_row"), (51, "duplicate_row"), (41, "duplicate_id_conflict")} <= codes
    assert (101, "duplicate_id_conflict") in codes and (31, "duplicate_row") not in codes
    if name == "ragged.csv":
        assert {(33, "row_malformed"), (77, "row_malformed")} <= codes
    later = next(r for r in small.rejected_rows() if r.row_number == 91)
    assert f"row 31 of {path}" in later.message and later.column == "id"
    assert small.accepted.column("row_number").to_pylist()[:2] == [2, 3]


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 7, 50])
def test_parquet_gives_the_same_result_whatever_the_batches(tmp_path, monkeypatch, batch_rows):
    rows = _rows()
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({k: [r[i] for r in rows] for i, k in enumerate(["id", "prompt", "aspect_ratio", "x"])}), path
    )
    small, batches, whole = _load_both(monkeypatch, [str(path)], 1 << 20, batch_rows)
    assert batches == -(-len(rows) // batch_rows)
    _same(small, whole)
    assert {r.code for r in small.rejected_rows() if r.row_number in (1, len(rows))} == {"prompt_empty"}


def test_duplicates_across_files_and_batches(write, monkeypatch):
    one = write("a.csv", _csv(_rows()))
    two = write("b.csv", "id,prompt\ndup-a,same prompt\nclash,yet another prompt\n")
    small, _, whole = _load_both(monkeypatch, [str(one), str(two)], 2700, 1 << 20)
    _same(small, whole)
    second = [(r.row_number, r.code) for r in small.rejected_rows() if r.source_uri == str(two)]
    assert second == [(1, "duplicate_row"), (2, "duplicate_id_conflict")]
    assert [s.accepted for s in small.sources][1] == 0


def test_a_file_failing_half_way_leaves_none_of_its_rows(write, monkeypatch):
    good = write("good.csv", "prompt\nkept\n")
    whole = gzip.compress(_csv(_rows()), mtime=0)
    broken = write("broken.csv.gz", whole[: len(whole) - 40])  # truncated: its first blocks parse fine
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 2700)
    result = load_prompt_tables([str(broken), str(good)])
    assert [r["prompt"] for r in result.accepted.to_pylist()] == ["kept"]
    assert rejections(result) == [(None, None, None, "unreadable_file")]
    assert "not a valid gzip file" in result.rejected_rows()[0].message
    assert result.sources[0].error and result.sources[0].accepted == 0


def test_write_prompt_tables_writes_what_load_returns(write, tmp_path):
    path = write("t.csv", _csv(_rows()))
    storage = Storage(str(tmp_path / "root"))
    written = write_prompt_tables([str(path)], storage)
    loaded = load_prompt_tables([str(path)])
    assert read_table(storage, "prompt_table/accepted").to_pylist() == loaded.accepted.to_pylist()
    assert read_table(storage, "prompt_table/rejected").to_pylist() == loaded.rejected.to_pylist()
    assert written.accepted_rows == loaded.accepted.num_rows and written.eligible_counts == loaded.eligible_counts
    assert written.sources == loaded.sources and written.accepted_uri.endswith("prompt_table/accepted.parquet")


def test_write_prompt_tables_leaves_no_table_when_nothing_could_be_read(write, tmp_path):
    storage = Storage(str(tmp_path / "root"))
    with pytest.raises(PromptTableError):
        write_prompt_tables([str(write("empty.csv", ""))], storage)
    assert not list((tmp_path / "root").rglob("*.parquet"))


def _wait_for(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_throttle_keeps_a_background_reader_a_window_ahead():
    throttle = Throttle(io.BytesIO(b"x" * 1000), window=100, max_wait=30)
    got: list[int] = []
    reader = threading.Thread(target=lambda: [got.append(len(throttle.read(10))) for _ in range(50)])
    reader.start()
    _wait_for(lambda: sum(got) >= 100)
    time.sleep(0.2)
    assert sum(got) == 100  # waits at the window
    throttle.took(300)
    _wait_for(lambda: sum(got) >= 400)
    time.sleep(0.2)
    assert sum(got) == 400
    throttle.release()  # the consumer is done: the reader is let go
    reader.join(timeout=5)
    assert not reader.is_alive() and sum(got) == 500


def test_throttle_never_holds_the_consumers_own_reads():
    throttle = Throttle(io.BytesIO(b"x" * 1000), window=10, max_wait=30)
    assert len(throttle.read(500)) + len(throttle.read(500)) == 1000


def test_a_table_is_opened_and_read_without_waiting_out_the_throttle(write, monkeypatch):
    """Closing pyarrow's reader waits for its read-ahead, which the throttle holds: it is let go first."""
    monkeypatch.setattr(readers, "Throttle", functools.partial(Throttle, max_wait=20))
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 2700)  # the file is five blocks
    path = write("t.csv", _csv(_rows()))
    started = time.monotonic()
    assert load_prompt_tables([str(path)]).accepted.num_rows > 200
    assert time.monotonic() - started < 10


def test_a_given_id_shaped_like_a_derived_one_meets_the_derived_row(write, monkeypatch):
    plain = load_prompt_tables([str(write("p.csv", "prompt\na red fox\n"))])
    derived = plain.accepted.column("prompt_id")[0].as_py()
    same = write("same.csv", f"id,prompt\n,a red fox\n{derived},a red fox\n")
    other = write("other.csv", f"id,prompt\n,a red fox\n{derived},a blue whale\n")
    assert [(r, c) for r, _, _, c in rejections(load_prompt_tables([str(same)]))] == [(2, "duplicate_row")]
    clash = load_prompt_tables([str(other)])
    assert [(r, c) for r, _, _, c in rejections(clash)] == [(1, "duplicate_id_conflict"), (2, "duplicate_id_conflict")]
    assert clash.accepted.num_rows == 0


def test_a_quoted_cell_longer_than_a_block_reads_the_file_again_in_one_block(write, monkeypatch):
    big = "line\n" * 2000  # 10,000 bytes in one quoted value, over the 2,700-byte blocks
    path = write("big.csv", _csv([*_rows()[:50], ["", big, "1:1", "c"], *_rows()[50:]]))
    again = []
    read_again = readers.ReadAgain.__init__
    monkeypatch.setattr(readers.ReadAgain, "__init__", lambda self, mode: again.append(mode) or read_again(self, mode))
    small, _, whole = _load_both(monkeypatch, [str(path)], 2700, 1 << 20)
    assert again and again[0].block_size > len(big)  # the small-block load did meet the long cell
    _same(small, whole)
    assert big.strip() in {r["prompt"] for r in small.accepted.to_pylist()}
