"""One Rivya cell in a process of its own, so a test can SIGKILL it mid-run (``python -m tests.s3.cell_child``).

The storage root and the endpoint come from the command line and the environment (``AWS_*``), as in a
real deployment; the ledger is flushed every 0.1 s so that a kill lands between ledger parts. Its cell
lease lives 1 s unrenewed (``LEASE_TTL_S``), so the run after a kill waits only that long.
"""

from __future__ import annotations

import argparse
import asyncio

from nbpro_pipeline.engine import EngineSettings, RunInfo, run_cell
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers import RivyaClient
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.engine.conftest import prompt_rows
from tests.providers.conftest import FAST_POLL, FAST_RETRY

LEASE_TTL_S = 1.0


async def main(args: argparse.Namespace) -> None:
    settings = EngineSettings(
        max_in_flight=args.in_flight,
        progress_interval_s=60,
        ledger_flush_interval_s=0.1,
        lease_ttl_s=LEASE_TTL_S,
        lease_heartbeat_s=0.2,
    )
    await run_cell(
        prompt_rows(args.rows),
        client=lambda: RivyaClient(args.url, args.key, retry=FAST_RETRY, poll=FAST_POLL, seed=1),
        provider=Provider.RIVYA,
        resolution=Resolution.R1K,
        storage=Storage(args.root),
        run=RunInfo(run_id=args.run_id, partition_key="rivya|1K", pipeline_version="test"),
        settings=settings,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--url", "--key", "--root", "--run-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
