"""Several hosts, no shared disk: the deployment in its production shape, built from network namespaces
(see cluster.py for the hosts and what each gets), driven through the webserver's GraphQL API only.

1. ``prompt_table`` from tables in the bucket, then a backfill of all six cells: every run succeeds within
   the run queue's limits, the ledger equals the sandbox's billing, the reports carry the same totals, and
   every file an asset wrote is in the bucket (nothing on a host's disk another host needs).
2. The provider host's link goes down mid-cell and comes back: the cell ends (done, or failed cleanly),
   and a re-run completes it without paying twice.
3. Every process of the code host is SIGKILLed mid-cell (a Rivya and an OdiRouter cell) and the host
   restarts from a clean disk: run monitoring fails the dead runs once they pass their
   ``dagster/max_runtime_seconds`` (the default launcher has no worker health check; deploy/dagster.yaml's
   ``max_runtime_seconds`` is the instance-wide value; the test tags the runs it kills with a short one and
   polls every ``MONITORING`` seconds), their queue slots free, a re-execution finishes each cell; Rivya
   billed each prompt once, OdiRouter paid at most ``max_unjournaled_submits`` requests twice.
4. The database host dies mid-run, for longer than dagster-postgres retries a connection (~6 s), and
   restarts on its disk: what the run does is printed (and documented in docs/deployment.md); a re-run
   completes the cell and no ledger row is lost.

Needs root and ``ip netns`` (plus the PostgreSQL server binaries): skipped without them, unless
NBPRO_REQUIRE_CLUSTER=1 (``.ci/run`` sets it), which makes a missing capability a failure.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.aws_env import aws_env
from tests.deploy.cluster import BUCKET, DEAD_RUN_MAX_RUNTIME_S, MONITORING, S3_CREDENTIALS, Cluster, build
from tests.deploy.dagster_stack import POLL_S, TERMINAL, GraphQL, assert_provider_concurrency, run_tags
from tests.deploy.netns import netns_available
from tests.deploy.postgres import find_bin_dir

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.external, pytest.mark.timeout(720)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"
TABLES = ("products.csv", "catalog.parquet", "scenes.tsv", "refs/swatch.png")
STARTUP_S, RUN_S = 180, 240
DB_DOWN_S = 15
STEP_CELLS = {"network": "rivya|1K", "kill": ("rivya|2K", "odirouter|2K"), "database": "rivya|4K"}
ROWS_PER_STEP_CELL = 8
STEP_ID_PREFIX = "cluster-"


def _require() -> None:
    reasons = [netns_available()]
    if find_bin_dir() is None:
        reasons.append("PostgreSQL server binaries not found (apt-get install postgresql, or run .ci/run)")
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        reasons.append("dagster-postgres is not installed (pip install -e '.[dev]')")
    reasons = [r for r in reasons if r]
    if reasons:
        if os.environ.get("NBPRO_REQUIRE_CLUSTER") == "1":
            pytest.fail("; ".join(reasons))
        pytest.skip("; ".join(reasons))


@contextlib.contextmanager
def _s3_env(cluster: Cluster) -> Iterator[None]:
    """The test reads the bucket through the same Storage code as the pipeline (s3fs, env credentials)."""
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": cluster.s3_endpoint, "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}  # fmt: skip
    with aws_env(env):
        yield


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    _require()
    os.environ["NBPRO_CLUSTER_T0"] = str(time.monotonic())
    built = build(tmp_path_factory.mktemp("cluster"))
    try:
        with built.net.client(built.client), _s3_env(built):
            _start(built)
            yield built
    finally:
        built.net.close()


def _start(c: Cluster) -> None:
    deadline = time.monotonic() + STARTUP_S
    c.start_db()
    c.start_store()
    c.start_provider()
    c.wait_db(deadline)
    c.create_database()
    c.wait_http(c.s3_endpoint, c.store, deadline)
    s3 = c.s3()
    s3.create_bucket(Bucket=BUCKET)
    for name in TABLES:
        s3.put_object(Bucket=BUCKET, Key=f"prompts/{name}", Body=(EXAMPLES / name).read_bytes())
    c.wait_http(c.sandbox_url + "/_sandbox/health", c.provider, deadline)
    c.start_code()
    c.start_control()
    c.wait_code(deadline)


# -- helpers ---------------------------------------------------------------------------------------------
class Figures:
    """What the test prints past pytest's capture: one line per step."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.started = float(os.environ.get("NBPRO_CLUSTER_T0", time.monotonic()))

    def add(self, line: str) -> None:
        self.lines.append(line)


