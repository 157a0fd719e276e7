"""A whole cell with its storage root in a bucket: images, ledger parts and journal segments land in the
bucket (checked with boto3, not through the code under test), and the ledger matches what the sandbox billed."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from nbpro_pipeline.image_files import inspect_image, read_lineage
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.engine.conftest import Harness, prompt_rows
from tests.s3.conftest import keys

pytestmark = pytest.mark.s3

PREFIX = "team/nbpro"


@pytest.fixture
def s3_harness(sandbox, bucket, rivya_key, odirouter_key) -> Harness:
    return Harness(
        sandbox=sandbox,
        storage=Storage(f"s3://{bucket}/{PREFIX}"),
        keys={Provider.RIVYA: rivya_key, Provider.ODIROUTER: odirouter_key},
    )


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
async def test_a_cell_on_s3_keeps_images_ledger_and_journal_in_the_bucket(s3_harness, provider, s3_client, bucket):
    rows = prompt_rows(6)
    report = await s3_harness.run(provider, rows)
    assert (report.succeeded, report.failed, report.skipped) == (6, 0, 0)

    objects = keys(s3_client, bucket)
    assert objects and all(k.startswith(PREFIX + "/") for k in objects)
    cell = f"provider={provider.value}/resolution=1K"
    images = [k for k in objects if k.startswith(f"{PREFIX}/images/{cell}/")]
    parts = [k for k in objects if k.startswith(f"{PREFIX}/ledger/{cell}/part-") and k.endswith(".parquet")]
    journal = [k for k in objects if k.startswith(f"{PREFIX}/journal/{cell}/")]
    assert len(images) == 6
    assert len(parts) == report.ledger_parts >= 1
    assert report.journal_segments >= 1
    # the run pruned the cell's journal when it ended: its segments merged into one file, every task booked
    assert len(journal) == 1 and journal[0].rsplit("/", 1)[-1].startswith("compact-")
    pruned = json.loads(s3_client.get_object(Bucket=bucket, Key=journal[0])["Body"].read())
    assert len(pruned["replaces"]) == report.journal_segments and pruned["entries"] == []
    assert report.image_dir == f"s3://{bucket}/{PREFIX}/images/{cell}"

    ledger = s3_harness.rows(provider)
    assert {r["image_uri"] for r in ledger} == {f"s3://{bucket}/{k}" for k in images}
    for r in ledger:
        body = s3_client.get_object(Bucket=bucket, Key=r["image_uri"].removeprefix(f"s3://{bucket}/"))["Body"].read()
        assert hashlib.sha256(body).hexdigest() == r["image_sha256"]
        info = inspect_image(io.BytesIO(body))
        assert (info.width, info.height) == (r["width"], r["height"])
        assert read_lineage(io.BytesIO(body)).task_id == r["task_id"]
    s3_harness.assert_reconciles(provider)

    # a second run finds every image in the bucket and pays nothing
    again = await s3_harness.run(provider, rows, run_id="run-2")
    assert (again.already_done, again.submitted, again.final_cost) == (6, 0, 0)
    assert s3_harness.tasks_created(provider) == 6
    s3_harness.assert_reconciles(provider)
