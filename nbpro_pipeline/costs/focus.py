"""The ledger as FinOps FOCUS 1.3 rows, so finance teams load image costs beside their cloud bills.

One FOCUS row per ledger row that reached a provider (skipped rows were never sent and cost nothing).
Money stays exact: every cost column is ``decimal128(38, 6)`` built from the ledger's decimals, so
``BilledCost`` summed per provider equals the ledger to the cent, and a credits provider's
``PricingCurrencyEffectiveCost`` equals its credits to the credit.

How a provider's unit maps (docs/focus.md says why, and which FOCUS rules cannot be met):
- a provider billing USD: ``BillingCurrency`` = ``PricingCurrency`` = USD, ``BilledCost`` = ledger cost
  (``x_CostIsEstimate`` where it comes from the configured price table);
- a provider pricing in credits, a virtual currency: ``PricingCurrency`` = its traits'
  ``pricing_currency`` with the exact credits in ``PricingCurrencyEffectiveCost``; ``BillingCurrency``
  must be a national currency, so ``BilledCost`` is the ledger's ``estimated_usd`` (credits × the
  configured USD per credit), an estimate as well.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.scan import ledger_batches
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.providers.base import ProviderTraits
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.storage.csv_cells import CsvWriter
from nbpro_pipeline.storage.filesystem import Storage

FOCUS_VERSION = "1.3"
FOCUS_MONEY = pa.decimal128(38, 6)
_ZERO = Decimal(0)

_TEXT, _TS, _BOOL = pa.string(), pa.timestamp("us", tz="UTC"), pa.bool_()
_QTY = pa.decimal128(38, 6)
FOCUS_SCHEMA = pa.schema(
    [
        ("BilledCost", FOCUS_MONEY),
        ("BillingAccountId", _TEXT),
        ("BillingAccountName", _TEXT),
        ("BillingAccountType", _TEXT),
        ("BillingCurrency", _TEXT),
        ("BillingPeriodStart", _TS),
        ("BillingPeriodEnd", _TS),
        ("ChargeCategory", _TEXT),
        ("ChargeClass", _TEXT),
        ("ChargeDescription", _TEXT),
        ("ChargeFrequency", _TEXT),
        ("ChargePeriodStart", _TS),
        ("ChargePeriodEnd", _TS),
        ("CommitmentDiscountStatus", _TEXT),
        ("ConsumedQuantity", _QTY),
        ("ConsumedUnit", _TEXT),
        ("ContractedCost", FOCUS_MONEY),
        ("ContractedUnitPrice", FOCUS_MONEY),
        ("EffectiveCost", FOCUS_MONEY),
        ("HostProviderName", _TEXT),
        ("InvoiceId", _TEXT),
        ("InvoiceIssuerName", _TEXT),
        ("ListCost", FOCUS_MONEY),
        ("ListUnitPrice", FOCUS_MONEY),
        ("PricingCategory", _TEXT),
        ("PricingCurrency", _TEXT),
        ("PricingCurrencyContractedUnitPrice", FOCUS_MONEY),
        ("PricingCurrencyEffectiveCost", FOCUS_MONEY),
        ("PricingCurrencyListUnitPrice", FOCUS_MONEY),
        ("PricingQuantity", _QTY),
        ("PricingUnit", _TEXT),
        ("ProviderName", _TEXT),
        ("PublisherName", _TEXT),
        ("ResourceId", _TEXT),
        ("ResourceName", _TEXT),
        ("ResourceType", _TEXT),
        ("ServiceCategory", _TEXT),
        ("ServiceName", _TEXT),
        ("ServiceProviderName", _TEXT),
        ("ServiceSubcategory", _TEXT),
        ("SkuId", _TEXT),
        ("SkuMeter", _TEXT),
        ("SkuPriceDetails", _TEXT),
        ("SkuPriceId", _TEXT),
        ("Tags", _TEXT),
        ("x_CostIsEstimate", _BOOL),
        ("x_CostSource", _TEXT),
        ("x_PromptId", _TEXT),
        ("x_PromptSha256", _TEXT),
        ("x_SourceUri", _TEXT),
        ("x_RowNumber", pa.int64()),
        ("x_Resolution", _TEXT),
        ("x_AspectRatio", _TEXT),
        ("x_Status", _TEXT),
        ("x_ErrorCode", _TEXT),
        ("x_Fingerprint", _TEXT),
        ("x_ImageUri", _TEXT),
        ("x_ImageSha256", _TEXT),
        ("x_ProviderSha256", _TEXT),
        ("x_RunId", _TEXT),
        ("x_PartitionKey", _TEXT),
        ("x_PipelineVersion", _TEXT),
    ]
)


# what the FOCUS columns are made from; skipped rows (never sent) are left out first
SOURCE_COLUMNS = [
    "provider", "resolution", "status", "final_cost", "estimated_usd", "cost_is_estimate", "finished_at",
    "recorded_at", "task_id", "prompt_id", "model_requested", "aspect_ratio", "error_code", "source_uri",
    "partition_key", "run_id", "prompt_sha256", "row_number", "fingerprint", "image_uri", "image_sha256",
    "provider_sha256", "pipeline_version",
]  # fmt: skip

# ``x_`` columns copied from the ledger column of the same meaning
LEDGER_EXTENSIONS = {
    "x_PromptId": "prompt_id",
    "x_PromptSha256": "prompt_sha256",
    "x_SourceUri": "source_uri",
    "x_RowNumber": "row_number",
    "x_Resolution": "resolution",
    "x_AspectRatio": "aspect_ratio",
    "x_Status": "status",
    "x_ErrorCode": "error_code",
    "x_Fingerprint": "fingerprint",
    "x_ImageUri": "image_uri",
    "x_ImageSha256": "image_sha256",
    "x_ProviderSha256": "provider_sha256",
    "x_RunId": "run_id",
    "x_PartitionKey": "partition_key",
    "x_PipelineVersion": "pipeline_version",
}

_ZERO_MONEY, _ONE_MONEY = pa.scalar(_ZERO, FOCUS_MONEY), pa.scalar(Decimal(1), FOCUS_MONEY)


class _FocusListPrices(BaseModel):
    """One cell's unit prices: in the billing currency (USD) and in the pricing currency."""

    model_config = ConfigDict(frozen=True)

    list_usd: Decimal
    list_pricing: Decimal
    pricing_currency: str

    in_usd: bool  # the provider bills in USD; otherwise in its own unit, shown in USD at a configured rate

    @classmethod
    def of(cls, provider: str, resolution: Resolution, prices: PriceTable) -> _FocusListPrices:
        per_image = prices.per_image(provider, resolution)
        if prices.unit(provider) == "usd":
            return cls(list_usd=per_image, list_pricing=per_image, pricing_currency="USD", in_usd=True)
        currency = PROVIDERS.traits(provider).pricing_currency if provider in PROVIDERS else "XXX"
        return cls(list_usd=prices.to_usd(provider, per_image), list_pricing=per_image, pricing_currency=currency,
                   in_usd=False)  # fmt: skip


