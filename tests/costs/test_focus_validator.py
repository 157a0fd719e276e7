"""The FinOps Foundation's own validator (``focus-validator``) on an export of a real run of both
providers. It needs Python >= 3.12, so it lives in its own venv (``make focus-validator`` builds
``.venv-focus``; ``NBPRO_FOCUS_VENV`` points elsewhere). Under CI a missing validator fails the test.

The export is FOCUS 1.3; the validator checks it against the newest rule set it carries offline, 1.2.0.1
(it fetches 1.3's from GitHub, which CI cannot reach). 1.3 only adds columns to a Cost and Usage dataset
like ours (``test_focus`` checks them against the 1.3 text), so the 1.2 rules still judge every other one.

The one rule reported failing is ``InvoiceId-C-005-C`` ("MUST NOT be null when the charge is associated
with an invoice"): it is one branch of ``InvoiceId-C-003-C``, an OR whose other branch ("MUST be null
when not associated with an invoice") holds, and the OR passes. docs/focus.md says why InvoiceId is null.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from nbpro_pipeline.costs.focus import export_focus
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import harness, prompt_rows  # noqa: F401  (harness is a fixture)

pytestmark = [pytest.mark.external, pytest.mark.slow]  # the validator runs in its own venv
REPO = Path(__file__).resolve().parents[2]
# What the providers support, in the validator's terms: usage in images at a unit price, tags, a
# virtual currency (Rivya credits) priced apart from the billing currency, and named accounts.
APPLICABILITY = ",".join(
    [
        "USAGE_MEASUREMENT_SUPPORTED",
        "UNIT_PRICING_SUPPORTED",
        "TAGGING_SUPPORTED",
        "VIRTUAL_CURRENCY_SUPPORTED",
        "PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED",
        "ACCOUNT_NAMING_SUPPORTED",
        "MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED",
    ]
)
KNOWN_OR_BRANCH = {"InvoiceId-C-005-C"}
RULES_VERSION = "1.2.0.1"  # the newest rule set focus-validator 2.2.1 ships; docs/focus.md


def validator_venv() -> Path:
    venv = Path(os.environ.get("NBPRO_FOCUS_VENV", REPO / ".venv-focus"))
    if not (venv / "bin" / "focus-validator").exists():
        build = subprocess.run(["make", "-s", "focus-validator"], cwd=REPO, capture_output=True, text=True)
        if build.returncode != 0 or not (venv / "bin" / "focus-validator").exists():
            message = f"no focus-validator in {venv} (make focus-validator: {build.stderr.strip()[-300:] or 'ok'})"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    return venv


def validator_site(venv: Path) -> Path:
    """The validator's site-packages: it opens its currency list by a path relative to it."""
    code = "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def run_validator(data_file: str, fmt: str) -> str:
    venv = validator_venv()
    site = validator_site(venv)
    args = [str(venv / "bin" / "focus-validator"), "--data-file", data_file, "--data-format", fmt]
    args += ["--validate-version", RULES_VERSION, "--block-download", "--applicability-criteria", APPLICABILITY]
    done = subprocess.run(args, cwd=site, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def verdicts(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\S+ ([A-Za-z]+-[A-Z]-\d{3}-[A-Z]): (PASS|FAIL|SKIPPED)", output, flags=re.M))


@pytest.fixture
async def demo_export(harness):  # noqa: F811
    """Both providers, a share of failed tasks on each, as the demo's cells produce."""
    for provider in Provider:
        harness.configure(provider, faults={"task_failed": {"CONTENT_BLOCKED": 0.25}})
        await harness.run(provider, prompt_rows(8))
    return export_focus(harness.storage, csv=True)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_the_finops_validator_accepts_the_export(demo_export, fmt):
    output = run_validator(demo_export.paths[0 if fmt == "parquet" else 1], fmt)
    total = re.search(r"Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)", output)
    assert total, output[-2000:]
    results = verdicts(output)
    failed = {rule for rule, verdict in results.items() if verdict == "FAIL"}
    assert failed <= KNOWN_OR_BRANCH, sorted(failed)
    assert results["InvoiceId-C-003-C"] == "PASS"  # the OR that InvoiceId-C-005-C is a branch of
    for rule in ("BilledCost-C-000-M", "PricingCurrency-C-000-C", "ConsumedQuantity-C-000-C", "Tags-C-000-C"):
        assert results[rule] == "PASS", rule
    assert int(total.group(2)) >= 200  # rules actually checked, not skipped


def test_the_rules_run_are_the_newest_the_validator_carries():
    """A validator release that ships a newer rule set (1.3, 1.4) fails this, so the export moves to it."""
    rules = validator_site(validator_venv()) / "focus_validator" / "rules"
    carried = sorted(p.name.removeprefix("model-").removesuffix(".json") for p in rules.glob("model-*.json"))
    assert carried == [RULES_VERSION], f"focus-validator now carries {carried}: validate at the newest"


@pytest.mark.timeout(600)
async def test_the_exported_file_has_the_1_3_provider_columns(demo_export):
    import pyarrow.parquet as pq

    focus = pq.read_table(demo_export.paths[0], columns=["ServiceProviderName", "HostProviderName", "ProviderName"])
    assert focus["ServiceProviderName"].null_count == focus["HostProviderName"].null_count == 0
    assert focus["ServiceProviderName"].to_pylist() == focus["ProviderName"].to_pylist()
