"""The assets: prompt_table → generated_images[provider × resolution] → cost reports.

Each body reads config, calls the library, and turns its result into metadata; nothing here that a
test without Dagster could not cover through ``nbpro_pipeline``.
"""

from datetime import UTC, datetime

import dagster as dg

import nbpro_pipeline
from assets_defs.checks import PROMPT_TABLE_CHECKS, cell_check_specs, check_result
from assets_defs.partitions import cell_of
from assets_defs.resources import BudgetResource, PipelineResource, ProviderResource, StorageResource
from nbpro_pipeline.cell.review import review_cell
from nbpro_pipeline.cell.view import CellView
from nbpro_pipeline.costs import focus, report_parquet, reports
from nbpro_pipeline.engine import RunInfo, rows_for_cell, run_cell_sync
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.presentation import charts, summary
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.presentation.gallery import CROSS_GALLERY_COLUMNS, write_cross_provider_gallery
from nbpro_pipeline.presentation.prompt_table_view import prompt_table_markdown
from nbpro_pipeline.prompts import PromptTableError, write_prompt_tables
from nbpro_pipeline.prompts.rejections_check import rejections
from nbpro_pipeline.provenance import SIGNING_HELP, ProvenanceSigner, SigningConfigError, signer_from_env
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.storage import Storage, compact_ledger, read_ledger, read_table, spent_on, table_path
from nbpro_pipeline.storage.lease import CellBusy, LeaseLost

# One group: the Lineage page opens on the whole pipeline instead of collapsed groups of one or two assets.
GROUP = "nbpro_pipeline"


@dg.asset(group_name=GROUP, kinds={"parquet"}, check_specs=PROMPT_TABLE_CHECKS)
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
    """``generated_images`` over ``partitions``, its provider resources being the registry's names."""

    @dg.asset(
        name=GENERATED_IMAGES.path[-1],
        group_name=GROUP,
        kinds={"image"},
        partitions_def=partitions,
        deps=[prompt_table],
        check_specs=cell_check_specs(partitions),
        required_resource_keys={"storage", "budget", "pipeline", *PROVIDERS.names()},
    )
    def generated_images(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """One valid image per eligible prompt of this cell; already-stored fingerprints are skipped, so a
        re-run pays only for gaps. Images, journal and ledger are written by the engine, not an IO manager."""
        r = context.resources
        provider, _ = cell_of(context.partition_key)
        return materialize_cell(context, getattr(r, provider), r.storage, r.budget, r.pipeline)

    return generated_images


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
    try:
        accepted = read_table(st, "prompt_table/accepted")
    except FileNotFoundError:
        raise dg.Failure(
            description=f"{st.uri(table_path(st, 'prompt_table/accepted'))} is missing: materialize prompt_table first"
        ) from None
    rows = rows_for_cell(accepted, provider, resolution)
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
    metadata = _cell_metadata(review.view, rep, st)
    if rep.failures_by_reason.get("auth_failed"):
        raise dg.Failure(description=rep.stop_reason or "the provider refused the API key", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata, check_results=[check_result(c) for c in review.checks])


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
        )
    except (CellBusy, LeaseLost) as exc:
        raise dg.Failure(description=str(exc), metadata=_lease_metadata(exc)) from None


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


def _cell_metadata(view: CellView, rep: CellReport, st: Storage) -> dict:
    """The cell's state and this run's delta (``view.numbers``), then the run's own figures and links."""
    metadata = {
        **view.numbers,
        "cost_is_estimate": rep.cost_is_estimate,
        "polls_per_task": round(rep.polls / rep.submitted, 2) if rep.submitted else 0.0,
        "wall_s": round(rep.wall_s, 2),
        "failures_by_reason": dg.MetadataValue.md(md.counts_table(rep.failures_by_reason, "reason")),
        **{k: dg.MetadataValue.md(v) for k, v in view.markdown.items()},
        "gallery": _link(view.gallery.uri),
        "image_dir": dg.MetadataValue.path(rep.image_dir),
        "ledger": dg.MetadataValue.path(st.uri(st.ledger_dir())),
        "summary": rep.summary(),
    }
    if rep.stop_reason:
        metadata["stop_reason"] = rep.stop_reason
    return metadata


