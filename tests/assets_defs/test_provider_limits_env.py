"""Run settings from the environment: how a deployment (Kubernetes env, Dagster+ variables, the
Dockerfile's image) sets max_in_flight / requests_per_s / burst without touching run config, per provider
(``NBPRO_<PROVIDER>_<SETTING>``) or for all (``NBPRO_<SETTING>``)."""

import pytest

from assets_defs.definitions import build_resources
from nbpro_pipeline.engine import EngineSettings


def test_limits_come_from_env_per_provider(monkeypatch):
    monkeypatch.setenv("NBPRO_RIVYA_MAX_IN_FLIGHT", "8")
    monkeypatch.setenv("NBPRO_RIVYA_REQUESTS_PER_S", "2.5")
    monkeypatch.setenv("NBPRO_ODIROUTER_BURST", "3")
    monkeypatch.setenv("NBPRO_POLL_FIRST_DELAY_S", "0.5")  # every provider's
    resources = build_resources()
    rivya, odirouter = resources["rivya"].engine_settings(), resources["odirouter"].engine_settings()
    assert (rivya.max_in_flight, rivya.requests_per_s) == (8, 2.5)
    assert odirouter.burst == 3
    assert rivya.poll_first_delay_s == odirouter.poll_first_delay_s == 0.5
    defaults = EngineSettings()
    assert (odirouter.max_in_flight, odirouter.requests_per_s) == (defaults.max_in_flight, defaults.requests_per_s)
    assert resources["rivya"].run.max_in_flight == 8  # shown in the launchpad as the resource's config


def test_bad_limit_names_the_variable(monkeypatch):
    monkeypatch.setenv("NBPRO_ODIROUTER_MAX_IN_FLIGHT", "lots")
    with pytest.raises(ValueError, match="NBPRO_ODIROUTER_MAX_IN_FLIGHT: Input should be a valid integer"):
        build_resources()


def test_admission_settings_come_from_env_too(monkeypatch):
    monkeypatch.setenv("NBPRO_ODIROUTER_ADMISSION_KIND", "reject")
    monkeypatch.setenv("NBPRO_ODIROUTER_MAX_HELD", "40")
    resources = build_resources()
    odi = resources["odirouter"].engine_settings()
    assert (odi.admission_kind, odi.max_held) == ("reject", 40)
    rivya = resources["rivya"].engine_settings()
    assert (rivya.admission_kind, rivya.max_held) == (None, None)  # the other provider's variables only


def test_every_run_setting_is_a_resource_field_a_flag_and_a_variable():
    """Declared once (EngineSettings), derived three times: the launchpad, run-cell and the environment."""
    from click.testing import CliRunner

    from assets_defs.resources import RunSettings
    from nbpro_pipeline.cli import main

    names = [t.name for t in EngineSettings.tunables()]
    assert set(names) <= set(RunSettings.model_fields)
    help_text = CliRunner().invoke(main, ["run-cell", "--help"], terminal_width=200).output
    assert all("--" + n.replace("_", "-") in help_text for n in names)
    found = EngineSettings.env_values("RIVYA", {f"NBPRO_RIVYA_{n.upper()}": "1" for n in names})
    assert set(found) == set(names)
