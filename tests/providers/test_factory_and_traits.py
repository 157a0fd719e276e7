"""One client factory (every client rate limited) and one limits table behind the traits."""

from __future__ import annotations

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Provider
from nbpro_pipeline.models.limits import PROVIDER_LIMITS
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.prompts import load_prompt_tables
from nbpro_pipeline.providers import OdiRouterClient, RivyaClient, TokenBucket
from nbpro_pipeline.providers.factory import ClientSpec, make_client


async def test_the_factory_builds_each_provider_with_its_rate_limiter():
    for provider, cls in ((Provider.RIVYA, RivyaClient), (Provider.ODIROUTER, OdiRouterClient)):
        spec = ClientSpec(
            provider=provider, base_url="http://127.0.0.1:9", api_key="sk_secret_42", requests_per_s=5, burst=3
        )
        async with make_client(spec) as client:
            assert type(client) is cls and client.traits.name == provider
            assert isinstance(client.limiter, TokenBucket)
            assert client.traits.limits is PROVIDER_LIMITS[provider]
        assert "sk_secret_42" not in repr(spec)


def test_validation_and_the_request_check_read_one_limits_table(monkeypatch, tmp_path):
    """Tighten a limit in the table: prompt validation and the clients' local check both follow it."""
    lim = PROVIDER_LIMITS[Provider.ODIROUTER]
    monkeypatch.setitem(PROVIDER_LIMITS, Provider.ODIROUTER, lim.model_copy(update={"max_prompt_chars": 10}))
    request = GenerationRequest(prompt="a prompt of 25 characters")
    assert [p.code for p in request.problems_for(Provider.ODIROUTER)] == ["prompt_too_long"]
    assert request.problems_for(Provider.RIVYA) == []
    table = tmp_path / "prompts.csv"
    table.write_text("id,prompt\na,a prompt of 25 characters\n")
    result = load_prompt_tables([str(table)])
    accepted = result.accepted.to_pylist()
    assert accepted and accepted[0]["eligible_rivya"] and not accepted[0]["eligible_odirouter"]
    assert "at most 10" in " ".join(result.rejected["message"].to_pylist())


def test_the_traits_say_what_each_provider_accepts():
    auto = GenerationRequest(prompt="p", aspect_ratio=AspectRatio.AUTO, output_format=OutputFormat.JPG)
    assert {p.code for p in auto.problems_for(Provider.ODIROUTER)} == {
        "aspect_ratio_unsupported",
        "output_format_unsupported",
    }
    assert auto.problems_for(Provider.RIVYA) == []
