from decimal import Decimal

import numpy as np
import pytest

from nbpro_pipeline.costs.estimate import (
    CellSpecError,
    all_cells,
    cell_key,
    estimate_cells,
    estimates_to_table,
    parse_cells,
)
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.providers.registry import Provider
from tests.costs.builders import accepted, ledger, record

RIVYA_2K = (Provider.RIVYA, Resolution.R2K)
ODI_4K = (Provider.ODIROUTER, Resolution.R4K)


# -- parse_cells --------------------------------------------------------------------------------------
def test_parse_cells_reads_keys_in_order():
    assert parse_cells("rivya|2K,odirouter|4K") == [RIVYA_2K, ODI_4K]
    assert parse_cells(" Rivya | 2k , odirouter|4K,rivya|2K") == [RIVYA_2K, ODI_4K]  # lenient, deduplicated


def test_parse_cells_all_and_wildcards():
    assert parse_cells("all") == list(all_cells())
    assert len(all_cells()) == 6
    assert parse_cells("rivya|*") == [(Provider.RIVYA, r) for r in Resolution]
    assert parse_cells("*|4K") == [(Provider.RIVYA, Resolution.R4K), ODI_4K]
    assert parse_cells(["rivya|1K", "odirouter|1K,rivya|1K"]) == [
        (Provider.RIVYA, Resolution.R1K),
        (Provider.ODIROUTER, Resolution.R1K),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no cells given"),
        (" , ", "no cells given"),
        ("rivya", "is not PROVIDER|RESOLUTION"),
        ("rivya|2K|x", "is not PROVIDER|RESOLUTION"),
        ("fal|2K", "unknown provider 'fal'"),
        ("rivya|8K", "unknown resolution '8K'"),
        ("rivya:2K", "is not PROVIDER|RESOLUTION"),
    ],
)
def test_parse_cells_errors_say_what_is_wrong(spec, message):
    with pytest.raises(CellSpecError, match=message):
        parse_cells(spec)


def test_cell_key():
    assert cell_key(RIVYA_2K) == "rivya|2K"


# -- estimate_cells -----------------------------------------------------------------------------------
def _table():
    return accepted(
        {"prompt_id": "any"},  # every cell
        {"prompt_id": "rivya-only", "provider": "rivya"},
        {"prompt_id": "4k-only", "resolution": "4K"},
        {"prompt_id": "odi-2k", "provider": "odirouter", "resolution": "2K"},
        {"prompt_id": "too-long-for-odi", "eligible_providers": ["rivya"]},
        {"prompt_id": "auto-aspect", "aspect_ratio": "auto", "eligible_providers": ["rivya"]},
        {"prompt_id": "invalid-on-rivya-only", "provider": "rivya", "eligible_providers": ["odirouter"]},
    )


def test_eligibility_matches_prompt_row_eligible_for(prices):
    table = _table()
    rows = PromptRow.from_table(table)
    for cell, estimate in zip(all_cells(), estimate_cells(table, all_cells(), prices), strict=True):
        assert estimate.eligible == sum(r.eligible_for(*cell) for r in rows), cell


def test_restricted_rows_count_only_in_their_cells(prices):
    by_cell = {e.cell: e for e in estimate_cells(_table(), all_cells(), prices)}
    assert by_cell["rivya|1K"].eligible == 4  # any, rivya-only, too-long-for-odi, auto-aspect
    assert by_cell["rivya|4K"].eligible == 5  # + 4k-only
    assert by_cell["odirouter|1K"].eligible == 1  # any
    assert by_cell["odirouter|2K"].eligible == 2  # any, odi-2k
    assert by_cell["odirouter|4K"].eligible == 2  # any, 4k-only


def test_costs_in_provider_unit_and_usd(prices):
    rivya, odi = estimate_cells(_table(), [(Provider.RIVYA, Resolution.R4K), ODI_4K], prices)
    assert (rivya.cost_unit, rivya.price_per_image, rivya.cost) == ("credits", Decimal(8), Decimal(40))
    assert rivya.estimated_usd == Decimal(40) * prices.to_usd("rivya", Decimal(1))
    assert rivya.is_estimate is False
    assert (odi.cost_unit, odi.cost, odi.estimated_usd) == ("usd", Decimal("0.60"), Decimal("0.60"))
    assert odi.is_estimate is True


def test_already_succeeded_rows_are_not_counted_again(prices):
    table = accepted(*({"prompt_id": f"p{i}"} for i in range(10)), {"prompt_id": "jpg", "output_format": "jpg"})
    done = ledger(
        record("p0"),
        record("p1"),
        record("p1", fingerprint="fp-again"),  # two succeeded rows for one prompt count once
        record("p2", status="failed", error_code="generation_failed"),  # failed: still to do
        record("p3", prompt_sha256="old-text"),  # the prompt text changed since
        record("p4", aspect_ratio="16:9"),  # another aspect ratio
        record("p5", resolution="4K"),  # another cell
        record("p6", provider="odirouter"),  # another provider
        record("jpg", output_format="png"),  # asked as png, the table now wants jpg
    )
    (estimate,) = estimate_cells(table, [RIVYA_2K], prices, ledger=done)
    assert (estimate.eligible, estimate.already_succeeded, estimate.to_generate) == (11, 2, 9)
    assert estimate.cost == 72


