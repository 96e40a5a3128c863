"""The shard map's configuration: ``[[noetl.shards]]`` (TOML), ``noetl: {shards}`` (YAML), ``NOETL_SHARDS``.

Checked at start: indexes 0..n-1 each once and http(s) URLs, else the process stops with one
line naming ``NOETL_SHARDS`` (exit 2), never a traceback and never a password from a URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config

TOML_SHARDS = """
[[noetl.shards]]
shard_index = 1
base_url = "http://noetl-server-1.noetl.svc:8082/"

[[noetl.shards]]
shard_index = 0
base_url = "http://noetl-server-0.noetl.svc:8082"
"""
YAML_SHARDS = """
noetl:
  shards:
    - {shard_index: 0, base_url: "http://noetl-server-0.noetl.svc:8082"}
    - {shard_index: 1, base_url: "https://noetl-server-1.noetl.svc"}
"""


def test_off_by_default() -> None:
    config = load_config({})
    assert config.noetl_shards is None and config.shard_urls == []
    assert config.noetl_default_url == config.noetl_base_url == "http://localhost:8082"


def test_toml_table_of_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(TOML_SHARDS)
    config = load_config({"GATEWAY_CONFIG": str(path)})
    assert config.shard_urls == [
        (0, "http://noetl-server-0.noetl.svc:8082"),
        (1, "http://noetl-server-1.noetl.svc:8082"),
    ]
    # No NOETL_BASE_URL given: calls that name no execution go to shard 0, not to localhost.
    assert config.noetl_default_url == "http://noetl-server-0.noetl.svc:8082"


def test_yaml_file_and_the_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML_SHARDS)
    assert load_config({"GATEWAY_CONFIG": str(path)}).shard_urls[1] == (1, "https://noetl-server-1.noetl.svc")
    config = load_config(
        {
            "GATEWAY_CONFIG": str(path),
            "NOETL_SHARDS": "0=http://a:8082 1=http://b:8082,2=http://c:8082",
            "NOETL_BASE_URL": "http://noetl-any:8082",
        }
    )
    assert config.shard_urls == [(0, "http://a:8082"), (1, "http://b:8082"), (2, "http://c:8082")]
    assert config.noetl_default_url == "http://noetl-any:8082"  # given explicitly: the reference's default


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0=http://a:8082,0=http://b:8082", "duplicate shard_index 0"),
        ("0=http://a:8082,2=http://b:8082", "shard_index 2 out of range"),
        ("1=http://a:8082", "shard_index 1 out of range"),
        ("http://a:8082", "each entry must be INDEX=URL"),
        ("-1=http://a:8082", "each entry must be INDEX=URL"),
        ("0=noetl:8082", "base_url must be an http(s) URL with a host"),
        ("0=ftp://noetl:21", "base_url must be an http(s) URL with a host"),
        ("0=http://noetl:port", "base_url must be an http(s) URL with a host"),
        ("0=http://noetl:8082/?x=1", "must not carry credentials, a query or a fragment"),
    ],
)
def test_bad_maps_name_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"NOETL_SHARDS": value})
    assert str(caught.value).startswith("NOETL_SHARDS: ") and message in str(caught.value)


def test_a_password_in_a_shard_url_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"NOETL_SHARDS": "0=http://admin:hunter2@noetl:8082"})
    assert "credentials" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[noetl]\nbase_url = "http://x"\n', "the noetl table may hold only shards"),
        ('noetl_shards = "0=http://x"\n' + TOML_SHARDS, "shards are given twice"),
        ("[[noetl.shards]]\nshard_index = 0\n", "NOETL_SHARDS: Field required"),
        ('[[noetl.shards]]\nshard_index = 0\nbase_url = "http://a"\nweight = 2\n', "NOETL_SHARDS: Extra inputs"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config({"GATEWAY_CONFIG": str(path)})


def test_a_bad_map_stops_the_process_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={**os.environ, "NOETL_SHARDS": "0=http://a:8082,0=http://b:8082", "NATS_URL": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NOETL_SHARDS" in lines[0] and "duplicate shard_index 0" in lines[0]
    assert "Traceback" not in result.stderr
