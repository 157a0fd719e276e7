"""The progress line: an ETA on the first line, and a rate that follows the run's current pace."""

import asyncio

from nbpro_pipeline.engine import progress as progress_mod
from nbpro_pipeline.engine.progress import Progress
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.models.common import Resolution


def _progress(total: int, lines: list[str]) -> Progress:
    report = CellReport(
        provider="rivya", resolution=Resolution.R1K, partition_key="rivya|1K", cost_unit="credits",
        cost_is_estimate=False, eligible=total,
    )  # fmt: skip
    return Progress("rivya|1K", report, lines.append, lambda: "0 credits")


async def test_first_line_comes_with_the_first_results_and_has_an_eta(monkeypatch):
    monkeypatch.setattr(progress_mod, "FIRST_LINE_GRACE_S", 0.05)
    lines: list[str] = []
    p = _progress(10, lines)
    ticker = asyncio.ensure_future(p.every(30.0))  # a long interval: the first line must not wait for it
    await asyncio.sleep(0.1)
    assert lines == []  # nothing done yet: no "ETA ?" line
    p.report.succeeded += 2
    for _ in range(100):  # due within ~0.5 s (two 0.25 s looks); 5 s allowed for a loaded machine, not 30
        if lines:
            break
        await asyncio.sleep(0.05)
    ticker.cancel()
    assert len(lines) == 1, lines
    assert "2/10 new prompts done" in lines[0] and "ETA ?" not in lines[0]


def test_rate_is_taken_over_the_recent_window(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = _progress(500, [])
    clock[0] += 60  # a slow first minute: one row
    p.report.succeeded = 1
    for _ in range(30):  # then ten rows a second for 30 s, sampled each second
        clock[0] += 1
        p.report.succeeded += 10
        p.rate()
    assert 9.0 <= p.rate() <= 11.0, p.rate()  # not 301/90 = 3.3 prompts/s averaged since the start
    assert "ETA 20s" in p.line()  # 199 prompts left at 10 a second


def test_prompts_already_done_count_apart_and_never_inflate_the_rate(monkeypatch):
    """11 of 17 stored earlier, skipped at once; 1 of the 6 new ones done after 20 s: the rate is 1 per
    20 s and the ETA 5 x 20 s, not "11/17 done, ETA 1s"."""
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = _progress(17, [])
    p.report.already_done = 11
    clock[0] += 20
    p.report.succeeded = 1
    snap = p.snapshot()
    assert (snap.new_done, snap.new_total, snap.already_done) == (1, 6, 11)
    assert 0.049 <= snap.rate_per_s <= 0.051, snap.rate_per_s
    assert snap.eta_s is not None and 99 <= snap.eta_s <= 101, snap.eta_s
    assert "1/6 new prompts done" in snap.line and "11 already done earlier" in snap.line
    assert "ETA 1m40s" in snap.line
    assert snap.short == "1/6 new, 0 failed, ETA 1m40s"


def test_a_window_without_results_falls_back_to_the_rate_since_the_start(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = _progress(10, [])
    clock[0] += 10
    p.report.succeeded = 5
    p.rate()
    for _ in range(40):  # then 40 s with no result: the window is empty, the run is not
        clock[0] += 1
        p.rate()
    assert "ETA ?" not in p.line()
    assert 0.09 <= p.rate() <= 0.11  # 5 in 50 s


def test_each_reading_reaches_the_listener_and_a_failing_one_is_dropped():
    lines: list[str] = []
    seen = []
    p = _progress(4, lines)
    p.on_snapshot = seen.append
    p.report.already_done, p.report.succeeded = 2, 2
    p.tell()
    assert seen[-1].short == "2/2 new, 0 failed, done" and lines[-1] == seen[-1].line

    def broken(_snapshot) -> None:
        raise RuntimeError("the instance is gone")

    p.on_snapshot = broken
    p.tell()
    p.tell()
    assert p.on_snapshot is None and sum("progress not shown live" in line for line in lines) == 1
