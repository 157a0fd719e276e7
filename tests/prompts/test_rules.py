"""Row rules: normalization, one reason per rejected row and provider, per-provider eligibility, ids."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.prompts import REJECTION_CODES
from nbpro_pipeline.providers.registry import Provider
from tests.prompts.helpers import by_row, rejections


def table(*rows: str, header: str = "prompt,aspect_ratio,resolution,output_format,provider") -> str:
    return "\n".join([header, *rows]) + "\n"


def test_normalization_of_parameters(write, load):
    path = write(
        "n.csv",
        table(
            "a, 16:9 ,1k,JPEG,RIVYA",
            "b,AUTO,,Png, odirouter ",
            "c,,4K,jpg,",
            "  d  ,3 : 2,2K,,",
        ),
    )
    result = load(path)
    rows = by_row(result)
    keys = ("prompt", "aspect_ratio", "resolution", "output_format", "provider")
    got = {n: tuple(r[k] for k in keys) for n, r in rows.items()}
    assert got == {
        1: ("a", "16:9", "1K", "jpg", "rivya"),
        3: ("c", "1:1", "4K", "jpg", None),
        4: ("d", "3:2", "2K", "png", None),
    }
    # row 2 ('AUTO' -> auto) names odirouter, where auto does not exist: rejected for odirouter, and no Rivya
    # entry is emitted for it since it never goes there
    assert rejections(result) == [
        (2, "odirouter", "aspect_ratio", "aspect_ratio_unsupported"),
        (3, "odirouter", "output_format", "output_format_unsupported"),
    ]
    assert "provider to rivya" in result.rejected_rows()[0].message
    assert ("rivya" in rows[1]["eligible_providers"]) and (
        "odirouter" not in rows[1]["eligible_providers"]
    )  # restricted to rivya
    assert ("rivya" in rows[3]["eligible_providers"]) and ("odirouter" not in rows[3]["eligible_providers"])


def test_each_global_rule_with_column_and_row_number(write, load):
    path = write(
        "g.csv",
        table(
            "ok,1:1,,,",
            "   ,1:1,,,",
            "x,17:9,,,",
            "x,1:1,8K,,",
            "x,1:1,,gif,",
            "x,1:1,,,midjourney",
            ",17:9,8K,gif,midjourney",  # several problems: the first in priority order is reported
        ),
    )
    result = load(path)
    assert rejections(result) == [
        (2, None, "prompt", "prompt_empty"),
        (3, None, "aspect_ratio", "aspect_ratio_unknown"),
        (4, None, "resolution", "resolution_unknown"),
        (5, None, "output_format", "output_format_unknown"),
        (6, None, "provider", "provider_unknown"),
        (7, None, "prompt", "prompt_empty"),
    ]
    messages = {r.row_number: r.message for r in result.rejected_rows()}
    assert "'17:9'" in messages[3] and "16:9" in messages[3] and "empty for 1:1" in messages[3]
    assert "'8K'" in messages[4] and "1K, 2K, 4K" in messages[4]
    assert "'gif'" in messages[5] and "png" in messages[5]
    assert "'midjourney'" in messages[6] and "rivya, odirouter" in messages[6]
    assert list(by_row(result)) == [1]
    (source,) = result.sources
    assert (source.rows_read, source.accepted, source.rejected, source.rejections) == (7, 1, 6, 6)


def test_prompt_limits_per_provider(write, load):
    path = write(
        "long.csv",
        table(
            "x" * 2500 + ",,,,",
            "y" * 2600 + ",,,,",
            "z" * 10001 + ",,,,",
            "w" * 2600 + ",,,,odirouter",
            "v" * 2600 + ",,,,rivya",
        ),
    )
    result = load(path)
    rows = by_row(result)
    assert ("rivya" in rows[1]["eligible_providers"]) and ("odirouter" in rows[1]["eligible_providers"])
    assert ("rivya" in rows[2]["eligible_providers"]) and ("odirouter" not in rows[2]["eligible_providers"])
    assert 3 not in rows and 4 not in rows
    assert ("rivya" in rows[5]["eligible_providers"]) and ("odirouter" not in rows[5]["eligible_providers"])
    assert rejections(result) == [
        (2, "odirouter", "prompt", "prompt_too_long"),
        (3, None, "prompt", "prompt_too_long"),  # too long everywhere: one entry, both limits named
        (4, "odirouter", "prompt", "prompt_too_long"),
    ]
    messages = [r.message for r in result.rejected_rows()]
    assert "2600" in messages[0] and "2500" in messages[0] and "100" in messages[0]
    assert "10001" in messages[1] and "10000" in messages[1] and "2500" in messages[1]
    assert result.sources[0].accepted == 3 and result.sources[0].rejected == 2


def test_row_valid_for_one_provider_only_keeps_that_one(write, load):
    result = load(write("p.csv", table("a,auto,,jpg,")))
    (row,) = result.accepted.to_pylist()
    assert ("rivya" in row["eligible_providers"]) and ("odirouter" not in row["eligible_providers"])
    # one reason per provider: auto comes before jpg
    assert rejections(result) == [(1, "odirouter", "aspect_ratio", "aspect_ratio_unsupported")]
    prompt_row = PromptRow.from_table(result.accepted)[0]
    assert prompt_row.eligible_for(Provider.RIVYA, Resolution.R2K)
    assert not prompt_row.eligible_for(Provider.ODIROUTER, Resolution.R2K)


def test_provider_and_resolution_columns_restrict_cells(write, load):
    rows = PromptRow.from_table(load(write("r.csv", table("a,,1K,,rivya", "b,,,,"))).accepted)
    assert rows[0].eligible_for(Provider.RIVYA, Resolution.R1K)
    assert not rows[0].eligible_for(Provider.RIVYA, Resolution.R2K)
    assert not rows[0].eligible_for(Provider.ODIROUTER, Resolution.R1K)
    assert all(rows[1].eligible_for(p, r) for p in Provider for r in Resolution)


def test_id_rules(write, load):
    path = write(
        "ids.csv",
        "id,prompt\n"
        "  spaced  ,a\n"
        '"   ",b\n'
        '"tab\tinside",c\n'
        f"{'i' * 201},d\n"
        f"{'j' * 200},e\n"
        "../../etc/passwd,f\n"
        "folder/name,g\n"
        ",h\n",
    )
    result = load(path)
    assert rejections(result) == [
        (2, None, "id", "id_invalid"),
        (3, None, "id", "id_invalid"),
        (4, None, "id", "id_invalid"),
    ]
    messages = [r.message for r in result.rejected_rows()]
    assert "whitespace" in messages[0] and "control" in messages[1] and "201" in messages[2]
    rows = by_row(result)
    assert rows[1]["prompt_id"] == "spaced" and rows[5]["prompt_id"] == "j" * 200
    # ids that would be unsafe as paths are kept: storage makes them safe, not validation
    assert rows[6]["prompt_id"] == "../../etc/passwd" and rows[7]["prompt_id"] == "folder/name"
    assert rows[8]["prompt_id"].startswith("p-") and len(rows[8]["prompt_id"]) == 18


def test_derived_prompt_ids_are_stable_and_depend_on_every_parameter(write, load, tmp_path):
    first = write("one/a.csv", table("a cat,16:9,,,", "a cat,1:1,,,", "a cat,16:9,2K,,", "a cat,16:9,,jpg,"))
    again = write("two/b.csv", "campaign,prompt,aspect_ratio\nx, a cat ,16:9\n")
    ids_first = load(first).accepted.column("prompt_id").to_pylist()
    ids_again = load(first).accepted.column("prompt_id").to_pylist()
    assert ids_first == ids_again and len(set(ids_first)) == 4
    assert all(i.startswith("p-") and len(i) == 18 for i in ids_first)
    # another file, other extra columns, prompt with outer whitespace: same prompt and params, same id
    assert load(again).accepted.column("prompt_id").to_pylist() == [ids_first[0]]
    # the explicit id wins when present
    explicit = write("three/c.csv", "id,prompt\ncat-1,a cat\n")
    assert load(explicit).accepted.column("prompt_id").to_pylist() == ["cat-1"]


def test_exact_duplicates_keep_the_first_only(write, load):
    a = write("a.csv", "id,prompt,aspect_ratio\nk1,same,16:9\nk2,other,1:1\nk1,same, 16:9 \n")
    b = write("b.csv", "prompt\nno id\nno id\n")
    c = write("c.csv", "id,prompt,aspect_ratio,note\nk1,same,16:9,later copy\n")
    result = load(a, b, c)
    assert [(r["source_uri"][-5:], r["row_number"]) for r in result.accepted.to_pylist()] == [
        ("a.csv", 1),
        ("a.csv", 2),
        ("b.csv", 1),
    ]
    assert rejections(result) == [
        (3, None, "id", "duplicate_row"),
        (2, None, None, "duplicate_row"),  # identical rows without ids derive the same id
        (1, None, "id", "duplicate_row"),
    ]
    (first, _, third) = result.rejected_rows()
    assert "row 1 of" in first.message and str(a) in first.message
    assert third.source_uri == str(c) and "row 1 of " + str(a) in third.message


def test_conflicting_ids_reject_every_row_of_that_id(write, load):
    a = write("a.csv", "id,prompt\nk1,a fox\nk2,fine\nk1,a wolf\n")
    b = write("b.csv", "id,prompt,resolution\nk1,a fox,2K\n")
    result = load(a, b)
    assert result.accepted.column("prompt_id").to_pylist() == ["k2"]
    assert rejections(result) == [
        (1, None, "id", "duplicate_id_conflict"),
        (3, None, "id", "duplicate_id_conflict"),
        (1, None, "id", "duplicate_id_conflict"),
    ]
    message = result.rejected_rows()[0].message
    assert f"row 3 of {a}" in message and f"row 1 of {b}" in message and "own id" in message


def test_rejected_rows_do_not_take_part_in_duplicate_checks(write, load):
    result = load(write("a.csv", "id,prompt,aspect_ratio\nk1,bad,17:9\nk1,good,1:1\n"))
    assert result.accepted.column("prompt_id").to_pylist() == ["k1"]
    assert rejections(result) == [(1, None, "aspect_ratio", "aspect_ratio_unknown")]
    assert result.rejected_rows()[0].prompt_id == "k1"


def test_encoding_errors_reject_only_their_rows(write, load):
    path = write("enc.csv", b"prompt,note\nfine,ok\nbad \xff\xfe,ok\ncaf\xc3\xa9,also \xe9 latin1\nlast,ok\n")
    result = load(path)
    assert [r["prompt"] for r in result.accepted.to_pylist()] == ["fine", "last"]
    assert rejections(result) == [(2, None, "prompt", "encoding_invalid"), (3, None, "note", "encoding_invalid")]
    assert "UTF-8" in result.rejected_rows()[0].message


def test_encoding_errors_in_a_large_file_are_found_by_bisection(write, load):
    rows = [f"prompt {i}".encode() for i in range(20_000)]
    for i in (0, 777, 12_345, 19_999):
        rows[i] = b"latin1 caf\xe9 " + str(i).encode()
    result = load(write("big.csv", b"prompt\n" + b"\n".join(rows) + b"\n"))
    assert [r[0] for r in rejections(result)] == [1, 778, 12_346, 20_000]
    assert result.accepted.num_rows == 19_996


def test_malformed_csv_rows_are_rejected_and_numbering_stays_right(write, load):
    path = write("m.csv", 'prompt,aspect_ratio\nfirst,1:1\n"multi\nline",1:1\ntoo,many,fields\nlast,16:9\n')
    result = load(path)
    assert rejections(result) == [(3, None, None, "row_malformed")]
    assert "3 fields" in result.rejected_rows()[0].message and "2" in result.rejected_rows()[0].message
    assert {n: r["prompt"] for n, r in by_row(result).items()} == {1: "first", 2: "multi\nline", 4: "last"}
    assert result.sources[0].rows_read == 4 and result.sources[0].rejected == 1


def test_every_code_is_documented():
    emitted = {
        "unreadable_file",
        "format_unknown",
        "prompt_column_missing",
        "prompt_not_text",
        "row_malformed",
        "encoding_invalid",
        "id_invalid",
        "prompt_empty",
        "prompt_too_long",
        "provider_unknown",
        "aspect_ratio_unknown",
        "aspect_ratio_unsupported",
        "resolution_unknown",
        "output_format_unknown",
        "output_format_unsupported",
        "too_many_references",
        "reference_url_scheme",
        "reference_outside_roots",
        "reference_unreadable",
        "reference_too_large",
        "reference_not_image",
        "reference_needs_url",
        "duplicate_row",
        "duplicate_id_conflict",
    }
    assert emitted <= set(REJECTION_CODES)


def test_describe_lines_name_file_row_column_and_scope(write, load):
    path = write("d.csv", table("a,auto,,,"))
    (row,) = load(path).rejected_rows()
    expected = f"{path}, row 1, column 'aspect_ratio': aspect_ratio_unsupported (for odirouter only): "
    assert row.describe().startswith(expected)


def test_vectorized_smoke_50k_rows(tmp_path, load):
    n = 50_000
    prompts = [f"prompt number {i}" if i % 50 else "" for i in range(n)]
    aspect = ["16:9" if i % 3 else "auto" for i in range(n)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"prompt": prompts, "aspect_ratio": aspect, "batch": [str(i % 7) for i in range(n)]}), path)
    result = load(path)
    empty = n // 50
    assert result.rows_read == n and result.accepted.num_rows == n - empty
    by_reason = result.rejected_by_reason()
    assert by_reason["prompt_empty"] == empty
    assert by_reason["aspect_ratio_unsupported"] == sum(1 for i in range(n) if i % 3 == 0 and i % 50)
    assert result.eligible_counts["rivya"] == n - empty
    assert len(set(result.accepted.column("prompt_id").to_pylist())) == n - empty
