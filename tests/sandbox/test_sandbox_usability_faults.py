"""The sandbox on demand returns blank images, one stock picture shared by its duplicates, and answers
with several images (drafts first, the final one last); billing is per task, whatever the answer holds."""

from __future__ import annotations

import hashlib

from tests.sandbox.conftest import configure, decode


def test_multi_image_answers_list_drafts_then_the_final_one(sandbox, rivya, odi, http):
    for provider in ("rivya", "odirouter"):
        configure(sandbox, provider, faults={"multi_image": 1.0, "multi_image_count": 3})
    task = rivya.generate("a kite")
    urls = task["result"]["urls"]
    assert len(urls) == 3 and task["result"]["primary_url"] == urls[-1]
    images = [http.get(u).content for u in urls]
    assert len({hashlib.sha256(i).digest() for i in images}) == 3
    assert all(decode(i).size == (1024, 1024) for i in images)
    result = odi.generate(prompt="a kite", resolution="1K")
    outputs = [o for o in result["outputs"] if o["type"] == "image"]
    assert len(outputs) == 3
    truth = {t["id"]: t for t in sandbox.tasks()}
    assert {t["images"] for t in truth.values()} == {3}
    final = http.get(outputs[-1]["url"]).content
    assert hashlib.sha256(final).hexdigest() == truth[result["request_id"]]["image_sha256"]
    assert sum(1 for e in sandbox.ledger("odirouter") if e["kind"] == "charge") == 1  # one task, one charge


def test_blank_and_duplicate_images_are_valid_flat_or_shared(sandbox, rivya, http):
    configure(sandbox, "rivya", faults={"blank_image": 1.0})
    blank = decode(http.get(rivya.generate("a kite")["result"]["primary_url"]).content).convert("RGB")
    assert blank.size == (1024, 1024) and len(blank.getcolors(4) or []) == 1
    configure(sandbox, "rivya", faults={"blank_image": 0.0, "duplicate_image": 1.0})
    one = http.get(rivya.generate("a kite")["result"]["primary_url"]).content
    two = http.get(rivya.generate("a boat")["result"]["primary_url"]).content
    assert one == two
    assert [(t["blank"], t["duplicate"]) for t in sandbox.tasks("rivya")] == [
        (True, False),
        (False, True),
        (False, True),
    ]
