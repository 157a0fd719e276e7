"""One prompt's attempt, as one explicit record passed through the engine's small steps.

Everything known about a prompt while it is handled lives here, not in dicts keyed by ``id(row)``:
the row and its request, the fingerprint and idempotency key, the provider's task, the last snapshot,
the download, the placed image and, once written, the ledger record. A bug at any step is recorded
from what the record holds by then (a task already made is booked, never forgotten).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.ledger import DraftImage, LedgerRecord
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.models.task import TaskUrls
from nbpro_pipeline.providers.base import DownloadedImage, TaskHandle, TaskSnapshot
from nbpro_pipeline.usability.judge import Judgement


class TaskRef(BaseModel):
    """The provider's task for this attempt: made by this run's submit or journaled by an earlier run."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    submitted_at: datetime | None = None
    attempts: int = 0  # HTTP attempts the create took (0 for a resumed task)
    replayed: bool = False  # the provider answered with a task it had made before for this key
    urls: TaskUrls = TaskUrls()  # where the provider said to ask about it

    @property
    def handle(self) -> TaskHandle:
        return TaskHandle(task_id=self.task_id, urls=self.urls, accepted_at=self.submitted_at)


class PlacedImage(BaseModel):
    """The downloaded image as stored (under images/ or, if it failed its checks, quarantine/)."""

    model_config = ConfigDict(frozen=True)

    uri: str
    sha256: str
    bytes: int
    width: int | None
    height: int | None


@dataclass
class Attempt:
    row: PromptRow
    request: GenerationRequest
    fingerprint: str
    key: str | None = None
    task: TaskRef | None = None
    resumed: bool = False
    snapshot: TaskSnapshot | None = None
    polls: int = 0  # status requests actually made for this attempt (errors carry theirs too)
    download: DownloadedImage | None = None
    placed: PlacedImage | None = None
    judged: Judgement | None = None  # the stored final image's usability verdict
    answer_images: int | None = None  # images the provider's answer named
    drafts: tuple[DraftImage, ...] = ()  # the answer's other images, kept beside the final one
    record: LedgerRecord | None = None
    holds_slot: bool = False
    claimed: bool = False  # the run's one attempt for its fingerprint (a duplicate row is not)

    @property
    def recorded(self) -> bool:
        return self.record is not None
