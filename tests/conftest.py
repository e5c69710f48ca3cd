"""Shared fixtures: stores on both backends, services on loopback, scripted projects.

A test that needs a service it cannot reach is skipped with the reason, except under
``ROADWORTHY_REQUIRE_SERVICES=1`` (set by CI), where it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from roadworthy.pipeline.workspace import Workspace
from roadworthy.store import Store
from roadworthy.store.journal import backlog

PG_ADMIN_URL = os.environ.get(
    "ROADWORTHY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE = os.environ.get("ROADWORTHY_REQUIRE_SERVICES") == "1"


def need(reason: str) -> None:
    """Skip (or fail in CI) because a real service is missing."""
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def terminal_signals() -> None:
    """``preexec_fn`` for a child that a test stops with a signal: SIGINT and SIGTERM as a
    terminal or an orchestrator delivers them, whatever this test process inherited.

    A command started in the background by a non-interactive shell (``pytest ... &``)
    runs with SIGINT ignored, and its children inherit that: Python then installs no
    KeyboardInterrupt handler, and Ctrl-C tests hang. A blocked signal mask is inherited
    the same way.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def signal_state(pid: int) -> str:
    """The process's blocked, ignored and caught signal masks, for a hang report."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return f"(no /proc status: {exc})"
    return " ".join(line.replace("\t", "") for line in lines if line.startswith("Sig"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need("psycopg is not installed (pip install 'roadworthy[postgres]')")
    name = f"rw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        need(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.orig}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


SCHEMA = """{
  "type": "object",
  "properties": {
    "category": {"type": "string", "enum": ["billing", "technical", "other"]},
    "priority": {"type": "string", "enum": ["low", "high"]}
  },
  "required": ["category", "priority"],
  "additionalProperties": false
}
"""

PROMPT = """\
id: triage
description: test prompt
variables:
  text: {type: string}
messages:
  - role: system
    content: Classify the ticket.
  - role: user
    content: "Ticket: {{ text }}"
"""


def write_project(root: Path, config: str, *, prompt: str = PROMPT, schema: str = SCHEMA) -> Path:
    """Write a small project folder and return it."""
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "schemas").mkdir(exist_ok=True)
    (root / "roadworthy.yaml").write_text(textwrap.dedent(config))
    (root / "prompts" / "triage.yaml").write_text(prompt)
    (root / "schemas" / "triage.json").write_text(schema)
    return root


SCRIPTED_CONFIG = """\
storage: sqlite:///.roadworthy/state.db
providers:
  fake: {type: scripted}
models:
  cheap:
    provider: fake
    id: gpt-4o-mini
    tier: small
pipelines:
  triage:
    input:
      fields:
        text: {type: string, max_chars: 500}
    steps:
      - generate: {prompt: triage, model: cheap, output: schemas/triage.json}
"""


@pytest.fixture
def scripted_project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", SCRIPTED_CONFIG)


@pytest.fixture
def redis_url() -> str:
    """The Redis on this machine (database 15, flushed by nobody: tests use own prefixes)."""
    url = os.environ.get("ROADWORTHY_TEST_REDIS", "redis://127.0.0.1:6379/15")
    try:
        import redis
    except ImportError:
        need("the redis package is not installed (pip install redis)")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        need(f"Redis not reachable at {url}: {exc}")
    return url


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_key(root: Path, name: str) -> str:
    """A new API key for the project at ``root``, made by the real CLI."""
    return subprocess.run(
        [sys.executable, "-m", "roadworthy.cli.main", "keys", "create", "--name", name],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


@contextlib.contextmanager
def serving(root: Path) -> Iterator[str]:
    """A real ``roadworthy serve`` process for the project at ``root``; yields its base URL.

    It logs to a file, not a pipe nobody drains (a full pipe would block the server), and
    the log is in the failure message when it exits early or never becomes ready.
    """
    import httpx

    port = free_port()
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roadworthy.cli.main", "serve", "--port", str(port)],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # polls readiness; no assertion on how long it took
            if proc.poll() is not None:
                pytest.fail(f"roadworthy serve exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"roadworthy serve never became ready:\n{log_path.read_text()}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def copied(source: Store | Workspace, timeout: float = 10.0) -> Store:
    """The store, once every call row a service journaled is in ``calls``.

    ``roadworthy serve`` answers once a call's row is in its journal and copies rows into
    the table moments later (store/journal.py). For a service in this process (a
    workspace) the copy is done now; for one in another process (a store), this waits
    for it. A no-op on PostgreSQL, which has no journal.
    """
    if isinstance(source, Workspace):
        source.calls.flush_journal()
        return source.store
    database = source.engine.url.database
    if source.engine.url.get_backend_name() != "sqlite" or not database:
        return source
    for _ in range(int(timeout / 0.01)):
        if backlog(database) == 0:
            return source
        time.sleep(0.01)
    raise AssertionError(f"the call journal was not copied within {timeout:g} s")


def record_until_killed(setup: str, producers: int, kill_after: int) -> tuple[set[str], set[str]]:
    """SIGKILL a child recording calls once it acknowledged ``kill_after`` of them.

    ``setup`` is the child's code up to a ``writer`` (a CallWriter, slowed down as the
    test needs); ``producers`` tasks then record calls forever, each printing ``Q id``
    before ``arecord`` and ``A id`` once it returned (where a service would answer).
    Returns the ids queued and the ids acknowledged before the kill landed.
    """
    child = textwrap.dedent(setup) + textwrap.dedent(
        f"""
        import asyncio
        from roadworthy.store import CallRecord

        async def producer(n):
            i = 0
            while True:
                trace = f"{{n}}-{{i}}"
                i += 1
                print("Q", trace, flush=True)
                await writer.arecord(
                    CallRecord(trace_id=trace, provider="p", model="m", latency_ms=1.0,
                               status="ok"))
                print("A", trace, flush=True)

        async def main():
            await asyncio.gather(*(producer(n) for n in range({producers})))

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    seen: dict[str, set[str]] = {"Q": set(), "A": set()}
    try:
        for line in proc.stdout:
            kind, trace = line.split()
            seen[kind].add(trace)
            if len(seen["A"]) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"child exited early with {proc.wait()}")
        rest = proc.stdout.read()  # lines printed before the kill landed
    finally:
        proc.kill()
        proc.wait()
    for line in rest.split("\n")[:-1]:  # the last piece may be a line the kill cut short
        kind, trace = line.split()
        seen[kind].add(trace)
    return seen["Q"], seen["A"]
