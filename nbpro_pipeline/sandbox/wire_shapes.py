"""Answers a real provider may plausibly give where the docs leave room (providers.md section 4).

The sandbox's defaults are its documented Decisions; these knobs make it answer the other plausible
way, so tests (and chaos runs) prove that the clients read what a real server may send, and that a
shape nobody knows fails loudly instead of silently costing a paid image:

- ``rivya_create_status`` / ``odirouter_create_status``: 201 or 202 instead of 200 on a create;
- ``rivya_unsettled_final_credits = "zero"``: ``final_credits`` 0 (not null) while queued/processing,
  as the Rivya docs' own create example shows;
- ``rivya_result_shape = "unknown"``: a succeeded task whose ``result`` holds only opaque asset ids (no
  URL or inline bytes anywhere): nothing a client can download;
- ``odirouter_response_shape``: the documented ``outputs``, fal.ai's ``{"images": [...], "description"}``,
  or an ``unknown`` shape of opaque asset ids;
- ``odirouter_422_detail = "list"``: FastAPI's ``[{loc, msg, type}]`` instead of a string;
- ``extra_fields``: an unknown key added to every JSON object either provider API answers (errors too);
- ``mutations``: mutation mode, random plausible variations per answer under a seed (``mutations``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from nbpro_pipeline.sandbox.mutation_config import MutationConfig
from nbpro_pipeline.sandbox.responses import buffer_response, send_buffered

EXTRA_KEY = "x_sandbox_unknown_field"  # what extra_fields adds; no client may depend on or refuse it
_PROVIDER_PATHS = ("/api/", "/model/")


class WireConfig(BaseModel):
    """The wire-shape knobs (see the module docstring); defaults keep the documented answers."""

    model_config = ConfigDict(extra="forbid")

    rivya_create_status: Literal[200, 201, 202] = 200
    odirouter_create_status: Literal[200, 201, 202] = 200
    rivya_unsettled_final_credits: Literal["null", "zero"] = "null"
    rivya_result_shape: Literal["documented", "unknown"] = "documented"
    odirouter_response_shape: Literal["outputs", "fal", "unknown"] = "outputs"
    odirouter_422_detail: Literal["string", "list"] = "string"
    extra_fields: bool = False
    mutations: MutationConfig = Field(default_factory=MutationConfig)


def rivya_task(wire: WireConfig, body: dict[str, Any]) -> dict[str, Any]:
    """A documented Rivya task object, re-shaped as the knobs say."""
    out = dict(body)
    if wire.rivya_unsettled_final_credits == "zero" and out["status"] in ("queued", "processing"):
        out["final_credits"] = 0
    if wire.rivya_result_shape == "unknown" and out.get("result"):
        out["result"] = {"assets": [{"asset_id": f"ast_{i}"} for i, _ in enumerate(out["result"]["urls"])]}
    return out


def odirouter_result(wire: WireConfig, body: dict[str, Any]) -> dict[str, Any]:
    """A documented OdiRouter result (``outputs``), re-shaped as fal.ai or an unknown service would."""
    if wire.odirouter_response_shape == "outputs":
        return body
    images = [{k: v for k, v in o.items() if k != "type"} for o in body["outputs"] if o["type"] == "image"]
    text = " ".join(o["text"] for o in body["outputs"] if o["type"] == "text")
    if wire.odirouter_response_shape == "fal":
        return {"images": images, "description": text}
    artifacts = [{"asset_id": f"ast_{i}"} for i in range(len(images))]
    return {"request_id": body["request_id"], "data": {"artifacts": artifacts}}


def odirouter_422_detail(
    wire: WireConfig, message: str, loc: Sequence[str | int] = (), exc: ValidationError | None = None
) -> str | list[dict[str, Any]]:
    """The ``detail`` of a validation 422: the message, or FastAPI's issue list (from ``exc`` when given)."""
    if wire.odirouter_422_detail == "string":
        return message
    if exc is not None:
        return [
            {"loc": ["body", *e.get("loc", ())], "msg": e.get("msg", "invalid"), "type": e.get("type", "value_error")}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
    return [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]


def with_extra_fields(value: Any) -> Any:
    """``value`` with ``EXTRA_KEY`` added to every JSON object in it, however deep."""
    if isinstance(value, dict):
        return {**{k: with_extra_fields(v) for k, v in value.items()}, EXTRA_KEY: {"note": "a field no doc names"}}
    if isinstance(value, list):
        return [with_extra_fields(v) for v in value]
    return value


class ExtraFieldsMiddleware:
    """Adds ``EXTRA_KEY`` to every JSON answer of the provider APIs while ``wire.extra_fields`` is on.

    Off (the default), a request passes straight through. On, the answer is buffered, rewritten and
    sent with a corrected Content-Length; a deliberately cut answer is passed on unchanged and cut.
    """

    def __init__(self, app: ASGIApp, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.runtime.config.wire.extra_fields
            or not scope["path"].startswith(_PROVIDER_PATHS)
        ):
            await self.app(scope, receive, send)
            return
        answer = await buffer_response(self.app, scope, receive, send)
        headers = list(answer.start.get("headers", []))
        body = answer.body
        if (answer.header(b"content-type") or b"").startswith(b"application/json") and body:
            body = json.dumps(with_extra_fields(json.loads(body)), separators=(",", ":")).encode()
        await send_buffered(send, answer.start, headers, body)
