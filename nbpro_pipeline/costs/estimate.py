"""Pre-flight estimates: how many images each (provider, resolution) cell would generate, and at what cost.

An estimate assumes every submitted request succeeds and is billed once: a provider that does not bill
failures (``Billing.failed_unbilled``) charges nothing more for their retries, while a billed image rejected
afterwards (e.g. a wrong pixel size) would cost more than estimated.

"Already succeeded" cannot use the engine's request fingerprint (that needs the full request, with
uploaded reference images), so a prompt row counts as done in a cell when the ledger holds a
``succeeded`` row with the same ``(prompt_id, prompt_sha256, aspect_ratio, output_format)`` in that cell's
provider and resolution. A row whose prompt text changed is therefore not done (its sha256 differs); a
row whose reference images alone changed would be counted as done here although the engine, which
compares fingerprints, would generate it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.costs._ledger import LedgerLike, as_ledger_table, quantize_cost
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import CostUnit, OutcomeStatus
from nbpro_pipeline.providers.registry import PROVIDERS

Cell = tuple[str, Resolution]  # (a registered provider's name, resolution)


def all_cells() -> list[Cell]:
    """Every (provider, resolution) cell of the registry, providers in its order."""
    return [(p, r) for p in PROVIDERS.names() for r in Resolution]


# What identifies "the same image asked again" between an accepted prompt row and a ledger row of one cell.
DONE_MATCH_COLUMNS = ("prompt_id", "prompt_sha256", "aspect_ratio", "output_format")
# all an estimate reads of the ledger (through ``storage_done_keys``, a cell's parts in batches)
ESTIMATE_LEDGER_COLUMNS = ["provider", "resolution", "status", *DONE_MATCH_COLUMNS]


class CellSpecError(ValueError):
    """A ``--cells`` value that names no (provider, resolution) cell."""


def cell_key(cell: Cell) -> str:
    """The Dagster partition key of a cell, ``<provider>|<resolution>``."""
    return f"{cell[0]}|{cell[1].value}"


def parse_cells(spec: str | Iterable[str]) -> list[Cell]:
    """Cells from ``"<provider>|2K,<provider>|4K"``; ``all`` means every cell, ``*`` any provider or resolution.

    Case and spaces do not matter (``Name | 2k``); duplicates are dropped, first order kept.
    """
    items = spec.split(",") if isinstance(spec, str) else [s for part in spec for s in part.split(",")]
    items = [item.strip() for item in items if item.strip()]
    example = f"{PROVIDERS.names()[0]}|2K"
    if not items:
        raise CellSpecError(f"no cells given; write e.g. '{example}' or 'all'")
    providers = ", ".join(PROVIDERS.names())
    resolutions = ", ".join(r.value for r in Resolution)
    cells: list[Cell] = []
    for item in items:
        if item.lower() == "all":
            cells.extend(all_cells())
            continue
        head, sep, tail = item.partition("|")
        if not sep or "|" in tail:
            raise CellSpecError(f"cell {item!r} is not PROVIDER|RESOLUTION; write e.g. '{example}' or 'all'")
        head, tail = head.strip().lower(), tail.strip().upper()
        if head != "*" and head not in PROVIDERS:
            raise CellSpecError(f"cell {item!r}: unknown provider {head!r}; use one of {providers} or *")
        wanted_providers = PROVIDERS.names() if head == "*" else [head]
        try:
            wanted_resolutions = list(Resolution) if tail == "*" else [Resolution(tail)]
        except ValueError:
            raise CellSpecError(f"cell {item!r}: unknown resolution {tail!r}; use one of {resolutions} or *") from None
        cells.extend((p, r) for p in wanted_providers for r in wanted_resolutions)
    return list(dict.fromkeys(cells))


class CellEstimate(BaseModel):
    """What generating one cell would take. Costs are in the provider's unit (credits or USD)."""

    model_config = ConfigDict(frozen=True)

    provider: str
    resolution: Resolution
    eligible: int  # accepted rows eligible for this cell
    already_succeeded: int  # of those, rows the ledger shows as succeeded in this cell
    to_generate: int
    cost_unit: CostUnit
    price_per_image: Decimal
    cost: Decimal  # to_generate x price_per_image, in cost_unit
    estimated_usd: Decimal  # cost x the provider's configured USD per unit
    is_estimate: bool  # the per-image price is not published by the provider (a configured table)

    @property
    def cell(self) -> str:
        return cell_key((self.provider, self.resolution))

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready, decimals as strings so nothing is rounded on the way."""
        data = self.model_dump(mode="json")
        data["cell"] = self.cell
        return data


ESTIMATE_SCHEMA = pa.schema(
    [
        ("provider", pa.string()),
        ("resolution", pa.string()),
        ("eligible", pa.int64()),
        ("already_succeeded", pa.int64()),
        ("to_generate", pa.int64()),
        ("cost_unit", pa.string()),
        ("price_per_image", pa.decimal128(18, 6)),
        ("cost", pa.decimal128(18, 6)),
        ("estimated_usd", pa.decimal128(18, 6)),
        ("is_estimate", pa.bool_()),
    ]
)


def by_provider(estimates: Sequence[CellEstimate]) -> dict[str, list[CellEstimate]]:
    """The estimates grouped by provider, in the order they came."""
    out: dict[str, list[CellEstimate]] = {}
    for e in estimates:
        out.setdefault(e.provider, []).append(e)
    return out


def list_has(column: pa.ChunkedArray, value: str) -> pa.Array:
    """Per row of a list column: whether its list holds ``value`` (null lists do not)."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    hits = pc.list_parent_indices(lists).filter(pc.fill_null(pc.equal(pc.list_flatten(lists), value), False))
    return pc.is_in(pa.array(np.arange(len(lists))), value_set=hits.cast(pa.int64()))


