"""The FOCUS export as it was first written, one pydantic row per ledger row: the reference the
column-wise ``focus_table`` must equal, row for row and column for column (``test_focus_columnwise``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.costs.focus import FOCUS_SCHEMA, LEDGER_EXTENSIONS
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.models.ledger import LedgerRecord, OutcomeStatus
from nbpro_pipeline.providers.registry import Provider

# the oracle's own statement of the shipped providers' FOCUS names and Rivya's credit currency (docs/focus.md)
PROVIDER_NAMES = {Provider.RIVYA: "Rivya", Provider.ODIROUTER: "OdiRouter"}
RIVYA_CREDITS = "QRC"
PUBLISHER = "Google"  # Nano Banana Pro's developer, the FOCUS 1.2 PublisherName

_ZERO = Decimal(0)


class FocusRow(BaseModel):
    """One FOCUS charge row; field names are FOCUS column names (``x_`` ones are this project's)."""

    model_config = ConfigDict(frozen=True)

    BilledCost: Decimal
    BillingAccountId: str
    BillingAccountName: str
    BillingAccountType: str
    BillingCurrency: str
    BillingPeriodStart: datetime
    BillingPeriodEnd: datetime
    ChargeCategory: Literal["Usage", "Credit"]
    ChargeClass: None = None
    ChargeDescription: str
    ChargeFrequency: str = "Usage-Based"
    ChargePeriodStart: datetime
    ChargePeriodEnd: datetime
    CommitmentDiscountStatus: None = None  # no commitment discounts; the validator's rules read the column
    ConsumedQuantity: Decimal | None
    ConsumedUnit: str | None
    ContractedCost: Decimal
    ContractedUnitPrice: Decimal | None
    EffectiveCost: Decimal
    HostProviderName: str  # FOCUS 1.3: neither provider names its host, so itself
    InvoiceId: None = None  # the pipeline never sees invoices
    InvoiceIssuerName: str
    ListCost: Decimal
    ListUnitPrice: Decimal | None
    PricingCategory: str | None
    PricingCurrency: str
    PricingCurrencyContractedUnitPrice: Decimal | None
    PricingCurrencyEffectiveCost: Decimal
    PricingCurrencyListUnitPrice: Decimal | None
    PricingQuantity: Decimal | None
    PricingUnit: str | None
    ProviderName: str
    PublisherName: str
    ResourceId: str | None
    ResourceName: str | None
    ResourceType: str | None
    ServiceCategory: str = "AI and Machine Learning"
    ServiceName: str
    ServiceProviderName: str  # FOCUS 1.3, ProviderName's successor
    ServiceSubcategory: str = "Generative AI"
    SkuId: str | None
    SkuMeter: str | None
    SkuPriceDetails: str | None
    SkuPriceId: str | None
    Tags: str
    x_CostIsEstimate: bool
    x_CostSource: str
    x_PromptId: str
    x_PromptSha256: str
    x_SourceUri: str
    x_RowNumber: int
    x_Resolution: str
    x_AspectRatio: str
    x_Status: str
    x_ErrorCode: str | None
    x_Fingerprint: str
    x_ImageUri: str | None
    x_ImageSha256: str | None
    x_ProviderSha256: str | None
    x_RunId: str
    x_PartitionKey: str
    x_PipelineVersion: str


def _month(ts: datetime) -> tuple[datetime, datetime]:
    start = ts.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _hour(ts: datetime) -> tuple[datetime, datetime]:
    start = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start, start + timedelta(hours=1)


class _Prices(BaseModel):
    """One row's unit prices: in the billing currency (USD) and in the pricing currency."""

    list_usd: Decimal
    list_pricing: Decimal
    pricing_currency: str


def _unit_prices(record: LedgerRecord, prices: PriceTable) -> _Prices:
    per_image = prices.per_image(record.provider, record.resolution)
    if record.provider == Provider.RIVYA:
        return _Prices(
            list_usd=prices.to_usd(record.provider, per_image), list_pricing=per_image, pricing_currency=RIVYA_CREDITS
        )
    return _Prices(list_usd=per_image, list_pricing=per_image, pricing_currency="USD")


def _billed(record: LedgerRecord) -> tuple[Decimal, Decimal]:
    """(BilledCost in USD, cost in the pricing currency), both exactly as the ledger holds them."""
    if record.provider == Provider.RIVYA:
        return record.estimated_usd if record.estimated_usd is not None else _ZERO, record.final_cost
    return record.final_cost, record.final_cost


def _description(record: LedgerRecord) -> str:
    outcome = record.status.value + (f": {record.error_code}" if record.error_code else "")
    return f"{record.model_requested} image at {record.resolution.value}, {record.aspect_ratio} ({outcome})"


def _tags(record: LedgerRecord) -> str:
    """FOCUS Tags (a JSON object): where the charge came from, for a FinOps tool to group by."""
    return json.dumps(
        {"x_table": record.source_uri, "x_cell": record.partition_key, "x_run": record.run_id}, sort_keys=True
    )


def focus_row(record: LedgerRecord, prices: PriceTable, accounts: dict[Provider, str] | None = None) -> FocusRow:
    """The FOCUS row of one ledger row. A net negative amount (money given back to a resumed task) is a
    ``Credit``; everything else is ``Usage`` of one image generation, charged or refunded."""
    billed, in_pricing = _billed(record)
    unit = _unit_prices(record, prices)
    when = record.finished_at or record.recorded_at
    period_start, period_end = _hour(when)
    billing_start, billing_end = _month(when)
    usage = billed >= 0 and in_pricing >= 0
    quantity = Decimal(1) if usage and in_pricing > 0 else _ZERO
    provider_name = PROVIDER_NAMES[record.provider]
    account = (accounts or {}).get(record.provider) or f"{record.provider}-account"
    sku = f"{record.model_requested}:{record.resolution.value}"
    estimate = record.cost_is_estimate or record.provider == Provider.RIVYA  # USD per credit is configured
    ledger = record.model_dump(mode="json", include=set(LEDGER_EXTENSIONS.values()))
    return FocusRow(
        BilledCost=billed,
        BillingAccountId=account,
        BillingAccountName=f"{provider_name} account {account}",
        BillingAccountType="API account",
        BillingCurrency="USD",
        BillingPeriodStart=billing_start,
        BillingPeriodEnd=billing_end,
        ChargeCategory="Usage" if usage else "Credit",
        ChargeDescription=_description(record),
        ChargePeriodStart=period_start,
        ChargePeriodEnd=period_end,
        ConsumedQuantity=quantity if usage else None,
        ConsumedUnit="Images" if usage else None,
        ContractedCost=billed,
        ContractedUnitPrice=unit.list_usd if usage else None,
        EffectiveCost=billed,
        HostProviderName=provider_name,
        InvoiceIssuerName=provider_name,
        ListCost=unit.list_usd * quantity if usage else billed,
        ListUnitPrice=unit.list_usd if usage else None,
        PricingCategory="Standard" if usage else None,
        PricingCurrency=unit.pricing_currency,
        PricingCurrencyContractedUnitPrice=unit.list_pricing if usage else None,
        PricingCurrencyEffectiveCost=in_pricing,
        PricingCurrencyListUnitPrice=unit.list_pricing if usage else None,
        PricingQuantity=quantity if usage else None,
        PricingUnit="Images" if usage else None,
        ProviderName=provider_name,
        PublisherName=PUBLISHER,
        ResourceId=record.task_id,
        ResourceName=record.prompt_id if record.task_id else None,
        ResourceType="Image generation task" if record.task_id else None,
        ServiceName=f"{provider_name} Nano Banana Pro",
        ServiceProviderName=provider_name,
        SkuId=sku if usage else None,
        SkuMeter="Images" if usage else None,
        SkuPriceDetails=json.dumps({"x_Resolution": record.resolution.value}) if usage else None,
        SkuPriceId=f"{record.provider}:{sku}" if usage else None,
        Tags=_tags(record),
        x_CostIsEstimate=estimate,
        x_CostSource="configured price table" if record.cost_is_estimate else "provider-reported credits",
        **{column: ledger[name] for column, name in LEDGER_EXTENSIONS.items()},
    )


def reference_focus_table(
    ledger: pa.Table, prices: PriceTable | None = None, accounts: dict[Provider, str] | None = None
) -> pa.Table:
    """The FOCUS rows of a ledger table (``read_ledger``), in ``FOCUS_SCHEMA``; skipped rows left out."""
    prices = prices or PriceTable()
    sent = ledger.filter(pc.not_equal(ledger["status"], OutcomeStatus.SKIPPED.value))
    rows = [focus_row(LedgerRecord.model_validate(r), prices, accounts).model_dump() for r in sent.to_pylist()]
    return pa.Table.from_pylist(rows, schema=FOCUS_SCHEMA)
