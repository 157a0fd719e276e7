"""Putting the marks on an image and checking them: XMP first, C2PA signature last (so it covers the
XMP), and a check that the stored bytes still carry both, unchanged since signing."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.provenance import manifest
from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA, ImageLineage
from nbpro_pipeline.provenance.signing import ProvenanceSigner
from nbpro_pipeline.provenance.xmp import SOURCE_TYPE_KEY, read_xmp, write_xmp

MIME = {OutputFormat.PNG: "image/png", OutputFormat.JPG: "image/jpeg"}


class MarkingError(Exception):
    """exiv2 or c2pa could not mark the image (unparseable metadata, a signing failure)."""


def embed_marks(
    data: bytes,
    fmt: OutputFormat,
    lineage: ImageLineage,
    signer: ProvenanceSigner | None,
    *,
    downloaded: bytes | None = None,
) -> bytes:
    """``data`` with IPTC XMP and, when a signer is given, a signed C2PA manifest.

    ``downloaded`` is the file as the provider sent it: when it carries a manifest, that manifest
    becomes the parent ingredient. Without a signer a file with a valid manifest is returned untouched,
    since any edit would break the provider's signature and its credential is worth more than our XMP.
    """
    mime = MIME[fmt]
    found = manifest.read_state(downloaded, mime) if downloaded is not None else None
    parent = downloaded if found is not None and found.present else None
    if parent is not None and signer is None and found is not None and found.valid:
        return parent
    try:
        marked = write_xmp(data, lineage)
    except RuntimeError as exc:
        raise MarkingError(f"exiv2 cannot write XMP into this {fmt.value}: {exc}") from None
    if signer is None:
        return marked
    try:
        return manifest.sign(marked, mime, lineage, signer, parent)
    except Exception as exc:  # c2pa raises its own error tree; any of them means "not signed"
        raise MarkingError(f"C2PA signing failed: {exc}") from None


class MarksCheck(BaseModel):
    xmp_source_type: str | None
    c2pa: manifest.C2paState
    sha256: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_marks(
    data: bytes,
    fmt: OutputFormat,
    *,
    expected_sha256: str | None = None,
    require_c2pa: bool = False,
    trust_anchors_pem: str | None = None,
) -> MarksCheck:
    """Whether the stored bytes carry the marks: the XMP source type (or an intact provider manifest
    kept as sent), a manifest that validates against these very bytes when signing is on, and the
    sha256 the ledger recorded."""
    xmp = read_xmp(data)
    state = manifest.read_state(data, MIME[fmt], trust_anchors_pem)
    sha = hashlib.sha256(data).hexdigest()
    problems: list[str] = []
    source_type = xmp.get(SOURCE_TYPE_KEY)
    if source_type != TRAINED_ALGORITHMIC_MEDIA and not state.valid:
        problems.append("no IPTC DigitalSourceType trainedAlgorithmicMedia in XMP")
    if state.present and not state.valid:
        problems.append(f"C2PA manifest does not validate ({', '.join(state.failures) or state.validation_state})")
    elif require_c2pa and not state.present:
        problems.append("no C2PA manifest, though signing is on")
    if expected_sha256 is not None and sha != expected_sha256:
        problems.append("bytes differ from the ledger's image_sha256 (changed after storing)")
    return MarksCheck(xmp_source_type=source_type, c2pa=state, sha256=sha, problems=problems)
