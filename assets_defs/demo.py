"""``make demo``: the whole pipeline on a real Dagster instance against the local sandbox, no keys.

    python -m assets_defs.demo [--home .nbpro] [--sources examples/prompts]

Starts the sandbox (state in ``.nbpro/sandbox``), points the code location at it, materializes
``prompt_table``, all six cells, both reports and the FOCUS export through the same jobs the UI launches (instance in
``.nbpro/dagster_home``), then prints where everything is and what it cost, reconciled against the
sandbox's own billing ledger. Running it again pays nothing new: every cell is already complete.
"""

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path


def demo_keys() -> dict[str, str]:
    """``<PROVIDER>_API_KEY`` -> a key the sandbox accepts, for every provider it serves."""
    from nbpro_pipeline.providers.registry import PROVIDERS

    return {f"{e.env_prefix}_API_KEY": e.sandbox_key for e in PROVIDERS if e.sandbox_path is not None}


def _prepare_env(home: Path, sources: list[str], sandbox_url: str, keys: dict[str, str]) -> None:
    from nbpro_pipeline.providers.registry import PROVIDERS

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    local_yaml = Path(__file__).resolve().parent.parent / "deploy" / "local" / "dagster.yaml"
    shutil.copyfile(local_yaml, dagster_home / "dagster.yaml")
    os.environ.update(keys)  # sandbox keys only: the demo never sends a real key anywhere
    for entry in PROVIDERS:
        url = entry.sandbox_url(sandbox_url)
        if url is not None:
            os.environ[f"{entry.env_prefix}_BASE_URL"] = url
    os.environ.update(
        {
            "DAGSTER_HOME": str(dagster_home.resolve()),
            "NBPRO_STORAGE_ROOT": str((home / "storage").resolve()),
            "NBPRO_PROMPT_SOURCES": ",".join(sources),
            "NBPRO_POLL_FIRST_DELAY_S": "1.0",  # the sandbox answers in 1-3 s; the providers advise 2 s
        }
    )


def _demo_signing(home: Path) -> str:
    """Sign the demo's images with a throwaway CA made under ``home/c2pa`` (never a deployment's: a
    deployment signs only with the NBPRO_C2PA_CERT / NBPRO_C2PA_KEY it configures)."""
    from nbpro_pipeline.provenance.democert import DEMO_NOTICE, make_demo_credential

    if os.environ.get("NBPRO_C2PA_CERT") or os.environ.get("NBPRO_C2PA_KEY"):
        return "C2PA: signing with the NBPRO_C2PA_CERT / NBPRO_C2PA_KEY of this environment"
    cred = make_demo_credential(home / "c2pa")
    os.environ["NBPRO_C2PA_CERT"] = str(cred.cert_path.resolve())
    os.environ["NBPRO_C2PA_KEY"] = str(cred.key_path.resolve())
    return f"C2PA: signing with {cred.cert_path}, {DEMO_NOTICE}"


def _run(defs, instance, job_name: str, label: str, partition_key=None) -> bool:
    started = time.monotonic()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    status = "ok" if result.success else "FAILED"
    detail = ""
    for event in result.get_asset_materialization_events():
        summary = event.materialization.metadata.get("summary")
        if summary is not None:
            detail = f"  {summary.value}"
    print(f"  {label:<16} {status:<6} {time.monotonic() - started:5.1f}s{detail}", flush=True)
    return result.success


def _materialize_all(defs, instance) -> bool:
    """``prompt_table``, every cell, then the reports, through the jobs the UI launches."""
    from assets_defs.partitions import cell_key
    from nbpro_pipeline.costs import all_cells

    ok = _run(defs, instance, "prompt_table_job", "prompt_table")
    for provider, resolution in all_cells() if ok else []:
        key = cell_key(provider, resolution)
        ok &= _run(defs, instance, "cells_job", f"{provider}|{resolution.value}", partition_key=key)
    return ok & _run(defs, instance, "reports_job", "reports")


