"""Generate one image per provider x resolution through the real clients, against the local sandbox.

    python examples/client_quickstart.py [--out .nbpro/quickstart]

It starts a sandbox on a free loopback port (state under ``<out>/sandbox``), so it needs no keys. To
point the same code at the real providers, construct the clients with their base URLs and keys from
the environment instead (``RivyaClient("https://rivya.ai", os.environ["RIVYA_API_KEY"])``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from pathlib import Path

from nbpro_pipeline.models import GenerationRequest, Provider, Resolution
from nbpro_pipeline.providers import OdiRouterClient, PollPolicy, RivyaClient
from nbpro_pipeline.sandbox import SandboxServer

PROMPTS = {
    Resolution.R1K: ("A lighthouse on a basalt cliff at dusk, oil painting", "16:9"),
    Resolution.R2K: ("A bowl of ramen seen from above, studio light", "1:1"),
    Resolution.R4K: ("A botanical plate of a banana plant, engraving style", "2:3"),
}


async def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    poll = PollPolicy(first_delay_s=0.5, factor=1.5, max_interval_s=2.0)
    with SandboxServer(state_dir=out / "sandbox") as sandbox:
        clients = {
            Provider.RIVYA: RivyaClient(sandbox.rivya_url, "rvya_sk_quickstart_demo", poll=poll),
            Provider.ODIROUTER: OdiRouterClient(sandbox.odirouter_url, "odr_quickstart_demo", poll=poll),
        }

        async def one(provider: Provider, resolution: Resolution) -> tuple:
            prompt, aspect = PROMPTS[resolution]
            client = clients[provider]
            request = GenerationRequest(prompt=prompt, aspect_ratio=aspect, resolution=resolution)
            t0 = time.monotonic()
            submitted = await client.submit(request)
            final = await client.wait(submitted.task_id)
            target = out / f"{provider.value}-{resolution.value}-{submitted.task_id}.png"
            with target.open("wb") as sink:
                image = await client.fetch_result(final, sink)
            return provider, resolution, submitted.task_id, image.bytes, time.monotonic() - t0, target

        rows = await asyncio.gather(*(one(p, r) for p in clients for r in Resolution))
        for client in clients.values():
            await client.aclose()
        await asyncio.sleep(0.2)  # let the sandbox settle its books
        ledger = sandbox.ledger()

    costs: dict[str, float] = defaultdict(float)
    units = {}
    for entry in ledger:
        costs[entry["task_id"]] += entry["amount"]
        units[entry["task_id"]] = entry["unit"]
    print(f"{'provider':<10} {'res':<4} {'task':<34} {'bytes':>8} {'secs':>5} {'cost':>12}  file")
    for provider, resolution, task_id, size, secs, path in rows:
        cost = f"{costs[task_id]:g} {units.get(task_id, '')}"
        print(f"{provider.value:<10} {resolution.value:<4} {task_id:<34} {size:>8} {secs:>5.1f} {cost:>12}  {path}")
    ours = {task_id for _, _, task_id, *_ in rows}  # the state dir may hold earlier runs' tasks
    for provider in Provider:
        total = sum(e["amount"] for e in ledger if e["provider"] == provider.value and e["task_id"] in ours)
        unit = "credits" if provider is Provider.RIVYA else "usd"
        print(f"charged by {provider.value} for this run: {total:g} {unit} (sandbox billing ledger)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".nbpro/quickstart"))
    asyncio.run(run(parser.parse_args().out))


if __name__ == "__main__":
    main()
