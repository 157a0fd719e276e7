"""The Dagster UI as a new user sees it, in headless Chromium: the code location (webserver + daemon on a
temporary instance) against a sandbox that fails some Rivya tasks and returns some wrong-size images,
a backfill of every cell launched through GraphQL (the Materialize button's mutation), then the pages.

Asserts what the UI must not hide: a run that lost more than a fifth of its new work is red in the
backfill's runs, the failing cell's checks show failed/warned on that partition, the gallery link opens a
page over HTTP whose thumbnails and full-image links load, the charts are real images shown without a
click, the cost summary has a totals row, the cross-provider gallery shows the same prompt from each cell,
and a run with new work ahead shows its progress live and an ETA within 2x of the time it really took.
Screenshots go to ``$NBPRO_TEST_ARTIFACTS`` (default ``.nbpro/test-artifacts/``) for a person to look at.

Driven by the ``playwright`` package with Debian's ``chromium`` (``executable_path``, no browser
download). Skipped without ``/usr/bin/chromium`` unless ``NBPRO_REQUIRE_BROWSER=1`` (``.ci/run`` sets it
after installing chromium), which makes a missing browser a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from nbpro_pipeline.presentation.serve import gallery_server
from tests.deploy.dagster_stack import (
    BIN,
    POLL_S,
    REPO,
    GraphQL,
    Processes,
    daemon_cmd,
    pipeline_env,
    run_tags,
    webserver_cmd,
)
from tests.deploy.postgres import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(480)]

CHROMIUM = Path(os.environ.get("NBPRO_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("NBPRO_TEST_ARTIFACTS", REPO / ".nbpro" / "test-artifacts"))
KEYS = {"RIVYA_API_KEY": "rvya_sk_browser_test", "ODIROUTER_API_KEY": "odr_browser_test"}
# Rivya fails a quarter of its tasks and sends a wrong-size image for a sixth: every Rivya cell ends
# with failures and quarantined images, OdiRouter's cells stay clean.
FAULTS = {"rivya": {"faults": {"task_failed": {"INFERENCE_FAILURE": 0.25}, "wrong_size": 0.17}}}
WAIT_S = 240
# The ETA run: a dozen new prompts for one clean cell whose earlier prompts are all stored, two tasks at a
# time, each taking 3 s at the provider: about 20 s of work whose first progress line must foresee it.
ETA_CELL = "odirouter|1K"
ETA_PROMPTS = 12
ETA_LATENCY_S = 3.0
STACK_ENV = {"NBPRO_ODIROUTER_MAX_IN_FLIGHT": "2", "NBPRO_POLL_MAX_INTERVAL_S": "0.5"}
PROGRESS = re.compile(r": (\d+)/(\d+) new prompts done .*; ETA (\S+)$")

NATURAL_WIDTHS = "els => els.map(e => e.naturalWidth)"
# the run queue looks for runs to launch every second, not the local instance's default 5 s: the test
# launches its runs one after another, and each would wait for the queue's next look
DEQUEUE_S = 1


@pytest.fixture(scope="module")
def chromium() -> Path:
    pytest.importorskip("playwright", reason="pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found (apt-get install chromium, or run .ci/run)"
        if os.environ.get("NBPRO_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _instance_yaml() -> str:
    """deploy/local/dagster.yaml (what make dev runs on), with the run queue's look every DEQUEUE_S."""
    config = yaml.safe_load((REPO / "deploy" / "local" / "dagster.yaml").read_text())
    config["run_queue"]["dequeue_interval_seconds"] = DEQUEUE_S
    return yaml.safe_dump(config, sort_keys=False)


