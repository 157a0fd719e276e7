"""The ``wire`` knobs: the sandbox answers the other plausible way a real provider might (providers.md
section 4), on the raw wire, and its defaults stay the documented Decisions."""

import json

import httpx
import pytest

from nbpro_pipeline.sandbox import SandboxConfig
from nbpro_pipeline.sandbox.wire_shapes import EXTRA_KEY
from tests.sandbox.conftest import configure, slow


def wire(sandbox, **knobs) -> None:
    sandbox.set_config({"wire": knobs})


def test_defaults_are_the_documented_answers(sandbox, rivya, odi):
    assert SandboxConfig().wire.model_dump() == sandbox.set_config({})["wire"]
    configure(sandbox, "rivya", latency=slow(queued=5))
    created = rivya.create("documented")
    assert created.status_code == 200 and created.json()["final_credits"] is None
    assert EXTRA_KEY not in created.json()
    result = odi.generate(prompt="documented")
    assert "outputs" in result and "images" not in result
    assert isinstance(odi.submit(prompt="p", resolution="8K").json()["detail"], str)


@pytest.mark.parametrize("status", [201, 202])
def test_create_status(sandbox, rivya, odi, status):
    wire(sandbox, rivya_create_status=status, odirouter_create_status=status)
    created = rivya.create("created", idempotency_key="k-1")
    assert created.status_code == status and created.json()["status"] == "queued"
    assert rivya.create("created", idempotency_key="k-1").status_code == 200  # a replay stays 200
    submitted = odi.submit(prompt="created")
    assert submitted.status_code == status and submitted.json()["request_id"].startswith("mmsu_")


def test_rivya_final_credits_zero_until_settled_and_unknown_result(sandbox, rivya):
    wire(sandbox, rivya_unsettled_final_credits="zero", rivya_result_shape="unknown")
    configure(sandbox, "rivya", latency=slow(queued=0.1, processing=0.1))
    created = rivya.create("zero")
    assert created.json()["final_credits"] == 0 and created.json()["status"] == "queued"
    task = rivya.wait(created.json()["id"])
    assert task["status"] == "succeeded" and task["final_credits"] == 8
    assert "primary_url" not in task["result"] and task["result"]["assets"][0] == {"asset_id": "ast_0"}
    assert "http" not in json.dumps(task["result"])  # nothing a client could download


def test_odirouter_fal_and_unknown_response_shapes(sandbox, odi, http):
    wire(sandbox, odirouter_response_shape="fal")
    fal = odi.generate(prompt="fal", aspect_ratio="9:16")
    assert set(fal) == {"images", "description"} and "fal" in fal["description"]
    (image,) = fal["images"]
    assert (image["width"], image["height"]) == (768, 1376) and "type" not in image
    assert http.get(image["url"]).status_code == 200
    wire(sandbox, odirouter_response_shape="unknown")
    unknown = odi.generate(prompt="unknown")
    assert "outputs" not in unknown and "images" not in unknown and unknown["data"]["artifacts"][0]["asset_id"]
    assert "http" not in json.dumps(unknown["data"])


def test_odirouter_422_detail_as_fastapi_list(sandbox, odi):
    wire(sandbox, odirouter_422_detail="list")
    detail = odi.submit(prompt="p", resolution="8K").json()["detail"]
    assert detail[0]["loc"] == ["body", "resolution"] and detail[0]["msg"] and detail[0]["type"]
    both = odi.submit(prompt="p", resolution="1K", image_size="2K").json()["detail"]
    assert both == [{"loc": ["body", "resolution"], "msg": both[0]["msg"], "type": "value_error"}]


def test_extra_fields_reach_every_object_of_both_apis_but_not_admin_or_cdn(sandbox, rivya, odi, http):
    wire(sandbox, extra_fields=True)
    task = rivya.generate("extras")
    assert EXTRA_KEY in task and EXTRA_KEY in task["result"]
    assert EXTRA_KEY in rivya.http.get("/api/v1/generations/gen_nope").json()["error"]  # errors too
    result = odi.generate(prompt="extras")
    assert EXTRA_KEY in result and all(EXTRA_KEY in o for o in result["outputs"])
    assert EXTRA_KEY in result["metadata"]
    assert EXTRA_KEY not in http.get("/_sandbox/stats").json()
    image = http.get(task["result"]["primary_url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert int(image.headers["content-length"]) == len(image.content)


def test_stats_count_status_polls(sandbox, rivya, odi):
    task_id = rivya.create("polls").json()["id"]
    for _ in range(3):
        rivya.get(task_id)
    request_id = odi.submit(prompt="polls").json()["request_id"]
    odi.status(request_id)
    odi.response(request_id)  # not a status poll
    stats = sandbox.stats()
    assert (stats["rivya"]["status_polls"], stats["odirouter"]["status_polls"]) == (3, 1)


def test_extra_fields_keep_a_deliberate_cut_a_cut(sandbox, rivya):
    wire(sandbox, extra_fields=True)
    configure(sandbox, "rivya", faults={"drop_after_processing": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):  # not a 500: the task was created, the answer lost
        rivya.create("cut")
    assert sandbox.stats()["rivya"]["tasks_created"] == 1