def focus_table(ledger: pa.Table, prices: PriceTable | None = None, accounts: dict[str, str] | None = None) -> pa.Table:
    """The FOCUS rows of a ledger table (``read_ledger``), in ``FOCUS_SCHEMA``; skipped rows left out.
    Rows come a cell (provider, resolution) at a time, in ledger order within each."""
    prices = prices or PriceTable()
    cells = ledger.select(["provider", "resolution"]).group_by(["provider", "resolution"]).aggregate([])
    tables = [FOCUS_SCHEMA.empty_table()]
    for provider, resolution in zip(cells["provider"].to_pylist(), cells["resolution"].to_pylist(), strict=True):
        mine = pc.and_(pc.equal(ledger["provider"], provider), pc.equal(ledger["resolution"], resolution))
        tables.append(_focus_batch(ledger.filter(mine), prices, accounts))
    return pa.concat_tables(tables)


def _focus_batch(batch: pa.Table, prices: PriceTable, accounts: dict[str, str] | None) -> pa.Table:
    """The FOCUS rows of ledger rows of one cell, computed column-wise (a year of history is a million
    rows, too many for a Python object each). A net negative amount (money given back to a resumed task)
    is a ``Credit``; everything else is ``Usage`` of one image, charged or refunded."""
    batch = batch.filter(pc.not_equal(batch["status"], OutcomeStatus.SKIPPED.value))
    n = batch.num_rows
    if n == 0:
        return FOCUS_SCHEMA.empty_table()
    provider, resolution = batch["provider"][0].as_py(), Resolution(batch["resolution"][0].as_py())
    unit = _FocusListPrices.of(provider, resolution, prices)
    money = _money_columns(batch, unit)
    usage = money["usage"]
    account = (accounts or {}).get(provider) or f"{provider}-account"
    sku = pc.binary_join_element_wise(batch["model_requested"], pa.repeat(pa.scalar(resolution.value), n), ":")
    when = pc.coalesce(batch["finished_at"], batch["recorded_at"])
    month = pc.floor_temporal(when, unit="month")
    hour = pc.floor_temporal(when, unit="hour")
    has_task = pc.fill_null(pc.not_equal(batch["task_id"], ""), False)
    text = _Constant(n)
    columns = {
        **money["columns"],
        **_Parties.of(provider).columns(text, account),
        "BillingAccountType": text("API account"),
        "BillingCurrency": text("USD"),
        "BillingPeriodStart": month,
        "BillingPeriodEnd": pc.floor_temporal(pc.add(month, pa.scalar(timedelta(days=32))), unit="month"),
        "ChargeCategory": pc.if_else(usage, "Usage", "Credit"),
        "ChargeClass": text(None),
        "ChargeDescription": _description(batch, resolution),
        "ChargeFrequency": text("Usage-Based"),
        "ChargePeriodStart": hour,
        "ChargePeriodEnd": pc.add(hour, pa.scalar(timedelta(hours=1))),
        "CommitmentDiscountStatus": text(None),  # no commitment discounts; the validator's rules read it
        "ConsumedUnit": _if_usage(usage, "Images"),
        "InvoiceId": text(None),  # the pipeline never sees invoices
        "PricingCategory": _if_usage(usage, "Standard"),
        "PricingCurrency": text(unit.pricing_currency),
        "PricingUnit": _if_usage(usage, "Images"),
        "ResourceId": batch["task_id"],
        "ResourceName": pc.if_else(has_task, batch["prompt_id"], pa.scalar(None, pa.string())),
        "ResourceType": pc.if_else(has_task, "Image generation task", pa.scalar(None, pa.string())),
        "ServiceCategory": text("AI and Machine Learning"),
        "ServiceSubcategory": text("Generative AI"),
        "SkuId": _if_usage(usage, sku),
        "SkuMeter": _if_usage(usage, "Images"),
        "SkuPriceDetails": _if_usage(usage, json.dumps({"x_Resolution": resolution.value})),
        "SkuPriceId": _if_usage(usage, pc.binary_join_element_wise(pa.repeat(pa.scalar(str(provider)), n), sku, ":")),
        "Tags": _tags(batch),
        # a USD figure converted from the provider's own unit is an estimate too: the rate is configured
        "x_CostIsEstimate": pc.or_(batch["cost_is_estimate"], pa.scalar(not unit.in_usd)),
        "x_CostSource": pc.if_else(batch["cost_is_estimate"], "configured price table", "provider-reported credits"),
        **{column: batch[source] for column, source in LEDGER_EXTENSIONS.items()},
    }
    return pa.Table.from_arrays([pc.cast(columns[f.name], f.type) for f in FOCUS_SCHEMA], schema=FOCUS_SCHEMA)


