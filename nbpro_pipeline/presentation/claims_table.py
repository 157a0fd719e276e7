"""The claims report as the UI shows it: totals per provider and month, and whether they reconcile."""

from __future__ import annotations

from nbpro_pipeline.costs.claims import ClaimsReport
from nbpro_pipeline.presentation import markdown as md


def claims_markdown(report: ClaimsReport) -> str:
    """A table of the totals (claims, amount, USD, the ledger's cost of the claimed tasks), or a line
    saying there is nothing to claim."""
    if report.totals.empty:
        return "_no paid image is unusable: nothing to claim_"
    header = ["provider", "month", "claims", "amount", "USD", "ledger cost", "reasons"]
    rows = []
    for t in report.totals.to_dict("records"):
        mine = report.claims[(report.claims["provider"] == t["provider"]) & (report.claims["period"] == t["period"])]
        reasons = ", ".join(f"{n} {r}" for r, n in mine["reason"].value_counts().items())
        usd = "" if t["amount_usd"] is None else f"{t['amount_usd']:.2f}"
        unit = t["cost_unit"] or ""
        rows.append([md.text(t["provider"]), t["period"], str(t["claims"]), f"{t['amount'].normalize():f} {unit}",
                     usd, f"{t['ledger_cost'].normalize():f} {unit}", md.text(reasons)])  # fmt: skip
    verdict = (
        "the claims equal the ledger's cost of the claimed tasks"
        if report.reconciles
        else ("**the claims do not equal the ledger's cost of the claimed tasks**")
    )
    return md.table(header, rows, "llrrrrl") + f"\n\n{verdict}"
