"""The lineage an image carries in its XMP: what was asked, of whom, at what cost, in which run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


class RequestParams(BaseModel):
    """The request parameters a stored image was ordered with (the ledger's ``params`` column too)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    aspect_ratio: str | None = None
    resolution: str | None = None
    output_format: str | None = None
    references: tuple[str, ...] = ()  # by sha256, or URL when the hash is unknown


class StoredLineage(BaseModel):
    """The engine's whole lineage record, embedded in each stored image as a private JSON blob (a PNG
    ``tEXt`` chunk, a JPEG comment) so it survives copying the file out of the storage root; the XMP
    and C2PA marks carry the standard subset (``ImageLineage``). Unknown keys from other versions are
    ignored when a file is read back."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt_id: str
    prompt_sha256: str | None = None
    prompt: str | None = None  # the first 2,000 characters
    source_uri: str | None = None
    source_sha256: str | None = None
    row_number: int | None = None
    provider: str
    model: str  # as the provider stated it served the task, else the id asked for (model_stated False)
    model_requested: str | None = None
    model_stated: bool | None = None  # None: written before the pipeline asked
    model_version: str | None = None  # as the provider stated it
    ai_system: str | None = None  # IPTC AISystemUsed: the model and the provider serving it
    prompt_shared: bool = False  # the table let the prompt into the standard metadata
    prompt_writer: str | None = None  # set only with a shared prompt
    task_id: str | None = None
    params: RequestParams = RequestParams()
    fingerprint: str | None = None
    provider_sha256: str | None = None  # of the bytes as downloaded, before any mark
    cost: str | None = None  # a Decimal as text
    cost_unit: str | None = None
    run_id: str | None = None
    partition_key: str | None = None
    pipeline_version: str | None = None
    created_at: str | None = None


class ImageLineage(BaseModel):
    """One stored image's provenance facts; every field is a string in XMP, so types stay simple."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt_id: str
    prompt_sha256: str | None = None
    provider: str
    model: str
    model_requested: str | None = None
    model_stated: bool | None = None
    model_version: str | None = None
    ai_system: str | None = None
    prompt_information: str | None = None  # the prompt, only where the table shares it
    prompt_writer: str | None = None
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

    @property
    def ai_system_used(self) -> str:
        return self.ai_system or f"{self.model} via {self.provider}"

    @property
    def ai_system_version(self) -> str:
        """The version the provider stated, else the model id it named (its ids name versions: nano-banana
        vs nano-banana-pro), else the id asked for, which ``model_stated`` False marks as such."""
        return self.model_version or self.model

    @classmethod
    def from_engine(cls, lineage: StoredLineage) -> ImageLineage:
        """The XMP/C2PA subset of the engine's record (its request params flattened); the prompt only
        where the table shared it."""
        flat = {**lineage.params.model_dump(), **lineage.model_dump(exclude={"params", "prompt"})}
        flat["prompt_information"] = lineage.prompt if lineage.prompt_shared else None
        return cls.model_validate(flat)
