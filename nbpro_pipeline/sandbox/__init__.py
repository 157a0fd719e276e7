"""Local emulator of both providers (Rivya and OdiRouter) for tests, benchmarks and demos.

A real HTTP server on one port: Rivya under ``/api/v1``, OdiRouter under ``/model/v1/queue``,
signed CDN links under ``/cdn``, and ``/_sandbox`` for steering (config, faults, wallets) and
auditing (billing ledger, stats). State lives in a directory and survives restarts.
"""

from nbpro_pipeline.sandbox.app import create_app
from nbpro_pipeline.sandbox.config import SandboxConfig
from nbpro_pipeline.sandbox.server import SandboxServer, serve

__all__ = ["SandboxConfig", "SandboxServer", "create_app", "serve"]
