"""Odd input gets a 4xx problem, never a 5xx (issue 15, items 9 and 11), and a second server on
a taken port exits before it touches its store ("the port is bound before recovery runs").

Through a real server process over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox_agent.events import EventDraft
from sandbox_agent.store import SessionRecord, open_store
from sandbox_agent.testing.server import ServerProcess, events_of, problem

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("odd")
    proc = ServerProcess(
        f"sqlite:///{root / 's.db'}", root / "server.log", args=["--no-token", "--root", str(root)]
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_a_lone_surrogate_in_a_message_is_400_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        assert client.post("/v1/sessions/lone-message", json={"agent": "mock"}).status_code == 200
        before = events_of(client, "lone-message")
        # Valid JSON ("\ud800" escaped) that decodes to a str which is not UTF-8.
        answer = client.post(
            "/v1/sessions/lone-message/messages", content=b'{"message": "a\\ud800"}', headers=JSON
        )
        detail = problem(answer, 400, "invalid_request")["detail"]
        assert "surrogate" in detail and "data" in detail, detail
        assert events_of(client, "lone-message") == before  # nothing was written
        assert client.post(
            "/v1/sessions/lone-message/messages", json={"message": "hello"}
        ).status_code in (200, 204)
        ended = client.get(
            "/v1/sessions/lone-message/events", params={"offset": 0, "limit": 1000}
        ).json()["events"]
        assert any(e["type"] == "turn.started" for e in ended)


def test_a_lone_surrogate_in_a_title_is_400_and_nothing_is_created(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        body = b'{"agent": "mock", "title": "\\udfff"}'
        answer = client.post("/v1/sessions/lone-title", content=body, headers=JSON)
        detail = problem(answer, 400, "invalid_request")["detail"]
        assert "title" in detail and "surrogate" in detail, detail
        problem(client.get("/v1/sessions/lone-title"), 404)


@pytest.mark.parametrize("path", ["/events", "/events/sse"])
def test_an_offset_beyond_an_integer_is_400_on_json_and_on_sse(
    server: ServerProcess, path: str
) -> None:
    with server.client() as client:
        assert client.post("/v1/sessions/big-offset", json={"agent": "mock"}).status_code in (
            200,
            409,
        )
        for offset in ("1e23", "99999999999999999999999", "-1"):
            answer = client.get(f"/v1/sessions/big-offset{path}", params={"offset": offset})
            body = problem(answer, 400)
            assert "offset" in body["detail"], body


def test_an_overlong_directory_is_400_not_enametoolong(server: ServerProcess) -> None:
    root = Path(server.log_path).parent
    with server.client() as client:
        answer = client.post(
            "/v1/sessions/long-dir", json={"agent": "mock", "directory": str(root / ("a" * 10_000))}
        )
        assert "directory" in problem(answer, 400)["detail"]


def test_a_trailing_slash_is_served_without_a_redirect_built_from_the_host_header(
    server: ServerProcess,
) -> None:
    with server.client(follow_redirects=False) as client:
        assert client.post("/v1/sessions/slash", json={"agent": "mock"}).status_code == 200
        for path in ("/v1/sessions/", "/v1/sessions//", "/v1/sessions/slash/"):
            answer = client.get(path, headers={"Host": "evil.example"})
            assert answer.status_code == 200, (path, answer.status_code, answer.headers)
            assert "location" not in answer.headers
        listed = client.get("/v1/sessions/").json()
        assert "slash" in [s["sessionId"] for s in listed["sessions"]]


def test_a_second_server_on_a_taken_port_exits_before_it_recovers_its_store(
    tmp_path: Path,
) -> None:
    async def open_turn(url: str) -> int:
        # A session whose turn a crash left open: recovery would close it (turn.ended).
        async with await open_store(url) as store:
            await store.create_session(SessionRecord(id="left-open", agent="mock"))
            await store.append(
                "left-open", [EventDraft(type="turn.started", data={"turn_id": "turn_1"})]
            )
            return await store.last_sequence("left-open")

    async def last(url: str) -> int:
        async with await open_store(url) as store:
            return await store.last_sequence("left-open")

    url = f"sqlite:///{tmp_path / 'second.db'}"
    before = asyncio.run(open_turn(url))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        second = subprocess.run(
            [sys.executable, "-m", "sandbox_agent", "server", "--no-token", "-p", str(port),
             "--store", url, "--root", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert second.returncode == 3, second.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert asyncio.run(last(url)) == before  # no recovery ran: the turn is still open
    # With the port free, the same store is recovered: the test can tell.
    server = ServerProcess(url, tmp_path / "log", args=["--no-token", "--root", str(tmp_path)])
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            types = [e["type"] for e in events_of(client, "left-open")]
    finally:
        server.stop()
    assert "turn.ended" in types
