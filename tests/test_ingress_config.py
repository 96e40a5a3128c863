"""``GATEWAY_INGRESS_CONFIG``: validated at start, one line naming file and listener when it is wrong;
secrets named (env or file), never written in it; the verification rules on their own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_config
from gateway.ingress.listeners import Listener, load_listeners
from gateway.ingress.rejections import IngressRejected
from gateway.ingress.verify import verify_bearer, verify_hmac
from tests.support.webhooks import GITHUB_SECRET, LISTENER_SECRETS, signature
from tests.test_config_cli import run_gateway

GOOD_LISTENER = """\
  github:
    verify: {type: hmac_sha256, header: X-Hub-Signature-256, secret_env: TEST_GITHUB_SECRET}
    dispatch: {playbook: ops/github}
"""


def load(tmp_path: Path, text: str, name: str = "ingress.yaml", **env: str) -> dict[str, Listener]:
    path = tmp_path / name
    path.write_text(text)
    return load_listeners(load_config({"GATEWAY_INGRESS_CONFIG": str(path)}), {**LISTENER_SECRETS, **env})


def test_yaml_and_toml_files_give_the_same_listener(tmp_path: Path) -> None:
    from_yaml = load(tmp_path, "listeners:\n" + GOOD_LISTENER)["github"]
    toml = (
        '[listeners.github]\ndispatch = {playbook = "ops/github"}\n'
        '[listeners.github.verify]\ntype = "hmac_sha256"\nheader = "X-Hub-Signature-256"\n'
        'secret_env = "TEST_GITHUB_SECRET"\n'
    )
    from_toml = load(tmp_path, toml, "ingress.toml")["github"]
    assert from_yaml == from_toml
    assert from_yaml.secret == GITHUB_SECRET.encode() and from_yaml.playbook == "ops/github"
    assert GITHUB_SECRET not in repr(from_yaml)  # never in a log line that prints a listener
    assert load_listeners(load_config({})) == {}  # no file: no listeners


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (  # a secret written into the file
            "listeners:\n" + GOOD_LISTENER + "  alerts:\n    verify: {type: bearer, secret: hunter2hunter2hunter2}\n"
            "    dispatch: {playbook: ops/alerts}\n",
            "line 5",
            "a secret never goes in the file",
        ),
        (
            "listeners:\n" + GOOD_LISTENER + "  billing:\n    verify: {type: pubsub_oidc, audience: x}\n"
            "    dispatch: {playbook: ops/billing}\n",
            "line 5",
            "pubsub_oidc needs audience and service_account",
        ),
        (
            "listeners:\n" + GOOD_LISTENER + "    directives: [Authorization]\n",
            "line 2",
            "carries credentials",
        ),
        (
            "listeners:\n" + GOOD_LISTENER + "    directives: {X-Hub-Signature-256: sig}\n",
            "line 2",
            "carries the proof",
        ),
        ("listeners:\n  github:\n    verify: {type: hmac, secret_env: X}\n    dispatch: {playbook: a}\n", "line 2", ""),
        ("listeners:\n" + GOOD_LISTENER.replace("ops/github", "' ops/github'"), "line 2", "whitespace"),
        ("listener:\n" + GOOD_LISTENER, "line 1", "listener"),
        ("listeners: [\n", "line", "not valid YAML"),
    ],
)
def test_a_bad_file_names_file_and_line(tmp_path: Path, text: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith("GATEWAY_INGRESS_CONFIG: ") and str(tmp_path) in message
    assert where in message and says in message, message
    assert "hunter2" not in message


def test_a_toml_error_names_the_listeners_table(tmp_path: Path) -> None:
    toml = (
        '[listeners.github]\ndispatch = {playbook = "a"}\n[listeners.github.verify]\ntype = "hmac_sha256"\n'
        'secret_env = "TEST_GITHUB_SECRET"\n'
        '[listeners.bad]\ndispatch = {playbook = "a"}\nverify = {type = "bearer"}\n'
    )
    with pytest.raises(ConfigError, match=r"line 6: listeners\.bad\.verify"):
        load(tmp_path, toml, "ingress.toml")


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"listeners\.github\.verify\.secret_env: TEST_GITHUB_SECRET is not set"):
        load(tmp_path, "listeners:\n" + GOOD_LISTENER, TEST_GITHUB_SECRET="")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        load(tmp_path, "listeners:\n" + GOOD_LISTENER, TEST_GITHUB_SECRET="short")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-mounted-secret-0123456789\n")
    text = (
        f"listeners:\n  a:\n    verify: {{type: bearer, secret_file: {secret_file}}}\n    dispatch: {{playbook: p}}\n"
    )
    assert load(tmp_path, text)["a"].secret == b"from-a-mounted-secret-0123456789"
    missing = text.replace(str(secret_file), str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="secret_file: cannot read"):
        load(tmp_path, missing)


def test_a_bad_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ingress.yaml"
    path.write_text("listeners:\n" + GOOD_LISTENER + "    directives: [Cookie]\n")
    result = run_gateway({"GATEWAY_INGRESS_CONFIG": str(path), "NATS_URL": "", "ROUTER_PORT": "0", **LISTENER_SECRETS})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_INGRESS_CONFIG" in lines[0] and "line 2" in lines[0], result.stderr
    unset = run_gateway({"GATEWAY_INGRESS_CONFIG": str(path.with_name("nope.yaml")), "NATS_URL": ""})
    assert unset.returncode == 2 and "cannot read" in unset.stderr


# -- the verification rules ------------------------------------------------------------------------


def listener(tmp_path: Path, verify: str) -> Listener:
    text = f"listeners:\n  l:\n    verify: {verify}\n    dispatch: {{playbook: p}}\n"
    return load(tmp_path, text)["l"]


def reason(call: Any) -> str:
    with pytest.raises(IngressRejected) as caught:
        call()
    return caught.value.reason


def test_hmac_accepts_github_and_bare_hex_and_refuses_any_other_body(tmp_path: Path) -> None:
    hook = listener(tmp_path, "{type: hmac_sha256, secret_env: TEST_GITHUB_SECRET}")
    body = b'{"zen": "Keep it logically awesome."}'
    good = signature(GITHUB_SECRET, body)
    for value in (good, good.upper().replace("SHA256=", "sha256="), good[7:], f"  {good} "):
        verify_hmac(hook, {"X-Signature": value}, body)
    assert reason(lambda: verify_hmac(hook, {"X-Signature": good}, body + b" ")) == "bad_signature"
    assert reason(lambda: verify_hmac(hook, {"X-Signature": good[:-1]}, body)) == "bad_signature"
    assert reason(lambda: verify_hmac(hook, {}, body)) == "missing_signature"


def test_hmac_with_a_timestamp_has_a_replay_window(tmp_path: Path) -> None:
    hook = listener(
        tmp_path,
        "{type: hmac_sha256, secret_env: TEST_GITHUB_SECRET, timestamp_header: X-Ts, tolerance_secs: 60}",
    )
    body, now = b"{}", int(time.time())
    headers = {"X-Ts": str(now), "X-Signature": signature(GITHUB_SECRET, body, str(now))}
    verify_hmac(hook, headers, body, now=now + 59)
    assert reason(lambda: verify_hmac(hook, headers, body, now=now + 61)) == "stale_timestamp"
    assert reason(lambda: verify_hmac(hook, headers, body, now=now - 61)) == "stale_timestamp"
    assert reason(lambda: verify_hmac(hook, {**headers, "X-Ts": "1e9"}, body)) == "bad_timestamp"
    unsigned = {**headers, "X-Signature": signature(GITHUB_SECRET, body)}  # body only: not this scheme
    assert reason(lambda: verify_hmac(hook, unsigned, body, now=now)) == "bad_signature"


def test_bearer_compares_the_whole_token(tmp_path: Path) -> None:
    hook = listener(tmp_path, "{type: bearer, header: X-Token, secret_env: TEST_BEARER_TOKEN}")
    token = LISTENER_SECRETS["TEST_BEARER_TOKEN"]
    for value in (token, f"Bearer {token}", f"bearer  {token} "):
        verify_bearer(hook, {"X-Token": value})
    for value in (token[:-1], token + "x", f"Basic {token}", ""):
        assert reason(lambda value=value: verify_bearer(hook, {"X-Token": value})) in ("bad_token", "missing_token")
