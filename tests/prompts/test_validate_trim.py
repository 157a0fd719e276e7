"""``_trimmed``: the same values as ``utf8_trim_whitespace``, without copying slices that need no trim."""

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.prompts.validate import _trimmed


def test_trimmed_matches_the_kernel_across_slices() -> None:
    values = pa.chunked_array(
        [["a", " b ", None, "c\u00a0"] * 5, ["clean", "also clean"] * 3, ["\tx\n", ""]], type=pa.string()
    )
    got = _trimmed(values, batch=3)
    assert got.to_pylist() == pc.utf8_trim_whitespace(values).to_pylist()


def test_a_column_needing_no_trim_shares_its_memory() -> None:
    values = pa.chunked_array([pa.array(["red fox", "tram", None] * 100, pa.string())])
    got = _trimmed(values, batch=64)
    data = values.chunk(0).buffers()[2].address
    assert all(chunk.buffers()[2].address == data for chunk in got.chunks)
    assert got.to_pylist() == values.to_pylist()
