"""The reports and the estimate CLI read a ledger that lives in a bucket, and reports are written back
to it; the totals are checked against what the sandbox billed."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nbpro_pipeline.cli import main as cli
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.costs.cli_support import read_ledger_dataset
from nbpro_pipeline.costs.report_parquet import write_report
from nbpro_pipeline.costs.reports import credit_cost_report, provider_comparison, totals_by_provider
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_ledger
from tests.engine.conftest import Harness, prompt_rows, sandbox_amounts

pytestmark = pytest.mark.s3


@pytest.fixture
async def filled(sandbox, bucket, rivya_key, odirouter_key) -> Harness:
    """Both providers' 1K cells run into s3://<bucket>/nbpro."""
    harness = Harness(
        sandbox=sandbox,
        storage=Storage(f"s3://{bucket}/nbpro"),
        keys={Provider.RIVYA: rivya_key, Provider.ODIROUTER: odirouter_key},
    )
    for provider in Provider:
        report = await harness.run(provider, prompt_rows(3, prefix=provider.value))
        assert report.succeeded == 3
    return harness


def _billed(sandbox) -> dict[str, Decimal]:
    return {p.value: sum(sandbox_amounts(sandbox, p).values(), Decimal(0)) for p in Provider}


async def test_reports_over_a_ledger_in_s3_total_what_the_sandbox_billed(filled, sandbox, bucket, s3_client):
    root = f"s3://{bucket}/nbpro"
    ledger = read_ledger(Storage(root))  # a fresh Storage, as a report run in another process would build
    assert ledger.num_rows == 6
    billed = _billed(sandbox)
    assert totals_by_provider(ledger) == billed

    report = credit_cost_report(ledger, PriceTable())
    uri = write_report(report, f"{root}/reports/credit_cost_report.parquet")
    assert uri == f"{root}/reports/credit_cost_report.parquet"
    body = s3_client.get_object(Bucket=bucket, Key="nbpro/reports/credit_cost_report.parquet")["Body"].read()
    stored = pq.read_table(io.BytesIO(body))
    assert stored.schema.field("final_cost").type == pa.decimal128(38, 6)
    totals: dict[str, Decimal] = {}
    for row in stored.to_pylist():
        totals[row["provider"]] = totals.get(row["provider"], Decimal(0)) + row["final_cost"]
    assert totals == billed

    comparison = provider_comparison(ledger, PriceTable())
    assert set(comparison["provider"]) == {"rivya", "odirouter"}
    assert list(comparison["images"]) == [3, 3]


async def test_the_ledger_in_s3_is_readable_as_is_by_pandas_and_the_estimate_cli(filled, sandbox, bucket, tmp_path):
    root = f"s3://{bucket}/nbpro"
    # README: pd.read_parquet(<root>/ledger) works as is, provider and resolution from the paths
    frame = pd.read_parquet(f"{root}/ledger")
    assert len(frame) == 6
    by_provider = frame.groupby(frame["provider"].astype(str))["final_cost"].sum().to_dict()
    assert by_provider == _billed(sandbox)
    assert read_ledger_dataset(root).num_rows == 6

    table = tmp_path / "prompts.csv"
    table.write_text("id,prompt\n" + "".join(f"rivya{i:03d},a test image for rivya{i:03d}\n" for i in range(5)))
    out = CliRunner().invoke(cli, ["estimate", str(table), "--cells", "rivya|1K", "--ledger-root", root, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["ledger_rows"] == 6
    (cell,) = data["cells"]
    assert (cell["eligible"], cell["already_succeeded"], cell["to_generate"]) == (5, 3, 2)