def _print_where(storage) -> None:
    print("\nwhere things are")
    print(f"  images    {storage.uri(storage.path('images'))}/provider=*/resolution=*/")
    print(f"  ledger    {storage.uri(storage.ledger_dir())}/ (Parquet, hive-partitioned)")
    print(f"  reports   {storage.uri(storage.reports_dir())}/credit_cost_report.parquet, provider_comparison.parquet")
    print(f"  focus     {storage.uri(storage.reports_dir())}/focus_cost_export.parquet (FinOps FOCUS 1.3)")
    print(f"  prompts   {storage.uri(storage.tables_dir())}/prompt_table/accepted.parquet, rejected.parquet")
    print(f"  dagster   {os.environ['DAGSTER_HOME']}  (make dev opens it in the UI)")


def _print_costs(comparison) -> None:
    from nbpro_pipeline.presentation.report_tables import to_text

    print("\ncost per cell (all runs so far; cost_is_estimate marks amounts read from a price table)")
    columns = [
        "provider",
        "resolution",
        "images",
        "failed",
        "final_cost",
        "cost_unit",
        "cost_per_image",
        "estimated_usd",
        "cost_is_estimate",
    ]
    print("  " + to_text(comparison, columns=columns).replace("\n", "\n  "))


def _print_totals(ledger, ours: dict[str, Decimal], billed: dict[str, Decimal], wallets) -> None:
    """The ledger's totals beside the sandbox's own billing ledger, per provider."""
    from nbpro_pipeline.costs import PriceTable

    prices = PriceTable()
    print("\ntotals: the ledger vs the sandbox's own billing ledger")
    status = ledger["status"].to_pylist()
    for provider in sorted(set(ours) | set(billed)):
        unit = prices.unit(provider) + (" (estimate: from the price table)" if prices.is_estimate(provider) else "")
        n_ok = sum(
            1 for p, s in zip(ledger["provider"].to_pylist(), status, strict=True) if p == provider and s == "succeeded"
        )
        match = "reconciled" if ours.get(provider, Decimal(0)) == billed.get(provider, Decimal(0)) else "MISMATCH"
        print(
            f"  {provider:<10} ledger {ours.get(provider, Decimal(0)).normalize():f}  sandbox "
            f"{billed.get(provider, Decimal(0)).normalize():f}  {unit}; {n_ok} images; {match}"
        )
    print(f"  wallets left: {wallets}")


def main(argv: list[str] | None = None, keys: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=".nbpro", help="where storage, sandbox and Dagster state live")
    parser.add_argument("--sources", default="examples/prompts", help="comma-separated prompt sources")
    args = parser.parse_args(argv)
    home = Path(args.home)
    started = time.monotonic()

    from nbpro_pipeline.sandbox import SandboxServer

    with SandboxServer(home / "sandbox") as sandbox:
        _prepare_env(home, args.sources.split(","), sandbox.base_url, keys or demo_keys())
        signing = _demo_signing(home)
        import dagster as dg

        from assets_defs.definitions import defs
        from nbpro_pipeline.costs import PriceTable
        from nbpro_pipeline.costs.reports import provider_comparison, totals_by_provider
        from nbpro_pipeline.storage import Storage, read_ledger

        instance = dg.DagsterInstance.get()
        print(
            f"sandbox at {sandbox.base_url} (state {home / 'sandbox'}); Dagster instance {os.environ['DAGSTER_HOME']}"
        )
        print(signing)
        ok = _materialize_all(defs, instance)
        storage = Storage(os.environ["NBPRO_STORAGE_ROOT"])
        ledger = read_ledger(storage)
        billed: dict[str, Decimal] = defaultdict(Decimal)
        for entry in sandbox.ledger():
            billed[entry["provider"]] += Decimal(str(entry["amount"]))
        wallets = sandbox.wallets()

    _print_where(storage)
    _print_costs(provider_comparison(ledger, PriceTable()))
    _print_totals(ledger, totals_by_provider(ledger), billed, wallets)
    print(f"\ndemo {'finished' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
