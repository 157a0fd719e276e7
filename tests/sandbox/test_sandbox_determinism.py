"""Reproducibility: the same seed and the same bodies give the same faults and latencies, whatever
the interleaving; a resubmitted body gets a fresh draw; another seed gives other draws."""

from __future__ import annotations

from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from nbpro_pipeline.sandbox.config import ProviderConfig
from nbpro_pipeline.sandbox.faults import DecisionSource, OccurrenceCounter, body_digest, plan_task
from tests.sandbox.conftest import RivyaWire, configure, wire_client

FAULTY = {
    "faults": {"task_failed": {"INFERENCE_FAILURE": 0.3, "CONTENT_BLOCKED": 0.2}, "http_5xx": 0.25},
    "latency": {"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "uniform", "low": 0, "high": 0.05}},
}


def outcomes(state_dir, seed: int, prompts: list[str]) -> dict[str, list[str]]:
    """Per prompt, the sequence of what happened to each of its submissions."""
    config = SandboxConfig.zero_latency(seed=seed).updated({"rivya": FAULTY})
    seen: dict[str, list[str]] = {p: [] for p in prompts}
    with (
        SandboxServer(state_dir, config) as server,
        wire_client(server.base_url, headers={"Authorization": "Bearer rvya_sk_det"}) as client,
    ):
        wire = RivyaWire(client)
        for prompt in prompts:
            created = wire.create(prompt)
            if created.status_code != 200:
                seen[prompt].append(f"http {created.status_code}")
                continue
            task = wire.wait(created.json()["id"])
            seen[prompt].append(task["status"] + (f" {task['error']['message'][:17]}" if task["error"] else ""))
    return seen


def test_same_seed_same_outcomes_regardless_of_order(tmp_path):
    prompts = [f"prompt {i % 6}" for i in range(24)]  # each body submitted 4 times
    forward = outcomes(tmp_path / "a", 11, prompts)
    backward = outcomes(tmp_path / "b", 11, list(reversed(prompts)))
    assert forward == backward
    flat = [o for seq in forward.values() for o in seq]
    assert len(set(flat)) >= 3  # successes, failures of two kinds and/or 5xx all occurred
    assert any(len(set(seq)) > 1 for seq in forward.values())  # a resubmitted body got a fresh draw


def test_another_seed_gives_other_outcomes(tmp_path):
    prompts = [f"prompt {i}" for i in range(16)]
    assert outcomes(tmp_path / "a", 1, prompts) != outcomes(tmp_path / "b", 2, prompts)


def test_retrying_a_failed_prompt_can_succeed(sandbox, rivya):
    configure(sandbox, "rivya", faults={"task_failed": {"INFERENCE_FAILURE": 0.5}})
    statuses = [rivya.generate("same prompt every time")["status"] for _ in range(10)]
    assert set(statuses) == {"succeeded", "failed"}


def test_latency_samples_are_reproducible(sandbox, rivya):
    configure(sandbox, "rivya", latency={"queued": {"dist": "uniform", "low": 5, "high": 50}})
    first = rivya.create("latency probe").json()["id"]
    assert rivya.get(first).json()["status"] == "queued"
    config = SandboxConfig().updated({"rivya": {"latency": {"queued": {"dist": "uniform", "low": 5, "high": 50}}}})
    source = DecisionSource(0)
    digest = body_digest(b'{"model": "nano-banana-pro", "prompt": "latency probe"}')
    plan = plan_task(config.rivya, 1.0, source.bound("rivya", digest, 0))
    assert 5 <= plan.queue_s <= 50
    # The same body, drawn again for its first occurrence, gives the same duration.
    assert plan == plan_task(config.rivya, 1.0, source.bound("rivya", digest, 0))
    assert plan != plan_task(config.rivya, 1.0, source.bound("rivya", digest, 1))


# --- the decision machinery -------------------------------------------------------------------------


def test_draws_are_pure_uniform_and_seed_dependent():
    a, b = DecisionSource(1), DecisionSource(2)
    draws = [a.uniform("rivya", "x", "d", n) for n in range(2000)]
    assert draws == [a.uniform("rivya", "x", "d", n) for n in range(2000)]
    assert all(0.0 <= u < 1.0 for u in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert sum(u < 0.1 for u in draws) in range(150, 250)
    assert draws != [b.uniform("rivya", "x", "d", n) for n in range(2000)]
    assert a.uniform("rivya", "x", "d", 0) != a.uniform("odirouter", "x", "d", 0)


def test_occurrences_count_per_provider_and_body():
    counter = OccurrenceCounter()
    assert [counter.next("rivya", "a") for _ in range(3)] == [0, 1, 2]
    assert counter.next("rivya", "b") == 0 and counter.next("odirouter", "a") == 0


def test_body_digest_ignores_json_formatting_only():
    assert body_digest(b'{"a": 1, "b": [1, 2]}') == body_digest(b'{"b":[1,2],"a":1}')
    assert body_digest(b'{"a": 1}') != body_digest(b'{"a": 2}')
    assert body_digest(b"not json") == body_digest(b"not json") != body_digest(b"not json!")


def test_failure_types_follow_their_rates():
    config = ProviderConfig.model_validate(
        {"faults": {"task_failed": {"INFERENCE_TIMEOUT": 0.25, "CONTENT_BLOCKED": 0.5}}}
    )
    source = DecisionSource(3)
    failures = [plan_task(config, 1.0, source.bound("rivya", "d", n)).failure for n in range(4000)]
    share = {kind: failures.count(kind) / len(failures) for kind in set(failures)}
    assert set(share) == {None, "INFERENCE_TIMEOUT", "CONTENT_BLOCKED"}
    assert abs(share["INFERENCE_TIMEOUT"] - 0.25) < 0.03 and abs(share["CONTENT_BLOCKED"] - 0.5) < 0.03
