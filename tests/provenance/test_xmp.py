"""The XMP we write is read back by exiftool, an independent reader (Perl, its own XMP parser)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from nbpro_pipeline.provenance.lineage import TRAINED_ALGORITHMIC_MEDIA
from nbpro_pipeline.provenance.xmp import IPTC_AI_FIELDS, read_xmp, write_xmp
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


# what a prompt table may hold: markup, an XML terminator, entities, quotes, controls XML cannot carry,
# a bidi override, astral characters, a newline
HOSTILE = "a <b>\"cat\"</b> & 'dog' ]]></rdf:li></x:xmpmeta>\x00\x07\x1b \u202eevil\u202c 🐱 漢字\nline 2"


def ai_lineage(**kw):
    return LINEAGE.model_copy(
        update={
            "model": "gemini-3-pro-image",
            "model_requested": "nano-banana-pro",
            "model_stated": True,
            "ai_system": "Google Nano Banana Pro via Rivya",
            **kw,
        }
    )


def test_exiftool_reads_the_iptc_2025_ai_fields(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.value}"
    lineage = ai_lineage(model_version="001", prompt_information=HOSTILE, prompt_writer="Ana <ana@example.test>")
    path.write_bytes(write_xmp(image_bytes(fmt), lineage))
    tags = read_with_exiftool(path)
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert tags["XMP-iptcExt:AISystemUsed"] == "Google Nano Banana Pro via Rivya"
    assert tags["XMP-iptcExt:AISystemVersionUsed"] == "001"
    # the prompt comes back as written, less the three controls XML 1.0 cannot hold; exiv2 escaped the rest
    assert tags["XMP-iptcExt:AIPromptInformation"] == HOSTILE.replace("\x00", "").replace("\x07", "").replace(
        "\x1b", ""
    )
    assert tags["XMP-iptcExt:AIPromptWriterName"] == "Ana <ana@example.test>"
    assert tags["XMP-nbpro:Model"] == "gemini-3-pro-image" and tags["XMP-nbpro:ModelRequested"] == "nano-banana-pro"
    assert tags["XMP-nbpro:ModelStated"] in (True, "True")
    assert "XMP-nbpro:PromptInformation" not in tags and "XMP-nbpro:AiSystem" not in tags  # IPTC's, not twice


def test_without_a_stated_version_the_served_model_id_is_the_version(fmt):
    xmp = read_xmp(write_xmp(image_bytes(fmt), ai_lineage()))
    assert xmp[IPTC_AI_FIELDS["ai_system_version"]] == "gemini-3-pro-image"


def test_a_prompt_the_table_did_not_share_is_not_written(fmt):
    xmp = read_xmp(write_xmp(image_bytes(fmt), ai_lineage(prompt_information=None, prompt_writer=None)))
    assert IPTC_AI_FIELDS["prompt_information"] not in xmp and IPTC_AI_FIELDS["prompt_writer"] not in xmp
    assert xmp[IPTC_AI_FIELDS["ai_system_used"]] == "Google Nano Banana Pro via Rivya"


def test_an_older_lineage_still_names_its_system(fmt):
    """A lineage without the new fields (an older file's, re-marked) falls back to model via provider."""
    xmp = read_xmp(write_xmp(image_bytes(fmt), LINEAGE))
    assert xmp[IPTC_AI_FIELDS["ai_system_used"]] == "nano-banana-pro via rivya"
    assert xmp[IPTC_AI_FIELDS["ai_system_version"]] == "nano-banana-pro"
