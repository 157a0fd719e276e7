"""What identifies a provider task beyond its id: the URLs the provider said to follow. Here, below the
providers, because the journal keeps them so a later run can follow them too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TaskUrls(BaseModel):
    """Where the provider said to ask about a task (fal's rule: follow these, never build them); empty
    fields fall back to the documented paths."""

    model_config = ConfigDict(frozen=True)

    status: str | None = None
    response: str | None = None
    cancel: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.status or self.response or self.cancel)
