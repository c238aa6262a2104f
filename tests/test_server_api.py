"""The HTTP API against a real server process over a real SQLite store, with the mock agent."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_agent.server.openapi import openapi_document, render
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import (
    OK_PROMPT,
    ServerProcess,
    create,
    events_of,
    problem,
    running,
    stream_turn,
    wait_for,
)

from helpers.fake_npm import path_without_agents

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("server")
    # No real agent is installed for this server, whatever this machine has: an empty agents
    # dir, and no agent CLI on PATH.
    (tmp / "agents").mkdir()
    env = {
        "SANDBOX_AGENT_AGENTS_DIR": str(tmp / "agents"),
        "PATH": path_without_agents(),
        "SANDBOX_AGENT_TOKEN": "",
    }
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log", env=env) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def sid(client: httpx.Client) -> Iterator[str]:
    """A fresh mock session; its stream must be clean at the end of the test."""
    session_id = f"api-{next(_ids)}"
    create(client, session_id)
    yield session_id
    response = client.get(f"/v1/sessions/{session_id}/events")
    if response.status_code == 200:
        check_stream(response.json()["events"])


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_ok_prompt_records_the_canonical_stream(client: httpx.Client, sid: str) -> None:
    response = client.post(f"/v1/sessions/{sid}/messages", json={"message": OK_PROMPT})
    assert response.status_code == 204
    events = wait_for(client, sid, "turn.ended")
    assert _types(events) == [
        "session.started",
        "turn.started",
        "item.started",
        "item.completed",
        "item.started",
        "item.delta",
        "item.completed",
        "turn.ended",
    ]
    user, assistant = events[2]["data"]["item"], events[6]["data"]["item"]
    assert user["role"] == "user" and events[2]["source"] == "client"
    assert user["content"] == [{"type": "text", "text": OK_PROMPT}]
    assert assistant["role"] == "assistant" and assistant["content"][0]["text"] == "OK"
    assert events[5]["data"]["delta"] == "OK"
    assert events[7]["data"]["reason"] == "completed"
    assert events[0]["native_session_id"] == f"mock-{sid}"


def test_polling_with_offset_and_limit_pages_through_the_stream(
    client: httpx.Client, sid: str
) -> None:
    client.post(f"/v1/sessions/{sid}/messages", json={"message": OK_PROMPT})
    everything = wait_for(client, sid, "turn.ended")
    seen: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.get(f"/v1/sessions/{sid}/events", params={"offset": offset, "limit": 3})
        body = page.json()
        seen.extend(body["events"])
        if not body["hasMore"]:
            break
        assert len(body["events"]) == 3
        offset = body["events"][-1]["sequence"]
    assert seen == everything
    empty = client.get(f"/v1/sessions/{sid}/events", params={"offset": 2, "limit": 0}).json()
    assert empty == {"events": [], "hasMore": True}
    assert all(e["raw"] is None for e in everything)


def test_sessions_are_listed_newest_first_and_described(client: httpx.Client, sid: str) -> None:
    other = f"{sid}-b"
    create(client, other, title="second", agentMode="plan")
    listed = client.get("/v1/sessions").json()["sessions"]
    ids = [s["sessionId"] for s in listed]
    assert ids.index(other) < ids.index(sid)
    info = client.get(f"/v1/sessions/{other}").json()
    assert info["agent"] == "mock" and info["agentMode"] == "plan" and info["title"] == "second"
    assert info["status"] == "idle" and info["lastSequence"] == 1 and info["eventCount"] == 1
    assert info["ended"] is False and isinstance(info["createdAt"], int)
    page = client.get("/v1/sessions", params={"limit": 1}).json()
    assert len(page["sessions"]) == 1 and page["nextCursor"]
    check_stream(events_of(client, other))


def test_creating_a_taken_id_is_409(client: httpx.Client, sid: str) -> None:
    problem(
        client.post(f"/v1/sessions/{sid}", json={"agent": "mock"}), 409, "session_already_exists"
    )


# The single question keeps the mock's turn open until it is answered.
QUESTION_PROMPT = (
    "Use the AskUserQuestion tool to ask exactly one yes/no question, then wait for a reply. "
    "Do not answer yourself."
)


def test_a_second_message_during_a_turn_with_if_idle_is_409(client: httpx.Client, sid: str) -> None:
    prompt = QUESTION_PROMPT
    assert client.post(f"/v1/sessions/{sid}/messages", json={"message": prompt}).status_code == 204
    events = wait_for(client, sid, "question.requested")
    second = client.post(
        f"/v1/sessions/{sid}/messages", json={"message": OK_PROMPT, "ifIdle": True}
    )
    problem(second, 409, "turn_in_progress")
    assert events_of(client, sid)[-1]["type"] == "question.requested"  # nothing recorded
    question = next(e for e in events if e["type"] == "question.requested")["data"]["question_id"]
    reply = client.post(
        f"/v1/sessions/{sid}/questions/{question}/reply", json={"answers": [["Yes"]]}
    )
    assert reply.status_code == 204
    wait_for(client, sid, "turn.ended")
    assert (
        client.post(f"/v1/sessions/{sid}/messages", json={"message": OK_PROMPT}).status_code == 204
    )
    events = wait_for(client, sid, "turn.ended", after=events[-1]["sequence"] + 3)
    assert _types(events)[-1] == "turn.ended"


def test_a_message_during_a_turn_is_queued_and_runs_after_it(
    client: httpx.Client, sid: str
) -> None:
    url = f"/v1/sessions/{sid}/messages"
    assert client.post(url, json={"message": QUESTION_PROMPT}).status_code == 204
    events = wait_for(client, sid, "question.requested")
    queued = client.post(url, json={"message": OK_PROMPT})
    assert queued.status_code == 202
    assert queued.json() == {"queued": True, "queueId": "q_1", "position": 1}
    dropped = client.post(url, json={"message": "echo never"}).json()
    assert dropped == {"queued": True, "queueId": "q_2", "position": 2}
    listed = client.get(f"/v1/sessions/{sid}/queue").json()["prompts"]
    assert [(p["queueId"], p["message"]) for p in listed] == [
        ("q_1", OK_PROMPT),
        ("q_2", "echo never"),
    ]
    assert client.delete(f"/v1/sessions/{sid}/queue/q_2").status_code == 204
    problem(client.delete(f"/v1/sessions/{sid}/queue/q_2"), 404, "queued_prompt_not_found")
    # The v0.1 client answers and sends its next prompt at once: it waits for its turn.
    question = next(e for e in events if e["type"] == "question.requested")["data"]["question_id"]
    reply = client.post(
        f"/v1/sessions/{sid}/questions/{question}/reply", json={"answers": [["Yes"]]}
    )
    assert reply.status_code == 204

    def two_turns() -> list[dict[str, Any]]:
        found = events_of(client, sid)
        return found if _types(found).count("turn.ended") == 2 else []

    deadline = time.monotonic() + 10
    while not (events := two_turns()):
        assert time.monotonic() < deadline, _types(events_of(client, sid))
        time.sleep(0.05)
    types = _types(events)
    at = types.index("prompt.dequeued", types.index("prompt.queued"))
    assert events[at]["data"] == {"queue_id": "q_2", "reason": "cancelled"}
    started = types.index("prompt.dequeued", at + 1)
    assert events[started]["data"] == {"queue_id": "q_1", "reason": "started"}
    assert types[started - 1 : started + 2] == ["turn.ended", "prompt.dequeued", "turn.started"]
    assert client.get(f"/v1/sessions/{sid}/queue").json() == {"prompts": []}


def test_a_streamed_message_during_a_turn_streams_its_own_turn(
    client: httpx.Client, sid: str
) -> None:
    url = f"/v1/sessions/{sid}/messages"
    assert client.post(url, json={"message": QUESTION_PROMPT}).status_code == 204
    events = wait_for(client, sid, "question.requested")
    question = next(e for e in events if e["type"] == "question.requested")["data"]["question_id"]
    answered = False
    streamed: list[dict[str, Any]] = []
    with client.stream("POST", f"{url}/stream", json={"message": OK_PROMPT}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            streamed.append(json.loads(line[6:]))
            if streamed[-1]["type"] == "prompt.queued" and not answered:
                answered = True
                reply = client.post(
                    f"/v1/sessions/{sid}/questions/{question}/reply", json={"answers": [["Yes"]]}
                )
                assert reply.status_code == 204
    types = _types(streamed)
    # Through the turn it waited for, to the end of its own (not the first turn.ended).
    assert types[0] == "prompt.queued"
    assert types.count("turn.ended") == 2 and types[-1] == "turn.ended"
    assert "prompt.dequeued" in types


def test_messages_stream_ends_after_the_turn(client: httpx.Client, sid: str) -> None:
    events = stream_turn(client, sid, OK_PROMPT)
    assert _types(events)[0] == "turn.started" and _types(events)[-1] == "turn.ended"
    assert events[0]["sequence"] == 2
    assert events == events_of(client, sid, offset=1)


def test_cancel_ends_the_turn_as_cancelled(server: ServerProcess, tmp_path: Path) -> None:
    # A slow mock, so that the turn is still running when the cancel arrives.
    with (
        running(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "c.log", mock_delay_ms=200) as slow,
        slow.client() as client,
    ):
        create(client, "c1")
        assert (
            client.post("/v1/sessions/c1/messages", json={"message": "markdown"}).status_code == 204
        )
        time.sleep(0.3)
        assert client.post("/v1/sessions/c1/cancel").status_code == 204
        events = events_of(client, "c1")
        assert events[-1]["type"] == "turn.ended" and events[-1]["data"]["reason"] == "cancelled"
        time.sleep(0.5)
        assert events_of(client, "c1") == events  # nothing more of that turn
        assert client.post("/v1/sessions/c1/cancel").status_code == 204  # no turn: no-op
        check_stream(events)


def test_terminate_ends_the_session_and_refuses_messages(client: httpx.Client, sid: str) -> None:
    assert client.post(f"/v1/sessions/{sid}/terminate").status_code == 204
    events = events_of(client, sid)
    assert events[-1]["type"] == "session.ended"
    assert events[-1]["data"]["reason"] == "terminated"
    assert events[-1]["data"]["terminated_by"] == "daemon"
    refused = client.post(f"/v1/sessions/{sid}/messages", json={"message": OK_PROMPT})
    assert "session terminated" in problem(refused, 400, "invalid_request")["detail"]
    assert client.post(f"/v1/sessions/{sid}/terminate").status_code == 204
    assert events_of(client, sid) == events
    assert client.get(f"/v1/sessions/{sid}").json()["status"] == "ended"


def test_a_session_the_agent_ended_is_reopened_by_the_next_message(
    client: httpx.Client, sid: str
) -> None:
    stream_turn(client, sid, "end")
    events = stream_turn(client, sid, OK_PROMPT)
    stored = events_of(client, sid)
    types = _types(stored)
    assert "session.ended" in types
    resumed = stored[types.index("session.ended") + 1]
    assert resumed["type"] == "session.resumed" and resumed["data"]["reason"] == "reopened"
    assert events[-1]["type"] == "turn.ended"


def test_delete_removes_the_session_and_its_events(client: httpx.Client, sid: str) -> None:
    stream_turn(client, sid, OK_PROMPT)
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    problem(client.get(f"/v1/sessions/{sid}"), 404, "session_not_found")
    problem(client.get(f"/v1/sessions/{sid}/events"), 404, "session_not_found")
    assert sid not in [s["sessionId"] for s in client.get("/v1/sessions").json()["sessions"]]
    create(client, sid)  # the id is free again


@pytest.mark.parametrize(("reply", "status"), [("once", "accept"), ("reject", "reject")])
def test_permission_reply_is_recorded(
    client: httpx.Client, sid: str, reply: str, status: str
) -> None:
    events = stream_turn(client, sid, "permission")
    assert events[-1]["type"] == "permission.requested"
    pid = events[-1]["data"]["permission_id"]
    response = client.post(f"/v1/sessions/{sid}/permissions/{pid}/reply", json={"reply": reply})
    assert response.status_code == 204
    resolved = [e for e in events_of(client, sid) if e["type"] == "permission.resolved"]
    assert [(e["data"]["permission_id"], e["data"]["status"]) for e in resolved] == [(pid, status)]
    again = client.post(f"/v1/sessions/{sid}/permissions/{pid}/reply", json={"reply": reply})
    problem(again, 404, "permission_not_found")


def test_always_auto_approves_the_next_matching_request(client: httpx.Client, sid: str) -> None:
    events = stream_turn(client, sid, "permission")
    pid = events[-1]["data"]["permission_id"]
    client.post(f"/v1/sessions/{sid}/permissions/{pid}/reply", json={"reply": "always"})
    for e in events_of(client, sid):
        if e["type"] == "permission.requested" and e["data"]["permission_id"] != pid:
            other = e["data"]["permission_id"]
            client.post(f"/v1/sessions/{sid}/permissions/{other}/reply", json={"reply": "once"})
    wait_for(client, sid, "turn.ended")
    after = events_of(client, sid)[-1]["sequence"]
    stream_turn(client, sid, "permission")
    wait_for(client, sid, "permission.resolved", after=after)
    auto = [
        e
        for e in events_of(client, sid, offset=after)
        if e["type"] == "permission.resolved" and e["data"]["status"] == "accept_for_session"
    ]
    assert auto and auto[0]["source"] == "daemon" and auto[0]["synthetic"] is True


def test_questions_are_answered_and_rejected(client: httpx.Client, sid: str) -> None:
    events = stream_turn(client, sid, "question")
    asked = [
        e["data"]["question_id"]
        for e in events_of(client, sid)
        if e["type"] == "question.requested"
    ]
    first, second = asked
    ok = client.post(f"/v1/sessions/{sid}/questions/{first}/reply", json={"answers": [["Red"]]})
    assert ok.status_code == 204
    assert client.post(f"/v1/sessions/{sid}/questions/{second}/reject").status_code == 204
    resolved = {
        e["data"]["question_id"]: e["data"]
        for e in events_of(client, sid)
        if e["type"] == "question.resolved"
    }
    assert resolved[first]["status"] == "answered" and resolved[first]["response"] == "Red"
    assert resolved[second]["status"] == "rejected" and resolved[second]["response"] is None
    problem(client.post(f"/v1/sessions/{sid}/questions/{first}/reject"), 404, "question_not_found")
    assert events[-1]["type"] == "question.requested"


def test_state_and_transcript_are_replayed(client: httpx.Client, sid: str) -> None:
    stream_turn(client, sid, OK_PROMPT)
    state = client.get(f"/v1/sessions/{sid}/state").json()
    assert state["status"] == "idle" and state["last_sequence"] == 8 and state["anomalies"] == []
    assert [i["text"] for i in state["items"]] == [OK_PROMPT, "OK"]
    early = client.get(f"/v1/sessions/{sid}/state", params={"at": 2}).json()
    assert early["status"] == "running" and early["last_sequence"] == 2
    problem(client.get(f"/v1/sessions/{sid}/state", params={"at": 99}), 400, "invalid_request")
    markdown = client.get(f"/v1/sessions/{sid}/transcript")
    assert markdown.headers["content-type"].startswith("text/markdown") and "OK" in markdown.text
    as_json = client.get(f"/v1/sessions/{sid}/transcript", params={"format": "json"})
    assert json.loads(as_json.text)["entries"]
    assert "OK" in client.get(f"/v1/sessions/{sid}/transcript", params={"format": "text"}).text


def test_agents_list_the_mock_and_the_real_agents_as_not_installed(client: httpx.Client) -> None:
    agents = {a["id"]: a for a in client.get("/v1/agents").json()["agents"]}
    assert agents["mock"]["installed"] is True and agents["mock"]["version"] == "builtin"
    assert agents["mock"]["capabilities"]["permissions"] is True
    for real in ("claude", "codex", "opencode", "amp"):
        assert agents[real]["installed"] is False
    modes = client.get("/v1/agents/mock/modes").json()["modes"]
    assert [m["id"] for m in modes] == ["build", "plan"]
    assert client.get("/v1/agents/mock/models").json()["defaultModel"] == "mock"
    problem(client.get("/v1/agents/nope/modes"), 400, "unsupported_agent")
    problem(
        client.post("/v1/sessions/x-claude", json={"agent": "claude"}), 404, "agent_not_installed"
    )
    problem(client.post("/v1/sessions/x-nope", json={"agent": "nope"}), 400, "unsupported_agent")
    problem(
        client.post("/v1/sessions/x-mode", json={"agent": "mock", "agentMode": "weird"}),
        400,
        "mode_not_supported",
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "name"),
    [
        ("POST", "/v1/sessions/e1/messages", {"content": b'{"message":'}, 400, "invalid_request"),
        ("POST", "/v1/sessions/e1/messages", {"json": {"message": 5}}, 400, "invalid_request"),
        ("POST", "/v1/sessions/e1/messages", {"json": {}}, 400, "invalid_request"),
        ("POST", "/v1/sessions/nobody/messages", {"json": {"message": "x"}}, 404, "session_not_found"),  # noqa: E501
        ("GET", "/v1/sessions/nobody/events", {}, 404, "session_not_found"),
        ("GET", "/v1/sessions/nobody/events/sse", {}, 404, "session_not_found"),
        ("GET", "/v1/sessions/e1/events", {"params": {"offset": "x"}}, 400, "invalid_request"),
        ("POST", "/v1/sessions/bad%20id", {"json": {"agent": "mock"}}, 400, "invalid_request"),
        ("POST", "/v1/sessions/" + "a" * 129, {"json": {"agent": "mock"}}, 400, "invalid_request"),
        ("POST", "/v1/sessions/e1/permissions/p/reply", {"json": {"reply": "maybe"}}, 400, "invalid_request"),  # noqa: E501
        ("POST", "/v1/sessions/e1/permissions/nope/reply", {"json": {"reply": "once"}}, 404, "permission_not_found"),  # noqa: E501
        ("POST", "/v1/sessions/e1/questions/nope/reject", {}, 404, "question_not_found"),
        ("GET", "/v1/unknown", {}, 404, "not_found"),
        ("DELETE", "/v1/health", {}, 405, "method_not_allowed"),
        ("POST", "/v1/sessions/e1/messages", {"content": b"x" * (10 * 1024 * 1024 + 1)}, 413, "payload_too_large"),  # noqa: E501
    ],
)  # fmt: skip
def test_every_error_is_problem_json(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, name: str
) -> None:
    if client.get("/v1/sessions/e1").status_code == 404:
        create(client, "e1")
    problem(client.request(method, path, **kwargs), status, name)
    # The OpenAPI document says so: that status, as problem+json, on that operation.
    operation = _operation(client.get("/openapi.json").json(), method, path)
    if operation is None:  # not an operation of the API at all
        assert name in ("not_found", "method_not_allowed")
    else:
        answer = operation["responses"][str(status)]
        assert list(answer["content"]) == ["application/problem+json"]


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The operation of ``document`` that serves ``method path`` (None for unknown routes)."""
    for template, operations in document["paths"].items():
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in operations:
            operation: dict[str, Any] = operations[method.lower()]
            return operation
    return None


