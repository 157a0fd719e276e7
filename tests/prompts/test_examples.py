"""The sample tables in examples/prompts: small, valid but for one deliberate rejection, and regenerable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.prompts import load_prompt_tables
from nbpro_pipeline.providers.registry import Provider

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"


def test_examples_load_with_the_expected_rejections():
    result = load_prompt_tables([str(EXAMPLES)], reference_roots=[str(EXAMPLES / "refs")])
    assert [Path(s.uri).name for s in result.sources] == ["catalog.parquet", "products.csv", "scenes.tsv"]
    assert result.rows_read == result.accepted.num_rows == 12 and not result.unreadable
    assert sorted((r.code, r.provider) for r in result.rejected_rows()) == [
        ("output_format_unsupported", Provider.ODIROUTER),  # the jpg product: Rivya only
        ("prompt_too_long", Provider.ODIROUTER),  # the deliberately long catalog prompt
    ]
    rows = PromptRow.from_table(result.accepted)
    for provider in Provider:
        for resolution in Resolution:
            assert sum(r.eligible_for(provider, resolution) for r in rows) <= 12  # demo-sized cells
    (with_ref,) = [r for r in rows if r.reference_images]
    assert with_ref.reference_images == (str(EXAMPLES / "refs" / "swatch.png"),)


def test_make_examples_regenerates_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.swatch_png(tmp_path / "swatch.png")
    module.catalog_parquet(tmp_path / "catalog.parquet")
    assert (tmp_path / "swatch.png").read_bytes() == (EXAMPLES / "refs" / "swatch.png").read_bytes()
    assert (tmp_path / "catalog.parquet").read_bytes() == (EXAMPLES / "catalog.parquet").read_bytes()
