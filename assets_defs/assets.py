"""The assets: prompt_table → generated_images[provider × resolution] → cost reports.

Each body reads config, calls the library, and turns its result into metadata; nothing here that a
test without Dagster could not cover through ``nbpro_pipeline``.
"""

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import dagster as dg
import pyarrow as pa

import nbpro_pipeline
from assets_defs.checks import PROMPT_TABLE_CHECKS, cell_check_specs, check_evaluation, check_result
from assets_defs.metadata import OWNERS, ROW_COUNT, chart, column_schema
from assets_defs.partitions import cell_of
from assets_defs.resources import BudgetResource, PipelineResource, ProviderResource, StorageResource
from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.cell.review import RUN_ONLY_CHECKS, review_cell, review_stored_cell
from nbpro_pipeline.cell.view import CellView
from nbpro_pipeline.costs import PriceTable, all_cells, claims, focus, report_parquet, reports
from nbpro_pipeline.engine import RunInfo, rows_for_cell, run_cell_sync
from nbpro_pipeline.engine.progress import ProgressSnapshot
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.rows import CellRows
from nbpro_pipeline.models.check import CheckOutcome
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA
from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA
from nbpro_pipeline.presentation import charts, summary
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.presentation.claims_table import claims_markdown
from nbpro_pipeline.presentation.columns import REPORT_COLUMN_DOCS
from nbpro_pipeline.presentation.gallery import (
    CROSS_GALLERY_COLUMNS,
    GalleryPrompts,
    gallery_prompts,
    write_cross_provider_gallery,
)
from nbpro_pipeline.presentation.prompt_table_view import prompt_table_markdown
from nbpro_pipeline.prompts import PromptTableError, write_prompt_tables
from nbpro_pipeline.prompts.rejections_check import rejections
from nbpro_pipeline.provenance import SIGNING_HELP, ProvenanceSigner, SigningConfigError, signer_from_env
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.storage import Storage, compact_ledger, read_ledger, read_table, spent_on, table_path
from nbpro_pipeline.storage.lease import CellBusy, LeaseLost

# One group: the Lineage page opens on the whole pipeline instead of collapsed groups of one or two assets.
GROUP = "nbpro_pipeline"


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    check_specs=PROMPT_TABLE_CHECKS,
    owners=OWNERS,
    metadata=column_schema(ACCEPTED_SCHEMA),
)
def prompt_table(pipeline: PipelineResource, storage: StorageResource) -> dg.MaterializeResult:
    """Every configured prompt source, validated: accepted rows (one Parquet table) and rejected rows
    with one reason each."""
    st = storage.storage()
    try:  # the accepted rows are streamed to storage, never all in memory
        result = write_prompt_tables(pipeline.prompt_sources, st, reference_roots=pipeline.reference_roots)
    except PromptTableError as exc:
        raise dg.Failure(description=str(exc)) from None
    accepted_uri, rejected_uri = result.accepted_uri, result.rejected_uri
    markdown = prompt_table_markdown(result)
    checked = rejections(result.rows_read, result.rejected, [s.uri for s in result.sources])
    return dg.MaterializeResult(
        metadata={
            **({"about_rejections": dg.MetadataValue.md(checked.note)} if checked.note else {}),
            ROW_COUNT: result.accepted_rows,
            "rows_read": result.rows_read,
            "accepted": result.accepted_rows,
            "rejected": result.rejected.num_rows,
            **{name: dg.MetadataValue.md(text) for name, text in markdown.items()},
            "accepted_table": dg.MetadataValue.path(accepted_uri),
            "rejected_table": dg.MetadataValue.path(rejected_uri),
        },
        check_results=[check_result(checked.check)],
    )


GENERATED_IMAGES = dg.AssetKey("generated_images")


