"""The provider slots of a cell: the one place where a task takes a slot and gives it back.

``max_in_flight`` tasks may be submitted and not yet terminal at a time; a slot is given back as soon
as the task is terminal, before its image is downloaded and stored. A provider without idempotent
submits has a second, tighter bound: at most ``max_unjournaled_submits`` submits between "sent" and
"task id durable", because each of those is one a crash could buy twice. (An admission controller
that adapts these bounds plugs in here.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from nbpro_pipeline.engine.attempt import Attempt


class ProviderSlots:
    def __init__(self, max_in_flight: int, max_unjournaled_submits: int, *, idempotent_submit: bool) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._unjournaled = None if idempotent_submit else asyncio.Semaphore(max_unjournaled_submits)
        self.window_ms: list[float] = []  # submit sent -> task id durable, where that window is bounded

    async def acquire(self, attempt: Attempt) -> None:
        await self._slots.acquire()
        attempt.holds_slot = True

    def release(self, attempt: Attempt) -> None:
        """Give the attempt's slot back (once, however often called): its task is terminal or gone."""
        if attempt.holds_slot:
            attempt.holds_slot = False
            self._slots.release()

    @contextlib.asynccontextmanager
    async def unjournaled_window(self) -> AsyncIterator[None]:
        """Around "send the submit, make its task id durable"; bounded and timed where it must be."""
        if self._unjournaled is None:
            yield
            return
        async with self._unjournaled:
            sent = time.monotonic()
            yield
            self.window_ms.append((time.monotonic() - sent) * 1000)