def _backfill_all_cells(gql: GraphQL, procs: Processes) -> tuple[str, list[dict]]:
    """The prompt table, a backfill of every cell (the Materialize dialog's mutation), then the reports;
    returns the backfill's id and runs."""
    from nbpro_pipeline.costs import all_cells

    (run,) = gql.wait_runs([gql.launch_run("prompt_table_job")], time.monotonic() + WAIT_S)
    assert run["status"] == "SUCCESS", procs.tail("daemon")
    partitions = [f"{p}|{r.value}" for p, r in all_cells()]
    backfill_id = gql.launch_backfill("generated_images", partitions)
    deadline = time.monotonic() + WAIT_S
    while True:
        procs.check_alive()
        runs = gql.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
        if len(runs) == len(partitions) and all(r["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for r in runs):
            break
        assert time.monotonic() < deadline, f"backfill runs: {[r['status'] for r in runs]}"
        time.sleep(POLL_S)
    gql.wait_idle(time.monotonic() + WAIT_S)
    while (status := gql.backfill_status(backfill_id)) == "REQUESTED":
        assert time.monotonic() < deadline, "the backfill never completed"
        time.sleep(POLL_S)
    assert status in {"COMPLETED_FAILED", "FAILED"}, status  # a run lost its new work: not a green backfill
    (run,) = gql.wait_runs([gql.launch_run("reports_job")], time.monotonic() + WAIT_S)
    assert run["status"] == "SUCCESS", procs.tail("daemon")
    gql.wait_idle(time.monotonic() + WAIT_S)
    return backfill_id, runs


def _red_runs(runs: list[dict]) -> set[str]:
    """The cells whose backfill run failed: only the faulty provider's, never a clean cell's."""
    status = {run_tags(r)["dagster/partition"]: r["status"] for r in runs}
    assert {s for c, s in status.items() if c.startswith("odirouter|")} == {"SUCCESS"}, status
    red = {c for c, s in status.items() if s == "FAILURE"}
    assert red, f"no run with a fifth of its new work lost was red: {status}"
    return red


def _failing_cell(storage_root: Path, red: set[str]) -> str:
    from nbpro_pipeline.cell.state import cell_state
    from nbpro_pipeline.costs import PriceTable, all_cells
    from nbpro_pipeline.storage import Storage, read_ledger

    storage = Storage(str(storage_root))
    for provider, resolution in all_cells():
        ledger = read_ledger(storage, provider=provider, resolution=resolution)
        state = cell_state(ledger, provider, resolution, PriceTable())
        if state.outstanding and state.quarantined and state.cell in red:
            return state.cell
    raise AssertionError("the faulty sandbox left no red cell with failures and quarantined images")


def _loaded_images(page, selector: str) -> list[int]:
    """naturalWidth of every image matching ``selector``, once at least one has loaded."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].some(e => e.complete && e.naturalWidth > 0)",
        timeout=30_000,
    )
    return page.eval_on_selector_all(selector, NATURAL_WIDTHS)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    _dismiss_welcome(page)


def _dismiss_welcome(page) -> None:
    """The welcome dialog, should it come up anyway (``setNuxSeen`` is per instance, and may race a page)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=1_000)
    except PlaywrightTimeout:
        return
    skip.click()
    skip.wait_for(state="detached")


def _show_markdown(page, row: str) -> list[int]:
    """Open a long markdown entry (the UI folds those over 1,000 characters) and measure its images."""
    page.locator("tr", has_text=row).first.wait_for(timeout=30_000)
    page.locator("tr", has_text=row).get_by_text("[Show Markdown]").first.click()
    widths = _loaded_images(page, "[role=dialog] img")
    page.wait_for_timeout(400)  # the dialog's fade-in, so the screenshot is not half transparent
    return widths


def _close_dialog(page) -> None:
    page.get_by_role("button", name="Close").click()


def _check_cell_pages(page, base: str, cell: str, gallery_base: str) -> None:
    """The failing cell: its partition red (its run lost its new work and did not materialize it), its
    state (observed) with the contact sheet, and its gallery, opened over HTTP by its link."""
    cell_q = quote(cell, safe="")
    _open(page, f"{base}/assets/generated_images?view=partitions&partition={cell_q}")
    page.get_by_text(re.compile(r"failed, and did not materialize this asset")).first.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "partition_failed.png")
    _open(page, f"{base}/assets/generated_images?view=events&partition={cell_q}")
    page.get_by_text(f"Partition {cell} observed").first.wait_for(timeout=30_000)
    page.get_by_text("failures_outstanding").first.wait_for(timeout=30_000)
    assert page.locator("tr", has_text="failed_prompts").locator("td").count() >= 1
    page.screenshot(path=ARTIFACTS / "asset_page_state.png", full_page=True)
    link = page.locator(f"a[href^='{gallery_base}/gallery/']").first
    href = link.get_attribute("href")
    widths = _show_markdown(page, "contact_sheet")
    assert widths and all(w > 0 for w in widths), widths
    assert page.get_by_role("dialog").get_by_text("Quarantined:").count() == 1
    page.screenshot(path=ARTIFACTS / "asset_page.png")
    _close_dialog(page)

    page.goto(href)  # what clicking the gallery link opens: a page over HTTP, not a refused file:// URL
    widths = _loaded_images(page, "figure img")
    assert widths and all(w > 0 for w in widths), widths
    assert page.locator(".prompt").count() >= 1  # the prompt's text under its picture
    full = page.locator("figure a").first.get_attribute("href")
    assert not full.startswith(("file:", "/", "http")), full  # relative: a copied gallery keeps it
    image = page.request.get(page.url.rsplit("/", 1)[0] + "/" + full)
    assert image.status == 200 and image.headers["content-type"].startswith("image/"), image.status
    page.screenshot(path=ARTIFACTS / "cell_gallery.png", full_page=True)


