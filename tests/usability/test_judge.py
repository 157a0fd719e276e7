"""The verdict on a cell's paid images: blank before anything else, a copy of its own reference, a
near-duplicate of an earlier paid image (the first of a pair stays usable), else usable; the sandbox's
own distinct pictures are never taken for duplicates of each other."""

from __future__ import annotations

import io
import itertools
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.usability import ImageSignals, Usability, measure_image
from nbpro_pipeline.usability.judge import CellJudge
from tests.usability.test_signals import encoded, sandbox_image

RULES = EngineSettings().usability_rules()


def signals_of(prompt: str, **kw) -> ImageSignals:
    return measure_image(io.BytesIO(sandbox_image(prompt, **kw)))


def fresh(earlier=()) -> CellJudge:
    return CellJudge(RULES, lambda: list(earlier))


def test_a_flat_image_is_blank_and_never_a_duplicate():
    flat = measure_image(io.BytesIO(encoded(Image.new("RGB", (1024, 1024), "white"), "PNG")))
    judge = fresh()
    assert [judge.judge(f"t{i}", flat).usability for i in range(2)] == [Usability.BLANK, Usability.BLANK]


def test_the_second_paid_copy_is_the_duplicate_of_the_first():
    judge = fresh()
    kite = signals_of("a red kite")
    copy = measure_image(
        io.BytesIO(encoded(Image.open(io.BytesIO(sandbox_image("a red kite"))).convert("RGB"), "JPEG"))
    )
    assert judge.judge("t1", kite).usability is Usability.USABLE
    second = judge.judge("t2", copy)
    assert (second.usability, second.duplicate_of) == (Usability.DUPLICATE, "t1")
    assert second.distance is not None and second.distance <= RULES.duplicate_max_distance


def test_earlier_runs_images_count_and_are_read_once():
    reads = []

    def earlier():
        reads.append(1)
        return [("old-task", signals_of("a red kite"))]

    judge = CellJudge(RULES, earlier)
    assert judge.judge("t1", signals_of("a red kite")).duplicate_of == "old-task"
    assert judge.judge("t2", signals_of("a blue boat")).usability is Usability.USABLE
    assert reads == [1]


def test_a_copy_of_its_own_reference_is_a_reference_copy():
    reference = signals_of("the reference photo")
    seen = fresh().judge("t1", signals_of("the reference photo"), [("reference:abc", reference)])
    assert (seen.usability, seen.duplicate_of) == (Usability.REFERENCE_COPY, "reference:abc")


def test_the_sandboxs_distinct_pictures_are_not_duplicates_of_each_other():
    """Same layouts in other colours: the hash alone would pair many of them (docs/usability.md)."""
    pictures = [signals_of(f"prompt {i}", aspect=a) for a in ("1:1", "16:9") for i in range(60)]
    judge = fresh()
    pairs = [(a, b) for a, b in itertools.combinations(pictures, 2) if judge.near(a, b) is not None]
    assert pairs == []
    assert all(judge.judge(str(i), s).usability is Usability.USABLE for i, s in enumerate(pictures))


@settings(max_examples=25, deadline=None)
@given(copies=st.integers(2, 8), others=st.integers(0, 4), seed=st.randoms(use_true_random=False))
def test_of_copies_judged_at_once_exactly_one_is_usable(copies, others, seed):
    """However the placing threads interleave, the first judged copy is the original and the others
    point at it; distinct images stay usable."""
    kite = signals_of("a red kite")
    work = [(f"copy{i}", kite) for i in range(copies)] + [
        (f"other{i}", signals_of(f"other {i}")) for i in range(others)
    ]
    seed.shuffle(work)
    judge = fresh()
    with ThreadPoolExecutor(4) as pool:
        verdicts = dict(zip([k for k, _ in work], pool.map(lambda kv: judge.judge(*kv), work), strict=True))
    usable = [k for k, v in verdicts.items() if k.startswith("copy") and v.usability is Usability.USABLE]
    assert len(usable) == 1
    assert all(verdicts[f"copy{i}"].duplicate_of in (None, usable[0]) for i in range(copies))
    assert all(verdicts[f"other{i}"].usability is Usability.USABLE for i in range(others))
