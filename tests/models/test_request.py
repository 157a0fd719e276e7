from nbpro_pipeline.models import GenerationRequest
from nbpro_pipeline.models.request import ReferenceImage
from nbpro_pipeline.providers.registry import PROVIDERS, Provider

RIVYA, ODI = Provider.RIVYA, Provider.ODIROUTER


def codes(req: GenerationRequest, provider: Provider) -> list[str]:
    return [p.code for p in req.problems_for(provider, PROVIDERS.traits(provider).limits)]


def uploaded(i: int) -> ReferenceImage:
    return ReferenceImage(url=f"https://cdn.example/{i}.png", file_id=f"file_{i}", sha256=f"{i:064x}")


def test_prompt_limits_differ_per_provider():
    at_odi_limit = GenerationRequest(prompt="x" * 2500)
    assert codes(at_odi_limit, ODI) == [] and codes(at_odi_limit, RIVYA) == []
    over_odi = GenerationRequest(prompt="x" * 2501)
    assert codes(over_odi, ODI) == ["prompt_too_long"] and codes(over_odi, RIVYA) == []
    assert codes(GenerationRequest(prompt="x" * 10000), RIVYA) == []
    too_long = GenerationRequest(prompt="x" * 10001).problems_for(RIVYA, PROVIDERS.traits(RIVYA).limits)
    assert [p.code for p in too_long] == ["prompt_too_long"]
    assert "10001" in too_long[0].message and "10000" in too_long[0].message and too_long[0].field == "prompt"


def test_blank_prompt_rejected_everywhere():
    for prompt in ("", "   \n"):
        assert codes(GenerationRequest(prompt=prompt), RIVYA) == ["prompt_empty"]
        assert codes(GenerationRequest(prompt=prompt), ODI) == ["prompt_empty"]


def test_auto_aspect_and_jpg_only_on_rivya():
    req = GenerationRequest(prompt="p", aspect_ratio="auto", output_format="jpg")
    assert codes(req, RIVYA) == []
    assert sorted(codes(req, ODI)) == ["aspect_ratio_unsupported", "output_format_unsupported"]


def test_reference_counts_8_vs_14_and_rivya_needs_uploads():
    nine = GenerationRequest(prompt="p", references=tuple(uploaded(i) for i in range(9)))
    assert codes(nine, RIVYA) == ["too_many_references"]
    assert codes(nine, ODI) == []
    fifteen = GenerationRequest(prompt="p", references=tuple(uploaded(i) for i in range(15)))
    assert codes(fifteen, ODI) == ["too_many_references"]
    public = GenerationRequest(prompt="p", references=(ReferenceImage(url="https://example.com/a.png"),))
    assert codes(public, RIVYA) == ["reference_not_uploaded"] and codes(public, ODI) == []
    local = GenerationRequest(prompt="p", references=(ReferenceImage(url="/etc/passwd"),))
    assert "reference_url_scheme" in codes(local, ODI)


def test_fingerprint_depends_on_what_is_billed_and_drawn():
    base = GenerationRequest(prompt="a red fox", resolution="2K")
    assert base.fingerprint(RIVYA) == GenerationRequest(prompt="a red fox", resolution="2K").fingerprint(RIVYA)
    assert base.fingerprint(RIVYA) != base.fingerprint(ODI)
    changes = ({"prompt": "a red fox."}, {"resolution": "4K"}, {"aspect_ratio": "16:9"}, {"output_format": "jpg"})
    for change in changes:
        changed = GenerationRequest(**{**base.model_dump(), **change})
        assert changed.fingerprint(RIVYA) != base.fingerprint(RIVYA), change


def test_fingerprint_uses_reference_content_not_upload_url():
    a = ReferenceImage(url="https://cdn/1", sha256="ab" * 32, file_id="file_1")
    b = ReferenceImage(url="https://cdn/2", sha256="ab" * 32, file_id="file_2")
    assert GenerationRequest(prompt="p", references=(a,)).fingerprint(RIVYA) == GenerationRequest(
        prompt="p", references=(b,)
    ).fingerprint(RIVYA)
