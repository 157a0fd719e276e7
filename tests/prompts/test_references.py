"""Reference images: resolution of local paths, roots, file checks, URL schemes, per-provider limits."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.providers.rivya.traits import MAX_FILE_BYTES as RIVYA_MAX_FILE_BYTES
from tests.prompts.helpers import by_row, png_bytes, rejections


def test_local_paths_resolve_against_the_table_folder(write, load, tmp_path):
    image = write("tables/refs/a.png", png_bytes())
    write("elsewhere/b.png", png_bytes((4, 4)))
    path = write(
        "tables/t.csv",
        "prompt,reference_images\n"
        "one,refs/a.png\n"
        f"two, refs/a.png | {tmp_path / 'elsewhere/b.png'} | https://cdn.example/c.png \n"
        "three,\n",
    )
    result = load(path, reference_roots=[str(tmp_path)])
    rows = by_row(result)
    assert rows[1]["reference_images"] == [str(image)]
    assert rows[2]["reference_images"] == [str(image), str(tmp_path / "elsewhere/b.png"), "https://cdn.example/c.png"]
    assert rows[3]["reference_images"] == []
    # local files need an upload, which only Rivya has
    assert ("rivya" in rows[1]["eligible_providers"]) and ("odirouter" not in rows[1]["eligible_providers"])
    assert "odirouter" in rows[3]["eligible_providers"]
    assert rejections(result) == [
        (1, "odirouter", "reference_images", "reference_needs_url"),
        (2, "odirouter", "reference_images", "reference_needs_url"),
    ]
    assert "http(s) URL" in result.rejected_rows()[0].message
    # without configured roots only the table's own folder is allowed
    assert rejections(load(path))[1] == (2, None, "reference_images", "reference_outside_roots")


def test_http_references_are_fine_everywhere_and_never_fetched(write, load):
    result = load(
        write("u.csv", "prompt,reference_images\nx,https://unreachable.invalid/a.png|http://10.255.255.1/b.jpg\n")
    )
    (row,) = result.accepted.to_pylist()
    assert (
        ("rivya" in row["eligible_providers"])
        and ("odirouter" in row["eligible_providers"])
        and result.rejected.num_rows == 0
    )


def test_other_schemes_are_rejected_for_all(write, load):
    result = load(
        write(
            "s.csv",
            "prompt,reference_images\n"
            "a,file:///tmp/x.png\n"
            "b,ftp://host/x.png\n"
            'c,"data:image/png;base64,AAAA"\n'
            "d,gopher://bucket/x.png\n"
            "e,https://\n",
        )
    )
    assert [r[1:] for r in rejections(result)] == [(None, "reference_images", "reference_url_scheme")] * 4 + [
        (None, "reference_images", "reference_url_invalid")
    ]
    assert "without 'file://'" in result.rejected_rows()[0].message


def test_reference_file_checks(write, load, tmp_path):
    write("refs/ok.png", png_bytes())
    write("refs/fake.png", b"this is text, not an image")
    big = tmp_path / "refs/huge.png"
    with open(big, "wb") as handle:
        handle.write(png_bytes())
        handle.truncate(RIVYA_MAX_FILE_BYTES + 1)  # sparse: no 30 MB written
    (tmp_path / "refs/folder.png").mkdir()
    path = write(
        "t.csv",
        "prompt,reference_images,provider\n"
        "a,refs/missing.png,rivya\n"
        "b,refs/fake.png,rivya\n"
        "c,refs/huge.png,rivya\n"
        "d,refs/folder.png,rivya\n"
        "e,refs/ok.png|refs/missing.png,\n"
        "f,refs/ok.png,rivya\n",
    )
    result = load(path)
    assert rejections(result) == [
        (1, None, "reference_images", "reference_unreadable"),
        (2, None, "reference_images", "reference_not_image"),
        (3, None, "reference_images", "reference_too_large"),
        (4, None, "reference_images", "reference_unreadable"),
        (5, None, "reference_images", "reference_unreadable"),  # a broken path beats the odirouter-only problem
    ]
    messages = [r.message for r in result.rejected_rows()]
    assert "reference 1 ('refs/missing.png')" in messages[0] and "no file at" in messages[0]
    assert "JPEG, PNG or WebP" in messages[1] and "30 MB" in messages[2]
    assert "reference 2 ('refs/missing.png')" in messages[4]
    assert list(by_row(result)) == [6]


def test_reference_roots_confine_local_paths(write, load, tmp_path):
    write("allowed/a.png", png_bytes())
    write("secret/b.png", png_bytes())
    os.symlink(tmp_path / "secret/b.png", tmp_path / "allowed/link.png")
    path = write(
        "t.csv",
        "prompt,reference_images,provider\n"
        "a,allowed/a.png,rivya\n"
        "b,secret/b.png,rivya\n"
        "c,allowed/../secret/b.png,rivya\n"
        "d,allowed/link.png,rivya\n"
        "e,https://cdn.example/x.png,\n",
    )
    result = load(path, reference_roots=[str(tmp_path / "allowed")])
    assert list(by_row(result)) == [1, 5]
    assert rejections(result) == [(n, None, "reference_images", "reference_outside_roots") for n in (2, 3, 4)]
    assert str(tmp_path / "allowed") in result.rejected_rows()[0].message
    assert load(path).accepted.num_rows == 5  # without roots, the table's folder (tmp_path) is the root


def test_outside_roots_is_checked_before_the_file_is_touched(write, load, tmp_path):
    (tmp_path / "allowed").mkdir()
    path = write("t.csv", "prompt,reference_images,provider\na,/etc/shadow,rivya\n")
    result = load(path, reference_roots=[str(tmp_path / "allowed")])
    assert rejections(result) == [(1, None, "reference_images", "reference_outside_roots")]


def test_too_many_references_per_provider(write, load):
    urls = [f"https://cdn.example/{i}.png" for i in range(15)]
    path = write(
        "many.csv",
        "prompt,reference_images\n"
        f"nine,{'|'.join(urls[:9])}\n"
        f"fourteen,{'|'.join(urls[:14])}\n"
        f"fifteen,{'|'.join(urls)}\n"
        f"eight,{'|'.join(urls[:8])}\n",
    )
    result = load(path)
    rows = by_row(result)
    assert ("rivya" not in rows[1]["eligible_providers"]) and ("odirouter" in rows[1]["eligible_providers"])
    assert ("rivya" not in rows[2]["eligible_providers"]) and ("odirouter" in rows[2]["eligible_providers"])
    assert (
        3 not in rows and ("rivya" in rows[4]["eligible_providers"]) and ("odirouter" in rows[4]["eligible_providers"])
    )
    assert rejections(result) == [
        (1, "rivya", "reference_images", "too_many_references"),
        (2, "rivya", "reference_images", "too_many_references"),
        (3, None, "reference_images", "too_many_references"),
    ]
    messages = [r.message for r in result.rejected_rows()]
    assert "9 reference images" in messages[0] and "8" in messages[0]
    assert "15 reference images" in messages[2] and "Rivya accepts at most 8" in messages[2] and "14" in messages[2]


def test_parquet_list_references_and_remote_tables(tmp_path, load, write):
    image = write("refs/a.png", png_bytes())
    path = tmp_path / "t.parquet"
    refs = pa.array([["refs/a.png", " "], [str(image)], None], pa.list_(pa.string()))
    pq.write_table(pa.table({"prompt": ["a", "b", "c"], "reference_images": refs, "provider": ["rivya"] * 3}), path)
    rows = by_row(load(path))
    assert rows[1]["reference_images"] == [str(image)] and rows[2]["reference_images"] == [str(image)]
    assert rows[3]["reference_images"] == []


def test_relative_reference_in_a_remote_table_cannot_be_resolved(tmp_path):
    import uuid

    import fsspec

    from nbpro_pipeline.prompts import load_prompt_tables

    fs = fsspec.filesystem("memory")
    root = f"/nbpro-ref-{uuid.uuid4().hex}"
    fs.pipe(f"{root}/t.csv", b"prompt,reference_images,provider\na,refs/a.png,rivya\n")
    try:
        result = load_prompt_tables([f"memory://{root}/t.csv"])
    finally:
        fs.rm(root, recursive=True)
    (row,) = result.rejected_rows()
    assert row.code == "reference_unreadable" and "absolute path" in row.message


def test_derived_ids_follow_reference_content_not_its_path(write, load):
    write("one/refs/a.png", png_bytes())
    write("two/pics/a.png", png_bytes())
    write("three/refs/a.png", png_bytes((9, 9)))
    first = load(write("one/t.csv", "prompt,reference_images,provider\nx,refs/a.png,rivya\n"))
    moved = load(write("two/t.csv", "prompt,reference_images,provider\nx,pics/a.png,rivya\n"))
    other = load(write("three/t.csv", "prompt,reference_images,provider\nx,refs/a.png,rivya\n"))
    ids = [r.accepted.column("prompt_id")[0].as_py() for r in (first, moved, other)]
    assert ids[0] == ids[1] != ids[2]
