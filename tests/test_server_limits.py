"""The server's explicit limits (``docs/server.md``, "Limits"), set low by flags: each refusal is
problem+json, says which limit, and records nothing; a request at the limit is accepted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import (
    ServerProcess,
    create,
    events_of,
    problem,
    running,
    stream_turn,
)

BODY = 2000
CHARS = 100
ATTACHMENTS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    args = [
        "--no-token",
        "--max-body-bytes", str(BODY),
        "--max-message-chars", str(CHARS),
        "--max-attachments", str(ATTACHMENTS),
    ]  # fmt: skip
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log", args=args) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _refused_and_nothing_recorded(
    client: httpx.Client, session_id: str, response: httpx.Response, status: int, name: str
) -> str:
    before = events_of(client, session_id)
    detail: str = problem(response, status, name)["detail"]
    assert events_of(client, session_id) == before
    return detail


@pytest.mark.parametrize("route", ["messages", "messages/stream"])
def test_a_prompt_over_the_character_limit_is_refused(client: httpx.Client, route: str) -> None:
    session_id = f"chars-{route.replace('/', '-')}"
    create(client, session_id)
    path = f"/v1/sessions/{session_id}/{route}"
    long = client.post(path, json={"message": "x" * (CHARS + 1)})
    detail = _refused_and_nothing_recorded(client, session_id, long, 400, "invalid_request")
    assert f"{CHARS} characters" in detail
    # Characters, not bytes: 100 three-byte characters are within the limit.
    events = stream_turn(client, session_id, "é" * CHARS)
    assert events[-1]["type"] == "turn.ended"
    check_stream(events_of(client, session_id))


def test_too_many_attachments_are_refused(client: httpx.Client) -> None:
    create(client, "attach")
    # Relative to the session's directory (the server's root): an attachment may not leave it.
    files = [{"path": f"f{n}.txt"} for n in range(ATTACHMENTS + 1)]
    path = "/v1/sessions/attach/messages"
    many = client.post(path, json={"message": "echo hi", "attachments": files})
    detail = _refused_and_nothing_recorded(client, "attach", many, 400, "invalid_request")
    assert f"{ATTACHMENTS} attachments" in detail
    ok = client.post(path, json={"message": "echo hi", "attachments": files[:ATTACHMENTS]})
    assert ok.status_code == 204


def test_a_body_over_the_limit_is_413_with_or_without_a_length(client: httpx.Client) -> None:
    create(client, "body")
    path = "/v1/sessions/body/messages"
    payload = b'{"message": "' + b"x" * BODY + b'"}'
    declared = client.post(path, content=payload, headers={"content-type": "application/json"})
    detail = _refused_and_nothing_recorded(client, "body", declared, 413, "payload_too_large")
    assert str(BODY) in detail

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for start in range(0, len(payload), 500):
            yield payload[start : start + 500]

    chunked = client.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in chunked.request.headers
    _refused_and_nothing_recorded(client, "body", chunked, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/sessions/paged/events", {"limit": 100_001}),
        ("/v1/sessions/paged/events", {"limit": -1}),
        ("/v1/sessions", {"limit": 0}),
        ("/v1/sessions", {"limit": 1001}),
    ],
)
def test_page_sizes_outside_their_range_are_refused(
    client: httpx.Client, path: str, params: dict[str, int]
) -> None:
    if client.get("/v1/sessions/paged").status_code == 404:
        create(client, "paged")
    problem(client.get(path, params=params), 400, "invalid_request")