def _alive(c: Cluster) -> None:
    c.control.check_alive()
    c.code.check_alive()


def _wait_runs(gql: GraphQL, c: Cluster, run_ids: list[str], timeout: float = RUN_S) -> list[dict]:
    """Until every run is terminal; GraphQL errors while a host is down count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        c.control.check_alive()
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            runs = gql.runs(runIds=run_ids)
            if len(runs) == len(run_ids) and all(r["status"] in TERMINAL for r in runs):
                return runs
        assert time.monotonic() < deadline, f"runs not finished: {run_ids}\n{c.logs()}"
        time.sleep(POLL_S)


def _wait_status(gql: GraphQL, c: Cluster, run_id: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            (run,) = gql.runs(runIds=[run_id])
            if run["status"] in statuses:
                return run
        assert time.monotonic() < deadline, f"run {run_id} never reached {statuses}\n{c.logs()}"
        time.sleep(0.5)


def _wait_tasks(c: Cluster, provider: str, more_than: int, timeout: float = RUN_S) -> int:
    """Until the provider has created more than ``more_than`` tasks: the cell is in flight."""
    deadline = time.monotonic() + timeout
    while True:
        _alive(c)
        created = c.sandbox_stats()[provider]["tasks_created"]
        if created > more_than:
            return created
        assert time.monotonic() < deadline, f"no new {provider} task\n{c.logs()}"
        time.sleep(0.2)


def _created(c: Cluster) -> dict[str, int]:
    stats = c.sandbox_stats()
    return {p: stats[p]["tasks_created"] for p in ("rivya", "odirouter")}


def _run_ok(gql: GraphQL, c: Cluster, job: str) -> dict:
    (run,) = _wait_runs(gql, c, [gql.launch_run(job)])
    assert run["status"] == "SUCCESS", c.logs()
    return run


def _billing(c: Cluster) -> dict[str, dict[str, Decimal]]:
    """Net amount the sandbox charged per task, per provider."""
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for entry in c.sandbox_ledger():
        out[entry["provider"]][entry["task_id"]] += Decimal(str(entry["amount"]))
    return {p: {t: a for t, a in tasks.items() if a} for p, tasks in out.items()}


def _ledger():
    from nbpro_pipeline.storage import Storage, read_ledger

    return read_ledger(Storage(f"s3://{BUCKET}/nbpro")).to_pandas()


def _reconcile(c: Cluster, kills: int) -> dict[str, int]:
    """Every billed Rivya task is in the ledger exactly once and nothing else is; OdiRouter may have
    paid for at most ``kills x max_unjournaled_submits`` tasks whose id never reached the journal."""
    from nbpro_pipeline.engine import EngineSettings

    ledger, billed = _ledger(), _billing(c)
    paid = ledger[ledger["final_cost"].map(lambda v: v is not None and Decimal(str(v)) != 0)]
    dup_rows = paid.groupby(["provider", "task_id"]).size()
    assert (dup_rows == 1).all(), f"a paid task has two ledger rows: {dup_rows[dup_rows > 1]}"
    orphans: dict[str, int] = {}
    for provider in ("rivya", "odirouter"):
        ours = paid[paid["provider"] == provider]
        booked = {t: Decimal(str(v)) for t, v in zip(ours["task_id"], ours["final_cost"], strict=True)}
        theirs = billed.get(provider, {})
        missing = {t: a for t, a in theirs.items() if t not in booked}
        assert all(booked.get(t) == a for t, a in theirs.items() if t in booked), provider
        assert set(booked) <= set(theirs), f"{provider}: ledger rows the provider never billed"
        orphans[provider] = len(missing)
        prompts = ours.groupby(["resolution", "prompt_id"]).size()
        if provider == "rivya":
            assert not missing, f"rivya billed tasks the ledger lacks: {missing}"
            assert (prompts == 1).all(), f"a Rivya prompt was paid twice: {prompts[prompts > 1]}"
    bound = kills * EngineSettings().max_unjournaled_submits
    assert orphans["odirouter"] <= bound, (orphans, bound)
    return orphans


def _cell_rows(cell: str) -> dict[str, int]:
    """Latest outcome of each of the step's own prompts in ``cell``, counted by status."""
    provider, resolution = cell.split("|")
    ledger = _ledger()
    rows = ledger[(ledger["provider"] == provider) & (ledger["resolution"] == resolution)]
    rows = rows[rows["prompt_id"].str.startswith(STEP_ID_PREFIX)]
    latest = rows.sort_values("recorded_at").groupby("prompt_id").tail(1)
    return dict(Counter(latest["status"]))


