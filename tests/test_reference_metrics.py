"""The reference gateway's metric names (noetl_gateway_*): present from the start, counting the same decisions."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.reference_metrics import AUTHZ_OUTCOMES, LOGIN_OUTCOMES, SESSION_CHECK_OUTCOMES
from gateway.version import __version__
from tests.conftest import GatewayFactory, Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.live import services_of
from tests.support.nats_server import NatsServer
from tests.support.signin import bearer, login, seed_session
from tests.support.waiting import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def samples(client: aiohttp.ClientSession, gw: GatewayInstance) -> Samples:
    """Every sample on /metrics, by name and sorted labels."""
    status, text, _ = await call(client, "GET", f"{gw.url}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(str(text))
        for s in family.samples
    }


def outcome(name: str, value: str, label: str = "outcome") -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, ((label, value),))


@pytest.mark.gen_test
async def test_every_series_is_there_at_zero_before_any_traffic(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    seen = await samples(client, gateway)
    assert seen[("noetl_gateway_build_info", (("version", __version__),))] == 1
    assert seen[("noetl_gateway_auth_bypass_enabled", (("mode", "enforced"),))] == 0
    for name, values in [
        ("noetl_gateway_login_total", LOGIN_OUTCOMES),
        ("noetl_gateway_session_check_total", SESSION_CHECK_OUTCOMES),
        ("noetl_gateway_authz_total", AUTHZ_OUTCOMES),
    ]:
        for value in values:
            assert seen[outcome(name, value)] == 0, (name, value)
    for stage in ("after_login", "after_api_validate"):
        assert seen[outcome("noetl_gateway_session_cache_failed_total", stage, "stage")] == 0
    assert seen[("noetl_gateway_callback_undelivered_total", ())] == 0


@pytest.mark.gen_test
async def test_session_checks_are_counted_by_outcome(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    token = await login(client, gateway)
    url = f"{gateway.url}/noetl/executions"
    assert (await call(client, "GET", url))[0] == 401
    assert (await call(client, "GET", url, headers=bearer("not a token")))[0] == 401
    assert (await call(client, "GET", url, headers=bearer("unknown-session-token-0123456789abcdef")))[0] == 401
    assert (await call(client, "GET", url, headers=bearer(token)))[0] == 200
    standin.state.validate_failure = "db_down"
    assert (await call(client, "GET", url, headers=bearer("another-unknown-token-0123456789abcdef")))[0] == 503

    seen = await samples(client, gateway)
    name = "noetl_gateway_session_check_total"
    assert seen[outcome(name, "missing_token")] == 1
    assert seen[outcome(name, "invalid_or_expired")] == 2
    assert seen[outcome(name, "ok")] == 1
    assert seen[outcome(name, "validation_error")] == 1
    assert seen[outcome(name, "bypass")] == 0


@pytest.mark.gen_test
async def test_authorization_decisions_are_counted_allowed_and_denied(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    member = await login(client, gateway, "member-metrics")
    assert (await call(client, "GET", f"{gateway.url}/noetl/credentials", headers=bearer(member)))[0] == 403
    assert (await call(client, "GET", f"{gateway.url}/noetl/executions", headers=bearer(member)))[0] == 200

    seen = await samples(client, gateway)
    assert seen[outcome("noetl_gateway_authz_total", "denied")] == 1
    assert seen[outcome("noetl_gateway_authz_total", "allowed")] == 1


@pytest.mark.gen_test
async def test_auth_bypass_is_a_gauge_at_one_and_its_checks_say_bypass(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_AUTH_BYPASS="true")
    assert (await call(client, "GET", f"{gw.url}/noetl/executions", headers=bearer("anything-at-all")))[0] == 200
    seen = await samples(client, gw)
    assert seen[("noetl_gateway_auth_bypass_enabled", (("mode", "bypass"),))] == 1
    assert seen[outcome("noetl_gateway_session_check_total", "bypass")] == 1


@pytest.mark.gen_test
async def test_logins_are_counted_by_outcome(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_FAIL_FAST_SECS="0.3")
    for auth0_token, expected in [("good-m", 200), ("reject-m", 401), ("error-m", 401), ("silent-m", 503)]:
        status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": auth0_token})
        assert status == expected, auth0_token
    seen = await samples(client, gw)
    assert seen[outcome("noetl_gateway_login_total", "succeeded")] == 1
    assert seen[outcome("noetl_gateway_login_total", "not_authenticated")] == 2
    assert seen[outcome("noetl_gateway_login_total", "callback_failed")] == 1


@pytest.mark.gen_test(timeout=60)
async def test_sessions_not_written_to_nats_are_counted_by_stage(
    make_gateway: GatewayFactory, own_nats: NatsServer, standin: Standin, client: aiohttp.ClientSession
) -> None:
    seed_session(standin, "tok-validated-during-outage")
    gw = await make_gateway(NATS_URL=own_nats.url)
    await login(client, gw, "good-cached")  # NATS up: cached for every replica, nothing counted
    await asyncio.get_running_loop().run_in_executor(None, own_nats.stop)
    await wait_for(lambda: not services_of(gw).nats.connected, timeout=10)
    await login(client, gw, "good-uncached")
    status, body, _ = await call(
        client, "POST", f"{gw.url}/api/auth/validate", {"session_token": "tok-validated-during-outage"}
    )
    assert status == 200 and body["valid"] is True, body
    seen = await samples(client, gw)
    stage = "noetl_gateway_session_cache_failed_total"
    assert seen[outcome(stage, "after_login", "stage")] == 1
    assert seen[outcome(stage, "after_api_validate", "stage")] == 1