def test_ledger_may_be_a_dataframe_with_dictionary_columns(prices):
    table = accepted({"prompt_id": "p0"}, {"prompt_id": "p1"})
    done = ledger(record("p0"))
    # a hive dataset read yields dictionary-encoded partition columns, in another column order
    as_read = done.drop_columns(["provider"]).append_column("provider", done["provider"].dictionary_encode())
    for form in (as_read, done.to_pandas()):
        (estimate,) = estimate_cells(table, [RIVYA_2K], prices, ledger=form)
        assert estimate.already_succeeded == 1


def test_empty_inputs(prices):
    empty = accepted()
    (estimate,) = estimate_cells(empty, [RIVYA_2K], prices, ledger=ledger())
    assert (estimate.eligible, estimate.to_generate, estimate.cost) == (0, 0, 0)


def test_custom_prices_and_table_export():
    prices = (
        PriceTable()
        .with_per_image("rivya", {r: Decimal(10) for r in Resolution})
        .with_per_image(
            "odirouter", {Resolution.R1K: Decimal("0.1"), Resolution.R2K: Decimal("0.2"), Resolution.R4K: Decimal(1)}
        )
    )
    estimates = estimate_cells(accepted({"prompt_id": "a"}, {"prompt_id": "b"}), all_cells(), prices)
    table = estimates_to_table(estimates)
    assert table.num_rows == 6
    assert table.column("cost").to_pylist() == [Decimal(20)] * 3 + [Decimal("0.2"), Decimal("0.4"), Decimal(2)]
    assert estimates[0].to_json_dict()["cost"] == "20"
    assert estimates[0].to_json_dict()["cell"] == "rivya|1K"


def test_price_table_from_env():
    prices = PriceTable.from_env(
        {"NBPRO_RIVYA_USD_PER_CREDIT": "0.02", "NBPRO_ODIROUTER_USD_4K": "0.25", "NBPRO_RIVYA_CREDITS_PER_IMAGE": "9"}
    )
    assert prices.to_usd("rivya", Decimal(1)) == Decimal("0.02")
    assert prices.per_image(Provider.RIVYA, Resolution.R1K) == 9
    assert prices.per_image(Provider.ODIROUTER, Resolution.R4K) == Decimal("0.25")
    assert prices.per_image(Provider.ODIROUTER, Resolution.R2K) == Decimal("0.15")
    assert PriceTable.from_env({}) == PriceTable()
    current = PriceTable.from_env({"NBPRO_RIVYA_USD_PER_UNIT": "0.02", "NBPRO_ODIROUTER_PRICE_4K": "0.25"})
    assert current.to_usd("rivya", Decimal(1)) == Decimal("0.02")  # the names every provider shares
    assert current.per_image(Provider.ODIROUTER, Resolution.R4K) == Decimal("0.25")
    with pytest.raises(ValueError, match="NBPRO_ODIROUTER_USD_1K='cheap' is not a number"):
        PriceTable.from_env({"NBPRO_ODIROUTER_USD_1K": "cheap"})
    with pytest.raises(ValueError, match="whole number"):
        PriceTable.from_env({"NBPRO_RIVYA_CREDITS_PER_IMAGE": "8.5"})


# -- over a storage root, a cell at a time ------------------------------------------------------------
def test_estimate_from_a_storage_root_equals_the_estimate_from_its_rows(tmp_path, prices, monkeypatch):
    from nbpro_pipeline.costs import scan
    from nbpro_pipeline.costs.estimate import storage_done_keys
    from nbpro_pipeline.storage import LedgerWriter, Storage, compact_ledger

    rng = np.random.default_rng(7)
    rows = [
        record(
            f"p{rng.integers(0, 40)}",
            provider=str(rng.choice(["rivya", "odirouter"])),
            resolution=str(rng.choice(["1K", "2K", "4K"])),
            status=str(rng.choice(["succeeded", "failed", "skipped"])),
            aspect_ratio=str(rng.choice(["1:1", "16:9"])),
            prompt_sha256="sha-old" if rng.random() < 0.3 else None,
        )
        for _ in range(300)
    ]
    storage = Storage(tmp_path / "root")
    for provider in ("rivya", "odirouter"):
        for resolution in ("1K", "2K", "4K"):
            writer = LedgerWriter(storage, provider, resolution, "run", flush_rows=9)
            for row in rows:
                if (row.provider, row.resolution) == (provider, resolution):
                    writer.add(row)
            writer.flush()
    table = accepted(*({"prompt_id": f"p{i}"} for i in range(30)), {"prompt_id": "p31", "aspect_ratio": "16:9"})
    expected = estimate_cells(table, all_cells(), prices, ledger=ledger(*rows))
    assert sum(e.already_succeeded for e in expected) > 10  # the ledger does hold some of them
    monkeypatch.setattr(scan, "BATCH_ROWS", 13)
    done = storage_done_keys(storage)
    assert estimate_cells(table, all_cells(), prices, done_keys=done) == expected
    assert done.ledger_rows() == len(rows)
    compact_ledger(storage, min_age_s=0)
    assert estimate_cells(table, all_cells(), prices, done_keys=storage_done_keys(storage)) == expected
    one = storage_done_keys(storage)
    estimate_cells(table, [RIVYA_2K], prices, done_keys=one)  # one cell read, the others' rows from footers
    assert one.ledger_rows() == len(rows)
