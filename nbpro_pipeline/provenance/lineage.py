"""The lineage an image carries in its XMP: what was asked, of whom, at what cost, in which run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


class ImageLineage(BaseModel):
    """One stored image's provenance facts; every field is a string in XMP, so types stay simple."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt_id: str
    prompt_sha256: str | None = None
    provider: str
    model: str
    task_id: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    output_format: str | None = None
    cost: str | None = None  # a Decimal as text: XMP has no decimal type, and floats would round
    cost_unit: str | None = None
    run_id: str | None = None
    partition_key: str | None = None
    source_uri: str | None = None
    source_sha256: str | None = None
    row_number: int | None = None
    fingerprint: str | None = None
    provider_sha256: str | None = None
    pipeline_version: str | None = None
    created_at: str | None = None
    references: tuple[str, ...] = ()  # reference images by sha256 (or URL when the hash is unknown)

    @classmethod
    def from_engine(cls, lineage: dict[str, Any]) -> ImageLineage:
        """The engine's lineage record (request params nested under ``params``) as this model."""
        params = lineage.get("params") or {}
        flat = {**params, **lineage}
        flat["references"] = tuple(str(r) for r in params.get("references") or () if r)
        if flat.get("cost") is not None:
            flat["cost"] = str(flat["cost"])
        return cls.model_validate(flat)
