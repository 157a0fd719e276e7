"""The tolerant reading helpers, over randomised plausible answers: wherever a plausible answer puts the
image, in whatever spelling it names the state or writes a number, the reading finds it; what is not
an image (our own request echoed back, links to follow, text parts) is never taken for one."""

from __future__ import annotations

import base64
import string
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.providers.reading import (
    DataUriTooLarge,
    decode_data_uri,
    final_image,
    find_images,
    find_served_model,
    find_task_id,
    find_urls,
    read_decimal,
    read_int,
    read_model_id,
    read_state,
    safe_task_id,
)

IMAGE = "https://cdn.example/out/abc123.png?sig=x"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40
DATA = "data:image/png;base64," + base64.b64encode(PNG).decode()
WORDS = {
    TaskState.QUEUED: ["queued", "pending", "waiting", "IN_QUEUE", "in-queue", "Submitted"],
    TaskState.RUNNING: ["processing", "running", "in_progress", "IN_PROGRESS", "Started", "in progress"],
    TaskState.SUCCEEDED: ["succeeded", "completed", "COMPLETED", "success", "done", "Finished"],
    TaskState.FAILED: ["failed", "error", "FAILED", "failure", "cancelled", "canceled", "CANCELED"],
}


def casings(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.lower(), word.title(), f"  {word} "])


@given(
    st.sampled_from([(s, w) for s, ws in WORDS.items() for w in ws]).flatmap(
        lambda p: casings(p[1]).map(lambda c: (p[0], c))
    )
)
def test_state_words_in_any_casing_and_synonym(pair):
    state, word = pair
    assert read_state(word) is state


@given(st.text(alphabet=string.ascii_letters + "_ -", min_size=1, max_size=20))
def test_any_other_word_is_unknown_never_terminal(word):
    state = read_state(word)
    assert state in WORDS or state is TaskState.UNKNOWN
    if state is TaskState.UNKNOWN:
        assert not state.terminal


def image_ref(url: str) -> st.SearchStrategy:
    """The ways a plausible answer names one image."""
    return st.sampled_from(
        [
            url,
            {"url": url},
            {"url": url, "content_type": "image/png", "width": "1024", "height": 1024},
            {"uri": url},
            {"image_url": url},
            {"type": "image", "url": url, "file_size": "123"},
            {"href": url},
            {"signed_url": url},
        ]
    )


def wrapped(inner) -> st.SearchStrategy:
    """``inner`` (an image or a list of them) under the keys and envelopes answers use."""
    keys = ["images", "image", "outputs", "output", "result", "results", "urls", "data", "artifacts", "files"]
    return st.recursive(
        st.just(inner),
        lambda children: st.one_of(
            st.builds(lambda k, c: {k: c}, st.sampled_from(keys), children),
            st.builds(lambda c: [c], children),
            st.builds(lambda k, c: {k: c, "request_id": "r1", "status": "COMPLETED"}, st.sampled_from(keys), children),
        ),
        max_leaves=4,
    )


NOISE = {
    "status_url": "https://api.example/requests/r1/status",
    "response_url": "https://api.example/requests/r1/response",
    "input": {"image_urls": ["https://refs.example/mine.png"], "prompt": "a cat https://x.example/y.png"},
    "thumbnail_url": "https://cdn.example/thumb.png",
    "outputs_text": [{"type": "text", "text": "see https://cdn.example/other.png"}],
}


@given(st.sampled_from([IMAGE, DATA]).flatmap(image_ref).flatmap(wrapped), st.booleans())
def test_the_image_is_found_wherever_a_plausible_answer_puts_it(body, noisy):
    if noisy:
        body = {"result": body, **NOISE} if not isinstance(body, dict) else {**NOISE, **body}
    found = find_images(body)
    assert [i.url for i in found] in ([IMAGE], [DATA])


def test_nothing_that_is_not_an_output_image_is_taken_for_one():
    assert find_images(NOISE) == []
    assert find_images({"outputs": [{"type": "text", "text": IMAGE}]}) == []
    assert find_images({"id": "t1", "status": "done", "url": "https://app.example/tasks/t1"}) == []


