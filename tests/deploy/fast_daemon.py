"""The stock ``dagster-daemon`` CLI, but its backfill loop looks every second instead of every 30.

Dagster fixes that loop's interval in code (``controller.DEFAULT_DAEMON_INTERVAL_SECONDS``, read on each
pass of ``execute_backfill_iteration_loop``; no instance setting), so a test that launches a backfill
would wait up to 30 s for the tick that submits its runs. The stack tests start their daemon as

    python -m tests.deploy.fast_daemon run -w workspace.yaml    (the repo on sys.path: cwd or PYTHONPATH)

Every other daemon keeps the intervals of the instance's dagster.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

TICK_S = 1


def daemon_cmd(workspace: str | Path) -> list[str]:
    return [sys.executable, "-m", "tests.deploy.fast_daemon", "run", "-w", str(workspace)]


def main() -> int:
    from dagster._daemon import controller
    from dagster._daemon.cli import main as daemon_main

    # loud rather than silently slow when a Dagster upgrade renames it
    assert hasattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS"), "dagster moved the backfill loop's interval"
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = TICK_S
    return daemon_main()


if __name__ == "__main__":
    sys.exit(main())
