"""The C2PA manifest: built and signed with ``c2pa-python``, read back with its ``Reader``.

A fresh image gets a ``c2pa.created`` action with the IPTC digital source type trainedAlgorithmicMedia
and the model and provider as its software agent; each reference image is an ``inputTo`` ingredient
(by hash: the engine no longer holds their bytes when it stores the result). A download that already
carries a manifest (Google embeds one in Nano Banana Pro output) is kept as the ``parentOf``
ingredient, its manifest store inside ours, and the actions become ``c2pa.opened`` + metadata edit:
C2PA reserves ``c2pa.created`` for assets without a parent, and the parent's own manifest says created.
"""

from __future__ import annotations

import io
import json
from typing import Any

import c2pa
from pydantic import BaseModel

from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA, ImageLineage
from nbpro_pipeline.provenance.signing import ProvenanceSigner

LINEAGE_ASSERTION = "org.nbpro-pipeline.lineage"
_PARENT_ID = "provider-download"
# c2pa embeds a JPEG thumbnail of the image by default (~45 KB at 1K): the image itself is right there,
# so the manifest goes without and stays ~30 KB, most of it the certificate chain and signature space.
_NO_THUMBNAIL = {"builder": {"thumbnail": {"enabled": False}}}
# Byte strings one of which every file with a manifest store carries: the PNG chunk type ``caBX``, the
# JUMBF superbox type ``jumb`` and the store's ``c2pa`` label (JPEG APP11), or an XMP
# ``dcterms:provenance`` pointing at a remote store. A file with none of them has no store a reader
# could find; scanning for them is far cheaper than the reader, which plain files are spared.
_STORE_MARKERS = (b"caBX", b"jumb", b"c2pa", b"provenance")


class C2paState(BaseModel):
    """What a reader makes of an image's manifest store."""

    present: bool
    validation_state: str | None = None  # "Invalid", "Valid" (signature good) or "Trusted" (signer trusted too)
    failures: list[str] = []  # validation codes of the active manifest, e.g. "signingCredential.untrusted"
    signer: str | None = None
    actions: list[str] = []
    ingredients: list[str] = []  # "relationship: title"
    parent_manifest: str | None = None  # label of the parent ingredient's manifest, if it had one

    @property
    def valid(self) -> bool:
        """Intact and signed as claimed; an untrusted signer (a private CA, the demo's) still counts."""
        return self.present and self.validation_state in ("Valid", "Trusted")


def _actions(lineage: ImageLineage, has_parent: bool) -> list[dict[str, Any]]:
    agent = {"name": lineage.ai_system_used, "version": lineage.ai_system_version}
    if has_parent:
        return [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": [_PARENT_ID]}},
            {"action": "c2pa.edited.metadata", "softwareAgent": {"name": "nbpro-pipeline"}},
        ]
    return [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent}]


def manifest_definition(lineage: ImageLineage, mime: str, has_parent: bool) -> dict[str, Any]:
    refs = [
        {"title": f"reference image {ref}", "format": "application/octet-stream", "relationship": "inputTo"}
        for ref in lineage.references
    ]
    return {
        "claim_generator_info": [{"name": "nbpro-pipeline", "version": lineage.pipeline_version or "unknown"}],
        "title": f"{lineage.prompt_id}.{'png' if mime == 'image/png' else 'jpg'}",
        "format": mime,
        "ingredients": refs,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": _actions(lineage, has_parent)}},
            {"label": LINEAGE_ASSERTION, "data": lineage.model_dump(mode="json", exclude_none=True)},
        ],
    }


def sign(data: bytes, mime: str, lineage: ImageLineage, signer: ProvenanceSigner, parent: bytes | None) -> bytes:
    """``data`` with a signed manifest embedded; ``parent`` is the download when it carried a manifest."""
    with (
        c2pa.Context(settings=c2pa.Settings.from_dict(_NO_THUMBNAIL)) as ctx,
        c2pa.Builder(manifest_definition(lineage, mime, parent is not None), context=ctx) as builder,
    ):
        if parent is not None:
            ingredient = {"title": "provider download", "relationship": "parentOf", "label": _PARENT_ID}
            builder.add_ingredient(ingredient, mime, io.BytesIO(parent))  # its manifest store comes along
        out = io.BytesIO()
        with signer.c2pa_signer() as c2pa_signer:
            builder.sign(c2pa_signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def _reader(data: bytes, mime: str, trust_anchors_pem: str | None) -> c2pa.Reader | None:
    if trust_anchors_pem is None:
        return c2pa.Reader.try_create(mime, io.BytesIO(data))
    settings = c2pa.Settings.from_dict(
        {"trust": {"trust_anchors": trust_anchors_pem}, "verify": {"verify_trust": True}}
    )
    with c2pa.Context(settings=settings) as ctx:
        return c2pa.Reader.try_create(mime, io.BytesIO(data), None, ctx)


def read_state(data: bytes, mime: str, trust_anchors_pem: str | None = None) -> C2paState:
    """The manifest store of an image as a reader sees it (``present=False`` when there is none)."""
    if not any(marker in data for marker in _STORE_MARKERS):
        return C2paState(present=False)
    try:
        reader = _reader(data, mime, trust_anchors_pem)
    except c2pa.C2paError as exc:  # a store that does not even parse
        return C2paState(present=True, validation_state="Invalid", failures=[str(exc)])
    if reader is None:
        return C2paState(present=False)
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    actions = [
        a.get("action", "?")
        for assertion in active.get("assertions", [])
        if assertion.get("label", "").startswith("c2pa.actions")
        for a in assertion.get("data", {}).get("actions", [])
    ]
    ingredients = active.get("ingredients", [])
    parent = next((i for i in ingredients if i.get("relationship") == "parentOf"), None)
    return C2paState(
        present=True,
        validation_state=state,
        failures=[f["code"] for f in results.get("failure", [])],
        signer=_signer_name(active.get("signature_info") or {}),
        actions=actions,
        ingredients=[f"{i.get('relationship')}: {i.get('title')}" for i in ingredients],
        parent_manifest=parent.get("active_manifest") if parent else None,
    )


def _signer_name(signature_info: dict[str, Any]) -> str | None:
    return signature_info.get("common_name") or signature_info.get("issuer")
