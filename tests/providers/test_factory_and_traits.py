"""One client factory (every client rate limited) and one place per provider for its limits: its
traits in the registry, which validation and the clients' local request check both read."""

from __future__ import annotations

from nbpro_pipeline.models.common import AspectRatio, OutputFormat
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.prompts import load_prompt_tables
from nbpro_pipeline.providers import PROVIDERS, OdiRouterClient, RivyaClient, TokenBucket
from nbpro_pipeline.providers.factory import ClientSpec, make_client
from nbpro_pipeline.providers.registry import Provider


def limits(provider: Provider):
    return PROVIDERS.traits(provider).limits


async def test_the_factory_builds_each_provider_with_its_rate_limiter():
    for provider, cls in ((Provider.RIVYA, RivyaClient), (Provider.ODIROUTER, OdiRouterClient)):
        spec = ClientSpec(
            provider=provider, base_url="http://127.0.0.1:9", api_key="sk_secret_42", requests_per_s=5, burst=3
        )
        async with make_client(spec) as client:
            assert type(client) is cls and client.traits.name == provider
            assert isinstance(client.limiter, TokenBucket)
            assert client.traits is PROVIDERS.traits(provider)
        assert "sk_secret_42" not in repr(spec)


def test_validation_and_the_request_check_read_the_providers_traits(monkeypatch, tmp_path):
    """Tighten a limit in a provider's traits: prompt validation and the local request check both follow."""
    entry = PROVIDERS[Provider.ODIROUTER]
    tight = entry.traits.model_copy(update={"limits": entry.traits.limits.model_copy(update={"max_prompt_chars": 10})})
    monkeypatch.setitem(PROVIDERS._entries, Provider.ODIROUTER.value, entry.model_copy(update={"traits": tight}))
    request = GenerationRequest(prompt="a prompt of 25 characters")
    assert [p.code for p in request.problems_for(Provider.ODIROUTER, limits(Provider.ODIROUTER))] == ["prompt_too_long"]
    assert request.problems_for(Provider.RIVYA, limits(Provider.RIVYA)) == []
    table = tmp_path / "prompts.csv"
    table.write_text("id,prompt\na,a prompt of 25 characters\n")
    result = load_prompt_tables([str(table)])
    accepted = result.accepted.to_pylist()
    assert accepted and accepted[0]["eligible_providers"] == [Provider.RIVYA.value]
    assert "at most 10" in " ".join(result.rejected["message"].to_pylist())


def test_the_traits_say_what_each_provider_accepts():
    auto = GenerationRequest(prompt="p", aspect_ratio=AspectRatio.AUTO, output_format=OutputFormat.JPG)
    assert {p.code for p in auto.problems_for(Provider.ODIROUTER, limits(Provider.ODIROUTER))} == {
        "aspect_ratio_unsupported",
        "output_format_unsupported",
    }
    assert auto.problems_for(Provider.RIVYA, limits(Provider.RIVYA)) == []
