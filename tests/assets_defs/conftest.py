"""One sandbox, one Dagster instance and one storage root per module: materializations build on each
other like a real deployment's do, and the instance is shared as Dagster's testing guide advises."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets_defs.resources import (
    BudgetResource,
    PipelineResource,
    ProviderResource,
    RunSettings,
    StorageResource,
)
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"
RIVYA_KEY = "rvya_sk_dagster_tests_0001"
ODIROUTER_KEY = "odr_dagster_tests_0001"


FAST = {"poll_first_delay_s": 0.01, "poll_max_interval_s": 0.05, "max_attempts": 4}


def provider_resources(sandbox, **run) -> dict:
    """Both shipped providers' resources against ``sandbox``, polling fast (plus ``run`` settings)."""
    settings = RunSettings(**{**FAST, **run})
    return {
        "rivya": ProviderResource(provider="rivya", api_key=RIVYA_KEY, base_url=sandbox.rivya_url, run=settings),
        "odirouter": ProviderResource(
            provider="odirouter", api_key=ODIROUTER_KEY, base_url=sandbox.odirouter_url, run=settings
        ),
    }


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), SandboxConfig.zero_latency()) as server:
        yield server


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("prompts")
    shutil.copytree(EXAMPLES, target, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="module")
def resources(sandbox, tmp_path_factory, prompt_dir) -> dict:
    return {
        **provider_resources(sandbox),
        "storage": StorageResource(root=str(tmp_path_factory.mktemp("storage"))),
        "budget": BudgetResource(),
        "pipeline": PipelineResource(prompt_sources=[str(prompt_dir)]),
    }