def test_documented_paths_come_first_and_the_primary_is_final():
    body = {"result": {"primary_url": IMAGE, "urls": ["https://cdn.example/draft.png", IMAGE]}}
    images = find_images(body, [("result", "primary_url"), ("result", "urls")])
    assert [i.url for i in images] == [IMAGE]
    several = find_images({"images": [{"url": "https://cdn.example/a.png"}, {"url": IMAGE}]})
    assert several[final_image(several)].url == IMAGE  # no mark: the last one


@given(st.sampled_from(["b64_json", "base64", "image_base64"]))
def test_bare_base64_fields_become_data_uris(key):
    (image,) = find_images({"data": [{key: base64.b64encode(PNG).decode()}]})
    assert decode_data_uri(image.url, 1 << 20)[0] == PNG


def test_a_data_uri_over_the_cap_is_refused_before_decoding():
    big = "data:image/png;base64," + "A" * 4_000_000
    with pytest.raises(DataUriTooLarge):
        decode_data_uri(big, 1_000_000)
    assert decode_data_uri(DATA, 1_000_000) == (PNG, "image/png")


@given(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False))
def test_numbers_as_numbers_or_text_read_alike(value):
    for form in (value, str(value), f"{value:.2f}", float(value)):
        assert read_decimal(form) == pytest.approx(value)


@pytest.mark.parametrize("value", [None, True, "eight", "NaN", "inf", [], {"v": 1}, float("nan")])
def test_what_is_not_a_number_is_no_amount(value):
    assert read_decimal(value) is None


def test_whole_numbers_are_bounded():
    assert read_int("8.00") == 8 and read_int(8.5) is None and read_int(10**30) is None


@given(
    st.sampled_from(["id", "task_id", "taskId", "request_id", "requestId", "generation_id"]),
    st.sampled_from([None, "data", "task", "generation"]),
)
def test_the_task_id_under_any_usual_key_or_envelope(key, envelope):
    body = {key: "gen_123", "status": "queued"}
    assert find_task_id({envelope: body} if envelope else body) == "gen_123"


@pytest.mark.parametrize("task_id", ["../etc/passwd", "a/b", "..", ".", "has space", "", "x" * 300, "é"])
def test_ids_that_cannot_go_into_a_path_are_refused(task_id):
    assert not safe_task_id(task_id)


def test_returned_urls_and_location():
    urls = find_urls({"status_url": "https://q/s", "response_url": "https://q/r", "cancel_url": 5})
    assert (urls.status, urls.response, urls.cancel) == ("https://q/s", "https://q/r", None)
    assert find_urls({}, "/api/v1/tasks/t1").status == "/api/v1/tasks/t1"
    assert read_decimal("$0.15") == Decimal("0.15")


@pytest.mark.parametrize(
    ("body", "containers", "model_id", "version"),
    [
        ({"id": "t", "status": "succeeded", "model": "nano-banana-pro"}, (), "nano-banana-pro", None),
        ({"modelId": "google/gemini-3-pro-image", "model_version": "001"}, (), "google/gemini-3-pro-image", "001"),
        ({"model": {"id": "fal-ai/nano-banana-pro", "version": "2025-11"}}, (), "fal-ai/nano-banana-pro", "2025-11"),
        (
            {"outputs": [], "metadata": {"model": "nano_banana_pro", "version": "v2"}},
            ("metadata",),
            "nano_banana_pro",
            "v2",
        ),
        ({"model": "a", "metadata": {"model": "b"}}, ("metadata",), "a", None),  # the body's own word first
        ({"status": "ok", "version": "2024-01-01"}, (), None, None),  # a bare version there is the API's
        ({"model": ""}, (), None, None),
        ("not an object", ("metadata",), None, None),
    ],
)
def test_the_served_model_wherever_an_answer_names_it(body, containers, model_id, version):
    served = find_served_model(body, containers)
    assert (served.model_id, served.version) == (model_id, version)


@pytest.mark.parametrize(
    "value",
    ["", " ", "x" * 129, "nano banana", "a\nb", "<script>", "../../etc", "-leading", "\u202enano", None, {}, True],
)
def test_a_model_id_that_is_not_one_is_not_believed(value):
    assert read_model_id(value) is None
    assert find_served_model({"model": value}).model_id is None


def test_model_ids_are_kept_as_stated_within_bounds():
    assert read_model_id(" gemini-3-pro-image-preview@001 ") == "gemini-3-pro-image-preview@001"
    assert read_model_id(3) == "3" and read_model_id("x" * 128) == "x" * 128
