"""What a stored image says about itself, end to end through the sandbox: the model each provider says it
served (in the ledger, the lineage and IPTC's AI fields), and the prompt only where the table shares it
and the run lets prompts into images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nbpro_pipeline.image_files import THUMBNAIL_SIDE, read_lineage
from nbpro_pipeline.provenance.xmp import IPTC_AI_FIELDS, read_xmp
from nbpro_pipeline.providers.odirouter.traits import ENDPOINT_ID
from nbpro_pipeline.providers.registry import PROVIDERS, Provider
from nbpro_pipeline.providers.rivya.traits import MODEL_ID
from tests.engine.conftest import SETTINGS, prompt_row

# what the sandbox's answers name: Rivya's task ``model``, OdiRouter's result ``metadata.model``
SERVED = {Provider.RIVYA: MODEL_ID, Provider.ODIROUTER: ENDPOINT_ID}
SYSTEM = {
    Provider.RIVYA: "Google Nano Banana Pro via Rivya",
    Provider.ODIROUTER: "Google Nano Banana Pro via OdiRouter",
}
USED, VERSION = IPTC_AI_FIELDS["ai_system_used"], IPTC_AI_FIELDS["ai_system_version"]
PROMPT, WRITER = IPTC_AI_FIELDS["prompt_information"], IPTC_AI_FIELDS["prompt_writer"]


def rows():
    shared = {"share_prompt": "yes", "prompt_writer": "Ana Example", "campaign": "spring"}
    return [
        prompt_row("shared", 'a red <fox> & a "hen"', row_number=1, extra=json.dumps(shared)),
        prompt_row("private", "a private brief", row_number=2, extra=json.dumps({"share_prompt": "no"})),
        prompt_row("plain", "no column at all", row_number=3),
    ]


async def stored(harness, provider, **kw) -> dict[str, tuple[dict, dict[str, str], object]]:
    await harness.run(provider, rows(), **kw)
    out = {}
    for rec in harness.rows(provider):
        data = Path(rec["image_uri"]).read_bytes()
        out[rec["prompt_id"]] = (rec, read_xmp(data), read_lineage(rec["image_uri"]))
    return out


async def test_the_served_model_is_in_the_ledger_the_lineage_and_the_marks(harness, provider):
    images = await stored(harness, provider)
    requested = PROVIDERS.traits(provider).model_id
    for rec, xmp, lineage in images.values():
        assert rec["model_requested"] == requested and rec["model_served"] == SERVED[provider]
        assert lineage.model == SERVED[provider] and lineage.model_stated and lineage.model_requested == requested
        assert xmp[USED] == SYSTEM[provider]
        assert xmp[VERSION] == SERVED[provider]  # no version stated: the id it named
        assert xmp["Xmp.nbpro.model"] == SERVED[provider] and xmp["Xmp.nbpro.modelStated"] == "True"


async def test_the_prompt_travels_only_where_the_table_shares_it(harness, provider):
    images = await stored(harness, provider)
    rec, xmp, lineage = images["shared"]
    assert xmp[PROMPT] == 'a red <fox> & a "hen"' and xmp[WRITER] == "Ana Example"
    for private in ("private", "plain"):
        _, xmp, lineage = images[private]
        assert PROMPT not in xmp and WRITER not in xmp
        assert lineage.prompt is not None and not lineage.prompt_shared  # the private blob keeps it, as before


async def test_a_run_that_leaves_prompts_out_writes_no_prompt_anywhere(harness, provider):
    settings = SETTINGS.model_copy(update={"prompt_in_images": False})
    images = await stored(harness, provider, settings=settings)
    for prompt_id, (_, xmp, lineage) in images.items():
        assert PROMPT not in xmp and lineage.prompt is None and not lineage.prompt_shared, prompt_id
        assert xmp[USED] == SYSTEM[provider]  # the rest of the marks stay
    data = Path(images["shared"][0]["image_uri"]).read_bytes()
    assert b"red <fox>" not in data and b"red &lt;fox&gt;" not in data


async def test_every_stored_image_has_a_thumbnail_from_the_same_decode(harness, provider):
    """Placing keeps a small JPEG of each image under thumbnails/, so pages never decode it again."""
    images = await stored(harness, provider)
    for rec, _, _ in images.values():
        thumb = harness.storage.thumbnail_path(rec["image_uri"])
        assert thumb is not None and "/thumbnails/images/" in thumb, thumb
        with Image.open(thumb) as small, Image.open(rec["image_uri"]) as full:
            assert small.format == "JPEG" and max(small.size) == THUMBNAIL_SIDE
            assert abs(small.width / small.height - full.width / full.height) < 0.02  # the image's shape
            assert small.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)) == pytest.approx(
                full.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)), abs=6
            )  # the same picture: its mean colour
