"""On a real cell run against the sandbox with signing on: every stored image carries valid marks, the
ledger keeps both hashes, and ``images_valid`` fails for an image edited after signing."""

from __future__ import annotations

import hashlib

import pyexiv2

from nbpro_pipeline.cell.checks import check_stored_images
from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.provenance import verify_marks
from nbpro_pipeline.providers.registry import Provider
from tests.cell.audit import audit
from tests.engine.conftest import R1K, SETTINGS, harness, prompt_rows, provider  # noqa: F401  (fixtures)


async def signed_run(harness, signer, provider: Provider):  # noqa: F811  (pytest fixtures by name)
    await harness.run(provider, prompt_rows(3), settings=SETTINGS.model_copy(update={"signer": signer}))
    return audit(harness.results[-1], harness.storage, require_c2pa=True)


async def test_signed_run_passes_and_keeps_both_hashes(harness, signer, provider):  # noqa: F811
    checks = await signed_run(harness, signer, provider)
    assert harness.results[-1].report.succeeded == 3
    outcome = checks["images_valid"]
    assert outcome.passed and "valid C2PA manifest" in outcome.description, outcome.description
    for row in harness.rows(provider):
        with open(row["image_uri"], "rb") as fh:
            data = fh.read()
        assert hashlib.sha256(data).hexdigest() == row["image_sha256"]  # as stored, marks included
        assert row["provider_sha256"] != row["image_sha256"]  # as downloaded: before any mark
        check = verify_marks(data, OutputFormat(row["output_format"]), require_c2pa=True)
        assert check.ok and check.c2pa.actions == ["c2pa.created"]


async def test_images_valid_fails_for_an_image_edited_after_signing(harness, signer, provider):  # noqa: F811
    await signed_run(harness, signer, provider)
    ledger = harness.ledger(provider, R1K)
    assert check_stored_images(ledger, require_c2pa=True).passed
    victim = sorted(ledger["image_uri"].to_pylist())[0]
    with pyexiv2.Image(victim) as img:  # still decodes; only the metadata changed, as a re-tagging tool would
        img.modify_xmp({"Xmp.nbpro.cost": "0"})
    outcome = check_stored_images(ledger, require_c2pa=True)
    assert not outcome.passed and outcome.metadata["bad_marks"] == 1
    assert "C2PA manifest does not validate" in outcome.description
    assert "image_sha256" in outcome.description
