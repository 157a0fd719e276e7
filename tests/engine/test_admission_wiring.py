"""The admission as the engine runs it, over the real sandbox: a reject provider's 429s on create are
counted and resent (never charged, never a failure), a queue provider's queue positions and the cap
on held tasks are honoured, and the unjournaled submit window holds no rate-limit wait."""

from __future__ import annotations

import asyncio

import pytest

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.engine.admission import Admission, AdmissionKind
from nbpro_pipeline.engine.slots import ProviderSlots, slots_for
from nbpro_pipeline.providers.odirouter import TRAITS as ODIROUTER_TRAITS
from nbpro_pipeline.providers.policies import LatencyTracker
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.providers.rivya import TRAITS as RIVYA_TRAITS
from tests.engine.conftest import prompt_rows


def _latency(low: float, high: float) -> dict:
    return {"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "uniform", "low": low, "high": high}}


def _settings(**kw) -> EngineSettings:
    return EngineSettings(progress_interval_s=60, ledger_flush_interval_s=60, **kw)


class _Recorder:
    """Every admission decision of a cell: how many tasks were held, the deepest queue position the
    provider had reported for them, and whether the queue rule (positions, aged since) said "full"."""

    def __init__(self, monkeypatch) -> None:
        self.held: list[int] = []
        self.positions: list[int] = []
        self.queue_full: list[bool] = []
        real = Admission.admit

        async def admit(adm: Admission, key) -> None:
            await real(adm, key)
            self.held.append(adm.held)
            known = [h.queue_position for h in adm._held.values() if h.queue_position is not None]
            self.positions.append(max(known, default=-1))
            self.queue_full.append(adm._queue_full())

        monkeypatch.setattr(Admission, "admit", admit)
        self.reported: list[int] = []  # every queue position the provider reported (creates and polls)
        still = Admission.still_running

        def still_running(adm: Admission, key, queue_position=None) -> None:
            if queue_position is not None:
                self.reported.append(queue_position)
            still(adm, key, queue_position)

        monkeypatch.setattr(Admission, "still_running", still_running)


# -- which admission a cell gets ---------------------------------------------------------------------
class _Client:
    def __init__(self) -> None:
        self.run_times = LatencyTracker()
        self.attached = None

    def attach_admission(self, on_poll) -> None:
        self.attached = on_poll


@pytest.mark.parametrize(
    ("traits", "override", "kind"),
    [
        (RIVYA_TRAITS, None, AdmissionKind.REJECT),
        (ODIROUTER_TRAITS, None, AdmissionKind.QUEUE),
        (ODIROUTER_TRAITS, "reject", AdmissionKind.REJECT),
        (RIVYA_TRAITS, "queue", AdmissionKind.QUEUE),
    ],
)
def test_the_kind_comes_from_the_provider_traits_unless_the_settings_say(traits, override, kind):
    client = _Client()
    slots = slots_for(_settings(max_in_flight=8, admission_kind=override), traits, client)
    assert isinstance(slots, ProviderSlots)
    a = slots.admission.settings
    assert a.kind is kind and a.provider_slots == 8 and a.max_in_flight == 12  # cap: 1.5 x C by default
    assert a.queue_allowance == (4 if kind is AdmissionKind.QUEUE else 0)
    assert client.attached == slots.observe  # polls and 429s on create now reach the admission


# -- reject providers: 429 on create -------------------------------------------------------------------
async def test_a_reject_provider_s_429s_are_counted_resent_and_never_charged(harness, provider):
    # the provider runs 2 at once, the cell believes 4: the backstop must catch every excess create
    harness.configure(
        provider, latency=_latency(0.05, 0.15), rate_limit={"max_concurrent_tasks": 2, "retry_after_s": 0.05}
    )
    rows = prompt_rows(16)
    report = await harness.run(provider, rows, settings=_settings(max_in_flight=4, admission_kind="reject"))
    assert report.succeeded == 16 and report.failed == 0 and report.skipped == 0
    assert report.create_429 > 0
    assert report.client_counters["create_rejected"] == report.create_429
    assert harness.tasks_created(provider) == 16  # a refused create made nothing
    harness.assert_reconciles(provider)  # every credit in the ledger is one the sandbox billed


async def test_with_the_provider_s_true_limit_the_429s_stay_rare(harness):
    harness.configure(Provider.RIVYA, latency=_latency(0.1, 0.2), rate_limit={"max_concurrent_tasks": 4})
    report = await harness.run(Provider.RIVYA, prompt_rows(40), settings=_settings(max_in_flight=4))
    assert report.succeeded == 40 and report.failed == 0
    assert report.create_429 <= 40 * 0.25  # a backstop, not the feedback loop
    harness.assert_reconciles(Provider.RIVYA)


# -- queue providers -------------------------------------------------------------------------------------
async def test_a_queue_provider_is_kept_a_short_queue_and_the_cap_holds(harness, monkeypatch):
    harness.configure(
        Provider.ODIROUTER, latency=_latency(0.1, 0.2), rate_limit={"max_concurrent_tasks": 2, "admission": "queue"}
    )
    seen = _Recorder(monkeypatch)
    settings = _settings(max_in_flight=2, queue_allowance=2, max_held=3)
    report = await harness.run(Provider.ODIROUTER, prompt_rows(20), settings=settings)
    assert report.succeeded == 20 and report.failed == 0 and report.create_429 == 0
    assert max(seen.held) == 3  # the cap binds (C + allowance would allow 4)
    assert not any(seen.queue_full)  # never admitted while the provider's queue was at the allowance
    assert harness.tasks_created(Provider.ODIROUTER) == 20
    harness.assert_reconciles(Provider.ODIROUTER)


async def test_a_deep_queue_position_stops_admission_until_it_drains(harness, monkeypatch):
    # the provider runs 1 at once, the cell believes 6 and allows 1 waiting: the queue positions the
    # provider reports (in its create answer and in polls) are what keeps the queue that short
    harness.configure(
        Provider.ODIROUTER, latency=_latency(0.08, 0.12), rate_limit={"max_concurrent_tasks": 1, "admission": "queue"}
    )
    seen = _Recorder(monkeypatch)
    settings = _settings(max_in_flight=6, queue_allowance=1, admission_kind="queue")
    report = await harness.run(Provider.ODIROUTER, prompt_rows(12), settings=settings)
    assert report.succeeded == 12 and report.failed == 0
    assert max(seen.reported) >= 1  # the provider did report tasks waiting behind others...
    assert not any(seen.queue_full)  # ...and nothing was admitted while its queue was at the allowance
    assert max(seen.held) == 7  # C + allowance when cold: the queue was really used
    harness.assert_reconciles(Provider.ODIROUTER)


# -- the unjournaled window --------------------------------------------------------------------------------
class _WatchedBucket(TokenBucket):
    """A slow bucket that notes whether an unjournaled submit window was open at each wait for a token."""

    def __init__(self) -> None:
        super().__init__(rate=4, burst=1)  # 250 ms between calls (polls take tokens too): beyond a loaded window
        self.slots: ProviderSlots | None = None
        self.in_window: list[bool] = []

    async def acquire(self) -> None:
        self.in_window.append(bool(self.slots and self.slots.open_windows))
        await super().acquire()


async def test_the_odirouter_window_opens_only_once_the_rate_limit_token_is_taken(harness, monkeypatch):
    bucket = _WatchedBucket()
    real = slots_for

    def watched(settings, traits, client):
        bucket.slots = real(settings, traits, client)
        return bucket.slots

    monkeypatch.setattr("nbpro_pipeline.engine.run.slots_for", watched)
    client = harness.client(Provider.ODIROUTER)
    client.limiter = bucket
    report = await harness.runner(Provider.ODIROUTER, client, settings=_settings(max_in_flight=1)).run(prompt_rows(4))
    assert report.succeeded == 4
    assert bucket.in_window and not any(bucket.in_window)  # every token wait happened outside a window
    assert bucket.waited_s > 0.5  # the bucket did make calls wait (4/s), just never inside the window
    # the window is "sent -> task id durable" only: below the bucket's 250 ms between calls
    assert report.submit_window_ms_max is not None and report.submit_window_ms_max < 250


async def test_a_token_taken_ahead_is_this_task_s_alone():
    from nbpro_pipeline.providers import OdiRouterClient

    client = OdiRouterClient("http://127.0.0.1:9", "k", limiter=TokenBucket(rate=1000, burst=2))

    async def take() -> float:
        await client.take_send_token()
        return client.limiter._tokens

    await asyncio.gather(take(), take())
    assert client.limiter._tokens < 0.5  # two tasks, two tokens: neither reused the other's
    await client.aclose()


# -- crash and resume with 429s in play ------------------------------------------------------------------
class _Crash(BaseException):
    """Not an Exception: nothing in the engine catches it, as with a killed process."""


async def test_a_crash_amid_429s_resumes_exactly(harness, monkeypatch):
    """On Rivya (idempotent creates) exactly: every prompt bought once. (OdiRouter's own bound, a crash
    buying at most the unjournaled window twice, is the chaos bench's to check.)"""
    from nbpro_pipeline.engine.steps import PromptSteps

    provider = Provider.RIVYA

    harness.configure(
        provider, latency=_latency(0.05, 0.1), rate_limit={"max_concurrent_tasks": 2, "retry_after_s": 0.05}
    )
    rows = prompt_rows(10)
    settings = _settings(max_in_flight=4, admission_kind="reject")
    stored = 0
    real = PromptSteps.fetch_and_place

    async def crash_after_four(self, attempt):
        nonlocal stored
        if stored == 4:
            raise _Crash
        stored += 1
        return await real(self, attempt)

    monkeypatch.setattr(PromptSteps, "fetch_and_place", crash_after_four)
    with pytest.raises(_Crash):
        await harness.run(provider, rows, run_id="run-crashed", settings=settings)
    monkeypatch.undo()
    report = await harness.run(provider, rows, run_id="run-2", settings=settings)
    assert report.failed == 0 and report.succeeded + report.already_done == 10
    assert report.resumed >= 1  # the crashed run's journaled tasks were polled, not bought again
    assert harness.tasks_created(provider) == 10  # every prompt bought once, 429s or not
    harness.assert_reconciles(provider)