class _Constant:
    """One value repeated over a batch, as a column."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, value: str | None) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), self.n)


class _Parties(BaseModel):
    """Who a provider's rows name: the provider serving the model (1.3's ServiceProviderName, and the
    deprecated ProviderName 1.3 still requires), its host where it names one (else itself, as FOCUS
    allows when the host is not disclosed), and the model's developer (deprecated PublisherName).
    A ledger's provider no longer registered keeps the traits' defaults."""

    model_config = ConfigDict(frozen=True)

    provider: str
    host: str
    developer: str
    model_name: str

    @classmethod
    def of(cls, provider: str) -> _Parties:
        if provider not in PROVIDERS:
            fields = ProviderTraits.model_fields
            developer, model = fields["model_developer"].default, fields["model_name"].default
            return cls(provider=provider, host=provider, developer=developer, model_name=model)
        traits = PROVIDERS.traits(provider)
        name = traits.display_name
        return cls(provider=name, host=traits.host_provider_name or name, developer=traits.model_developer,
                   model_name=traits.model_name)  # fmt: skip

    def columns(self, text: _Constant, account: str) -> dict[str, pa.Array]:
        return {
            "BillingAccountId": text(account),
            "BillingAccountName": text(f"{self.provider} account {account}"),
            "HostProviderName": text(self.host),
            "InvoiceIssuerName": text(self.provider),
            "ProviderName": text(self.provider),
            "PublisherName": text(self.developer),
            "ServiceName": text(f"{self.provider} {self.model_name}"),
            "ServiceProviderName": text(self.provider),
        }


def _money_columns(batch: pa.Table, unit: _FocusListPrices) -> dict:
    """The cost and quantity columns, exact ``decimal128(38, 6)``, and the usage mask they imply."""
    in_pricing = pc.cast(batch["final_cost"], FOCUS_MONEY)
    # billed in USD: a credits provider's is the ledger's estimate of the credits' worth
    estimated = pc.fill_null(pc.cast(batch["estimated_usd"], FOCUS_MONEY), _ZERO_MONEY)
    billed = in_pricing if unit.in_usd else estimated
    usage = pc.and_(pc.greater_equal(billed, _ZERO_MONEY), pc.greater_equal(in_pricing, _ZERO_MONEY))
    quantity = pc.if_else(pc.and_(usage, pc.greater(in_pricing, _ZERO_MONEY)), _ONE_MONEY, _ZERO_MONEY)
    list_usd = pa.scalar(unit.list_usd, FOCUS_MONEY)
    list_pricing = pa.scalar(unit.list_pricing, FOCUS_MONEY)
    columns = {
        "BilledCost": billed,
        "ConsumedQuantity": _if_usage(usage, quantity),
        "ContractedCost": billed,
        "ContractedUnitPrice": _if_usage(usage, list_usd),
        "EffectiveCost": billed,
        "ListCost": pc.if_else(usage, pc.if_else(pc.greater(quantity, _ZERO_MONEY), list_usd, _ZERO_MONEY), billed),
        "ListUnitPrice": _if_usage(usage, list_usd),
        "PricingCurrencyContractedUnitPrice": _if_usage(usage, list_pricing),
        "PricingCurrencyEffectiveCost": in_pricing,
        "PricingCurrencyListUnitPrice": _if_usage(usage, list_pricing),
        "PricingQuantity": _if_usage(usage, quantity),
    }
    return {"usage": usage, "columns": columns}


def _if_usage(usage: pa.Array, value: object) -> pa.Array:
    """``value`` on usage rows, null on credits."""
    kind = value.type if isinstance(value, pa.Array | pa.ChunkedArray | pa.Scalar) else pa.string()
    return pc.if_else(usage, value, pa.scalar(None, kind))


def _description(batch: pa.Table, resolution: Resolution) -> pa.Array:
    """ "nano-banana-pro image at 1K, 16:9 (failed: size_mismatch)"."""
    code = batch["error_code"]
    outcome = pc.if_else(
        pc.fill_null(pc.not_equal(code, ""), False),
        pc.binary_join_element_wise(batch["status"], code, ": "),
        batch["status"],
    )
    n = batch.num_rows
    parts = [batch["model_requested"], " image at ", resolution.value, ", ", batch["aspect_ratio"], " (", outcome, ")"]
    columns = [p if not isinstance(p, str) else pa.repeat(pa.scalar(p), n) for p in parts]
    return pc.binary_join_element_wise(*columns, "")


def _tags(batch: pa.Table) -> pa.Array:
    """FOCUS Tags (a JSON object): where the charge came from, for a FinOps tool to group by. A handful of
    (table, cell, run) combinations cover a year, so each distinct one is serialised once."""
    made: dict[tuple[str | None, str | None, str | None], str] = {}
    out = []
    for key in zip(
        batch["source_uri"].to_pylist(), batch["partition_key"].to_pylist(), batch["run_id"].to_pylist(), strict=True
    ):
        if (tag := made.get(key)) is None:
            tag = made[key] = json.dumps({"x_table": key[0], "x_cell": key[1], "x_run": key[2]}, sort_keys=True)
        out.append(tag)
    return pa.array(out, pa.string())


def billed_by_provider(focus: pa.Table) -> dict[str, tuple[Decimal, Decimal]]:
    """Per FOCUS ServiceProviderName: (sum of BilledCost, sum of PricingCurrencyEffectiveCost), exact."""
    sums = focus.group_by("ServiceProviderName", use_threads=False).aggregate(
        [("BilledCost", "sum"), ("PricingCurrencyEffectiveCost", "sum")]
    )
    return {
        name: (b, p)
        for name, b, p in zip(
            sums["ServiceProviderName"].to_pylist(),
            sums["BilledCost_sum"].to_pylist(),
            sums["PricingCurrencyEffectiveCost_sum"].to_pylist(),
            strict=True,
        )
    }


class FocusExport(BaseModel):
    """What ``export_focus`` wrote: file URIs, row count, and per-provider totals to reconcile."""

    paths: list[str]
    rows: int
    billed: dict[str, Decimal]  # ServiceProviderName -> sum of BilledCost (USD)
    priced: dict[str, Decimal]  # ServiceProviderName -> sum of PricingCurrencyEffectiveCost (credits / USD)


def export_focus(storage: Storage, prices: PriceTable | None = None, *, csv: bool = False) -> FocusExport:
    """The whole ledger of ``storage`` as ``reports/focus_cost_export.parquet`` (and ``.csv``), written a
    cell batch at a time (memory stays that of one batch however long the history), each file atomically."""
    prices = prices or PriceTable()
    target = storage.path("reports", "focus_cost_export.parquet")
    csv_target = target.removesuffix(".parquet") + ".csv"
    storage.fs.makedirs(storage.reports_dir(), exist_ok=True)
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    rows = 0
    with contextlib.ExitStack() as files:
        parquet = pq.ParquetWriter(files.enter_context(storage.open_atomic(target)), FOCUS_SCHEMA)
        files.callback(parquet.close)
        text = None
        if csv:
            text = CsvWriter(files.enter_context(storage.open_atomic(csv_target)), FOCUS_SCHEMA)  # formulas made inert
            files.callback(text.close)
        for batch in ledger_batches(storage, SOURCE_COLUMNS):
            focus = _focus_batch(batch, prices, None)
            if focus.num_rows == 0:
                continue
            parquet.write_table(focus)
            if text is not None:
                text.write_table(focus)
            rows += focus.num_rows
            for name, (b, p) in billed_by_provider(focus).items():
                tb, tp = totals.get(name, (_ZERO, _ZERO))
                totals[name] = (tb + b, tp + p)
    paths = [storage.uri(target)] + ([storage.uri(csv_target)] if csv else [])
    return FocusExport(
        paths=paths,
        rows=rows,
        billed={name: b for name, (b, _) in totals.items()},
        priced={name: p for name, (_, p) in totals.items()},
    )
