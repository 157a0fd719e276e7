"""Provider limits from the environment: how a deployment (Kubernetes env, Dagster+ variables, the
Dockerfile's image) sets max_in_flight / requests_per_s / burst without touching run config."""

import pytest

from assets_defs.definitions import build_resources
from assets_defs.resources import OdiRouterResource


def test_limits_come_from_env_per_provider(monkeypatch):
    monkeypatch.setenv("NBPRO_RIVYA_MAX_IN_FLIGHT", "8")
    monkeypatch.setenv("NBPRO_RIVYA_REQUESTS_PER_S", "2.5")
    monkeypatch.setenv("NBPRO_ODIROUTER_BURST", "3")
    resources = build_resources()
    rivya, odirouter = resources["rivya"], resources["odirouter"]
    assert (rivya.max_in_flight, rivya.requests_per_s) == (8, 2.5)
    assert rivya.engine_settings().max_in_flight == 8
    assert odirouter.burst == 3
    defaults = OdiRouterResource(api_key="unused")
    assert (odirouter.max_in_flight, odirouter.requests_per_s) == (defaults.max_in_flight, defaults.requests_per_s)


def test_bad_limit_names_the_variable(monkeypatch):
    monkeypatch.setenv("NBPRO_ODIROUTER_MAX_IN_FLIGHT", "lots")
    with pytest.raises(ValueError, match="NBPRO_ODIROUTER_MAX_IN_FLIGHT='lots' is not an integer"):
        build_resources()


def test_admission_settings_come_from_env_too(monkeypatch):
    monkeypatch.setenv("NBPRO_ODIROUTER_ADMISSION_KIND", "reject")
    monkeypatch.setenv("NBPRO_ODIROUTER_MAX_HELD", "40")
    resources = build_resources()
    odi = resources["odirouter"].engine_settings()
    assert (odi.admission_kind, odi.max_held) == ("reject", 40)
    rivya = resources["rivya"].engine_settings()
    assert (rivya.admission_kind, rivya.max_held) == (None, None)  # the other provider's variables only
