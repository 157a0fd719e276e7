"""The Dockerfile's command, run here outside a container: it serves the code location over gRPC and
the definitions it loads validate. (Building the image needs a Docker daemon; see the README.)"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KEYS = {"RIVYA_API_KEY": "rvya_sk_dockerfile_test", "ODIROUTER_API_KEY": "odr_dockerfile_test"}


def _cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def _option(cmd: list[str], *names: str) -> str:
    index = next(i for i, arg in enumerate(cmd) if arg in names)
    return cmd[index + 1]


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.timeout(180)
def test_dockerfile_command_serves_the_code_location(tmp_path):
    cmd = _cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"] and _option(cmd, "-p", "--port") == "4000"
    port = str(free_port())
    local = [str(BIN / "dagster"), *cmd[1:]]
    local[local.index("-p") + 1] = port
    local[local.index("-h") + 1] = "127.0.0.1"  # the image listens on 0.0.0.0; a test stays on loopback
    env = {"PATH": str(BIN), "HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path), **KEYS}
    server = subprocess.Popen(local, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while True:
            assert server.poll() is None, server.stderr.read().decode(errors="replace")[-3000:]
            check = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", port], capture_output=True, env=env
            )
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, "the code server never became healthy"
            time.sleep(1)
    finally:
        server.kill()
        server.wait(timeout=30)

    module = _option(cmd, "-m", "--module-name")
    validate = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", module],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
