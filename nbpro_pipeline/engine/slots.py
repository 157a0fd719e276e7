"""The provider slots of a cell: the one place where a task takes a place at the provider and gives it back.

``admission.Admission`` submits while the tasks *expected* to be still running (learned completion
times, each task's age, what its last poll said) leave room under C, with the provider's own answer as
the backstop: for a *reject* provider a 429 on create is counted, the submit waits for room and is sent
again (nothing was made, so nothing is charged and nothing failed); a *queue* provider accepts up to
``queue_allowance`` tasks beyond C and reports their queue position. ``max_held`` caps what is held
whatever the estimate.

A provider without idempotent submits has a second, tighter bound: at most ``max_unjournaled_submits``
submits between "sent" and "task id durable", because each of those is one a crash could buy twice.
That window is timed from the moment the request can go (its rate-limit token is taken before the
window opens), so it measures only "sent -> task id durable".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from nbpro_pipeline.engine.admission import Admission, AdmissionKind, AdmissionSettings
from nbpro_pipeline.engine.attempt import Attempt
from nbpro_pipeline.engine.settings import EngineSettings
from nbpro_pipeline.providers.base import ProviderClient, ProviderTraits, TaskSnapshot
from nbpro_pipeline.providers.errors import RateLimitedError


class ProviderSlots:
    """Admission by the expected number of tasks still unfinished at the provider, and the window bound."""

    def __init__(self, admission: Admission, max_unjournaled_submits: int, *, idempotent_submit: bool) -> None:
        self.admission = admission
        self.counters = admission.counters
        self._by_task: dict[str, int] = {}
        self._unjournaled = None if idempotent_submit else asyncio.Semaphore(max_unjournaled_submits)
        self.window_ms: list[float] = []  # submit sent -> task id durable, where that window is bounded
        self.open_windows = 0

    @property
    def bounds_window(self) -> bool:
        return self._unjournaled is not None

    async def acquire(self, attempt: Attempt) -> None:
        await self.admission.admit(id(attempt))
        attempt.holds_slot = True

    def submitted(self, attempt: Attempt, snapshot: TaskSnapshot | None) -> None:
        """The provider made ``attempt``'s task (``snapshot``: its answer to the create, if it gave one)."""
        assert attempt.task is not None
        key = id(attempt)
        self.admission.submitted(key)  # re-stamped: the task's age runs from the provider's answer
        self.admission.accepted()
        self._by_task[attempt.task.task_id] = key
        if snapshot is not None and not snapshot.state.terminal:
            self.admission.still_running(key, snapshot.queue_position)

    def rejected(self, attempt: Attempt, exc: RateLimitedError) -> None:
        """A 429 to the create: nothing was made. Counted; the place is given back until there is room."""
        attempt.holds_slot = False
        self.admission.rejected(id(attempt), exc.retry_after)

    def observe(self, snapshot: TaskSnapshot) -> None:
        """A poll's answer (the client's ``on_poll`` hook)."""
        key = self._by_task.get(snapshot.task_id)
        if key is not None and not snapshot.state.terminal:
            self.admission.still_running(key, snapshot.queue_position)

    def release(self, attempt: Attempt) -> None:
        """Give the attempt's place back (once, however often called): its task is terminal or gone."""
        if attempt.holds_slot:
            attempt.holds_slot = False
            if attempt.task is not None:
                self._by_task.pop(attempt.task.task_id, None)
            self.admission.finished(id(attempt))

    @contextlib.asynccontextmanager
    async def unjournaled_window(self) -> AsyncIterator[None]:
        """Around "send the submit, make its task id durable"; bounded and timed where it must be."""
        if self._unjournaled is None:
            yield
            return
        async with self._unjournaled:
            sent = time.monotonic()
            self.open_windows += 1
            try:
                yield
            finally:
                self.open_windows -= 1
            self.window_ms.append((time.monotonic() - sent) * 1000)


def slots_for(settings: EngineSettings, traits: ProviderTraits, client: ProviderClient) -> ProviderSlots:
    """The cell's slots: an admission of the kind the provider's traits say (unless the settings override
    it), learning from the client's completion times; the client is told to hand 429s on create and
    every poll's answer to it where it can (``attach_admission``)."""
    kind = AdmissionKind(settings.admission_kind or traits.admission)
    admission = Admission(
        AdmissionSettings(
            provider_slots=settings.max_in_flight,
            max_in_flight=settings.held_cap(),
            kind=kind,
            queue_allowance=settings.allowance() if kind is AdmissionKind.QUEUE else 0,
            margin_sd=settings.admission_margin_sd if kind is AdmissionKind.REJECT else 0.0,
            target_429_share=settings.admission_429_share if kind is AdmissionKind.REJECT else None,
        ),
        client.run_times,  # the processing times the client learns: what the estimate steers by
    )
    slots = ProviderSlots(admission, settings.max_unjournaled_submits, idempotent_submit=traits.idempotent_submit)
    client.attach_admission(slots.observe)
    return slots
