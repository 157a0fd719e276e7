"""A test CA and signer made per session (nothing checked in), and small PNG/JPEG files to mark."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.provenance import ImageLineage, ProvenanceSigner
from nbpro_pipeline.provenance.democert import DemoCredential, make_demo_credential

LINEAGE = ImageLineage(
    prompt_id="p-001",
    prompt_sha256="a" * 64,
    provider="rivya",
    model="nano-banana-pro",
    task_id="gen_abc",
    resolution="1K",
    aspect_ratio="1:1",
    output_format="png",
    cost="8",
    cost_unit="credits",
    run_id="run-1",
    partition_key="rivya|1K",
    source_uri="file:///data/prompts.csv",
    row_number=3,
    references=("b" * 64, "https://example.test/ref.png"),
)
PIL_FORMAT = {OutputFormat.PNG: "PNG", OutputFormat.JPG: "JPEG"}


def image_bytes(fmt: OutputFormat, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, PIL_FORMAT[fmt])
    return buf.getvalue()


@pytest.fixture(scope="session")
def credential(tmp_path_factory) -> DemoCredential:
    return make_demo_credential(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(scope="session")
def signer(credential) -> ProvenanceSigner:
    return ProvenanceSigner(credential.cert_path.read_bytes(), credential.key_path.read_bytes())


@pytest.fixture(scope="session")
def trust_anchor(credential) -> str:
    return credential.ca_path.read_text()


@pytest.fixture(params=[OutputFormat.PNG, OutputFormat.JPG], ids=lambda f: f.value)
def fmt(request) -> OutputFormat:
    return request.param
