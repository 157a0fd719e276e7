"""``nbpro run-cell``: one cell from a prompt table without Dagster, over the real engine and storage."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_ledger


def _table(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("id,prompt,aspect_ratio\na,a red kite,16:9\nb,a blue boat,1:1\nc,,1:1\n")
    return path


def test_run_cell_writes_the_ledger_and_a_rerun_pays_nothing(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ODIROUTER_API_KEY", "odr_cli_test_key")
    store = tmp_path / "store"
    args = [
        "run-cell", str(_table(tmp_path)), "--cell", "odirouter|1K", "--storage", str(store),
        "--base-url", sandbox.odirouter_url, "--poll-first-delay", "0", "--json",
    ]  # fmt: skip
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert (report["eligible"], report["succeeded"], report["submitted"]) == (2, 2, 2)
    assert "1 rejection" in first.stderr  # the row without a prompt is named, not run
    ledger = read_ledger(Storage(store), provider=Provider.ODIROUTER)
    assert sorted(ledger["prompt_id"].to_pylist()) == ["a", "b"]
    again = CliRunner().invoke(main, args)
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert (report["already_done"], report["submitted"]) == (2, 0)


def test_run_cell_without_a_key_says_which_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("RIVYA_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["run-cell", str(_table(tmp_path)), "--cell", "rivya|1K"])
    assert result.exit_code == 2
    assert "RIVYA_API_KEY" in result.stderr


def test_run_cell_takes_the_admission_settings(sandbox, tmp_path, monkeypatch):
    """The sandbox answers 429 beyond 1 running task and the report counts the refused creates it resent
    (none charged, none failed); a kind the admission does not know is refused."""
    monkeypatch.setenv("RIVYA_API_KEY", "rvya_sk_cli_test_key")
    sandbox.set_config({"rivya": {"rate_limit": {"max_concurrent_tasks": 1, "retry_after_s": 0.05}}})
    base = [
        "run-cell", str(_table(tmp_path)), "--cell", "rivya|1K", "--base-url", sandbox.rivya_url,
        "--poll-first-delay", "0", "--max-in-flight", "3", "--admission-kind", "reject", "--json",
    ]  # fmt: skip
    fresh = CliRunner().invoke(main, [*base, "--storage", str(tmp_path / "a"), "--max-held", "3"])
    assert fresh.exit_code == 0, fresh.output
    report = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert (report["succeeded"], report["failed"]) == (2, 0)
    bad = CliRunner().invoke(main, [*base, "--storage", str(tmp_path / "c"), "--admission-kind", "guess"])
    assert bad.exit_code == 2 and "guess" in bad.output
