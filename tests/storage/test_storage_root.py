"""Paths built from table values never leave the storage root, end to end: a cell run through the engine
with hostile prompt ids (``../``, absolute paths, NUL, backslashes, very long ids, unicode) writes its
images, quarantined images, journal and ledger under the root only, each id to its own file, and keeps
the original id as data (ledger, lineage) rather than as a path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbpro_pipeline.image_files import read_lineage
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.engine.conftest import Harness, prompt_row
from tests.storage.test_filesystem import NASTY_IDS

TABLE_IDS = [i for i in NASTY_IDS if not any(0xD800 <= ord(c) <= 0xDFFF for c in i)] + [
    "../../../../../../../../tmp/nbpro-escape",
    "~/escape",
    "%2e%2e%2f%2e%2e%2fescape",
    "C:\\Windows\\system32\\x",
    "a\nb\rc\td",
    "\u202egnp.exe",  # right-to-left override
    "images/../../ledger/provider=rivya",
    "z" * 300 + "/../..",
]


def _files(top: Path) -> set[Path]:
    return {Path(d, f) for d, _, fs in os.walk(top) for f in fs}


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
async def test_hostile_prompt_ids_write_only_under_the_storage_root(
    sandbox, tmp_path, provider, rivya_key, odirouter_key
):
    # deep enough that any '../' run an id could smuggle in would still land inside tmp_path, where it is seen
    root = tmp_path.joinpath(*"abcdef", "store")
    harness = Harness(sandbox, Storage(root), {Provider.RIVYA: rivya_key, Provider.ODIROUTER: odirouter_key})
    harness.configure(provider, faults={"wrong_size": 0.3})  # some land in quarantine: that path too
    rows = [prompt_row(pid, f"hostile id number {i}", row_number=i + 1) for i, pid in enumerate(TABLE_IDS)]
    before = _files(tmp_path)

    report = await harness.run(provider, rows, resolution=Resolution.R1K)

    assert report.succeeded + report.failed == len(rows)
    assert report.failures_by_reason.keys() <= {"size_mismatch"}
    written = _files(tmp_path) - before
    sandbox_state = Path(harness.sandbox.state_dir)
    outside = [p for p in written if not (p.is_relative_to(root) or p.is_relative_to(sandbox_state))]
    assert outside == []
    real_root = os.path.realpath(root)
    ledger = harness.rows(provider)
    assert sorted(r["prompt_id"] for r in ledger) == sorted(TABLE_IDS)  # the ids kept verbatim, as data
    images = [r["image_uri"] for r in ledger]
    assert len(set(images)) == len(rows)  # ids that sanitise alike still get files of their own
    for row, uri in zip(ledger, images, strict=True):
        assert os.path.realpath(uri) == uri and uri.startswith(real_root + os.sep)
        rel = Path(uri).relative_to(real_root).parts
        assert rel[0] in ("images", "quarantine") and len(rel) == 4 and len(rel[3].encode()) <= 255
        assert read_lineage(uri).prompt_id == row["prompt_id"]
    for p in _files(root):
        assert os.path.realpath(p).startswith(real_root + os.sep)
    # the absolute targets some ids name were not touched either
    stray = [*Path("/etc").glob("passwd*.png"), *Path("/tmp").glob("nbpro-escape*"), *Path.home().glob("escape*")]
    assert stray == []