def generated_images_asset(partitions: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    """``generated_images`` over ``partitions``, its provider resources being the registry's names.

    A one-asset ``multi_asset`` because ``@dg.asset`` takes no ``can_subset`` in Dagster 1.13: subsettable, so
    the UI can execute the cell's checks without materializing it (``judge_stored_cell``)."""

    @dg.multi_asset(
        name=GENERATED_IMAGES.path[-1],
        specs=[
            dg.AssetSpec(
                GENERATED_IMAGES,
                description=_GENERATED_IMAGES_DOC,
                group_name=GROUP,
                kinds={"image"},
                partitions_def=partitions,
                deps=[prompt_table],
                owners=OWNERS,
                metadata=column_schema(LEDGER_SCHEMA),  # the cell's ledger rows: one per request outcome
            )
        ],
        check_specs=cell_check_specs(partitions),
        can_subset=True,
        required_resource_keys={"storage", "budget", "pipeline", *PROVIDERS.names()},
    )
    def generated_images(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """The cell through the engine; with only checks selected, the checks judged from storage instead."""
        r = context.resources
        if GENERATED_IMAGES not in context.selected_asset_keys:  # only checks selected: no run, no money
            yield from judge_stored_cell(context, r.storage, r.budget, r.pipeline)
            return
        provider, _ = cell_of(context.partition_key)
        yield materialize_cell(context, getattr(r, provider), r.storage, r.budget, r.pipeline)

    return generated_images


_GENERATED_IMAGES_DOC = (
    "One valid image per eligible prompt of this cell; already-stored fingerprints are skipped, so a\n"
    "re-run pays only for gaps. Images, journal and ledger are written by the engine, not an IO manager."
)


def _accepted(st: Storage) -> pa.Table:
    """The stored prompt table's accepted rows; missing, the step fails saying what to do."""
    try:
        return read_table(st, "prompt_table/accepted")
    except FileNotFoundError:
        raise dg.Failure(
            description=f"{st.uri(table_path(st, 'prompt_table/accepted'))} is missing: materialize prompt_table first"
        ) from None


def _cell_rows(st: Storage, provider: str, resolution: Resolution) -> CellRows:
    """The cell's eligible rows of the stored prompt table."""
    return rows_for_cell(_accepted(st), provider, resolution)


def judge_stored_cell(
    context: dg.AssetExecutionContext, storage: StorageResource, budget: BudgetResource, pipeline: PipelineResource
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of the cell, judged from what is stored (``review_stored_cell``): no engine, no
    provider call, no lease, nothing written. A selected check that needs a run (``RUN_ONLY_CHECKS``) gets
    no result, which Dagster shows as skipped rather than as a pass it did not earn. Without a partition
    (the checks page's "Execute all" launches such a run) every cell is judged, each result on its cell."""
    selected = {key.name for key in context.selected_asset_check_keys}
    if unjudged := sorted(selected & set(RUN_ONLY_CHECKS)):
        context.log.info(
            f"{', '.join(unjudged)}: not executed, they need a run (ledger_reconciles asks the provider about "
            "the run's tasks, run_failure_rate judges the run's new work)"
        )
    st = storage.storage()
    accepted = _accepted(st)  # read once, whatever the number of cells judged
    judge = functools.partial(_stored_checks, st, accepted, selected, budget.prices(), pipeline.failure_thresholds())
    if context.has_partition_key:
        for check in judge(context.partition_key):
            yield check_result(check, GENERATED_IMAGES)
        return
    for key in context.assets_def.partitions_def.get_partition_keys():  # type: ignore[union-attr]
        for check in judge(key):
            context.log_event(check_evaluation(check, GENERATED_IMAGES, key))


def _stored_checks(
    st: Storage,
    accepted: pa.Table,
    selected: set[str],
    prices: PriceTable,
    thresholds: FailureThresholds,
    partition: str,
) -> list[CheckOutcome]:
    provider, resolution = cell_of(partition)
    rows = rows_for_cell(accepted, provider, resolution)
    return review_stored_cell(st, provider, resolution, rows.table, prices, thresholds, names=selected)


def materialize_cell(
    context: dg.AssetExecutionContext,
    resource: ProviderResource,
    storage: StorageResource,
    budget: BudgetResource,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    """Run the partition's cell through the library and turn what it produced into metadata and checks."""
    provider, resolution = cell_of(context.partition_key)
    st = storage.storage()
    rows = _cell_rows(st, provider, resolution)
    settings = resource.engine_settings().model_copy(
        update={
            "reference_roots": pipeline.reference_roots,
            "reference_network": pipeline.reference_network(),
            "signer": _c2pa_signer(context),
        }
    )
    result = _run(context, rows, resource, st, settings, budget)
    rep = result.report
    context.log.info(rep.summary())
    review = review_cell(
        result, st, rows.table, budget.prices(), pipeline.failure_thresholds(), require_c2pa=settings.signer is not None
    )
    for line in review.view.warning_lines():
        context.log.warning(line)
    metadata = _cell_metadata(review.view, rep, st, storage)
    if rep.failures_by_reason.get("auth_failed"):
        raise dg.Failure(description=rep.stop_reason or "the provider refused the API key", metadata=metadata)
    if (lost := review.lost_run) is not None:
        _fail_lost_run(context, metadata, review.checks, lost)
    return dg.MaterializeResult(metadata=metadata, check_results=[check_result(c) for c in review.checks])


def _fail_lost_run(
    context: dg.AssetExecutionContext, metadata: dict, checks: list[CheckOutcome], lost: CheckOutcome
) -> NoReturn:
    """Fail the step of a run that lost more than the error threshold of its new work, so the run, its
    backfill and the partition are red: a materialization would count the partition as done (docs/ui.md,
    "A run's own truth"). The cell's state is recorded first, as an observation of the partition, and so is
    every check's result."""
    partition = str(context.partition_key)
    context.log_event(dg.AssetObservation(asset_key=GENERATED_IMAGES, partition=partition, metadata=metadata))
    for check in checks:
        context.log_event(check_evaluation(check, GENERATED_IMAGES, partition))
    raise dg.Failure(description=lost.description, metadata=dict(lost.metadata))


def _run(context: dg.AssetExecutionContext, rows, resource: ProviderResource, st: Storage, settings, budget):
    """The engine's one entry point over the cell, within today's budget; a cell another run holds fails
    the step, naming the holder."""
    provider, resolution = cell_of(context.partition_key)
    guard = budget.guard(provider, spent_on(st, provider, datetime.now(UTC).date()))
    try:
        return run_cell_sync(
            rows,
            client=resource.client,
            provider=provider,
            resolution=resolution,
            storage=st,
            run=RunInfo(
                run_id=context.run.run_id,
                partition_key=str(context.partition_key),
                pipeline_version=nbpro_pipeline.__version__,
            ),
            settings=settings,
            prices=budget.prices(),
            budget=guard,
            logger=context.log,
            on_progress=_live_progress(context),
        )
    except (CellBusy, LeaseLost) as exc:
        raise dg.Failure(description=str(exc), metadata=_lease_metadata(exc)) from None


PROGRESS_TAG = "nbpro/progress"


def _live_progress(context: dg.AssetExecutionContext) -> Callable[[ProgressSnapshot], None]:
    """Each progress reading as the run's ``nbpro/progress`` tag, which the Runs list and the run page show
    while the step runs (the log has the full line)."""
    run_id = context.run.run_id

    def show(snapshot: ProgressSnapshot) -> None:
        context.instance.add_run_tags(run_id, {PROGRESS_TAG: snapshot.short})  # the partition tag names the cell

    return show


def _lease_metadata(exc: CellBusy | LeaseLost) -> dict:
    if isinstance(exc, LeaseLost):
        return {"lease_lost": exc.reason}
    holder = exc.holder
    return {
        "holder_run_id": holder.run_id,
        "holder_host": f"{holder.host} (pid {holder.pid})",
        "holder_since": holder.since.isoformat(),
        "holder_last_heartbeat": holder.renewed_at.isoformat(),
        "lease_expires_at": exc.takeover_at.isoformat(),
        "lease_file": dg.MetadataValue.path(exc.uri),
    }


def _cell_metadata(view: CellView, rep: CellReport, st: Storage, storage: StorageResource) -> dict:
    """The cell's state and this run's delta (``view.numbers``), then the run's own figures and links."""
    metadata = {
        ROW_COUNT: view.state.images_total,
        **view.numbers,
        "cost_is_estimate": rep.cost_is_estimate,
        "polls_per_task": round(rep.polls / rep.submitted, 2) if rep.submitted else 0.0,
        "wall_s": round(rep.wall_s, 2),
        "failures_by_reason": dg.MetadataValue.md(md.counts_table(rep.failures_by_reason, "reason")),
        **{k: dg.MetadataValue.md(v) for k, v in view.markdown.items()},
        "gallery": storage.link(view.gallery.uri),
        "image_dir": dg.MetadataValue.path(rep.image_dir),
        "ledger": dg.MetadataValue.path(st.uri(st.ledger_dir())),
        "summary": rep.summary(),
    }
    if rep.stop_reason:
        metadata["stop_reason"] = rep.stop_reason
    return metadata


def _c2pa_signer(context: dg.AssetExecutionContext) -> ProvenanceSigner | None:
    """The deployment's C2PA signer (NBPRO_C2PA_CERT / NBPRO_C2PA_KEY); without one, say how to add it."""
    try:
        signer = signer_from_env()
    except SigningConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    if signer is None:
        context.log.warning(SIGNING_HELP)
    else:
        context.log.info(f"C2PA: signing stored images as {signer.subject} (issuer {signer.issuer})")
    return signer


# The reports run when any cell changed; they read the ledger dataset, so a missing cell is no reason
# to wait (eager() alone would wait for all six partitions to exist).
REPORT_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def _write_report(name: str, df, st: Storage, summary_md: str, chart_md: dg.MetadataValue) -> dg.MaterializeResult:
    """The report's Parquet file, its summary and chart first (what a reader needs), its row count and the
    column schema of what was written."""
    target = st.uri(st.path("reports", f"{name}.parquet"))
    uri = report_parquet.write_report(df, target, storage_options=st.storage_options or None)
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(summary_md),
            "chart": chart_md,
            ROW_COUNT: len(df),
            "rows": len(df),
            "path": dg.MetadataValue.path(uri),
            **column_schema(report_parquet.report_to_arrow(df).schema, REPORT_COLUMN_DOCS),
        }
    )


# The reports follow the cells (eager, or the nightly schedule's runs): a day and a bit without a fresh
# report is a warning, two days a failure.
REPORT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
REPORT_ASSET = {
    "group_name": GROUP,
    "kinds": {"parquet"},
    "deps": [GENERATED_IMAGES],
    "automation_condition": REPORT_AUTOMATION,
    "owners": OWNERS,
    "freshness_policy": REPORT_FRESHNESS,
}


@dg.asset(**REPORT_ASSET)
def credit_cost_report(storage: StorageResource, budget: BudgetResource) -> dg.MaterializeResult:
    """Cost by provider, resolution, day and source table: reserved vs final, successes, failures by
    reason, cost lost to failures, cost per successful image, estimate vs actual. Compacts the ledger
    first (parts older than an hour), so that neither this report nor the next cell run pays per file."""
    st = storage.storage()
    compacted = compact_ledger(st)
    df = reports.credit_cost_report_for(st, budget.prices())
    chart_md = chart("credit_cost_report", charts.cost_chart(df), st, storage)
    result = _write_report("credit_cost_report", df, st, summary.cost_summary(df), chart_md)
    totals = reports.totals_of_report(df)  # the report's groups hold every row: no second read
    units = {p: budget.prices().unit(p) for p in totals if budget.prices().knows(p)}
    result.metadata.update(  # type: ignore[union-attr]
        {f"total_{p}_{units.get(p, 'cost')}": round(float(v), 4) for p, v in totals.items()}
    )
    result.metadata.update({"ledger_parts_compacted": compacted.sources})  # type: ignore[union-attr]
    return result


@dg.asset(**REPORT_ASSET)
def provider_comparison(storage: StorageResource, budget: BudgetResource) -> dg.MaterializeResult:
    """The same prompts across providers: cost per image (unit and USD), latency p50/p95, failure rate,
    size mismatches; and the cross-provider gallery page."""
    st = storage.storage()
    df = reports.provider_comparison_for(st, budget.prices())
    chart_md = chart("provider_comparison", charts.comparison(df), st, storage)
    result = _write_report("provider_comparison", df, st, summary.comparison_summary(df), chart_md)
    page = write_cross_provider_gallery(
        st, read_ledger(st, columns=CROSS_GALLERY_COLUMNS), budget.prices(), _gallery_prompts(st)
    )
    result.metadata.update(  # type: ignore[union-attr]
        {"gallery": storage.link(page.uri), "gallery_prompts": f"{page.shown} of {page.total} shown"}
    )
    return result


@dg.asset(**{**REPORT_ASSET, "kinds": {"parquet", "csv"}})
def billing_claims(storage: StorageResource, budget: BudgetResource) -> dg.MaterializeResult:
    """Every image paid for and not usable (blank, a duplicate, a copy of its reference, corrupt, the wrong
    size or format, an unreadable answer, a failure still charged), per provider and month: Parquet, and a
    formula-safe CSV per provider to send to it (docs/usability.md)."""
    st = storage.storage()
    report = claims.billing_claims(st, budget.prices())
    written = claims.write_claims(report, st)
    totals = report.totals
    return dg.MaterializeResult(
        metadata={
            "claims": len(report.claims),
            ROW_COUNT: len(report.claims),
            "reconciles_with_ledger": report.reconciles,
            "totals": dg.MetadataValue.md(claims_markdown(report)),
            **{
                f"claimed_{p}_{u or 'cost'}": round(float(a), 4)
                for p, u, a in zip(totals["provider"], totals["cost_unit"], totals["amount"], strict=True)
            },  # fmt: skip
            "path": dg.MetadataValue.path(written[0]),
            "csv": dg.MetadataValue.md("\n".join(f"- `{w}`" for w in written[2:]) or "_none_"),
            **column_schema(report_parquet.report_to_arrow(report.claims).schema, REPORT_COLUMN_DOCS),
        }
    )


def _gallery_prompts(st: Storage) -> GalleryPrompts | None:
    """The prompt table's text and eligibility for the cross-provider page (None before the table exists)."""
    try:
        accepted = read_table(st, "prompt_table/accepted")
    except FileNotFoundError:
        return None
    return gallery_prompts(accepted, all_cells())


# -- FOCUS export (docs/focus.md) ------------------------------------------------------------------------
class FocusExportConfig(dg.Config):
    csv: bool = False  # also write focus_cost_export.csv beside the Parquet file


@dg.asset(**REPORT_ASSET, metadata=column_schema(focus.FOCUS_SCHEMA))
def focus_cost_export(
    config: FocusExportConfig, storage: StorageResource, budget: BudgetResource
) -> dg.MaterializeResult:
    """The ledger as FinOps FOCUS 1.3 cost rows, for finance tools that load cloud bills."""
    result = focus.export_focus(storage.storage(), budget.prices(), csv=config.csv)
    metadata: dict = {ROW_COUNT: result.rows, "rows": result.rows, "path": dg.MetadataValue.path(result.paths[0])}
    metadata.update({f"billed_usd_{name}": float(total) for name, total in result.billed.items()})
    return dg.MaterializeResult(metadata=metadata)