def _step_table() -> bytes:
    """Rows that name their cell, for steps 2-4: work those cells have not done yet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "prompt", "aspect_ratio", "provider", "resolution"])
    cells = [STEP_CELLS["network"], *STEP_CELLS["kill"], STEP_CELLS["database"]]
    for cell in cells:
        provider, resolution = cell.split("|")
        for i in range(ROWS_PER_STEP_CELL):
            prompt = f"Cluster step {cell} #{i}: a glass lighthouse on a basalt cliff, storm light, film grain"
            writer.writerow([f"{STEP_ID_PREFIX}{provider}-{resolution}-{i}", prompt, "1:1", provider, resolution])
    return out.getvalue().encode()


# -- the test ----------------------------------------------------------------------------------------------
def test_deployment_across_hosts_without_a_shared_disk(cluster: Cluster, capsys):
    c, figures = cluster, Figures()
    gql = GraphQL(c.webserver_url)
    try:
        gql.wait_loaded(time.monotonic() + STARTUP_S, _Procs(c))
        figures.add(f"stack ready in {time.monotonic() - figures.started:.1f}s")
        _step_backfill(gql, c, figures)
        c.s3().put_object(Bucket=BUCKET, Key="prompts/cluster-steps.csv", Body=_step_table())
        _run_ok(gql, c, "prompt_table_job")
        _step_network_cut(gql, c, figures)
        _step_kill_code_host(gql, c, figures)
        _step_database_down(gql, c, figures)
        _check_disks(c, figures)
    except BaseException:
        with capsys.disabled():
            print("\n" + "\n".join(figures.lines) + "\n" + c.logs())
        raise
    with capsys.disabled():
        total = time.monotonic() - figures.started
        print("\ncluster test (6 hosts, namespaces):\n  " + "\n  ".join(figures.lines) + f"\n  total {total:.1f}s")


class _Procs:
    """What GraphQL.wait_loaded checks: the control and code hosts' processes are alive."""

    def __init__(self, c: Cluster) -> None:
        self.c = c

    def check_alive(self) -> None:
        _alive(self.c)


def _step_backfill(gql: GraphQL, c: Cluster, figures: Figures) -> None:
    from nbpro_pipeline.costs import all_cells

    started = time.monotonic()
    _run_ok(gql, c, "prompt_table_job")
    partitions = [f"{p}|{r.value}" for p, r in all_cells()]
    cell_runs = _wait_backfill(gql, c, gql.launch_backfill("generated_images", partitions), partitions)
    assert [r["status"] for r in cell_runs] == ["SUCCESS"] * len(partitions), c.logs()
    assert sorted(run_tags(r)["dagster/partition"] for r in cell_runs) == sorted(partitions)
    overlap, limit = assert_provider_concurrency(cell_runs)
    backfill_s = time.monotonic() - started
    reports_run = _run_ok(gql, c, "reports_job")
    ledger, ours = _check_every_cell_booked(c)
    # the reports and their metadata, written by that run from the whole ledger
    credit = gql.metadata("credit_cost_report")
    assert credit["__run_id"] == reports_run["runId"]
    units = {"rivya": "credits", "odirouter": "usd"}  # the metadata keys say their unit
    for provider, total in ours.items():
        assert Decimal(str(credit[f"total_{provider}_{units[provider]}"])) == total, (provider, credit)
    objects = _check_everything_in_bucket(gql, c, partitions, ledger)
    totals = ", ".join(f"{p} {v.normalize():f}" for p, v in ours.items())
    figures.add(
        f"1. backfill: {len(cell_runs)} cell runs all SUCCESS, {len(ledger)} images, ledger ({totals}) == sandbox "
        f"billing; max runs at once per provider {overlap} (limit {limit}); "
        f"{objects} objects in the bucket; prompt_table+backfill {backfill_s:.1f}s, "
        f"with reports {time.monotonic() - started:.1f}s"
    )