def test_a_wrong_method_names_every_method_of_the_path(client: httpx.Client) -> None:
    response = client.request("PUT", "/v1/sessions/e1")
    problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, POST"


def test_an_empty_cursor_is_the_first_page(client: httpx.Client, sid: str) -> None:
    first = client.get("/v1/sessions", params={"limit": 2}).json()
    assert client.get("/v1/sessions", params={"limit": 2, "cursor": ""}).json() == first
    problem(client.get("/v1/sessions", params={"cursor": "nonsense"}), 400, "invalid_request")


def test_the_openapi_document_declares_problem_json_errors_only(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)  # we answer 400
            for status, answer in operation["responses"].items():
                if status[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"]
            if path != "/v1/health":
                assert {"401", "500", "503"} <= set(operation["responses"]), (method, path)


def test_served_openapi_matches_the_committed_copy(client: httpx.Client) -> None:
    """Regenerate with ``python -m sandbox_agent.server.openapi docs/openapi.json``."""
    committed = Path(__file__).parent.parent / "docs" / "openapi.json"
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert render(served.json()) == committed.read_text(encoding="utf-8")
    assert render(openapi_document()) == committed.read_text(encoding="utf-8")


def test_a_nul_character_in_a_session_field_is_400_and_creates_nothing(
    client: httpx.Client,
) -> None:
    session_id = f"api-nul-{next(_ids)}"
    body = {"agent": "mock", "title": "a\u0000b"}
    problem(client.post(f"/v1/sessions/{session_id}", json=body), 400, "invalid_request")
    problem(client.get(f"/v1/sessions/{session_id}"), 404, "session_not_found")
