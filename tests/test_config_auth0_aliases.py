"""The reference gateway's GATEWAY_AUTH0_* names are aliases of our AUTH0_* settings (issue 15)."""

from __future__ import annotations

import pytest

from gateway.config import AGREEING_ALIASES, ENV_ALIASES, ConfigError, load_config
from tests.test_config_cli import run_gateway

ALIASES = {
    "GATEWAY_AUTH0_DOMAIN": ("auth0_domain", "acme.eu.auth0.com"),
    "GATEWAY_AUTH0_CLIENT_ID": ("auth0_client_id", "Jqop7YoaiZalLHdBRo5ScNQ1RJhbhbDN"),
    "GATEWAY_AUTH0_REDIRECT_URI": ("auth0_redirect_uri", "https://travel.example.com/login"),
    "GATEWAY_AUTH0_AUDIENCE": ("auth0_audience", "https://api.example.com"),
}


def test_every_reference_name_is_an_alias_that_must_agree() -> None:
    assert {alias: field for alias, (field, _) in ALIASES.items()} == {a: ENV_ALIASES[a] for a in ALIASES}
    assert set(ALIASES) == AGREEING_ALIASES


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_sets_its_variable(alias: str) -> None:
    field, value = ALIASES[alias]
    assert getattr(load_config({}), field) is None
    assert getattr(load_config({alias: value}), field) == value
    assert getattr(load_config({alias: f"  {value} "}), field) == value  # trimmed, as the reference does


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_and_variable_with_the_same_value_are_accepted(alias: str) -> None:
    field, value = ALIASES[alias]
    assert getattr(load_config({alias: value, field.upper(): value}), field) == value


def test_an_empty_alias_counts_as_unset() -> None:
    """The reference chart renders unset values as "": that must neither win nor conflict."""
    config = load_config({"GATEWAY_AUTH0_DOMAIN": "", "AUTH0_DOMAIN": "acme.eu.auth0.com"})
    assert config.auth0_domain == "acme.eu.auth0.com"
    assert load_config({"GATEWAY_AUTH0_AUDIENCE": "  "}).auth0_audience is None
    # An empty variable and a set alias: the alias is the one value given.
    assert load_config({"AUTH0_DOMAIN": "", "GATEWAY_AUTH0_DOMAIN": "acme.eu.auth0.com"}).auth0_domain == (
        "acme.eu.auth0.com"
    )


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_and_variable_that_disagree_stop_the_start(alias: str) -> None:
    field, value = ALIASES[alias]
    with pytest.raises(ConfigError) as err:
        load_config({alias: value, field.upper(): value + "x"})
    assert str(err.value) == f"{alias} and {field.upper()} are both set, to different values: set only one of them"


def test_conflict_is_one_line_and_exit_2() -> None:
    result = run_gateway({"GATEWAY_AUTH0_DOMAIN": "a.auth0.com", "AUTH0_DOMAIN": "b.auth0.com"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "GATEWAY_AUTH0_DOMAIN and AUTH0_DOMAIN" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_the_alias_configures_exactly_what_its_variable_does() -> None:
    """Same meaning, so GATEWAY_AUTH0_DOMAIN also turns on token verification at login (docs/compatibility.md)."""
    via_alias = load_config({name: value for name, (_, value) in ALIASES.items()})
    direct = load_config({field.upper(): value for field, value in ALIASES.values()})
    assert via_alias == direct