def eligible_mask(accepted: pa.Table, provider: str, resolution: Resolution) -> pa.ChunkedArray:
    """Vectorised ``PromptRow.eligible_for``: valid for the provider and not restricted to another cell."""
    listed = accepted["eligible_providers"]  # a null list (a row made by hand) goes to every provider
    mask = pc.or_(pc.is_null(listed), list_has(listed, str(provider)))
    for column, value in (("provider", str(provider)), ("resolution", resolution.value)):
        named = accepted[column]
        mask = pc.and_(mask, pc.or_(pc.is_null(named), pc.fill_null(pc.equal(named, value), False)))
    return mask


def _succeeded_keys(ledger: pa.Table, provider: str, resolution: Resolution) -> pa.Table:
    done = ledger.filter(
        pc.and_(
            pc.and_(pc.equal(ledger["provider"], provider), pc.equal(ledger["resolution"], resolution.value)),
            pc.equal(ledger["status"], OutcomeStatus.SUCCEEDED.value),
        )
    ).select(list(DONE_MATCH_COLUMNS))
    return _distinct(done)


def _distinct(keys: pa.Table) -> pa.Table:
    """The distinct rows of ``keys``: a semi join against them must not fan out."""
    return keys.group_by(list(DONE_MATCH_COLUMNS), use_threads=False).aggregate([])


class DoneKeys(Protocol):
    """Where "already succeeded" is looked up: the distinct ``DONE_MATCH_COLUMNS`` of a cell's succeeded
    ledger rows, at least those among ``wanted`` (rows of the same columns)."""

    def __call__(self, provider: str, resolution: Resolution, wanted: pa.Table) -> pa.Table: ...


def table_done_keys(ledger: LedgerLike | None) -> DoneKeys:
    """``DoneKeys`` over ledger rows in memory (any cells)."""
    table = as_ledger_table(ledger, ESTIMATE_LEDGER_COLUMNS)
    return lambda provider, resolution, wanted: _succeeded_keys(table, provider, resolution)


