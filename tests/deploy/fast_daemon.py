"""The stock ``dagster-daemon`` CLI, but its backfill loop looks every second instead of every 30.

Dagster fixes that loop's interval in code (``controller.DEFAULT_DAEMON_INTERVAL_SECONDS``, read on each
pass of ``execute_backfill_iteration_loop``; no instance setting), so a test that launches a backfill
would wait up to 30 s for the tick that submits its runs. The stack tests start their daemon as

    python -m tests.deploy.fast_daemon run -w workspace.yaml    (the repo on sys.path: cwd or PYTHONPATH)

With ``--keep-workspace`` first, the daemon also keeps the code servers it started for the whole test:
the stock daemon reloads its workspace every 60 s (``controller.RELOAD_WORKSPACE_INTERVAL``), which for a
``python_module`` workspace starts a new code server each time (~3 s of CPU, the old one lingering
until it drains) to pick up changed code, and a test changes no code while it runs. Every other daemon
keeps the intervals of the instance's dagster.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

TICK_S = 1
KEEP_WORKSPACE = "--keep-workspace"
# longer than any stack test's deadline
WORKSPACE_RELOAD_S = 3600


def daemon_cmd(workspace: str | Path, keep_workspace: bool = False) -> list[str]:
    keep = [KEEP_WORKSPACE] if keep_workspace else []
    return [sys.executable, "-m", "tests.deploy.fast_daemon", *keep, "run", "-w", str(workspace)]


def main() -> int:
    from dagster._daemon import controller
    from dagster._daemon.cli import main as daemon_main

    # loud rather than silently slow when a Dagster upgrade renames them
    assert hasattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS"), "dagster moved the backfill loop's interval"
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = TICK_S
    if KEEP_WORKSPACE in sys.argv:
        sys.argv.remove(KEEP_WORKSPACE)
        assert hasattr(controller, "RELOAD_WORKSPACE_INTERVAL"), "dagster moved the workspace reload interval"
        controller.RELOAD_WORKSPACE_INTERVAL = WORKSPACE_RELOAD_S
    return daemon_main()


if __name__ == "__main__":
    sys.exit(main())
