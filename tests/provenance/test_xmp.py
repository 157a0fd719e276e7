"""The XMP we write is read back by exiftool, an independent reader (Perl, its own XMP parser)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA
from nbpro_pipeline.provenance.xmp import read_xmp, write_xmp
from tests.provenance.conftest import LINEAGE, image_bytes


def exiftool() -> str:
    path = shutil.which("exiftool")
    if path is None:
        message = "exiftool is missing: apt-get install libimage-exiftool-perl (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def read_with_exiftool(path) -> dict:
    out = subprocess.run([exiftool(), "-json", "-G1", "-XMP:all", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)[0]


def test_exiftool_reads_source_type_and_lineage(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.value}"
    path.write_bytes(write_xmp(image_bytes(fmt), LINEAGE))
    tags = read_with_exiftool(path)
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert tags["XMP-nbpro:PromptId"] == "p-001"
    assert tags["XMP-nbpro:PromptSha256"] == "a" * 64
    assert tags["XMP-nbpro:Provider"] == "rivya"
    assert tags["XMP-nbpro:Model"] == "nano-banana-pro"
    assert tags["XMP-nbpro:TaskId"] == "gen_abc"
    assert tags["XMP-nbpro:Resolution"] == "1K" and tags["XMP-nbpro:AspectRatio"] == "1:1"
    assert str(tags["XMP-nbpro:Cost"]) == "8" and tags["XMP-nbpro:CostUnit"] == "credits"
    assert tags["XMP-nbpro:RunId"] == "run-1" and tags["XMP-nbpro:PartitionKey"] == "rivya|1K"
    assert tags["XMP-nbpro:SourceUri"] == "file:///data/prompts.csv" and tags["XMP-nbpro:RowNumber"] == 3
    assert tags["XMP-nbpro:References"] == f"{'b' * 64} https://example.test/ref.png"


def test_xmp_leaves_the_pixels_alone(fmt):
    from io import BytesIO

    from PIL import Image

    raw = image_bytes(fmt)
    marked = write_xmp(raw, LINEAGE)
    with Image.open(BytesIO(raw)) as a, Image.open(BytesIO(marked)) as b:
        assert a.tobytes() == b.tobytes()
    assert read_xmp(marked)["Xmp.nbpro.taskId"] == "gen_abc"
    assert read_xmp(raw) == {}
