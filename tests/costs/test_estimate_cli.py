"""``nbpro estimate``: exit codes and output, with the real prompt loader where it can be used."""

import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.costs.cli_support import read_ledger_dataset
from nbpro_pipeline.models.ledger import records_to_table
from tests.costs.builders import accepted, record


@pytest.fixture(autouse=True)
def _default_prices(monkeypatch):
    for name in (
        "NBPRO_RIVYA_CREDITS_PER_IMAGE",
        "NBPRO_RIVYA_USD_PER_CREDIT",
        "NBPRO_ODIROUTER_USD_1K",
        "NBPRO_ODIROUTER_USD_2K",
        "NBPRO_ODIROUTER_USD_4K",
    ):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["estimate", *args], env=env, catch_exceptions=False)


def write_ledger(root: Path, *records) -> None:
    """The ledger layout: provider and resolution in hive directory names, not in the files."""
    by_cell: dict[tuple[str, str], list] = {}
    for r in records:
        by_cell.setdefault((str(r.provider), r.resolution.value), []).append(r)
    for (provider, resolution), rows in by_cell.items():
        cell = root / "ledger" / f"provider={provider}" / f"resolution={resolution}"
        cell.mkdir(parents=True, exist_ok=True)
        table = records_to_table(rows).drop_columns(["provider", "resolution"])
        pq.write_table(table, cell / f"part-{len(list(cell.iterdir())):05d}.parquet")
        (cell / ".part-tmp.parquet").write_bytes(b"half-written")  # a writer's temp file: never read


class FakeResult:
    def __init__(self, table, rejected: int = 0):
        import pyarrow as pa

        from nbpro_pipeline.models.prompt import REJECTED_SCHEMA

        self.accepted = table
        self.rejected = pa.Table.from_pylist(
            [
                {"source_uri": "t.csv", "row_number": i, "code": "prompt_empty", "message": "empty"}
                for i in range(rejected)
            ],
            schema=REJECTED_SCHEMA,
        )
        self.sources = ["t.csv"]


@pytest.fixture
def fake_loader(monkeypatch):
    """Replace the prompt loader with one returning fixed accepted rows (what the loader does is tested
    with the prompts package)."""
    prompts = pytest.importorskip("nbpro_pipeline.prompts")
    state: dict = {}

    def load(sources, **kwargs):
        state["sources"] = list(sources)
        return FakeResult(state["table"], state.get("rejected", 0))

    monkeypatch.setattr(prompts, "load_prompt_tables", load)
    return state


# -- with a stubbed loader ----------------------------------------------------------------------------
def test_table_output_for_all_cells(fake_loader):
    fake_loader["table"] = accepted({"prompt_id": "a"}, {"prompt_id": "b"}, {"prompt_id": "c", "resolution": "4K"})
    fake_loader["rejected"] = 2
    result = run("prompts.csv")
    assert result.exit_code == 0, result.output
    out = result.output
    assert fake_loader["sources"] == ["prompts.csv"]
    assert "3 accepted prompt row(s) from 1 file(s); 2 rejection(s)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["cell"].split() == [
        "cell",
        "eligible",
        "already",
        "done",
        "to",
        "generate",
        "price/image",
        "cost",
        "≈",
        "USD",
    ]
    assert lines["rivya|1K"].split() == ["rivya|1K", "2", "-", "2", "8", "credits", "16", "credits", "$0.2688†"]
    assert lines["rivya|4K"].split()[1:4] == ["3", "-", "3"]
    assert lines["odirouter|2K"].split()[4:] == ["$0.15*", "$0.30*", "$0.30*"]
    assert lines["odirouter|4K"].split()[4:] == ["$0.30*", "$0.90*", "$0.90*"]
    assert "Total: 56 Rivya credits + $1.50 OdiRouter* (≈ $2.4408 in all)" in out  # 7 x 8 credits x $0.0168
    assert "OdiRouter publishes no price" in out
    assert "Without --ledger-root" in out


