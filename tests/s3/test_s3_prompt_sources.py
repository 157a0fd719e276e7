"""Prompt tables read from a bucket: CSV, TSV and Parquet by directory, glob and single URI, giving the
same rows as the same files on disk; the sources sensor's change detection works on object metadata."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from nbpro_pipeline.prompts import load_prompt_tables
from nbpro_pipeline.prompts.watch import fingerprint_sources

pytestmark = pytest.mark.s3

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"
TABLES = ("products.csv", "catalog.parquet", "scenes.tsv")


@pytest.fixture
def prompts_uri(bucket, s3_client) -> str:
    for name in (*TABLES, "refs/swatch.png"):
        s3_client.put_object(Bucket=bucket, Key=f"prompts/{name}", Body=(EXAMPLES / name).read_bytes())
    return f"s3://{bucket}/prompts"


def _ids(table) -> list[str]:
    return sorted(table.column("prompt_id").to_pylist())


def test_a_bucket_prefix_reads_like_the_same_directory_on_disk(prompts_uri):
    local = load_prompt_tables([str(EXAMPLES)])
    remote = load_prompt_tables([prompts_uri + "/"])
    assert remote.rows_read == local.rows_read > 0
    assert _ids(remote.accepted) == _ids(local.accepted)
    assert sorted(remote.accepted.column("prompt_sha256").to_pylist()) == sorted(
        local.accepted.column("prompt_sha256").to_pylist()
    )
    assert remote.rejected_by_reason() == local.rejected_by_reason()
    assert {s.uri for s in remote.sources} == {f"{prompts_uri}/{name}" for name in TABLES}
    assert {s.sha256 for s in remote.sources} == {s.sha256 for s in local.sources}
    assert set(remote.accepted.column("source_uri").to_pylist()) <= {f"{prompts_uri}/{name}" for name in TABLES}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("*.csv", {"products.csv"}), ("catalog.parquet", {"catalog.parquet"}), ("*.tsv", {"scenes.tsv"})],
)
def test_globs_and_single_objects_pick_only_their_files(prompts_uri, pattern, expected):
    result = load_prompt_tables([f"{prompts_uri}/{pattern}"])
    assert {s.uri.rsplit("/", 1)[1] for s in result.sources} == expected
    assert result.accepted.num_rows > 0


def test_a_missing_object_is_one_rejected_file_not_a_failed_load(prompts_uri):
    result = load_prompt_tables([f"{prompts_uri}/products.csv", f"{prompts_uri}/nope.csv"])
    assert result.accepted.num_rows > 0
    missing = result.rejected.filter(pc.equal(result.rejected["source_uri"], f"{prompts_uri}/nope.csv"))
    assert missing.column("code").to_pylist() == ["unreadable_file"]


def test_source_change_detection_on_s3_follows_content_not_writes(prompts_uri, bucket, s3_client):
    first, cache = fingerprint_sources([prompts_uri + "/"], {})
    assert first is not None and len(cache) == len(TABLES)
    body = (EXAMPLES / "products.csv").read_bytes()
    s3_client.put_object(Bucket=bucket, Key="prompts/products.csv", Body=body)  # rewritten, same content
    same, cache = fingerprint_sources([prompts_uri + "/"], cache)
    assert same == first
    s3_client.put_object(Bucket=bucket, Key="prompts/products.csv", Body=body + b"new-row,a new prompt,1:1,png,\n")
    changed, cache = fingerprint_sources([prompts_uri + "/"], cache)
    assert changed not in (None, first)
    edited = body.replace(b"prod-mug", b"prod-cup")  # same size, likely within the same second
    s3_client.put_object(Bucket=bucket, Key="prompts/products.csv", Body=edited)
    again, _ = fingerprint_sources([prompts_uri + "/"], cache)
    assert again not in (None, first, changed)


def _rejections(result) -> dict[int, tuple[str, str | None]]:
    return {r.row_number: (r.code, r.provider) for r in result.rejected_rows()}


def test_references_in_a_bucket_resolve_against_the_tables_prefix(prompts_uri, bucket, s3_client, tmp_path):
    catalog = load_prompt_tables([f"{prompts_uri}/catalog.parquet"])
    cushion = catalog.accepted.filter(pc.equal(catalog.accepted["prompt_id"], "cat-cushion")).to_pylist()
    assert [r["reference_images"] for r in cushion] == [[f"{prompts_uri}/refs/swatch.png"]]

    s3_client.put_object(Bucket=bucket, Key="prompts/more/refs/notes.png", Body=b"just text")
    body = (
        "prompt,reference_images,provider\n"
        f"same swatch by full URI,s3://{bucket}/prompts/refs/swatch.png,rivya\n"
        "missing,refs/nope.png,rivya\n"
        "not an image,refs/notes.png,rivya\n"
        "climbs out,../../../elsewhere/x.png,rivya\n"
        "for both providers,refs/swatch.png,\n"
    )
    s3_client.put_object(Bucket=bucket, Key="prompts/more/refs.csv", Body=body.encode())
    s3_client.copy_object(
        Bucket=bucket, Key="prompts/more/refs/swatch.png", CopySource=f"{bucket}/prompts/refs/swatch.png"
    )
    # without configured roots a table may use objects under its own prefix only (like a local folder)
    own_prefix = load_prompt_tables([f"{prompts_uri}/more/refs.csv"])
    assert _rejections(own_prefix)[1] == ("reference_outside_roots", None)
    result = load_prompt_tables([f"{prompts_uri}/more/refs.csv"], reference_roots=[prompts_uri])
    assert _rejections(result) == {
        2: ("reference_unreadable", None),
        3: ("reference_not_image", None),
        4: ("reference_outside_roots", None),
        5: ("reference_needs_url", "odirouter"),  # OdiRouter takes URLs only; Rivya gets the upload
    }
    accepted = {r["row_number"]: r for r in result.accepted.to_pylist()}
    assert (
        set(accepted) == {1, 5}
        and ("rivya" in accepted[5]["eligible_providers"])
        and ("odirouter" not in accepted[5]["eligible_providers"])
    )
    assert accepted[1]["reference_images"] == [f"{prompts_uri}/refs/swatch.png"]
    # a derived id follows the reference's content, not where it is stored: same id on disk and in the bucket
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "swatch.png").write_bytes((EXAMPLES / "refs" / "swatch.png").read_bytes())
    (tmp_path / "t.csv").write_text("prompt,reference_images,provider\nfor both providers,refs/swatch.png,\n")
    local = load_prompt_tables([str(tmp_path / "t.csv")], reference_roots=[str(tmp_path)])
    assert local.accepted.column("prompt_id").to_pylist() == [accepted[5]["prompt_id"]]


def test_reference_roots_confine_references_in_buckets_too(prompts_uri):
    allowed = load_prompt_tables([f"{prompts_uri}/catalog.parquet"], reference_roots=[f"{prompts_uri}/refs"])
    refused = load_prompt_tables([f"{prompts_uri}/catalog.parquet"], reference_roots=[f"{prompts_uri}/other/"])
    assert "reference_outside_roots" not in allowed.rejected_by_reason()
    assert refused.rejected_by_reason().get("reference_outside_roots") == 1
