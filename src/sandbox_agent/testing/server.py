"""A real ``sandbox-agent server`` process for tests, and small HTTP helpers to drive it.

``ServerProcess`` runs ``python -m sandbox_agent server`` (this interpreter) with the mock agent
on a free 127.0.0.1 port over a given store, its output appended to a log file. It waits for
``/v1/health``, stops gracefully (SIGTERM), is SIGKILLed as a crash would, and ``restart()``s on
the same port and the same store::

    server = ServerProcess("sqlite:////tmp/server.db", Path("/tmp/server.log")).start()
    ...
    server.kill()  # SIGKILL: a crash in the middle of whatever it was doing
    server.restart()  # same URL, same store: sessions come back, a running turn ends interrupted
    server.stop()

``running(store_url, log_path)`` is the same as a context manager that also checks, once the
server stopped, that every stream it left in the store is clean (``consistency.check_store``).
The ``sandbox_server`` fixture of the pytest plugin is a ``ServerProcess`` on a fresh SQLite
store in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from sandbox_agent.sdk.embedded import free_port
from sandbox_agent.testing.consistency import check_store

__all__ = [
    "OK_PROMPT",
    "ServerProcess",
    "create",
    "events_of",
    "free_port",
    "problem",
    "rss_bytes",
    "running",
    "stream_turn",
    "wait_for",
]

#: A prompt the mock agent (and every real agent) answers with one short message.
OK_PROMPT = "Reply with exactly the single word OK."

#: How much of the log an exception message carries (a message is read by a person, not
#: searched; ``ServerProcess.log()`` is the whole log): a start's Traceback and then some.
ERROR_LOG_CHARS = 20_000


class ServerProcess:
    """One server process. ``store_url`` and ``log_path`` are where it keeps its events and
    writes its output; ``args`` go on its command line (``--no-token`` by default: the
    environment's ``SANDBOX_AGENT_TOKEN`` is dropped unless ``env`` is given);
    ``mock_delay_ms`` is the mock agent's delay per event (0: instant answers)."""

    def __init__(
        self,
        store_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = ("--no-token",),
        mock_delay_ms: int = 0,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.store_url = store_url
        self.log_path = Path(log_path)
        self.args = list(args)
        self.mock_delay_ms = mock_delay_ms
        self.env = dict(env) if env is not None else None
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the same across restarts."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "sandbox_agent", "server",
            "-p", str(self.port),
            "--store", self.store_url,
            "--mock-delay-ms", str(self.mock_delay_ms),
            "--log-level", "warning",
            *self.args,
        ]  # fmt: skip

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start it and wait until ``/v1/health`` answers; ``RuntimeError`` with the end of its
        log if it exits or does not answer within ``timeout``. Returns ``self``."""
        env = {**os.environ, **(self.env or {})}
        if self.env is None:
            env.pop("SANDBOX_AGENT_TOKEN", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"server exited with {code}:\n{self.log()[-ERROR_LOG_CHARS:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        tail = self.log()[-ERROR_LOG_CHARS:]
        raise RuntimeError(f"server did not answer within {timeout}s:\n{tail}")

    def restart(self, timeout: float = 30.0) -> ServerProcess:
        """SIGKILL it if it still runs, then start it again on the same port and store."""
        self.kill()
        return self.start(timeout)

    def log(self) -> str:
        """Its whole log (every start of it): a check of the log reads all of it."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash would (nothing is flushed or closed); waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful stop (SIGKILL after ``timeout``, then re-raises the
        timeout). Returns the exit code."""
        assert self.proc is not None, "the server was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def rss_bytes(self) -> int:
        """The running server's resident set in bytes (``rss_bytes`` of its pid)."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        return rss_bytes(self.proc.pid)

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client of the server (30 s timeouts)."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def rss_bytes(pid: int) -> int:
    """A process's resident set in bytes (``VmRSS`` of ``/proc/<pid>/status``; Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def running(store_url: str, log_path: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    """A started ``ServerProcess``, stopped afterwards; then every stream it left in its store
    must pass ``check_events`` (whatever the test itself checked)."""
    server = ServerProcess(store_url, log_path, **kwargs).start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        server.kill()
    check_store(store_url)


# -- HTTP helpers (sync) ----------------------------------------------------------------------
def problem(
    response: httpx.Response, status: int | None = None, name: str | None = None
) -> dict[str, Any]:
    """The problem+json body of an error answer (of ``status`` and problem ``name`` when given),
    with its type, title, status and detail checked."""
    if status is not None:
        assert response.status_code == status, response.text
    assert response.status_code >= 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"].startswith("urn:sandbox-agent:error:")
    if name is not None:
        assert body["type"] == f"urn:sandbox-agent:error:{name}"
    assert body["status"] == response.status_code and body["title"] and body["detail"]
    return body


def events_of(client: httpx.Client, session_id: str, **params: Any) -> list[dict[str, Any]]:
    """``GET /v1/sessions/{id}/events`` with these query parameters: the events as JSON."""
    response = client.get(f"/v1/sessions/{session_id}/events", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def create(client: httpx.Client, session_id: str, **body: Any) -> None:
    """Create a session (of the mock agent unless ``agent`` is given)."""
    response = client.post(f"/v1/sessions/{session_id}", json={"agent": "mock", **body})
    assert response.status_code == 200, response.text


def stream_turn(client: httpx.Client, session_id: str, message: str) -> list[dict[str, Any]]:
    """POST messages/stream and collect this turn's events (until the terminal one)."""
    with connect_sse(
        client, "POST", f"/v1/sessions/{session_id}/messages/stream", json={"message": message}
    ) as source:
        assert source.response.status_code == 200, source.response.read()
        return [json.loads(sse.data) for sse in source.iter_sse() if sse.data]  # not pings


def wait_for(
    client: httpx.Client, session_id: str, event_type: str, after: int = 0, timeout: float = 10
) -> list[dict[str, Any]]:
    """Poll until an event of ``event_type`` after ``after`` is stored; all events after it."""
    deadline = time.monotonic() + timeout
    while True:
        events = events_of(client, session_id, offset=after)
        if any(e["type"] == event_type for e in events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event_type} after {after}: {[e['type'] for e in events]}")
        time.sleep(0.02)