def _wait_backfill(gql: GraphQL, c: Cluster, backfill_id: str, partitions: list[str]) -> list[dict]:
    """The backfill daemon submits the runs on its next tick (every second: fast_daemon.py); wait for all of
    them to end."""
    deadline = time.monotonic() + RUN_S
    while True:
        _alive(c)
        cell_runs = gql.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
        if len(cell_runs) >= len(partitions) and all(r["status"] in TERMINAL for r in cell_runs):
            return cell_runs
        assert time.monotonic() < deadline, f"backfill runs: {[r['status'] for r in cell_runs]}\n{c.logs()}"
        time.sleep(POLL_S)


def _check_every_cell_booked(c: Cluster):
    """Every eligible prompt of every cell has one succeeded ledger row; the ledger equals the billing."""
    from nbpro_pipeline.costs import all_cells
    from nbpro_pipeline.costs.reports import totals_by_provider
    from nbpro_pipeline.engine import rows_for_cell
    from nbpro_pipeline.storage import Storage, read_table

    accepted = read_table(Storage(f"s3://{BUCKET}/nbpro"), "prompt_table/accepted")
    ledger = _ledger()
    for provider, resolution in all_cells():
        eligible = sorted(r.prompt_id for r in rows_for_cell(accepted, provider, resolution))
        cell = ledger[(ledger["provider"] == provider) & (ledger["resolution"] == resolution.value)]
        assert sorted(cell["prompt_id"]) == eligible, f"{provider}|{resolution.value}"
    assert set(ledger["status"]) == {"succeeded"}, Counter(ledger["status"])
    ours = totals_by_provider(ledger)
    billed = {p: sum(t.values(), Decimal(0)) for p, t in _billing(c).items()}
    assert ours == billed, (ours, billed)
    _reconcile(c, kills=0)
    return ledger, ours


def _check_everything_in_bucket(gql: GraphQL, c: Cluster, partitions: list[str], ledger) -> int:
    """Every path in the assets' metadata and every ledger image URI is an object (or prefix) in the bucket;
    returns how many objects the bucket holds."""
    keys = set(c.bucket_keys())
    paths = [gql.metadata("prompt_table")[k] for k in ("accepted_table", "rejected_table")]
    paths += [gql.metadata(name)["path"] for name in ("credit_cost_report", "provider_comparison")]
    for partition in partitions:
        meta = gql.metadata("generated_images", partition)
        assert meta["images"] > 0 and meta["failed"] == 0, (partition, meta)
        paths += [meta["image_dir"], meta["ledger"]]
    paths += list(ledger["image_uri"])
    prefix = f"s3://{BUCKET}/"
    for path in paths:
        assert path.startswith(prefix), f"an asset wrote outside the bucket: {path}"
        key = path.removeprefix(prefix)
        assert key in keys or any(k.startswith(key.rstrip("/") + "/") for k in keys), f"{path} is not in the bucket"
    return len(keys)