def _check_red_run(page, base: str, backfill_id: str, cell: str) -> None:
    """The backfill: failed, its red cells counted as failed partitions; its runs: the runs that lost their
    new work are failures; the cell's run_failure_rate says why."""
    _open(page, f"{base}/runs/b/{backfill_id}?tab=overview")
    page.get_by_text("100% completed").first.wait_for(timeout=30_000)
    # the asset's row reads: name, progress, then targeted, in progress, succeeded, failed
    after = page.inner_text("body").split("100% completed", 1)[1].split()
    counts = [int(t) for t in after[:4]]
    assert counts[0] == 6 and counts[3] >= 1, after[:4]  # the "Failed" column: no longer "Failed 0"
    page.screenshot(path=ARTIFACTS / "backfill_overview.png")
    _open(page, f"{base}/runs/b/{backfill_id}?tab=runs")
    page.get_by_text("Failure").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "backfill_runs.png", full_page=True)

    _open(page, f"{base}/assets/generated_images?view=checks&checkDetail=run_failure_rate")
    page.get_by_role("tab", name="Partitions").last.click()
    provider, resolution = cell.split("|")
    page.get_by_text(provider, exact=True).filter(visible=True).last.click()
    page.get_by_text(resolution, exact=True).filter(visible=True).last.click()
    page.get_by_text(re.compile(rf"{re.escape(cell)}: this run: \d+ of \d+ new prompts")).first.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "run_failure_rate.png", full_page=True)

    # the cell's own failure_rate, partition by partition: this cell's result is a failure
    _open(page, f"{base}/assets/generated_images?view=checks&checkDetail=failure_rate")
    page.get_by_role("tab", name="Partitions").last.click()
    failed = page.get_by_text(re.compile(r"^Failed \(\d+\)$")).first
    failed.wait_for(timeout=30_000)
    assert int(re.search(r"\d+", failed.inner_text()).group()) >= 1, failed.inner_text()
    page.get_by_text(provider, exact=True).filter(visible=True).last.click()
    page.get_by_text(resolution, exact=True).filter(visible=True).last.click()
    page.get_by_text(f"{cell}:").first.wait_for(timeout=30_000)
    assert page.get_by_text(re.compile(r"eligible prompts have no image")).count() >= 1
    page.screenshot(path=ARTIFACTS / "failed_cell_checks.png", full_page=True)
    # the checks run on their own (judged from storage, nothing spent): the UI offers to execute them
    execute = page.get_by_role("button", name="Execute all")
    execute.wait_for(timeout=30_000)
    assert execute.is_enabled()
    execute.click()
    launched = page.get_by_text(re.compile(r"Launched run \w+")).first
    launched.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "execute_checks.png", full_page=True)
    page.get_by_text("View", exact=True).last.click()  # the toast's link to the run
    status = page.get_by_text(re.compile(r"^(Success|Failure)$")).first
    status.wait_for(timeout=90_000)
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "execute_checks_run.png", full_page=True)
    assert status.inner_text() == "Success"  # every cell judged from storage, nothing spent


def _check_reports(page, base: str, gallery_base: str) -> None:
    """The reports: a summary with a totals row, and their charts shown without a click."""
    _open(page, f"{base}/assets/credit_cost_report")
    page.locator("td", has_text=re.compile(r"^total$")).first.wait_for(timeout=30_000)
    widths = _loaded_images(page, "img[src$='/reports/credit_cost_report.png']")
    assert widths and all(w > 200 for w in widths), widths
    page.screenshot(path=ARTIFACTS / "cost_report.png", full_page=True)
    page.get_by_text("summary", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "cost_report_summary_chart.png")
    _open(page, f"{base}/assets/provider_comparison")
    widths = _loaded_images(page, "img[src$='/reports/provider_comparison.png']")
    assert widths and all(w > 200 for w in widths), widths
    page.get_by_text("summary", exact=True).first.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "provider_comparison.png")

    # the Lineage page: the whole pipeline in one group, not collapsed groups of one or two assets
    _open(page, f"{base}/asset-groups/nbpro_pipeline@nbpro-pipeline:__repository__/lineage")
    page.get_by_text("provider_comparison").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=ARTIFACTS / "lineage.png")

    # the cross-provider gallery, over HTTP: every cell side by side, mismatches marked
    page.goto(f"{gallery_base}/gallery/cross_provider.html")
    widths = _loaded_images(page, "img")
    assert len(widths) >= 6 and all(w > 0 for w in widths), widths
    assert page.locator("td.bad", has_text="size mismatch").count() >= 1, "no size mismatch shown apart"
    page.screenshot(path=ARTIFACTS / "cross_provider_gallery.png", full_page=True)


