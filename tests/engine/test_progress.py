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
    await asyncio.sleep(0.5)
    ticker.cancel()
    assert len(lines) == 1, lines
    assert "2/10" in lines[0] and "ETA ?" not in lines[0]


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
    assert 9.0 <= p.rate() <= 11.0, p.rate()  # not 301/90 = 3.3 rows/s averaged since the start
    assert "ETA 20s" in p.line()  # 199 rows left at 10 rows/s