def _step_network_cut(gql: GraphQL, c: Cluster, figures: Figures) -> None:
    cell = STEP_CELLS["network"]
    provider = cell.split("|")[0]
    started = time.monotonic()
    before = _created(c)[provider]
    run_id = gql.launch_cell(cell)
    _wait_tasks(c, provider, before)
    c.provider.link(up=False)
    cut = time.monotonic()
    time.sleep(8)
    c.provider.link(up=True)
    down_s = time.monotonic() - cut
    (first,) = _wait_runs(gql, c, [run_id])
    states = [first["status"]]
    after_first = _cell_rows(cell)
    runs = 1
    if after_first.get("succeeded", 0) < ROWS_PER_STEP_CELL or first["status"] != "SUCCESS":
        (second,) = _wait_runs(gql, c, [gql.launch_cell(cell)])
        states.append(second["status"])
        runs += 1
        assert second["status"] == "SUCCESS", c.logs()
    assert _cell_rows(cell) == {"succeeded": ROWS_PER_STEP_CELL}, _cell_rows(cell)
    orphans = _reconcile(c, kills=0)
    figures.add(
        f"2. provider link down {down_s:.1f}s mid-cell {cell}: runs {states}, after the first run {after_first}; "
        f"{ROWS_PER_STEP_CELL} prompts succeeded once, unbooked paid tasks {orphans}; {time.monotonic() - started:.1f}s"
    )


def _step_kill_code_host(gql: GraphQL, c: Cluster, figures: Figures) -> None:
    cells = STEP_CELLS["kill"]
    started = time.monotonic()
    before = _created(c)
    short = {"dagster/max_runtime_seconds": str(DEAD_RUN_MAX_RUNTIME_S)}
    run_ids = [gql.launch_cell(cell, short) for cell in cells]
    for cell in cells:
        _wait_tasks(c, cell.split("|")[0], before[cell.split("|")[0]])
    killed = c.code.kill_all()  # every process in the host's network namespace, SIGKILL
    killed_at = time.time()
    c.wipe_code_disk()
    c.start_code()
    c.wait_code(time.monotonic() + STARTUP_S)
    restart_s = time.time() - killed_at
    # the monitoring daemon fails a run on its first look past the limit: one poll interval late at most,
    # plus a loaded machine's slack
    late_s = 2 * MONITORING["poll_interval_seconds"] + 20
    dead = [_wait_status(gql, c, r, TERMINAL, timeout=DEAD_RUN_MAX_RUNTIME_S + late_s + 30) for r in run_ids]
    assert [r["status"] for r in dead] == ["FAILURE"] * len(cells), dead
    failed_after = [r["endTime"] - killed_at for r in dead]
    runtime_at_fail = [r["endTime"] - r["startTime"] for r in dead]
    assert all(DEAD_RUN_MAX_RUNTIME_S <= t <= DEAD_RUN_MAX_RUNTIME_S + late_s for t in runtime_at_fail), runtime_at_fail
    gql.wait_loaded(time.monotonic() + STARTUP_S, _Procs(c))
    instance_limit = {"dagster/max_runtime_seconds": str(_instance_max_runtime())}
    retries = [gql.reexecute(r, tags=instance_limit) for r in run_ids]
    started_retry = [_wait_status(gql, c, r, {"STARTED", *TERMINAL}, timeout=RUN_S) for r in retries]
    slot_freed = [s["startTime"] - d["endTime"] for s, d in zip(started_retry, dead, strict=True)]
    finished = _wait_runs(gql, c, retries)
    assert [r["status"] for r in finished] == ["SUCCESS"] * len(cells), c.logs()
    for cell in cells:
        assert _cell_rows(cell) == {"succeeded": ROWS_PER_STEP_CELL}, (cell, _cell_rows(cell))
    orphans = _reconcile(c, kills=1)
    figures.add(
        f"3. code host SIGKILL ({killed} processes) mid-cell {list(cells)}; restarted healthy in {restart_s:.1f}s; "
        f"dead runs FAILURE {[f'{t:.1f}s' for t in failed_after]} after the kill (run time "
        f"{[f'{t:.1f}s' for t in runtime_at_fail]}, dagster/max_runtime_seconds {DEAD_RUN_MAX_RUNTIME_S}); "
        f"re-executions started {[f'{t:.1f}s' for t in slot_freed]} after the slot freed, "
        f"{[r['status'] for r in finished]}; Rivya prompts billed once; OdiRouter paid tasks never booked "
        f"{orphans['odirouter']} (bound {1 * 4}); {time.monotonic() - started:.1f}s"
    )