def _link(uri: str) -> dg.MetadataValue:
    """A clickable link for a local file, the URI as a path on an object store."""
    return dg.MetadataValue.path(uri) if "://" in uri else dg.MetadataValue.url("file://" + uri)


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


def _write_report(name: str, df, st, summary_md: str, chart_png: bytes | None) -> dg.MaterializeResult:
    target = st.uri(st.path("reports", f"{name}.parquet"))
    uri = report_parquet.write_report(df, target, storage_options=st.storage_options or None)
    spec = summary.table_spec(df)
    return dg.MaterializeResult(
        metadata={
            "rows": len(df),
            "summary": dg.MetadataValue.md(summary_md),
            "chart": dg.MetadataValue.md(charts.markdown_image(chart_png, name) if chart_png else "_no costs yet_"),
            "table": dg.MetadataValue.table(
                records=[dg.TableRecord(r) for r in spec.records],
                schema=dg.TableSchema(
                    columns=[dg.TableColumn(c.name, c.type, description=c.description) for c in spec.columns]
                ),
            ),
            "path": dg.MetadataValue.path(uri),
        }
    )


@dg.asset(group_name=GROUP, kinds={"parquet"}, deps=[GENERATED_IMAGES], automation_condition=REPORT_AUTOMATION)
def credit_cost_report(storage: StorageResource, budget: BudgetResource) -> dg.MaterializeResult:
    """Cost by provider, resolution, day and source table: reserved vs final, successes, failures by
    reason, cost lost to failures, cost per successful image, estimate vs actual. Compacts the ledger
    first (parts older than an hour), so that neither this report nor the next cell run pays per file."""
    st = storage.storage()
    compacted = compact_ledger(st)
    df = reports.credit_cost_report_for(st, budget.prices())
    result = _write_report("credit_cost_report", df, st, summary.cost_summary(df), charts.cost_per_day(df))
    totals = reports.totals_of_report(df)  # the report's groups hold every row: no second read
    units = {p: budget.prices().unit(p) for p in totals if budget.prices().knows(p)}
    result.metadata.update(  # type: ignore[union-attr]
        {f"total_{p}_{units.get(p, 'cost')}": round(float(v), 4) for p, v in totals.items()}
    )
    result.metadata.update({"ledger_parts_compacted": compacted.sources})  # type: ignore[union-attr]
    return result


@dg.asset(group_name=GROUP, kinds={"parquet"}, deps=[GENERATED_IMAGES], automation_condition=REPORT_AUTOMATION)
def provider_comparison(storage: StorageResource, budget: BudgetResource) -> dg.MaterializeResult:
    """The same prompts across providers: cost per image (unit and USD), latency p50/p95, failure rate,
    size mismatches; and the cross-provider gallery page."""
    st = storage.storage()
    df = reports.provider_comparison_for(st, budget.prices())
    result = _write_report("provider_comparison", df, st, summary.comparison_summary(df), charts.comparison(df))
    page = write_cross_provider_gallery(st, read_ledger(st, columns=CROSS_GALLERY_COLUMNS), budget.prices())
    result.metadata.update(  # type: ignore[union-attr]
        {"gallery": _link(page.uri), "gallery_prompts": f"{page.shown} of {page.total} shown"}
    )
    return result


# -- FOCUS export (docs/focus.md) ------------------------------------------------------------------------
class FocusExportConfig(dg.Config):
    csv: bool = False  # also write focus_cost_export.csv beside the Parquet file


@dg.asset(group_name=GROUP, kinds={"parquet"}, deps=[GENERATED_IMAGES], automation_condition=REPORT_AUTOMATION)
def focus_cost_export(
    config: FocusExportConfig, storage: StorageResource, budget: BudgetResource
) -> dg.MaterializeResult:
    """The ledger as FinOps FOCUS 1.3 cost rows, for finance tools that load cloud bills."""
    result = focus.export_focus(storage.storage(), budget.prices(), csv=config.csv)
    metadata: dict = {"rows": result.rows, "path": dg.MetadataValue.path(result.paths[0])}
    metadata.update({f"billed_usd_{name}": float(total) for name, total in result.billed.items()})
    return dg.MaterializeResult(metadata=metadata)
