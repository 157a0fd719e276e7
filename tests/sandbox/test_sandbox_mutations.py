"""Mutation mode (``wire.mutations``): the sandbox answers the plausible undocumented ways under a seed.

Raw HTTP only, through a deliberately tolerant little reader defined here (not the project's clients,
which are being changed to read this way): it proves that every mutated answer still carries the truth,
and that the truth (phases, billing, image bytes) is exactly what an unmutated run produces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from nbpro_pipeline.sandbox.mutation_config import FAMILY_NAMES, MutationConfig
from nbpro_pipeline.sandbox.mutations import UNDOCUMENTED_WORDS, Answer, answer_key, plan_for, vary
from tests.sandbox.conftest import QUEUE, configure, slow, wire_client

RIVYA_KEY = {"Authorization": "Bearer rvya_sk_mutations"}
ODI_KEY = {"Authorization": "Bearer odr_mutations"}
_SUCCEEDED = {"succeeded", "completed", "success", "done"}
_FAILED = {"failed", "error", "failure"}
_CANCELED = {"canceled", "cancelled"}
_ALT_ODI = "/model/q/alt/nano_banana_pro/r/"


def mutate(sandbox, **fields) -> None:
    sandbox.set_config({"wire": {"mutations": fields}})


# --- a tolerant reader -------------------------------------------------------------------------


@dataclass
class Seen:
    """One answer as received (what the tests search for variations in)."""

    status: int
    headers: httpx.Headers
    body: Any


@dataclass
class Outcome:
    task_id: str
    phase: str
    images: list[bytes] = field(default_factory=list)


class Tolerant:
    """Follows a task through whatever plausible answers arrive: any id key, Location and returned URLs,
    404 for a while, any state word, the image anywhere (URL, blob, data: URI, base64)."""

    def __init__(self, sandbox) -> None:
        self.base = sandbox.base_url
        self.http = wire_client()
        self.seen: list[Seen] = []

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, url, headers=headers, **kwargs)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        self.seen.append(Seen(response.status_code, response.headers, body))
        return response

    def _poll(self, method: str, url: str, headers: dict[str, str], done, timeout: float = 10.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            response = self._call(method, url, headers)
            if response.status_code != 404 and done(response):
                return response
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {response.status_code} {response.text[:300]}")
            time.sleep(0.01)

    def rivya(self, prompt: str, **params: Any) -> Outcome:
        url = self.base + "/api/v1/generations"
        body = {"model": "nano-banana-pro", "prompt": prompt, **({"params": params} if params else {})}
        created = self._call("POST", url, RIVYA_KEY, json=body)
        assert 200 <= created.status_code < 300, created.text
        data = created.json()
        task_id = data.get("id") or data.get("task_id") or data["data"]["id"]
        location = created.headers.get("location")
        status_url = urljoin(url, location) if location else f"{url}/{task_id}"
        final = self._poll("GET", status_url, RIVYA_KEY, lambda r: _rivya_phase(r.json()) is not None)
        phase = _rivya_phase(final.json())
        return Outcome(task_id, phase, self._images(final.json()) if phase == "succeeded" else [])

    def odirouter(self, prompt: str, **fields: Any) -> Outcome:
        url = self.base + "/model" + QUEUE
        submitted = self._call("POST", url, ODI_KEY, json={"prompt": prompt, **fields})
        assert 200 <= submitted.status_code < 300, submitted.text
        data = submitted.json()
        request_id = data["request_id"]
        status_url = data.get("status_url") or f"{url}/requests/{request_id}/status"
        response_url = data.get("response_url") or f"{url}/requests/{request_id}/response"
        final = self._poll("GET", status_url, ODI_KEY, lambda r: _odi_phase(r.json()) is not None)
        phase = _odi_phase(final.json())
        answer = self._poll("GET", response_url, ODI_KEY, lambda r: r.status_code != 202)
        if phase == "succeeded":
            assert answer.status_code == 200, answer.text
            return Outcome(request_id, phase, self._images(answer.json()))
        assert answer.status_code >= 400
        return Outcome(request_id, phase)

    def _images(self, body: Any) -> list[bytes]:
        found: list[bytes] = []
        for value in _leaves(body):
            if isinstance(value, tuple):  # ("b64_json", data)
                found.append(base64.b64decode(value[1]))
            elif value.startswith("data:"):
                found.append(base64.b64decode(value.split(",", 1)[1]))
            elif value.startswith("http") and "/cdn/" in value:
                download = self.http.get(value)
                assert download.status_code == 200, download.text
                found.append(download.content)
        return list(dict.fromkeys(found))  # the same image named twice (primary_url and urls) is one


def _leaves(value: Any):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "b64_json" and isinstance(item, str):
                yield ("b64_json", item)
            else:
                yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str):
        yield value


def _rivya_phase(body: dict) -> str | None:
    word = str(body.get("status", "")).lower()
    return "succeeded" if word in _SUCCEEDED else "failed" if word in _FAILED else None


def _odi_phase(body: dict) -> str | None:
    word = str(body.get("status", "")).lower()
    if word in ("completed", "succeeded", "done"):
        error_type = body.get("error_type")
        return "succeeded" if not error_type else "canceled" if error_type == "CANCELED" else "failed"
    return "failed" if word in _FAILED else "canceled" if word in _CANCELED else None


@pytest.fixture
def reader(sandbox):
    tolerant = Tolerant(sandbox)
    yield tolerant
    tolerant.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- config ------------------------------------------------------------------------------------


def test_off_by_default_and_validated(sandbox):
    config = sandbox.set_config({})["wire"]["mutations"]
    assert config["seed"] is None and config["rate"] == 0.6 and config["families"] == sorted(FAMILY_NAMES)
    for bad in ({"families": ["nope"]}, {"read_lag_min_s": 1, "read_lag_max_s": 0.5}, {"sede": 1}, {"rate": 2}):
        with pytest.raises(RuntimeError, match="400"):
            mutate(sandbox, **bad)


def test_a_task_created_with_the_mode_off_keeps_its_documented_answers(sandbox, reader):
    before = reader.rivya("before")
    mutate(sandbox, seed=1, rate=1.0)
    again = httpx.get(f"{sandbox.base_url}/api/v1/generations/{before.task_id}", headers=RIVYA_KEY).json()
    assert again["status"] == "succeeded" and again["reserved_credits"] == 8 and "primary_url" in again["result"]
    assert sandbox.tasks("rivya")[0]["mutations"] == []


# --- determinism -------------------------------------------------------------------------------


def _documented_answer(seed: int) -> Answer:
    body = {
        "id": "gen_x",
        "status": "processing",
        "model": "nano-banana-pro",
        "reserved_credits": 8,
        "final_credits": None,
        "created_at": "t",
        "updated_at": "t",
        "result": None,
        "error": None,
        "client_request_id": None,
    }
    config = MutationConfig(seed=seed, rate=1.0)
    return Answer("rivya", "task", "rivya_task", 200, body, {}, config, plan=plan_for(config, "rivya", "k"))


def test_choices_are_a_pure_function_of_seed_task_kind_and_n():
    def run(seed: int, n: int) -> tuple[list[str], Any]:
        answer = _documented_answer(seed)
        applied = vary(answer, answer_key(answer.config, "rivya", "digest.0", "task", n))
        return applied, answer.body

    assert [run(7, n) for n in range(30)] == [run(7, n) for n in range(30)]
    assert [run(7, n) for n in range(30)] != [run(8, n) for n in range(30)]
    config = MutationConfig(seed=7)
    assert plan_for(config, "odirouter", "d.1") == plan_for(config.model_copy(), "odirouter", "d.1")


def _transcript(sandbox, seed: int) -> str:
    sandbox.reset()
    mutate(sandbox, seed=seed, rate=1.0, read_lag_min_s=0.01, read_lag_max_s=0.02)
    lines = []
    with wire_client(sandbox.base_url) as http:
        for i in range(4):
            created = http.post(
                "/api/v1/generations", json={"model": "nano-banana-pro", "prompt": f"d{i}"}, headers=RIVYA_KEY
            )
            task_id = re.search(r"gen_[0-9a-f]{24}", created.text).group(0)
            submitted = http.post("/model" + QUEUE, json={"prompt": f"d{i}"}, headers=ODI_KEY)
            request_id = submitted.json()["request_id"]
            time.sleep(0.05)
            answers = [created, submitted]
            answers += [http.get(f"/api/v1/generations/{task_id}", headers=RIVYA_KEY) for _ in range(2)]
            answers += [http.get(f"/model{QUEUE}/requests/{request_id}/{p}", headers=ODI_KEY) for p in ("status",) * 2]
            answers.append(http.get(f"/model{QUEUE}/requests/{request_id}/response", headers=ODI_KEY))
            for a in answers:
                text = f"{a.status_code} {a.headers.get('location')} {a.headers.get('x-fal-billable-units')} {a.text}"
                for old, new in ((task_id, "ID"), (request_id, "ID")):
                    text = text.replace(old, new)
                lines.append(re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z|exp=\d+&sig=[0-9a-f]+|req_[0-9a-f]{24}", "~", text))
    return "\n".join(lines)


def test_same_seed_same_answers_on_the_wire(sandbox):
    first, second, other = _transcript(sandbox, 5), _transcript(sandbox, 5), _transcript(sandbox, 6)
    assert first == second
    assert first != other


# --- every family occurs, and tells the truth --------------------------------------------------


def test_every_family_occurs_over_a_range_of_seeds(sandbox, reader):
    """Seeds are tried until every variation has shown up: which answer a family rides on depends on how
    many polls a task took (timing), so a fixed range could miss one under load; 64 seeds make a miss
    vanishingly unlikely while most runs stop after a handful."""
    configure(sandbox, "rivya", latency=slow(queued=0.03, processing=0.08))
    configure(sandbox, "odirouter", latency=slow(queued=0.03, processing=0.08))
    sandbox.set_config({"odirouter": {"faults": {"task_failed": {"CONTENT_BLOCKED": 0.3}}}})
    for seed in range(64):
        mutate(sandbox, seed=seed, read_lag_min_s=0.01, read_lag_max_s=0.05)
        reader.rivya(f"every {seed}")
        reader.odirouter(prompt=f"every {seed}")
        reader.http.get(f"{sandbox.base_url}/api/v1/generations/gen_unknown", headers=RIVYA_KEY)
        reader.http.get(f"{sandbox.base_url}/model{QUEUE}/requests/unknown/status", headers=ODI_KEY)
        missing = _variations_missing(sandbox, reader.seen)
        if not missing:
            break
    assert missing == []


def _variations_missing(sandbox, seen: list[Seen]) -> list[str]:
    """What has not shown up yet: a family per provider (counted and tied to a task), or a wire form."""
    stats = sandbox.stats()
    missing = []
    for provider in ("rivya", "odirouter"):
        missing += [f"{provider}: {n}" for n in sorted(set(FAMILY_NAMES) - set(stats[provider]["mutations"]))]
        tied = set().union(*(set(t["mutations"]) for t in sandbox.tasks(provider)))
        missing += [f"{provider} task: {n}" for n in sorted(set(FAMILY_NAMES) - {"error_envelopes"} - tied)]
    words = {s.body.get("status") for s in seen if isinstance(s.body, dict)}
    texts = [json.dumps(s.body) for s in seen]
    wanted = {
        "an undocumented state word": bool(words & set(UNDOCUMENTED_WORDS)),
        "a documented synonym": bool(words & {"pending", "running", "done", "completed"}),
        "a data: URI": any("data:image/png;base64," in t for t in texts),
        "b64_json": any('"b64_json"' in t for t in texts),
        "a Rivya blob URL": any("/cdn/rivya/blobs/" in t for t in texts),
        "an OdiRouter blob URL": any("/cdn/odirouter/blobs/" in t for t in texts),
        "202 with Location": any(s.status == 202 and s.headers.get("location") for s in seen),
        "x-fal-billable-units": any(s.headers.get("x-fal-billable-units") == "1" for s in seen),
        "reserved_credits as text or float": any(
            isinstance(s.body, dict) and s.body.get("reserved_credits") in ("8", "8.00", 8.0) for s in seen
        ),
    }
    return missing + [name for name, shown in wanted.items() if not shown]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_billing_phases_and_bytes_are_those_of_an_unmutated_run(sandbox, reader, seed):
    faults = {"faults": {"task_failed": {"INFERENCE_FAILURE": 0.3}, "corrupt_image": 0.2}}
    sandbox.set_config({"rivya": faults, "odirouter": faults})
    prompts = [f"truth {i}" for i in range(8)]

    def run() -> dict[tuple[str, str], tuple[str, Any, str | None]]:
        outcomes = {
            ("rivya", p): reader.rivya(p, output_format="jpg" if i % 3 == 0 else "png") for i, p in enumerate(prompts)
        }
        outcomes |= {("odirouter", p): reader.odirouter(p) for p in prompts}
        truth = {(t["provider"], t["prompt"]): t for prov in ("rivya", "odirouter") for t in sandbox.tasks(prov)}
        out = {}
        for key, outcome in outcomes.items():
            row = truth[key]
            assert outcome.phase == row["phase"]
            digest = None
            if outcome.phase == "succeeded":
                assert len(outcome.images) == 1  # one image, wherever it was put
                digest = sha(outcome.images[0])
                assert digest == row["image_sha256"]
            out[key] = (row["phase"], row["billed"], digest)
        return out

    plain = run()
    sandbox.reset()
    mutate(sandbox, seed=seed, rate=1.0, read_lag_min_s=0.01, read_lag_max_s=0.05)
    assert run() == plain
    assert {"succeeded", "failed"} <= {phase for phase, _, _ in plain.values()}
    assert any(t["mutations"] for t in sandbox.tasks("odirouter"))


# --- one family at a time ----------------------------------------------------------------------


def test_documented_paths_404_only_for_tasks_given_other_urls(sandbox):
    mutate(sandbox, seed=3, rate=0.5, families=["returned_urls"])
    configure(sandbox, "odirouter", latency=slow(processing=5))
    odi = wire_client(sandbox.base_url, headers=ODI_KEY)
    alt_seen = documented_seen = 0
    for i in range(12):
        submitted = odi.post("/model" + QUEUE, json={"prompt": f"urls {i}"}).json()
        request_id = submitted["request_id"]
        documented = f"/model{QUEUE}/requests/{request_id}"
        alternative = f"{_ALT_ODI}{request_id}"
        if _ALT_ODI in submitted["status_url"]:
            alt_seen += 1
            assert submitted["status_url"] == sandbox.base_url + alternative + "/status"
            for method, path in (("GET", "/status"), ("GET", "/response"), ("PUT", "/cancel")):
                gone = odi.request(method, documented + path)
                assert (gone.status_code, gone.json()) == (404, {"detail": "Request not found"})
            assert odi.get(alternative + "/status").json()["status"] == "IN_PROGRESS"  # not canceled above
            assert odi.get(alternative + "/status").json()["response_url"].endswith(alternative + "/response")
            assert odi.put(alternative + "/cancel").status_code == 202
            assert odi.get(alternative + "/status").json()["error_type"] == "CANCELED"
        else:
            documented_seen += 1
            assert submitted["status_url"].endswith(documented + "/status")
            assert odi.get(documented + "/status").status_code == 200
            assert odi.get(alternative + "/status").status_code == 404
    assert alt_seen and documented_seen
    rivya = wire_client(sandbox.base_url, headers=RIVYA_KEY)
    locations = 0
    for i in range(12):
        created = rivya.post("/api/v1/generations", json={"model": "nano-banana-pro", "prompt": f"loc {i}"})
        task_id = re.search(r"gen_[0-9a-f]{24}", created.text).group(0)
        assert rivya.get(f"/api/v1/generations/{task_id}").status_code == 200  # documented: always served
        if created.status_code == 202 and created.headers.get("location"):
            locations += 1
            followed = rivya.get(urljoin(sandbox.base_url + "/api/v1/generations", created.headers["location"]))
            assert followed.status_code == 200 and followed.json()["id"] == task_id
        else:
            assert rivya.get(f"/api/v1/tasks/{task_id}").status_code == 404
    assert locations


def test_read_lag_answers_404_then_expires(sandbox):
    mutate(sandbox, seed=1, rate=1.0, families=["read_lag"], read_lag_min_s=0.3, read_lag_max_s=0.3)
    with wire_client(sandbox.base_url) as http:
        task_id = http.post(
            "/api/v1/generations", json={"model": "nano-banana-pro", "prompt": "lag"}, headers=RIVYA_KEY
        ).json()["id"]
        request_id = http.post("/model" + QUEUE, json={"prompt": "lag"}, headers=ODI_KEY).json()["request_id"]
        early = http.get(f"/api/v1/generations/{task_id}", headers=RIVYA_KEY)
        assert early.status_code == 404 and early.json()["error"]["code"] == "not_found"
        for path in ("status", "response"):
            lagging = http.get(f"/model{QUEUE}/requests/{request_id}/{path}", headers=ODI_KEY)
            assert (lagging.status_code, lagging.json()) == (404, {"detail": "Request not found"})
        time.sleep(0.35)
        assert http.get(f"/api/v1/generations/{task_id}", headers=RIVYA_KEY).json()["status"] == "succeeded"
        assert http.get(f"/model{QUEUE}/requests/{request_id}/response", headers=ODI_KEY).status_code == 200
    assert [t["mutations"] for t in sandbox.tasks("rivya") + sandbox.tasks("odirouter")] == [["read_lag"]] * 2


def test_undocumented_words_only_while_a_task_is_not_finished(sandbox, reader):
    mutate(sandbox, seed=2, rate=1.0, families=["state_words"], undocumented_words=1.0)
    configure(sandbox, "odirouter", latency=slow(queued=0.05, processing=0.1))
    sandbox.set_config({"odirouter": {"faults": {"task_failed": {"CONTENT_BLOCKED": 0.5}}}})
    outcomes = [reader.odirouter(prompt=f"words {i}") for i in range(8)]
    statuses = [s.body for s in reader.seen if s.status == 200 and isinstance(s.body, dict) and "status" in s.body]
    running = [b["status"] for b in statuses if b["status"] in UNDOCUMENTED_WORDS]
    assert running and len(running) == len([b for b in statuses if _odi_phase(b) is None])
    truth = {t["id"]: t["phase"] for t in sandbox.tasks("odirouter")}
    assert {o.task_id: o.phase for o in outcomes} == truth and set(truth.values()) == {"succeeded", "failed"}


def test_inline_and_blob_images_are_the_cdns_bytes(sandbox, reader):
    mutate(sandbox, seed=4, rate=1.0, families=["image_location"])
    outcomes = [reader.odirouter(prompt=f"bytes {i}") for i in range(6)] + [
        reader.rivya(f"bytes {i}") for i in range(6)
    ]
    digests = {t["id"]: t["image_sha256"] for p in ("rivya", "odirouter") for t in sandbox.tasks(p)}
    assert all([sha(o.images[0])] == [digests[o.task_id]] for o in outcomes)
    blob = next(
        v for s in reader.seen for v in _leaves(s.body) if isinstance(v, str) and "/blobs/" in v
    )  # an extension-less signed URL, served as an opaque blob
    download = httpx.get(blob)
    assert download.headers["content-type"] == "application/octet-stream"
    assert "content-disposition" not in download.headers and not re.search(r"\.\w+\?", blob)


def test_stated_cost_is_what_the_ledger_holds(sandbox, reader):
    mutate(sandbox, seed=9, rate=1.0, families=["stated_cost"])
    for i in range(6):
        reader.odirouter(prompt=f"cost {i}", resolution="4K" if i % 2 else "1K")
    charged = {e["task_id"]: e["amount"] for e in sandbox.ledger("odirouter")}
    stated = [s for s in reader.seen if isinstance(s.body, dict) and "request_id" in s.body and s.status == 200]
    results = [s for s in stated if "cost" in s.body or "billing" in s.body or "x-fal-billable-units" in s.headers]
    assert len(results) == 6
    for seen in results:
        amount = charged[seen.body["request_id"]]
        assert float(seen.body.get("cost", amount)) == amount
        assert seen.body.get("billing", {"cost_usd": amount})["cost_usd"] == amount
        assert seen.headers.get("x-fal-billable-units", "1") == "1"


def test_error_envelopes_and_retry_after_forms(sandbox):
    mutate(sandbox, seed=5, rate=1.0, families=["error_envelopes"])
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 0.5, "burst": 1})
    with wire_client(sandbox.base_url, headers=RIVYA_KEY) as http:
        answers = [http.get("/api/v1/credits") for _ in range(60)]
    limited = [a for a in answers if a.status_code == 429]
    assert len(limited) >= 50
    forms = {_retry_after_form(a.headers.get("retry-after")) for a in limited}
    assert forms == {"seconds", "fraction", "date", "missing"}
    shapes = {_envelope(a.json()) for a in limited}
    assert shapes == {"error object", "error text", "detail text", "detail list"}
    assert all("too many requests" in json.dumps(a.json()).lower() for a in limited)  # the message survives


def _retry_after_form(value: str | None) -> str:
    if value is None:
        return "missing"
    return "seconds" if value.isdigit() else "fraction" if re.fullmatch(r"\d+\.\d+", value) else "date"


def _envelope(body: dict) -> str:
    if "error" in body:
        return "error object" if isinstance(body["error"], dict) else "error text"
    return "detail list" if isinstance(body["detail"], list) else "detail text"


def test_minimal_creates_still_name_the_task(sandbox, reader):
    mutate(sandbox, seed=6, rate=1.0, families=["minimal_create"])
    for i in range(6):
        reader.rivya(f"minimal {i}")
        reader.odirouter(prompt=f"minimal {i}")
    creates = [s for s in reader.seen if s.status in (200, 201, 202) and isinstance(s.body, dict) and len(s.body) <= 2]
    assert {s.status for s in creates} == {200, 201, 202}
    assert {"request_id"} in [set(s.body) for s in creates] and {"data"} in [set(s.body) for s in creates]


def test_reset_forgets_mutation_state(sandbox, reader):
    mutate(sandbox, seed=1, rate=1.0)
    reader.rivya("to forget")
    assert sandbox.stats()["rivya"]["mutations"]
    sandbox.reset()
    assert sandbox.stats()["rivya"]["mutations"] == {} and sandbox.tasks("rivya") == []


def test_tasks_route_lists_one_provider_or_both(sandbox, reader, http):
    reader.rivya("listed")
    reader.odirouter(prompt="listed")
    assert [t["provider"] for t in sandbox.tasks()] == ["rivya", "odirouter"]
    (row,) = sandbox.tasks("odirouter")
    assert (row["phase"], row["billed"], row["prompt"], row["resolution"]) == ("succeeded", 0.15, "listed", "1K")
    assert http.get("/_sandbox/tasks", params={"provider": "fal"}).status_code == 400


# --- the CLI -----------------------------------------------------------------------------------


@pytest.mark.external
def test_mutate_flags(tmp_path):
    help_text = CliRunner().invoke(main, ["sandbox", "--help"]).output
    assert "--mutate " in help_text and "--mutate-rate" in help_text and "--mutate-family" in help_text
    bad = CliRunner().invoke(main, ["sandbox", "--state", str(tmp_path), "--mutate-family", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output
    cmd = [
        sys.executable, "-m", "nbpro_pipeline.cli", "sandbox", "--port", "0", "--state", str(tmp_path / "st"),
        "--mutate", "7", "--mutate-rate", "0.9", "--mutate-family", "state_words", "--mutate-family", "read_lag",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = re.search(r"listening on (\S+)", proc.stdout.readline()).group(1)
        mutations = httpx.get(f"{base}/_sandbox/config").json()["wire"]["mutations"]
        assert (mutations["seed"], mutations["rate"], mutations["families"]) == (7, 0.9, ["read_lag", "state_words"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_a_restart_keeps_every_tasks_plan(tmp_path):
    config = SandboxConfig.zero_latency().updated({"wire": {"mutations": {"seed": 3, "families": ["returned_urls"]}}})
    with SandboxServer(tmp_path, config) as sandbox, wire_client(headers=ODI_KEY) as odi:
        urls = [
            odi.post(sandbox.odirouter_url + QUEUE, json={"prompt": f"r{i}"}).json()["status_url"] for i in range(8)
        ]
    alternative = [u for u in urls if _ALT_ODI in u]
    assert alternative and len(alternative) < len(urls)
    # a restarted server recomputes each plan from the task's stored key: the URLs it gave keep working
    with SandboxServer(tmp_path, config) as sandbox, wire_client(headers=ODI_KEY) as odi:
        for url in urls:
            port = re.search(r":(\d+)/", url).group(1)
            assert odi.get(url.replace(f":{port}/", f":{sandbox.port}/")).status_code == 200
