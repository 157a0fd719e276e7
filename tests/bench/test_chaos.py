"""The short form of ``bench/chaos.py``: real cell runs SIGKILLed at random moments and re-run, then the
money invariants checked against the sandbox's billing ledger. The full run is
``python bench/chaos.py --trials 20 --json`` (docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.external, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_chaos_short_form_meets_the_money_goals():
    args = ["--trials", "1", "--n", "12", "--kills", "3", "--seed", "7", "--json"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rivya, odi = result["rivya"], result["odirouter"]
    for name, figures in result.items():
        assert figures["trials"] == 1, name
        assert figures["kills"] >= 1, name  # the runs really were killed, and recovered
        assert figures["rows"] == 12, name
        assert figures["lost_paid_results"] == 0, (name, figures["examples"])
        assert figures["unaccounted_rows"] == 0, (name, figures["examples"])
        assert figures["cost_mismatches"] == 0, (name, figures["examples"])
        assert figures["reruns_that_paid"] == 0, (name, figures["examples"])
    assert rivya["duplicate_charges"] == 0 and rivya["ledger_cost"] == rivya["sandbox_billed"]
    # OdiRouter: every duplicate is a task created inside the unjournaled submit window, within the bound
    assert odi["unexplained_duplicates"] == 0
    assert odi["duplicate_charges"] == odi["duplicates_explained_by_submit_window"]
    assert odi["unjournaled_submit_window_tasks"] <= odi["window_bound"]
    assert rivya["ok"] and odi["ok"], proc.stderr[-3000:]
    assert proc.returncode == 0
