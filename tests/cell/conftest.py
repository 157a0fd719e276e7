"""The cell tests run real cells: the engine tests' harness and provider fixtures."""

from tests.engine.conftest import harness, provider  # noqa: F401  (fixtures)
