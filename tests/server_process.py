"""A real ``sandbox-agent server`` process for the server tests, and what they check with it.

``ServerProcess`` starts ``python -m sandbox_agent server`` on a free port over a given store,
waits for ``/v1/health``, and stops it (SIGTERM) or kills it (SIGKILL). ``check_stream`` runs the
replay engine's invariant checker over a stream the server produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import replay
from sandbox_agent.store import open_store

OK_PROMPT = "Reply with exactly the single word OK."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server process; ``start()`` again after a stop or a kill restarts it (same port)."""

    def __init__(
        self,
        store_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = ("--no-token",),
        mock_delay_ms: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store_url = store_url
        self.log_path = log_path
        self.args = list(args)
        self.mock_delay_ms = mock_delay_ms
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "sandbox_agent", "server",
            "-p", str(self.port),
            "--store", self.store_url,
            "--mock-delay-ms", str(self.mock_delay_ms),
            "--log-level", "warning",
            *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        if self.env is None:
            env.pop("SANDBOX_AGENT_TOKEN", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful stop. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@contextlib.contextmanager
def running(store_url: str, log_path: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    """A started server, stopped afterwards; then every stream it left in its store must pass
    ``check_stream`` (whatever the test itself checked)."""
    server = ServerProcess(store_url, log_path, **kwargs).start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        server.kill()
    check_store(store_url)


def check_store(store_url: str) -> None:
    """``check_stream`` over every session of the store at ``store_url``."""
    asyncio.run(_check_store(store_url))


async def _check_store(store_url: str) -> None:
    async with await open_store(store_url) as store:
        for record in await store.all_sessions():
            check_events(await store.read(record.id, after=0, limit=None))


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
    response = client.get(f"/v1/sessions/{session_id}/events", params=params)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def create(client: httpx.Client, session_id: str, **body: Any) -> None:
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


def check_stream(events: Sequence[dict[str, Any]]) -> None:
    """``check_events`` over events as the API returns them (JSON objects)."""
    check_events([UniversalEvent.model_validate(e) for e in events])


def check_events(events: Sequence[UniversalEvent]) -> None:
    """The stream is 1..N without gaps, and the replay invariant checker finds no anomaly."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    state = replay(events)
    assert state.anomalies == [], state.anomalies