def _seconds(text: str) -> float:
    """``1m05s``, ``22s``, ``1h02m`` as seconds."""
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+)([hms])", text))
    return 3600 * parts.get("h", 0) + 60 * parts.get("m", 0) + parts.get("s", 0)


def _eta_run(gql: GraphQL, procs: Processes, sandbox, prompts: Path, page, base: str) -> tuple[float, float]:
    """New prompts for a complete clean cell, a run of it with real latency, its progress live on the run
    page; returns (the ETA of the first line after the first results, the time the rest really took)."""
    rows = [f"eta-{i},A lighthouse at dusk number {i},1:1,png,odirouter,1K" for i in range(ETA_PROMPTS)]
    (prompts / "zz_eta.csv").write_text("id,prompt,aspect_ratio,output_format,provider,resolution\n" + "\n".join(rows))
    (run,) = gql.wait_runs([gql.launch_run("prompt_table_job")], time.monotonic() + WAIT_S)
    assert run["status"] == "SUCCESS", procs.tail("daemon")
    sandbox.set_config({"odirouter": {"latency": {"processing": {"dist": "fixed", "value": ETA_LATENCY_S}}}})
    run_id = gql.launch_cell(ETA_CELL)
    deadline = time.monotonic() + WAIT_S
    while "ETA" not in run_tags(gql.runs(runIds=[run_id])[0]).get("nbpro/progress", ""):
        assert time.monotonic() < deadline, "no live progress on the run"
        time.sleep(0.5)
    _open(page, f"{base}/runs")  # the Runs list shows the tag while the step runs
    page.get_by_text(re.compile(r"nbpro/progress: \d+/\d+ new")).first.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "run_progress.png")
    (run,) = gql.wait_runs([run_id], time.monotonic() + WAIT_S)
    assert run["status"] == "SUCCESS", procs.tail("daemon")
    lines = [(t, PROGRESS.search(m)) for t, m in gql.logs(run_id) if PROGRESS.search(m)]
    first = next((t, m) for t, m in lines if 0 < int(m.group(1)) < int(m.group(2)))
    last_t, last = lines[-1]
    assert last.group(1) == last.group(2) == str(ETA_PROMPTS), last.group(0)  # only the new work counts
    return _seconds(first[1].group(3)), last_t - first[0]


def test_ui_tells_the_truth_about_a_failing_cell(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer

    started = time.monotonic()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(_instance_yaml())
    storage_root, prompts = tmp_path / "storage", tmp_path / "prompts"
    storage_root.mkdir()
    shutil.copytree(REPO / "examples" / "prompts", prompts)
    galleries = gallery_server(storage_root, port=0)  # what make dev runs beside the UI
    threading.Thread(target=galleries.serve_forever, daemon=True).start()
    gallery_base = f"http://127.0.0.1:{galleries.server_address[1]}"
    procs = Processes(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gql = GraphQL(base)
    config = SandboxConfig.zero_latency(**FAULTS)
    with SandboxServer(tmp_path / "sandbox", config) as sandbox:
        extra = {**STACK_ENV, "NBPRO_STORAGE_URL": gallery_base}
        env = pipeline_env(dagster_home, sandbox, storage_root, KEYS, extra=extra, sources=prompts)
        # create the SQLite storage once, before three processes (daemon, webserver, code server) race to
        migrate = [str(BIN / "dagster"), "instance", "migrate"]
        subprocess.run(migrate, cwd=REPO, env=env, check=True, capture_output=True, timeout=WAIT_S)
        try:
            procs.start("daemon", daemon_cmd(), env)
            procs.start("webserver", webserver_cmd(port), env)
            gql.wait_loaded(time.monotonic() + WAIT_S, procs)
            backfill_id, runs = _backfill_all_cells(gql, procs)
            pipeline_s = time.monotonic() - started
            cell = _failing_cell(storage_root, _red_runs(runs))
            gql("mutation { setNuxSeen }")  # the first visit's "join the community" dialog, seen once for all
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(chromium), headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                try:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    _check_cell_pages(page, base, cell, gallery_base)
                    _check_red_run(page, base, backfill_id, cell)
                    _check_reports(page, base, gallery_base)
                    eta, real = _eta_run(gql, procs, sandbox, prompts, page, base)
                finally:
                    browser.close()
        except BaseException:
            for name in procs.procs:
                print(f"--- {name} log (tail) ---\n{procs.tail(name)}")
            raise
        finally:
            procs.stop()
            galleries.shutdown()
    assert real / 2 <= eta <= 2 * real, f"first ETA {eta:.0f}s for {real:.1f}s of remaining work"
    print(
        f"\nbrowser test: pipeline {pipeline_s:.0f}s, total {time.monotonic() - started:.0f}s; first ETA "
        f"{eta:.0f}s, really {real:.1f}s; screenshots in {ARTIFACTS}"
    )
