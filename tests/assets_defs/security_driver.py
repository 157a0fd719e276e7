"""Runs ``make demo``'s flow (``assets_defs.demo.main``) in a fresh process with canary API keys.

    python -m tests.assets_defs.security_driver HOME SOURCES {ok|errors}

A separate process because ``assets_defs.definitions`` reads its URLs and storage root at import, and
so that its stdout and stderr can be captured whole. Only two things differ from ``make demo``: the
keys are the canaries, and the sandbox it starts is instant (``ok``) or hostile (``errors``: the Rivya
key is revoked, OdiRouter answers 5xx, drops connections before and after creating tasks, fails
tasks, corrupts images, cuts downloads and expires result URLs). Python logging goes to stderr at
DEBUG, so everything any library logs is scanned too.
"""

from __future__ import annotations

import logging
import sys

import nbpro_pipeline.sandbox as sandbox_pkg
from assets_defs import demo
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer

RIVYA_CANARY = "rvya_sk_CANARY_7f3a9c1e5b2d"
ODIROUTER_CANARY = "odr_CANARY_4d8b2e6f0a1c"

HOSTILE = {
    "rivya": {"auth": {"revoked_keys": [RIVYA_CANARY]}},
    "odirouter": {
        "rate_limit": {"retry_after_s": 0.05},
        "faults": {
            "http_5xx": 0.3,
            "drop_connection": 0.15,
            "drop_after_processing": 0.15,
            "rate_limited": 0.05,
            "task_failed": {"INFERENCE_FAILURE": 0.15, "CONTENT_BLOCKED": 0.1},
            "corrupt_image": 0.15,
            "wrong_size": 0.1,
            "expired_url": 0.5,
            "drop_download": 0.3,
        },
    },
}


def main(home: str, sources: str, mode: str) -> int:
    config = SandboxConfig.zero_latency()
    if mode == "errors":
        config = config.updated(HOSTILE)

    class ConfiguredSandbox(SandboxServer):
        def __init__(self, state_dir, _config=None, **kw) -> None:
            super().__init__(state_dir, config, **kw)

    sandbox_pkg.SandboxServer = ConfiguredSandbox  # demo.main imports it from the package at call time
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True)
    canaries = {"RIVYA_API_KEY": RIVYA_CANARY, "ODIROUTER_API_KEY": ODIROUTER_CANARY}
    return demo.main(["--home", home, "--sources", sources], keys=canaries)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