class StorageDoneKeys:
    """``DoneKeys`` read from a storage root's ledger, a cell at a time and in batches (``costs.scan``):
    only the cell's parts, only the match columns and ``status``, and only the rows whose ``prompt_id``
    is among the wanted ones are kept, so memory holds a batch, not the year's ledger."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._rows: dict[tuple[str, str], int] = {}  # rows seen per cell read

    def __call__(self, provider: str, resolution: Resolution, wanted: pa.Table) -> pa.Table:
        from nbpro_pipeline.costs.scan import cell_batches

        ids = pc.unique(wanted["prompt_id"])
        cell = (str(provider), resolution.value)
        self._rows[cell] = 0

        def where(batch: pa.Table) -> pa.ChunkedArray:
            self._rows[cell] += batch.num_rows
            succeeded = pc.equal(batch["status"], OutcomeStatus.SUCCEEDED.value)
            return pc.fill_null(pc.and_(succeeded, pc.is_in(batch["prompt_id"], value_set=ids)), False)

        batches = cell_batches(self.storage, provider, resolution, ESTIMATE_LEDGER_COLUMNS, where=where)
        found = [_distinct(batch.select(list(DONE_MATCH_COLUMNS))) for batch in batches]
        return _distinct(pa.concat_tables(found)) if found else _EMPTY_KEYS

    def ledger_rows(self) -> int:
        """Rows of the whole ledger: counted while reading for the cells read, from footers for the rest."""
        from nbpro_pipeline.costs.scan import count_rows

        return sum(self._rows.values()) + count_rows(self.storage, skip=set(self._rows))


def storage_done_keys(storage: Any) -> StorageDoneKeys:
    """``DoneKeys`` over the ledger of a storage root (``StorageDoneKeys``)."""
    return StorageDoneKeys(storage)


_EMPTY_KEYS = pa.schema([(c, pa.string()) for c in DONE_MATCH_COLUMNS]).empty_table()


def estimate_cells(
    accepted: pa.Table,
    cells: Sequence[Cell],
    prices: PriceTable,
    *,
    ledger: LedgerLike | None = None,
    done_keys: DoneKeys | None = None,
) -> list[CellEstimate]:
    """One estimate per cell, in the order given.

    ``accepted`` is a table in ``ACCEPTED_SCHEMA``. What already succeeded comes from ``ledger``
    (optional; ledger rows of any run) or ``done_keys`` (e.g. ``storage_done_keys(storage)``, which
    reads a storage root's ledger a cell at a time); with neither, nothing counts as done.
    """
    lookup = done_keys or (table_done_keys(ledger) if ledger is not None else None)
    out: list[CellEstimate] = []
    for provider, resolution in cells:
        provider, resolution = PROVIDERS[provider].name, Resolution(resolution)
        rows = accepted.filter(eligible_mask(accepted, provider, resolution))
        done = 0
        if rows.num_rows and lookup is not None:
            wanted = rows.select(list(DONE_MATCH_COLUMNS))
            keys = lookup(provider, resolution, wanted)
            if keys.num_rows:
                done = wanted.join(keys, list(DONE_MATCH_COLUMNS), join_type="left semi", use_threads=False).num_rows
        out.append(_cell_estimate(provider, resolution, rows.num_rows, done, prices))
    return out


def _cell_estimate(provider: str, resolution: Resolution, eligible: int, done: int, prices: PriceTable) -> CellEstimate:
    to_generate = eligible - done
    price = prices.per_image(provider, resolution)
    cost = price * to_generate
    return CellEstimate(
        provider=provider,
        resolution=resolution,
        eligible=eligible,
        already_succeeded=done,
        to_generate=to_generate,
        cost_unit=prices.unit(provider),
        price_per_image=price,
        cost=cost,
        estimated_usd=prices.to_usd(provider, cost),
        is_estimate=prices.is_estimate(provider),
    )


def estimates_to_table(estimates: Sequence[CellEstimate]) -> pa.Table:
    """The estimates as an Arrow table (decimals exact), e.g. to store next to a run's metadata."""
    rows = [e.model_dump(mode="python") for e in estimates]
    for row in rows:
        row["resolution"] = row["resolution"].value
        for key in ("price_per_image", "cost", "estimated_usd"):
            row[key] = quantize_cost(row[key])
    return pa.Table.from_pylist(rows, schema=ESTIMATE_SCHEMA)
