"""The code location with ``NBPRO_STORAGE_ROOT`` and ``NBPRO_PROMPT_SOURCES`` pointing at a bucket,
resources built from the environment exactly as ``definitions.py`` builds them: prompt_table, one cell
and both reports materialize, their metadata points into the bucket, and the report totals what the
sandbox billed."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets_defs.assets import credit_cost_report, prompt_table, provider_comparison
from assets_defs.definitions import build_resources, generated_images
from nbpro_pipeline.storage import Storage, read_ledger
from tests.s3.conftest import FAKE_CREDENTIALS, keys

pytestmark = [pytest.mark.s3, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"
SECRET = "rvya_sk_s3_dagster_secret_4711"


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    (event,) = events
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_cell_and_the_reports_materialize_with_the_storage_root_in_s3(sandbox, bucket, s3_client, monkeypatch):
    for path in EXAMPLES.rglob("*"):
        if path.is_file() and path.suffix in {".csv", ".tsv", ".parquet", ".png"}:
            s3_client.put_object(Bucket=bucket, Key=f"prompts/{path.relative_to(EXAMPLES)}", Body=path.read_bytes())
    root = f"s3://{bucket}/nbpro"
    for name, value in {
        "NBPRO_STORAGE_ROOT": root,
        "NBPRO_PROMPT_SOURCES": f"s3://{bucket}/prompts/",
        "RIVYA_BASE_URL": sandbox.rivya_url,
        "ODIROUTER_BASE_URL": sandbox.odirouter_url,
        "RIVYA_API_KEY": SECRET,
        "ODIROUTER_API_KEY": "odr_s3_dagster",
        "NBPRO_POLL_FIRST_DELAY_S": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    resources = build_resources()

    with dg.instance_for_test() as instance:
        table = dg.materialize([prompt_table], instance=instance, resources=resources)
        cell = dg.materialize([generated_images], partition_key="rivya|1K", instance=instance, resources=resources)
        reports = dg.materialize([credit_cost_report, provider_comparison], instance=instance, resources=resources)
        logs = [str(e.message) + str(e.dagster_event or "") for e in instance.all_logs(cell.run_id)]
    assert table.success and cell.success and reports.success

    accepted = _metadata(table, "prompt_table")["accepted_table"]
    assert accepted == f"{root}/tables/prompt_table/accepted.parquet"
    meta = _metadata(cell, "generated_images")
    assert meta["images"] == meta["eligible"] > 0 and meta["failed"] == 0
    assert meta["image_dir"] == f"{root}/images/provider=rivya/resolution=1K"
    assert meta["ledger"] == f"{root}/ledger"
    assert meta["contact_sheet"].count("data:image/jpeg;base64,") >= min(meta["images"], 8)  # thumbnails from S3
    checks = {e.check_name: e for e in cell.get_asset_check_evaluations()}
    assert checks and all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}

    objects = keys(s3_client, bucket, "nbpro/")
    images = [k for k in objects if k.startswith("nbpro/images/provider=rivya/resolution=1K/")]
    assert len(images) == meta["images"]
    assert any(k.startswith("nbpro/ledger/provider=rivya/resolution=1K/part-") for k in objects)
    assert any(k.startswith("nbpro/journal/provider=rivya/resolution=1K/") for k in objects)
    assert "nbpro/tables/prompt_table/accepted.parquet" in objects
    # the catalog's cushion row references refs/swatch.png next to the table in the bucket: read from S3,
    # uploaded to Rivya's Files API once, the upload remembered in the bucket
    assert len([k for k in objects if k.startswith("nbpro/references/rivya/")]) == 1
    cushion = [r for r in read_ledger(Storage(root)).to_pylist() if r["prompt_id"] == "cat-cushion"]
    assert [r["status"] for r in cushion] == ["succeeded"]

    report_meta = _metadata(reports, "credit_cost_report")
    assert report_meta["path"] == f"{root}/reports/credit_cost_report.parquet"
    body = s3_client.get_object(Bucket=bucket, Key="nbpro/reports/credit_cost_report.parquet")["Body"].read()
    total = sum((r["final_cost"] for r in pq.read_table(io.BytesIO(body)).to_pylist()), Decimal(0))
    billed = sum((Decimal(str(e["amount"])) for e in sandbox.ledger("rivya")), Decimal(0))
    assert total == billed == 8 * meta["images"]
    assert "nbpro/reports/provider_comparison.parquet" in objects
    aws_secret = FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert not any(SECRET in line or aws_secret in line for line in logs)
    assert not any(aws_secret in str(v) for v in (*meta.values(), *report_meta.values()))
