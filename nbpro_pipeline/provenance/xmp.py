"""IPTC XMP through exiv2 (``pyexiv2``): the digital source type every reader knows, IPTC 2025.1's AI
fields, plus the lineage in the project's namespace. exiv2 edits the metadata blocks only; pixels are
never re-encoded, and it escapes what it writes (a prompt is untrusted text)."""

from __future__ import annotations

import re
import threading

import pyexiv2

from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA, ImageLineage

NBPRO_XMP_NS = "urn:nbpro-pipeline:ns:lineage:1.0/"  # a URN: the project owns no domain to name it by
NBPRO_XMP_PREFIX = "nbpro"
SOURCE_TYPE_KEY = "Xmp.iptcExt.DigitalSourceType"
# IPTC Photo Metadata 2025.1 (namespace Iptc4xmpExt, exiv2's iptcExt): lineage attribute -> property
IPTC_AI_FIELDS = {
    "ai_system_used": "Xmp.iptcExt.AISystemUsed",
    "ai_system_version": "Xmp.iptcExt.AISystemVersionUsed",
    "prompt_information": "Xmp.iptcExt.AIPromptInformation",
    "prompt_writer": "Xmp.iptcExt.AIPromptWriterName",
}
_NOT_NBPRO = {"references", "ai_system", "prompt_information", "prompt_writer"}  # written as IPTC, or below
# Characters XML 1.0 cannot carry even escaped: exiv2 would write them and readers would refuse the packet.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_registered = threading.Lock()
_done = False


def _register_namespace() -> None:
    """exiv2 keeps namespaces in a process-wide table: register ours once."""
    global _done
    with _registered:
        if not _done:
            pyexiv2.registerNs(NBPRO_XMP_NS, NBPRO_XMP_PREFIX)
            _done = True


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def xmp_text(value: object) -> str:
    """``value`` as text XMP can hold: characters XML 1.0 forbids are dropped (exiv2 escapes the rest)."""
    text = str(value)
    # every character _NOT_XML names is unprintable, so printable text (nearly all of it) skips the regex
    return text if text.isprintable() else _NOT_XML.sub("", text)


# (attribute, XMP key) of the lineage's own properties, worked out once rather than per image
_NBPRO_KEYS = tuple(
    (name, f"Xmp.{NBPRO_XMP_PREFIX}.{_camel(name)}") for name in ImageLineage.model_fields if name not in _NOT_NBPRO
)


def xmp_fields(lineage: ImageLineage) -> dict[str, str]:
    """The XMP properties written for a lineage: the source type, IPTC's AI fields (the prompt and its
    writer only when the table shared them), ``Xmp.nbpro.promptId`` etc.; None fields left out."""
    fields = {SOURCE_TYPE_KEY: TRAINED_ALGORITHMIC_MEDIA, "Xmp.xmp.CreatorTool": "nbpro-pipeline"}
    for name, key in IPTC_AI_FIELDS.items():
        value = getattr(lineage, name)
        if value:
            fields[key] = xmp_text(value)
    for name, key in _NBPRO_KEYS:
        value = getattr(lineage, name)
        if value is not None:
            fields[key] = xmp_text(value)
    if lineage.references:
        fields[f"Xmp.{NBPRO_XMP_PREFIX}.references"] = xmp_text(" ".join(lineage.references))
    return fields


def write_xmp(data: bytes, lineage: ImageLineage) -> bytes:
    """``data`` (a PNG or JPEG) with the lineage's XMP added; raises RuntimeError when exiv2 cannot."""
    _register_namespace()
    with pyexiv2.ImageData(data) as img:
        img.modify_xmp(xmp_fields(lineage))
        return img.get_bytes()


def read_xmp(data: bytes) -> dict[str, str]:
    """Every XMP property of an image (empty when it has none or exiv2 cannot read it)."""
    _register_namespace()
    try:
        with pyexiv2.ImageData(data) as img:
            return {k: v if isinstance(v, str) else str(v) for k, v in img.read_xmp().items()}
    except RuntimeError:
        return {}