def test_cells_option_and_json(fake_loader):
    fake_loader["table"] = accepted({"prompt_id": "a"}, {"prompt_id": "b", "provider": "odirouter"})
    result = run("t.csv", "more/*.parquet", "--cells", "rivya|2K,odirouter|4K", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert fake_loader["sources"] == ["t.csv", "more/*.parquet"]
    assert [c["cell"] for c in data["cells"]] == ["rivya|2K", "odirouter|4K"]
    rivya, odi = data["cells"]
    assert (rivya["eligible"], rivya["to_generate"], rivya["cost"], rivya["is_estimate"]) == (1, 1, "8", False)
    assert (odi["eligible"], odi["cost"], odi["cost_unit"], odi["is_estimate"]) == (2, "0.60", "usd", True)
    assert data["totals"] == {"rivya": "8", "odirouter": "0.60"}
    assert data["ledger_rows"] is None


def test_prices_from_environment(fake_loader):
    fake_loader["table"] = accepted({"prompt_id": "a"})
    result = run("t.csv", "--cells", "odirouter|1K", "--json", env={"NBPRO_ODIROUTER_USD_1K": "0.2"})
    assert json.loads(result.output)["cells"][0]["cost"] == "0.2"
    bad = run("t.csv", env={"NBPRO_ODIROUTER_USD_1K": "free"})
    assert bad.exit_code == 2
    assert "invalid price setting" in bad.output and "Traceback" not in bad.output


def test_ledger_root_subtracts_what_already_succeeded(fake_loader, tmp_path):
    fake_loader["table"] = accepted(*({"prompt_id": f"p{i}"} for i in range(5)))
    write_ledger(
        tmp_path,
        record("p0"),
        record("p1"),
        record("p2", status="failed", error_code="generation_failed"),
        record("p3", provider="odirouter"),
    )
    result = run("t.csv", "--cells", "rivya|2K,odirouter|2K", "--ledger-root", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    rivya, odi = json.loads(result.output)["cells"]
    assert (rivya["already_succeeded"], rivya["to_generate"], rivya["cost"]) == (2, 3, "24")
    assert (odi["already_succeeded"], odi["to_generate"], Decimal(odi["cost"])) == (1, 4, Decimal("0.60"))
    assert json.loads(result.output)["ledger_rows"] == 4

    text = run("t.csv", "--cells", "rivya|2K", "--ledger-root", str(tmp_path)).output
    assert text.splitlines()[4].split()[:4] == ["rivya|2K", "5", "2", "3"]
    assert "Without --ledger-root" not in text


def test_ledger_root_without_a_ledger_yet(fake_loader, tmp_path):
    fake_loader["table"] = accepted({"prompt_id": "a"})
    result = run("t.csv", "--cells", "rivya|1K", "--ledger-root", str(tmp_path / "fresh"), "--json")
    assert result.exit_code == 0
    assert "no ledger under" in result.stderr
    assert json.loads(result.stdout)["cells"][0]["already_succeeded"] == 0


def test_unreadable_ledger_exits_2(fake_loader, tmp_path):
    fake_loader["table"] = accepted({"prompt_id": "a"})
    cell = tmp_path / "ledger" / "provider=rivya" / "resolution=1K"
    cell.mkdir(parents=True)
    (cell / "part-0.parquet").write_bytes(b"not parquet at all")
    result = run("t.csv", "--ledger-root", str(tmp_path))
    assert result.exit_code == 2
    assert "cannot read the ledger" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("cells", ["rivya|8K", "fal|2K", "rivya", ""])
def test_bad_cells_exit_2_with_the_reason(cells):
    result = run("t.csv", "--cells", cells)
    assert result.exit_code == 2
    assert "--cells" in result.stderr


def test_no_table_is_a_usage_error():
    result = run()
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# -- with the real loader -----------------------------------------------------------------------------
def test_unreadable_tables_exit_2_without_traceback(tmp_path):
    pytest.importorskip("nbpro_pipeline.prompts")
    result = run(str(tmp_path / "missing" / "*.csv"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot read the prompt tables:")
    assert "Traceback" not in result.output


def test_real_csv_end_to_end(tmp_path):
    pytest.importorskip("nbpro_pipeline.prompts")
    table = tmp_path / "prompts.csv"
    table.write_text(
        "id,prompt,resolution,provider\n"
        "cat,a cat on a sofa,,\n"
        "dog,a dog in the rain,4K,\n"
        "fox,a fox at dawn,,rivya\n"
        "empty,,,\n",
        encoding="utf-8",
    )
    write_ledger(tmp_path / "store", record("cat", prompt_sha256=_sha_of(table, "cat")))
    result = run(str(table), "--ledger-root", str(tmp_path / "store"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_cell = {c["cell"]: c for c in data["cells"]}
    assert data["accepted_rows"] == 3 and data["rejected_entries"] >= 1
    assert by_cell["rivya|1K"]["eligible"] == 2  # cat, fox
    assert by_cell["rivya|4K"]["eligible"] == 3  # cat, dog, fox
    assert by_cell["odirouter|4K"]["eligible"] == 2  # cat, dog
    assert by_cell["rivya|2K"]["already_succeeded"] == 1  # cat, from the ledger
    assert by_cell["rivya|2K"]["to_generate"] == 1


def _sha_of(table: Path, prompt_id: str) -> str:
    from nbpro_pipeline.prompts import load_prompt_tables

    rows = load_prompt_tables([str(table)]).accepted.to_pylist()
    return next(r["prompt_sha256"] for r in rows if r["prompt_id"] == prompt_id)


def test_read_ledger_dataset_ignores_temp_files(tmp_path):
    write_ledger(tmp_path, record("a"), record("b", provider="odirouter", resolution="4K"))
    table = read_ledger_dataset(str(tmp_path))
    assert sorted(zip(table["prompt_id"].to_pylist(), table["provider"].to_pylist(), strict=True)) == [
        ("a", "rivya"),
        ("b", "odirouter"),
    ]
    assert table.schema.field("final_cost").type.scale == 6
    assert read_ledger_dataset(str(tmp_path / "nothing")) is None


def test_read_ledger_dataset_reads_what_the_storage_writer_writes(tmp_path):
    storage_ledger = pytest.importorskip("nbpro_pipeline.storage.ledger")
    from nbpro_pipeline.models.common import Resolution
    from nbpro_pipeline.providers.registry import Provider
    from nbpro_pipeline.storage.filesystem import Storage

    writer = storage_ledger.LedgerWriter(Storage(str(tmp_path)), Provider.RIVYA, Resolution.R2K, "run-1")
    writer.add(record("a"))
    writer.add(record("b", status="failed", error_code="generation_failed"))
    writer.flush()
    table = read_ledger_dataset(str(tmp_path))
    assert table.num_rows == 2 and set(table["resolution"].to_pylist()) == {"2K"}
    assert table.equals(storage_ledger.read_ledger(str(tmp_path)).sort_by("prompt_id"))
