"""``make dev``: the sandbox (realistic latency), the gallery server and the Dagster UI with its daemon, on a
storage root and instance of their own, signing with the demo's throwaway certificate.

    python -m assets_defs.dev [--home .nbpro/dev] [--port 3000] [--gallery-port 8788] [-- SANDBOX_ARGS...]

Its own root, because ``make demo``'s instant sandbox would otherwise sit in the same ledger and pull the
latency percentiles towards zero; and so a backfill here has real work to do (the demo's cells are done).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def dev_env(home: Path, sandbox_url: str, gallery_url: str) -> dict[str, str]:
    """The code location's environment: sandbox keys and URLs, this home's storage and instance, the demo
    certificate (``demo.demo_signing``) and where browsers reach the galleries."""
    from assets_defs.demo import demo_keys, demo_signing
    from nbpro_pipeline.providers.registry import PROVIDERS

    env = dict(os.environ)
    env.update({k: v for k, v in demo_keys().items() if not os.environ.get(k)})  # a real key set stays
    for entry in PROVIDERS:
        url = entry.sandbox_url(sandbox_url)
        if url is not None and not os.environ.get(f"{entry.env_prefix}_BASE_URL"):
            env[f"{entry.env_prefix}_BASE_URL"] = url
    print(demo_signing(Path(".nbpro"), env), flush=True)  # the same certificate as make demo's
    env.update(
        {
            "DAGSTER_HOME": str((home / "dagster_home").resolve()),
            "NBPRO_STORAGE_ROOT": str((home / "storage").resolve()),
            "NBPRO_STORAGE_URL": gallery_url,
        }
    )
    return env


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=".nbpro/dev", help="storage, sandbox state and Dagster instance")
    parser.add_argument("--port", type=int, default=3000, help="the Dagster UI")
    parser.add_argument("--sandbox-port", type=int, default=8787)
    parser.add_argument("--gallery-port", type=int, default=8788)
    parser.add_argument("sandbox_args", nargs="*", help="more `nbpro sandbox` options (after --)")
    args = parser.parse_args(argv)
    home = Path(args.home)
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "storage").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    nbpro = str(BIN / "nbpro")
    sandbox_url = f"http://127.0.0.1:{args.sandbox_port}"
    gallery_url = f"http://127.0.0.1:{args.gallery_port}"
    env = dev_env(home, sandbox_url, gallery_url)
    procs = [
        _start([nbpro, "sandbox", "--port", str(args.sandbox_port), "--state", str(home / "sandbox"),
                "--latency", "realistic", *args.sandbox_args]),
        _start([nbpro, "serve-galleries", str(home / "storage"), "--port", str(args.gallery_port)]),
    ]  # fmt: skip
    print(f"galleries on {gallery_url}/gallery/; storage {env['NBPRO_STORAGE_ROOT']}", flush=True)
    try:
        return subprocess.call(
            [str(BIN / "dg"), "dev", "-w", "workspace.yaml", "-p", str(args.port)], env=env, cwd=REPO
        )
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
