"""Admission by the expected number of unfinished tasks: the estimate, the cap, and both backstops."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest
from pydantic import ValidationError

from nbpro_pipeline.engine.admission import Admission, AdmissionKind, AdmissionSettings, alive_given_full, survival
from nbpro_pipeline.providers.policies import LatencyTracker


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def tracker(times: list[float]) -> LatencyTracker:
    t = LatencyTracker()
    for x in times:
        t.add(x)
    return t


TEN_TO_THIRTY = [10.0 + i for i in range(21)]  # completion times 10..30 s


def admission(times=TEN_TO_THIRTY, **settings) -> tuple[Admission, Clock]:
    clock = Clock()
    defaults = {"provider_slots": 4, "max_in_flight": 100}
    return Admission(AdmissionSettings(**{**defaults, **settings}), tracker(times), clock=clock), clock


def test_survival_is_the_share_of_completion_times_beyond_the_age():
    samples = sorted(TEN_TO_THIRTY)
    assert survival(samples, 0) == 1.0
    assert survival(samples, 20) == pytest.approx(10 / 21)
    assert 0 < survival(samples, 99) < 1 / 21  # a straggler never counts as certainly done


def test_cold_every_held_task_counts_so_it_admits_like_a_semaphore_of_c():
    adm, clock = admission(times=[5.0] * 3)  # fewer than min_samples completions
    for i in range(4):
        assert adm.may_submit()
        adm.submitted(i)
    clock.t = 1000
    assert adm.expected_unfinished() == 4 and not adm.may_submit()


def test_old_tasks_count_less_so_new_work_is_admitted_before_they_are_seen_done():
    adm, clock = admission()
    for i in range(4):
        adm.submitted(i)
    assert not adm.may_submit()  # all four just started: the provider is full
    clock.t = 29.0  # each has a ~1/21 chance of still running
    assert adm.expected_unfinished() == pytest.approx(4 * 1 / 21)
    assert adm.may_submit()  # though none has been seen finished yet


def test_a_task_seen_running_late_counts_fully_again():
    adm, clock = admission()
    for i in range(4):
        adm.submitted(i)
    clock.t = 29.0
    for i in range(4):
        adm.still_running(i)  # the last poll says: not done at 29 s
    assert adm.expected_unfinished() == pytest.approx(4.0)
    assert not adm.may_submit()


def test_the_cap_holds_whatever_the_estimate():
    adm, clock = admission(max_in_flight=5)
    for i in range(5):
        adm.submitted(i)
    clock.t = 1000
    assert adm.expected_unfinished() < 1 and not adm.may_submit()
    adm.finished(0)
    assert adm.may_submit() and adm.held == 4


def test_a_429_is_counted_and_blocks_until_a_finish_or_the_backoff():
    adm, clock = admission(backoff_s=2.0)
    adm.rejected()
    assert adm.counters.rejected_429 == 1 and not adm.may_submit()
    clock.t = 2.0
    assert adm.may_submit()
    adm.submitted("a")
    adm.rejected()
    assert not adm.may_submit()
    adm.finished("a")  # room opened at the provider: the block ends at once
    assert adm.may_submit()


def test_queue_providers_admit_up_to_the_allowance_and_stop_at_a_deep_queue_position():
    adm, clock = admission(kind=AdmissionKind.QUEUE, queue_allowance=2)
    for i in range(6):
        assert adm.may_submit(), i
        adm.submitted(i)
    assert not adm.may_submit()  # C=4 running + 2 queued
    clock.t = 29.0
    assert adm.may_submit()
    adm.still_running(5, queue_position=2)  # the provider says our task waits 3rd in its queue
    assert not adm.may_submit()
    adm.still_running(5, queue_position=0)
    assert adm.may_submit()


def test_queue_allowance_needs_a_queue_provider():
    with pytest.raises(ValidationError, match="queue providers only"):
        AdmissionSettings(provider_slots=4, max_in_flight=8, queue_allowance=2)


async def test_wait_for_room_returns_when_a_task_finishes():
    adm, _ = admission(times=[1.0] * 3)  # cold: a semaphore of 4
    for i in range(4):
        adm.submitted(i)
    waiter = asyncio.ensure_future(adm.wait_for_room())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    adm.finished(2)
    await asyncio.wait_for(waiter, 1)
    assert adm.counters.waits == 1


def test_a_reported_queue_position_counts_less_by_every_finish_seen_since():
    adm, clock = admission(kind=AdmissionKind.QUEUE, queue_allowance=2)
    for i in range(3):
        adm.submitted(i)
    adm.still_running(2, queue_position=3)
    assert not adm.may_submit()
    adm.finished(0)  # the queue moved on by one: our task now stands 2nd at most... still at the allowance
    assert not adm.may_submit()
    adm.finished(1)
    assert adm.may_submit()  # a stale position no longer blocks until the task is polled again


def test_the_margin_keeps_standard_deviations_of_the_estimate_free():
    samples = [10.0 + i for i in range(21)]
    tight, clock = admission(times=samples, provider_slots=8)
    loose, loose_clock = admission(times=samples, provider_slots=8, margin_sd=3.0)
    for adm in (tight, loose):
        for i in range(8):
            adm.submitted(i)
    clock.t = loose_clock.t = 20.0  # half of each task's completion times are behind it: p = 0.5 each
    mean, var = tight.estimate()
    assert mean == pytest.approx(8 * 10 / 21) and var == pytest.approx(8 * (10 / 21) * (11 / 21))
    # room is C - 1 + headroom = 7.25: 3.8 alone fits; 3.8 + 3 x 1.41 = 8.0 does not
    assert tight.may_submit() and not loose.may_submit()


def test_an_adaptive_margin_rises_on_429s_and_falls_on_accepted_creates():
    adm, _ = admission(margin_sd=1.0, target_429_share=0.05, margin_step=0.1)
    adm.rejected("x")
    assert adm.margin_sd == pytest.approx(1.1)
    for _ in range(19):  # 19 accepted for 1 refused: the target share, so back where it started
        adm.accepted()
    assert adm.margin_sd == pytest.approx(1.0)
    for _ in range(1000):
        adm.accepted()
    assert adm.margin_sd == 0.0  # never below none


async def test_admit_holds_the_task_before_the_next_waiter_looks():
    adm, _ = admission(times=[1.0] * 3)  # cold: a semaphore of 4
    await asyncio.gather(*(adm.admit(i) for i in range(4)))
    assert adm.held == 4 and not adm.may_submit()
    adm.rejected(3)  # its create was refused: nothing made, the place is free again
    assert adm.held == 3 and adm.counters.admitted == 3 and adm.counters.rejected_429 == 1


def test_a_reported_queue_position_ages_at_the_rate_a_full_provider_frees_slots():
    adm, clock = admission(times=[20.0] * 21, kind=AdmissionKind.QUEUE, queue_allowance=2)  # C=4, 20 s tasks
    adm.submitted("a")
    adm.still_running("a", queue_position=4)
    assert not adm.may_submit()
    clock.t = 5.0  # 4 slots / 20 s: one task done every 5 s, so the queue moved on by one: 3, still >= 2
    assert not adm.may_submit()
    clock.t = 10.1  # by two: our task now stands 2nd at most... below the allowance
    assert adm.may_submit()


def test_alive_given_full_is_the_posterior_of_each_task_given_the_count():
    rng = random.Random(7)
    ps = [rng.random() for _ in range(7)]
    running = 4
    numerators, total = [0.0] * len(ps), 0.0
    for states in itertools.product((0, 1), repeat=len(ps)):  # every way the seven can stand
        if sum(states) != running:
            continue
        weight = math.prod(p if s else 1 - p for p, s in zip(ps, states, strict=True))
        total += weight
        numerators = [n + weight * s for n, s in zip(numerators, states, strict=True)]
    assert alive_given_full(ps, running) == pytest.approx([n / total for n in numerators])
    assert sum(alive_given_full(ps, running)) == pytest.approx(running)
    assert alive_given_full([0.3, 0.9], 2) == [1.0, 1.0]  # no more tasks than run: all of them run
    assert alive_given_full([1.0, 1.0, 1.0], 2) == pytest.approx([2 / 3] * 3)  # impossible under ps: scaled


def test_a_429_with_c_held_conditions_the_estimate_on_exactly_c_running():
    """The estimate said room (old tasks likely done), the provider said full: from then on the held
    tasks count as C running, and room comes back as they age, with no backoff and no finish needed."""
    adm, clock = admission(backoff_s=60.0)  # C=4
    for i in range(5):
        adm.submitted(i)
    clock.t = 25.0  # each has a 5/21 chance of still running (26..30 s of 10..30): the estimate admits
    assert adm.expected_unfinished() == pytest.approx(5 * 5 / 21) and adm.may_submit()
    adm.submitted("new")
    adm.rejected("new")  # but all four slots were taken
    assert adm.expected_unfinished() == pytest.approx(4.0)
    assert not adm.may_submit()
    clock.t = 28.0  # three seconds on, of what ran at 25 s only the 29 and 30 s tasks still run: 2/5
    assert adm.expected_unfinished() == pytest.approx(4.0 * 2 / 5)
    assert adm.may_submit()  # long before the 60 s backoff


def test_a_429_with_fewer_than_c_held_says_nothing_of_our_tasks_and_backs_off():
    adm, clock = admission(backoff_s=2.0)  # C=4, two held: another run shares the key, or a rate limit
    adm.submitted("a")
    adm.submitted("b")
    adm.rejected()
    assert not adm.may_submit()
    clock.t = 2.0
    assert adm.may_submit()


async def test_a_create_still_on_its_way_is_not_among_the_c_a_429_says_are_running():
    adm, clock = admission()  # C=4
    for i in range(5):
        adm.submitted(i)
    clock.t = 25.0
    await adm.admit("on its way")  # held from now, its create not yet answered
    adm.rejected()  # another create was refused: the provider runs four of the five it made
    assert adm.expected_unfinished() == pytest.approx(4.0 + 1.0)
    assert adm.counters.admitted == 6  # each task counted once, however often it is stamped
    adm.submitted("on its way")
    assert adm.counters.admitted == 6


def test_right_after_a_429_the_estimate_leaves_no_room_whatever_the_headroom():
    """Conditioned to exactly C running, the next create must wait for a task to age: with a headroom
    of 1 the same instant would be admitted again, and answered 429 again, without end."""
    with pytest.raises(ValidationError):
        AdmissionSettings(provider_slots=4, max_in_flight=8, headroom=1.0)
    adm, clock = admission(headroom=0.99)
    for i in range(4):
        adm.submitted(i)
    clock.t = 29.0
    assert adm.may_submit()
    adm.rejected()
    assert not adm.may_submit()
