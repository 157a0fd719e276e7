"""``nbpro validate``: summaries, rejected lines, --json, --limit and the exit status 0 / 1 / 2."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nbpro_pipeline.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["validate", *args])


def test_all_valid_exits_0(write):
    path = write("ok.csv", "prompt,aspect_ratio\na,16:9\nb,1:1\n")
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert f"{path} (csv, sha256 " in result.output and "2 rows, 2 accepted, 0 rejected" in result.output
    assert "Traceback" not in result.output


def test_rejected_rows_exit_1_with_one_line_each(write):
    path = write("some.csv", "prompt,aspect_ratio\nok,1:1\n,1:1\nfine,auto\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert "rejected by reason: prompt_empty 1, aspect_ratio_unsupported 1" in result.output
    assert f"{path}, row 2, column 'prompt': prompt_empty: " in result.output
    assert f"{path}, row 3, column 'aspect_ratio': aspect_ratio_unsupported (for odirouter only): " in result.output


def test_limit_truncates_the_listing(write):
    path = write("many.csv", "prompt,id\n" + "\n".join(f",{i}" for i in range(5)) + "\n")
    result = run(str(path), "--limit", "2")
    assert result.exit_code == 1
    assert result.output.count(": prompt_empty: ") == 2 and "... and 3 more" in result.output


def test_unreadable_file_exits_2_and_still_reports_the_rest(write, tmp_path):
    good = write("good.csv", "prompt\na\n")
    result = run(str(good), str(tmp_path / "missing.csv"))
    assert result.exit_code == 2
    assert "missing.csv: UNREADABLE: the file does not exist" in result.output
    assert "1 rows, 1 accepted" in result.output
    assert "could not be read" in result.stderr and "Traceback" not in result.output + result.stderr


def test_nothing_readable_exits_2_with_a_clear_message(tmp_path):
    result = run(str(tmp_path / "nothing*.csv"))
    assert result.exit_code == 2
    assert "nbpro validate:" in result.stderr and "matches no prompt table" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_json_output(write):
    path = write("j.csv", "prompt,output_format\na,png\nb,jpg\nc,webp\n")
    result = run(str(path), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 1 and doc["rows_read"] == 3 and doc["accepted"] == 2
    assert doc["eligible"] == {"rivya": 2, "odirouter": 1}
    assert doc["rejected_by_reason"] == {"output_format_unsupported": 1, "output_format_unknown": 1}
    assert doc["sources"][0]["uri"] == str(path) and doc["sources"][0]["rows_read"] == 3
    assert [r["code"] for r in doc["rejected"]] == ["output_format_unsupported", "output_format_unknown"]
    assert doc["rejected"][0]["provider"] == "odirouter" and doc["rejected"][0]["row_number"] == 2


def test_json_output_when_nothing_is_readable(tmp_path):
    result = run(str(tmp_path / "missing.csv"), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2 and "missing.csv" in json.loads(result.stdout)["error"]


def test_reference_root_option(write, tmp_path):
    from tests.prompts.helpers import png_bytes

    write("refs/a.png", png_bytes())
    path = write("t.csv", "prompt,reference_images,provider\na,refs/a.png,rivya\n")
    assert run(str(path), "--reference-root", str(tmp_path / "refs")).exit_code == 0
    outside = run(str(path), "--reference-root", str(tmp_path / "elsewhere"))
    assert outside.exit_code == 1 and "reference_outside_roots" in outside.output
