"""``nbpro inspect IMAGE``: an image's provenance for a person holding a file that travelled: its XMP
fields, the state of its C2PA manifest, and the ledger row it came from."""

from __future__ import annotations

import hashlib
from typing import Any

import fsspec
import pyarrow.compute as pc
from pydantic import BaseModel

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.provenance.marks import MarksCheck, verify_marks
from nbpro_pipeline.provenance.xmp import read_xmp
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger import read_ledger

_LEDGER_FIELDS = (
    "prompt_id", "provider", "model_requested", "model_served", "model_version", "resolution", "aspect_ratio",
    "status", "task_id", "final_cost", "cost_unit", "cost_is_estimate", "run_id", "partition_key", "source_uri",
    "row_number", "image_uri", "recorded_at",
)  # fmt: skip


_FORMATS = {f.mime_type: f for f in OutputFormat}


class ImageProvenance(BaseModel):
    path: str
    format: str | None
    xmp: dict[str, str]
    marks: MarksCheck | None
    ledger_row: dict[str, Any] | None
    ledger_match: str  # "sha256" (the file as stored), "fingerprint" (same image, bytes changed), or why not


def _ledger_match(ledger_root: str | None, sha: str, xmp: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    if ledger_root is None:
        return None, "no ledger given (--ledger-root or NBPRO_STORAGE_ROOT)"
    ledger = read_ledger(Storage(ledger_root))
    hit = ledger.filter(pc.equal(ledger["image_sha256"], sha))
    if hit.num_rows:
        return hit.slice(hit.num_rows - 1).to_pylist()[0], "sha256"
    fingerprint = xmp.get("Xmp.nbpro.fingerprint")
    if fingerprint:
        same = pc.and_(pc.equal(ledger["fingerprint"], fingerprint), pc.equal(ledger["status"], "succeeded"))
        hit = ledger.filter(same)
        if hit.num_rows:
            return hit.slice(hit.num_rows - 1).to_pylist()[0], "fingerprint"
    return None, f"no ledger row under {ledger_root} has this file's sha256 or fingerprint"


def describe_image(path: str, ledger_root: str | None = None, trust_anchors_pem: str | None = None) -> ImageProvenance:
    with fsspec.open(path, "rb") as fh:
        data = fh.read()
    fmt = _FORMATS.get(sniff_image_mime(data[:12]) or "")  # its signature: a damaged file still shows its marks
    xmp = read_xmp(data)
    marks = verify_marks(data, fmt, trust_anchors_pem=trust_anchors_pem) if fmt is not None else None
    row, match = _ledger_match(ledger_root, hashlib.sha256(data).hexdigest(), xmp)
    return ImageProvenance(
        path=path, format=fmt.value if fmt else None, xmp=xmp, marks=marks, ledger_row=row, ledger_match=match
    )


def render(info: ImageProvenance) -> str:
    lines = [f"{info.path}  ({info.format or 'not a PNG/JPEG'})", "", "XMP"]
    lines += [f"  {k} = {v}" for k, v in sorted(info.xmp.items())] or ["  (none)"]
    lines += ["", "C2PA"]
    if info.marks is None or not info.marks.c2pa.present:
        lines.append("  no manifest")
    else:
        c2pa = info.marks.c2pa
        untrusted = " (signer not on a trust list)" if "signingCredential.untrusted" in c2pa.failures else ""
        lines.append(f"  validation state: {c2pa.validation_state}{untrusted}")
        lines.append(f"  signer: {c2pa.signer}")
        lines.append(f"  actions: {', '.join(c2pa.actions) or '-'}")
        lines += [f"  ingredient {i}" for i in c2pa.ingredients]
        if c2pa.failures:
            lines.append(f"  validation codes: {', '.join(c2pa.failures)}")
    if info.marks is not None:
        lines += ["", "marks: " + ("ok" if info.marks.ok else "; ".join(info.marks.problems))]
    lines += ["", f"ledger ({'matched by ' + info.ledger_match if info.ledger_row else info.ledger_match})"]
    if info.ledger_row:
        lines += [f"  {k} = {info.ledger_row.get(k)}" for k in _LEDGER_FIELDS]
    return "\n".join(lines)