def _step_database_down(gql: GraphQL, c: Cluster, figures: Figures) -> None:
    cell = STEP_CELLS["database"]
    provider = cell.split("|")[0]
    started = time.monotonic()
    billed_before = _billing(c)
    rows_before = len(_ledger())
    before = _created(c)[provider]
    run_id = gql.launch_cell(cell)
    _wait_status(gql, c, run_id, {"STARTED"}, timeout=RUN_S)
    _wait_tasks(c, provider, before)
    c.db.kill_all()
    down_at = time.monotonic()
    time.sleep(DB_DOWN_S)
    c.start_db()
    c.wait_db(time.monotonic() + STARTUP_S)
    down_s = time.monotonic() - down_at
    (first,) = _wait_runs(gql, c, [run_id])
    states = [first["status"]]
    after_first = _cell_rows(cell)
    if first["status"] != "SUCCESS" or after_first.get("succeeded", 0) < ROWS_PER_STEP_CELL:
        (second,) = _wait_runs(gql, c, [gql.launch_cell(cell)])
        states.append(second["status"])
        assert second["status"] == "SUCCESS", c.logs()
    assert _cell_rows(cell) == {"succeeded": ROWS_PER_STEP_CELL}, _cell_rows(cell)
    ledger = _ledger()
    assert len(ledger) >= rows_before + ROWS_PER_STEP_CELL
    new_tasks = set(_billing(c)["rivya"]) - set(billed_before.get("rivya", {}))
    assert new_tasks <= set(ledger["task_id"]), "a task billed while the database was down has no ledger row"
    _reconcile(c, kills=1)
    figures.add(
        f"4. database host down {down_s:.1f}s mid-run {cell}: runs {states}, after the first run {after_first}; "
        f"{len(new_tasks)} tasks billed, all in the ledger; {time.monotonic() - started:.1f}s"
    )


def _instance_max_runtime() -> int:
    """deploy/dagster.yaml must bound a run's time: with the default launcher nothing else fails a run
    whose host died."""
    import yaml

    from tests.deploy.cluster import DEPLOY_YAML

    value = yaml.safe_load(DEPLOY_YAML.read_text())["run_monitoring"].get("max_runtime_seconds")
    assert value and value > 0, "deploy/dagster.yaml: run_monitoring.max_runtime_seconds is not set"
    return int(value)


def _check_disks(c: Cluster, figures: Figures) -> None:
    """Nothing a host wrote that another host needs is on its disk: control holds only its two config
    files, and the code host only its instance file and Dagster's captured stdout/stderr of its runs
    (the local compute log manager: visible in the UI only from this host; see docs/deployment.md).
    Images, journal, ledger, prompt tables and reports are all in the bucket (step 1 checks them)."""
    allowed = {
        "control": re.compile(r"(dagster_home/dagster\.yaml|work/workspace\.yaml)"),
        # and matplotlib's font cache, when the reports_automation sensor happened to launch a reports run
        # on the restarted host before the test ends: a cache rebuilt on any fresh disk, needed by no one
        "code": re.compile(
            r"dagster_home/(dagster\.yaml|storage/[0-9a-f-]{36}/compute_logs/[a-z]+\.(out|err|complete))"
            r"|home/\.cache/matplotlib/fontlist-v[0-9.]+\.json"
        ),
    }
    listing = {}
    for host in (c.code, c.control):
        files = host.files()
        stray = [f for f in files if not allowed[host.name].fullmatch(f)]
        assert not stray, f"{host.name} keeps files on its own disk that no other host could read: {stray}"
        listing[host.name] = len(files)
    figures.add(
        f"disks: code {listing['code']} files (instance file, compute logs), control {listing['control']} "
        "(instance file, workspace); nothing else"
    )
