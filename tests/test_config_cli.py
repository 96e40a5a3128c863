"""Configuration: env + optional file, validated once; a bad value is one clear line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, env_names, load_config


def run_gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ROUTER_PORT": "eighty"}, "ROUTER_PORT"),
        ({"GATEWAY_PORT": "-1"}, "ROUTER_PORT"),
        ({"GATEWAY_CALLBACK_AUTH": "sometimes"}, "GATEWAY_CALLBACK_AUTH"),
        ({"GATEWAY_CALLBACK_SECRET": "only-31-bytes-long-secret-value"}, "GATEWAY_CALLBACK_SECRET"),
        ({"NATS_SESSION_CACHE_TTL_SECS": "0"}, "NATS_SESSION_CACHE_TTL_SECS"),
        ({"GATEWAY_CONFIG": "/nonexistent/gateway.toml"}, "GATEWAY_CONFIG"),
        ({"GATEWAY_AUDIT_LOG": "/nonexistent/dir/audit.jsonl"}, "GATEWAY_AUDIT_LOG"),
        # Auth bypass is one variable away from production: only a loopback-only bind may have it.
        ({"GATEWAY_AUTH_BYPASS": "true", "GATEWAY_BIND": ""}, "GATEWAY_AUTH_BYPASS"),
        ({"GATEWAY_AUTH_BYPASS": "true", "GATEWAY_BIND": "0.0.0.0"}, "GATEWAY_AUTH_BYPASS"),
        ({"GATEWAY_AUTH_BYPASS": "yes", "GATEWAY_BIND": "::"}, "GATEWAY_AUTH_BYPASS"),
        ({"GATEWAY_AUTH_BYPASS": "1", "GATEWAY_BIND": "10.1.2.3"}, "GATEWAY_AUTH_BYPASS"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(env: dict[str, str], variable: str) -> None:
    result = run_gateway(env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"GATEWAY_CALLBACK_SECRET": "s3cret", "NATS_PASSWORD": "pw", "ROUTER_PORT": "x"})
    assert "s3cret" not in str(err.value)


def test_help_lists_environment() -> None:
    result = run_gateway({}, "--help")
    assert result.returncode == 0
    assert "NOETL_BASE_URL" in result.stdout and "NATS_URL" in result.stdout


def test_port_already_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_gateway({"ROUTER_PORT": str(port), "GATEWAY_BIND": "127.0.0.1", "NATS_URL": ""})
    assert result.returncode == 2
    assert "ROUTER_PORT" in result.stderr and "Traceback" not in result.stderr


def test_file_then_env_precedence(tmp_path: Path) -> None:
    toml_file = tmp_path / "gateway.toml"
    toml_file.write_text(
        'router_port = 9100\nNOETL_BASE_URL = "http://noetl:8082/"\ncors_allowed_origins = "https://a,https://b"\n'
    )
    config = load_config({"GATEWAY_CONFIG": str(toml_file), "ROUTER_PORT": "9200"})
    assert config.router_port == 9200  # env wins
    assert config.noetl_base_url == "http://noetl:8082"
    assert config.cors_allowed_origins == ["https://a", "https://b"]
    yaml_file = tmp_path / "gateway.yaml"
    yaml_file.write_text("gateway_heartbeat_interval_secs: 5\nnats_url: ''\n")
    config = load_config({"GATEWAY_CONFIG": str(yaml_file)})
    assert config.gateway_heartbeat_interval_secs == 5 and not config.nats_enabled
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError, match="NO_SUCH_SETTING"):
        load_config({"GATEWAY_CONFIG": str(bad)})


def test_defaults_match_contract() -> None:
    config = load_config({})
    assert config.router_port == 8090
    assert config.noetl_base_url == "http://localhost:8082"
    assert config.nats_url == "nats://127.0.0.1:4222"
    assert config.public_url == "http://localhost:8090"
    assert config.gateway_callback_auth == "required"
    assert config.cors_allowed_origins == ["http://localhost:8080", "http://localhost:8090", "http://localhost:3000"]
    assert "GATEWAY_PORT" in env_names() and "AUTH0_DOMAIN" in env_names()


def test_auth_bypass_default_bind_and_cli_bind_are_refused() -> None:
    result = run_gateway({"GATEWAY_AUTH_BYPASS": "true", "GATEWAY_BIND": "127.0.0.1"}, "--bind", "0.0.0.0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "noetl-gateway: invalid configuration: GATEWAY_AUTH_BYPASS: auth bypass is refused unless GATEWAY_BIND "
        "is loopback only (127.0.0.1, ::1 or localhost); GATEWAY_BIND is '0.0.0.0' (got 'true')"
    )
    with pytest.raises(ConfigError, match="GATEWAY_AUTH_BYPASS"):
        load_config({"GATEWAY_AUTH_BYPASS": "true"})  # the default bind is every interface


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_auth_bypass_on_loopback_starts(bind: str) -> None:
    assert load_config({"GATEWAY_AUTH_BYPASS": "true", "GATEWAY_BIND": bind}).gateway_auth_bypass
    assert not load_config({"GATEWAY_BIND": "0.0.0.0"}).gateway_auth_bypass
