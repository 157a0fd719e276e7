"""The C2PA manifest, validated by c2pa's own Reader against a test CA; a provider's manifest kept
as the parent; and the check that notices bytes changed after signing."""

from __future__ import annotations

import io
import json

import c2pa
import pytest

from nbpro_pipeline.provenance import embed_marks, verify_marks
from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA, ImageLineage, StoredLineage
from nbpro_pipeline.provenance.manifest import sign
from nbpro_pipeline.provenance.marks import MIME
from nbpro_pipeline.provenance.xmp import read_xmp
from tests.provenance.conftest import LINEAGE, image_bytes


def active_manifest(data: bytes, mime: str, anchors: str) -> tuple[str, dict]:
    settings = c2pa.Settings.from_dict({"trust": {"trust_anchors": anchors}, "verify": {"verify_trust": True}})
    with c2pa.Context(settings=settings) as ctx, c2pa.Reader(mime, io.BytesIO(data), None, ctx) as reader:
        store = json.loads(reader.json())
        return reader.get_validation_state(), store["manifests"][store["active_manifest"]]


def test_signed_manifest_validates_with_c2pas_reader(fmt, signer, trust_anchor):
    marked = embed_marks(image_bytes(fmt), fmt, LINEAGE, signer)
    state, manifest = active_manifest(marked, MIME[fmt], trust_anchor)
    assert state == "Trusted"  # signature valid, chain up to the test CA we told it to trust
    actions = [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert actions[0]["softwareAgent"]["name"] == "nano-banana-pro via rivya"
    refs = [i for i in manifest["ingredients"] if i["relationship"] == "inputTo"]
    assert [i["title"] for i in refs] == [f"reference image {r}" for r in LINEAGE.references]
    lineage = next(x for x in manifest["assertions"] if x["label"] == "org.nbpro-pipeline.lineage")["data"]
    assert lineage["task_id"] == "gen_abc" and lineage["model"] == "nano-banana-pro"
    # XMP was written first, so the signed file still has it, and the signature covers it
    assert read_xmp(marked)["Xmp.iptcExt.DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    check = verify_marks(marked, fmt, require_c2pa=True, trust_anchors_pem=trust_anchor)
    assert check.ok and check.c2pa.validation_state == "Trusted"


def test_without_trust_anchors_the_demo_signer_is_valid_but_untrusted(fmt, signer):
    check = verify_marks(embed_marks(image_bytes(fmt), fmt, LINEAGE, signer), fmt, require_c2pa=True)
    assert check.ok and check.c2pa.validation_state == "Valid"
    assert "signingCredential.untrusted" in check.c2pa.failures


def test_a_providers_manifest_is_kept_as_the_parent(fmt, signer, trust_anchor):
    google = ImageLineage(prompt_id="g", provider="google", model="gemini-3-pro-image")
    downloaded = sign(image_bytes(fmt), MIME[fmt], google, signer, None)  # stands in for Google's manifest
    ours = embed_marks(downloaded, fmt, LINEAGE, signer, downloaded=downloaded)
    state, manifest = active_manifest(ours, MIME[fmt], trust_anchor)
    assert state == "Trusted"
    parents = [i for i in manifest["ingredients"] if i["relationship"] == "parentOf"]
    assert len(parents) == 1 and parents[0]["active_manifest"]  # the provider's manifest, inside our store
    actions = [
        a["action"]
        for x in manifest["assertions"]
        if x["label"].startswith("c2pa.actions")
        for a in x["data"]["actions"]
    ]
    assert actions[0] == "c2pa.opened"
    check = verify_marks(ours, fmt, require_c2pa=True)
    assert check.c2pa.parent_manifest == parents[0]["active_manifest"]


def test_without_a_signer_a_providers_manifest_is_left_intact(fmt, signer):
    google = ImageLineage(prompt_id="g", provider="google", model="gemini-3-pro-image")
    downloaded = sign(image_bytes(fmt), MIME[fmt], google, signer, None)
    assert embed_marks(downloaded, fmt, LINEAGE, None, downloaded=downloaded) == downloaded
    assert verify_marks(downloaded, fmt).ok  # the provider's valid manifest stands in for our XMP


def test_xmp_only_without_a_signer(fmt):
    marked = embed_marks(image_bytes(fmt), fmt, LINEAGE, None)
    check = verify_marks(marked, fmt)
    assert check.ok and not check.c2pa.present and check.xmp_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert "no C2PA manifest" in " ".join(verify_marks(marked, fmt, require_c2pa=True).problems)
    assert "no IPTC DigitalSourceType" in " ".join(verify_marks(image_bytes(fmt), fmt).problems)


@pytest.mark.parametrize("where", [0.5, 0.9])
def test_bytes_changed_after_signing_fail_the_check(fmt, signer, where):
    marked = bytearray(embed_marks(image_bytes(fmt, (128, 96)), fmt, LINEAGE, signer))
    assert verify_marks(bytes(marked), fmt, require_c2pa=True).ok
    marked[int(len(marked) * where)] ^= 0x01
    check = verify_marks(bytes(marked), fmt, require_c2pa=True)
    assert not check.ok and not check.c2pa.valid
    assert any("C2PA manifest does not validate" in p for p in check.problems)


def test_copy_with_lineage_keeps_a_downloaded_manifest_as_parent(fmt, signer):
    """The engine's path: the provider's file (here signed by a stand-in for Google) through
    ``copy_with_lineage``, which adds the lineage blob, XMP, and our manifest with the download as parent."""
    from nbpro_pipeline.image_files import copy_with_lineage, read_lineage

    google = ImageLineage(prompt_id="g", provider="google", model="gemini-3-pro-image")
    downloaded = sign(image_bytes(fmt), MIME[fmt], google, signer, None)
    out = io.BytesIO()
    lineage = StoredLineage(prompt_id="p-9", provider="rivya", model="nano-banana-pro")
    copy_with_lineage(io.BytesIO(downloaded), out, fmt, lineage, signer)
    check = verify_marks(out.getvalue(), fmt, require_c2pa=True)
    assert check.ok and check.c2pa.parent_manifest is not None
    assert check.c2pa.ingredients == ["parentOf: provider download"]
    assert read_lineage(io.BytesIO(out.getvalue())).prompt_id == "p-9"
    assert read_xmp(out.getvalue())["Xmp.nbpro.promptId"] == "p-9"


def test_the_reader_runs_only_on_files_that_can_carry_a_store(fmt, signer, monkeypatch):
    """A plain download skips c2pa's reader (the marker scan says no store); a signed one, with the
    store's markers, still gets read and found."""
    from nbpro_pipeline.provenance import manifest

    signed = sign(image_bytes(fmt), MIME[fmt], LINEAGE, signer, None)
    opened: list[int] = []
    real = manifest._reader
    monkeypatch.setattr(manifest, "_reader", lambda data, *a: opened.append(len(data)) or real(data, *a))
    assert not manifest.read_state(image_bytes(fmt), MIME[fmt]).present
    assert opened == []
    assert manifest.read_state(signed, MIME[fmt]).present
    assert opened == [len(signed)]
