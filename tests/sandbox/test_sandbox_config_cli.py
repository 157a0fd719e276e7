"""SandboxConfig (files, deep merge, distributions) and the ``nbpro sandbox`` command end to end."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from nbpro_pipeline.cli import main
from nbpro_pipeline.sandbox.config import Dist, SandboxConfig


def test_defaults_match_the_brief():
    config = SandboxConfig()
    assert config.rivya.latency.queued == Dist.uniform(0.2, 0.8)
    assert config.odirouter.latency.processing == Dist.uniform(0.8, 2.2)
    assert config.result_url_ttl_s == 3600 and config.seed == 0
    assert (config.billing.rivya_initial_credits, config.billing.odirouter_initial_usd) == (100_000, 1000)
    assert {k.value: v for k, v in config.billing.odirouter_usd_per_image.items()} == {
        "1K": 0.15,
        "2K": 0.15,
        "4K": 0.3,
    }
    assert config.rivya.faults.http_5xx == 0 and config.rivya.rate_limit.requests_per_s is None


def test_zero_latency_and_updated_do_not_mutate():
    base = SandboxConfig()
    zero = SandboxConfig.zero_latency(seed=5)
    assert zero.seed == 5 and zero.rivya.latency.queued == Dist.fixed(0) == zero.odirouter.latency.processing
    assert base.rivya.latency.queued == Dist.uniform(0.2, 0.8)
    changed = zero.updated({"odirouter": {"faults": {"stuck_task": 0.5}}})
    assert changed.odirouter.faults.stuck_task == 0.5 and zero.odirouter.faults.stuck_task == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0.5", Dist.fixed(0.5)),
        ("fixed:2", Dist.fixed(2)),
        ("uniform:0.2,0.8", Dist.uniform(0.2, 0.8)),
        ("lognormal:1.2,0.4", Dist.lognormal(1.2, 0.4)),
    ],
)
def test_dist_parse(spec, expected):
    assert Dist.parse(spec) == expected


@pytest.mark.parametrize("spec", ["uniform:1", "gamma:1,2", "fixed:x", "lognormal:1"])
def test_dist_parse_rejects_nonsense(spec):
    with pytest.raises(ValueError):
        Dist.parse(spec)


def test_dist_sampling():
    assert Dist.fixed(3).sample(0.9) == 3
    assert Dist.uniform(1, 3).sample(0.0) == 1 and Dist.uniform(1, 3).sample(0.5) == 2
    lognormal = Dist.lognormal(2.0, 0.5)
    assert lognormal.sample(0.5) == pytest.approx(2.0)
    assert lognormal.sample(0.1) < 2.0 < lognormal.sample(0.9)
    with pytest.raises(ValidationError):
        Dist(dist="uniform", low=3, high=1)


def test_config_files_json_and_toml(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"seed": 9, "rivya": {"faults": {"http_5xx": 0.1}}}))
    (tmp_path / "c.toml").write_text(
        'seed = 9\n[rivya.faults]\nhttp_5xx = 0.1\n[odirouter.latency.queued]\ndist = "fixed"\nvalue = 4\n'
    )
    from_json, from_toml = SandboxConfig.from_file(tmp_path / "c.json"), SandboxConfig.from_file(tmp_path / "c.toml")
    assert from_json.seed == from_toml.seed == 9
    assert from_json.rivya.faults.http_5xx == from_toml.rivya.faults.http_5xx == 0.1
    assert from_toml.odirouter.latency.queued == Dist.fixed(4)
    assert from_toml.odirouter.latency.processing == Dist.uniform(0.8, 2.2)  # untouched defaults remain
    (tmp_path / "c.yaml").write_text("seed: 1")
    with pytest.raises(ValueError, match="json or .toml"):
        SandboxConfig.from_file(tmp_path / "c.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"rivya": {"faults": {"corupt_image": 1}}}))
    with pytest.raises(ValidationError, match="corupt_image"):
        SandboxConfig.from_file(tmp_path / "bad.json")


def test_help_documents_every_knob():
    result = CliRunner().invoke(main, ["sandbox", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--port", "--state", "--host", "--config", "--seed", "--latency", "--queued-latency",
        "--processing-latency", "--time-scale", "--rate-limit-rps", "--rate-limit-burst",
        "--max-concurrent-tasks", "--retry-after", "--fault-5xx", "--fault-drop",
        "--fault-drop-after-processing", "--fault-rate-limited", "--fault-task-failed",
        "--fault-task-failed-as", "--fault-corrupt-image", "--fault-wrong-size", "--fault-expired-url",
        "--fault-stuck", "--fault-drop-download", "--result-url-ttl", "--rivya-credits", "--odirouter-balance",
    ):  # fmt: skip
        assert flag in result.output, flag
    assert "sandbox" in CliRunner().invoke(main, ["--help"]).output


def test_bad_flags_fail_before_serving(tmp_path):
    runner = CliRunner()
    bad_rate = runner.invoke(main, ["sandbox", "--state", str(tmp_path), "--fault-5xx", "1.5"])
    assert bad_rate.exit_code == 2 and "1.5" in bad_rate.output
    bad_type = runner.invoke(main, ["sandbox", "--state", str(tmp_path), "--fault-task-failed-as", "OOPS=0.1"])
    assert bad_type.exit_code == 2 and "OOPS" in bad_type.output
    bad_dist = runner.invoke(main, ["sandbox", "--state", str(tmp_path), "--queued-latency", "gamma:1"])
    assert bad_dist.exit_code == 2


@pytest.mark.external
def test_cli_serves_announces_its_url_and_flags_override_the_file(tmp_path):
    config_file = tmp_path / "sandbox.toml"
    config_file.write_text("seed = 3\n[rivya.faults]\nhttp_5xx = 0.9\nstuck_task = 0.2\n")
    cmd = [
        sys.executable, "-m", "nbpro_pipeline.cli", "sandbox", "--port", "0", "--state", str(tmp_path / "st"),
        "--config", str(config_file), "--latency", "zero", "--fault-5xx", "0", "--retry-after", "0.2",
        "--fault-task-failed-as", "CONTENT_BLOCKED=0.25", "--rivya-credits", "77", "--odirouter-balance", "1.5",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"nbpro sandbox listening on (http://127\.0\.0\.1:\d+) \(state (.+)\)\n", line)
        assert match, line
        assert match.group(2) == str((tmp_path / "st").resolve())
        base = match.group(1)
        config = httpx.get(f"{base}/_sandbox/config").json()
        assert config["seed"] == 3  # from the file
        assert config["rivya"]["faults"]["stuck_task"] == 0.2  # from the file
        assert config["rivya"]["faults"]["http_5xx"] == 0 == config["odirouter"]["faults"]["http_5xx"]  # flag wins
        assert config["odirouter"]["faults"]["task_failed"]["CONTENT_BLOCKED"] == 0.25
        assert config["rivya"]["rate_limit"]["retry_after_s"] == 0.2
        assert config["odirouter"]["latency"]["queued"]["value"] == 0
        wallets = httpx.get(f"{base}/_sandbox/wallets").json()
        assert wallets["rivya"]["balance"] == 77 and wallets["odirouter"]["balance"] == 1.5
        created = httpx.post(
            f"{base}/api/v1/generations",
            json={"model": "nano-banana-pro", "prompt": "via the cli"},
            headers={"Authorization": "Bearer rvya_sk_cli"},
        )
        assert created.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
