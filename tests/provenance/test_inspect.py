"""``nbpro inspect`` on images of a real signed run, and ``nbpro export-focus`` on its ledger."""

from __future__ import annotations

import json

import pyexiv2
from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import SETTINGS, harness, prompt_rows  # noqa: F401  (harness is a fixture)


async def stored_image(harness, signer) -> str:  # noqa: F811
    await harness.run(Provider.RIVYA, prompt_rows(2), settings=SETTINGS.model_copy(update={"signer": signer}))
    return sorted(r["image_uri"] for r in harness.rows(Provider.RIVYA))[0]


async def test_inspect_prints_xmp_c2pa_and_the_ledger_row(harness, signer, credential):  # noqa: F811
    image = await stored_image(harness, signer)
    root = harness.storage.root
    result = CliRunner().invoke(main, ["inspect", image, "--ledger-root", root])
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "Xmp.iptcExt.DigitalSourceType = http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia" in out
    )
    assert "validation state: Valid (signer not on a trust list)" in out and "actions: c2pa.created" in out
    assert "ledger (matched by sha256)" in out and "prompt_id = p000" in out
    trusted = CliRunner().invoke(main, ["inspect", image, "--trust-anchors", str(credential.ca_path), "--json"])
    assert trusted.exit_code == 0 and json.loads(trusted.output)["marks"]["c2pa"]["validation_state"] == "Trusted"

    with pyexiv2.Image(image) as img:
        img.modify_xmp({"Xmp.nbpro.cost": "0"})
    edited = CliRunner().invoke(main, ["inspect", image, "--ledger-root", root])
    assert edited.exit_code == 1
    assert "C2PA manifest does not validate" in edited.output and "ledger (matched by fingerprint)" in edited.output


async def test_export_focus_without_dagster(harness):  # noqa: F811
    await harness.run(Provider.RIVYA, prompt_rows(3))
    result = CliRunner().invoke(main, ["export-focus", "--ledger-root", harness.storage.root, "--csv"])
    assert result.exit_code == 0, result.output
    assert "3 FOCUS rows written to" in result.output and "focus_cost_export.csv" in result.output
    assert "Rivya      BilledCost 0.403200 USD; in pricing currency 24.000000" in result.output
