"""``POST /v1/sessions/{id}/fork`` against a real server process over a real SQLite store, with
the mock agent: the fork's answer, how it continues (natively at the end, by replay before
it), what a running source gives, and the problems of bad forks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox_agent.replay.restore import HEADER
from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import (
    ServerProcess,
    create,
    events_of,
    problem,
    running,
    stream_turn,
    wait_for,
)

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fork-server")
    with running(f"sqlite:///{tmp / 's.db'}", tmp / "server.log") as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _said(events: list[dict[str, Any]]) -> list[str]:
    return [
        part["text"]
        for e in events
        if e["type"] == "item.completed" and e["data"]["item"]["role"] == "assistant"
        for part in e["data"]["item"]["content"]
        if part["type"] == "text"
    ]


def _source(client: httpx.Client) -> str:
    sid = f"src-{next(_ids)}"
    create(client, sid)
    stream_turn(client, sid, "echo the password is swordfish")
    stream_turn(client, sid, "echo second answer")
    return sid


def test_a_fork_at_the_end_is_201_with_the_forks_info_and_continues_natively(
    client: httpx.Client,
) -> None:
    sid = _source(client)
    source = client.get(f"/v1/sessions/{sid}").json()
    answer = client.post(f"/v1/sessions/{sid}/fork", json={"sessionId": f"{sid}-f"})
    assert answer.status_code == 201, answer.text
    info = answer.json()
    assert info["sessionId"] == f"{sid}-f" and info["agent"] == "mock"
    assert info["forkedFrom"] == {
        "sessionId": sid,
        "sequence": source["lastSequence"],
        "nativeResume": True,
    }
    assert info["lastSequence"] == source["lastSequence"] + 1  # the copy, then session.resumed
    assert info["nativeSessionId"] == f"mock-{sid}-f"
    assert client.get(f"/v1/sessions/{sid}-f").json()["forkedFrom"] == info["forkedFrom"]
    events = stream_turn(client, f"{sid}-f", "echo third")
    assert _said(events) == ["third"]
    stream = events_of(client, f"{sid}-f")
    mark = stream[source["lastSequence"]]
    assert mark["type"] == "session.resumed"
    assert mark["data"] == {"reason": "forked", "native_resume": True, "replayed_events": 0}
    check_stream(stream)
    # The source is untouched: its stream and its info are as before.
    assert client.get(f"/v1/sessions/{sid}").json()["lastSequence"] == source["lastSequence"]
    assert "forkedFrom" not in client.get(f"/v1/sessions/{sid}").json()


def test_a_fork_at_a_point_gets_a_fresh_id_and_is_restored_by_replay(
    client: httpx.Client,
) -> None:
    sid = _source(client)
    first_end = next(e["sequence"] for e in events_of(client, sid) if e["type"] == "turn.ended")
    answer = client.post(f"/v1/sessions/{sid}/fork", json={"at": first_end})
    assert answer.status_code == 201, answer.text
    info = answer.json()
    fork = info["sessionId"]
    assert fork.startswith(f"{sid}-fork-") and len(fork) == len(sid) + 14
    assert info["forkedFrom"] == {"sessionId": sid, "sequence": first_end, "nativeResume": False}
    (said,) = _said(stream_turn(client, fork, "what was the password?"))
    assert said.startswith(HEADER) and "swordfish" in said and "second answer" not in said
    stream = events_of(client, fork)
    assert stream[first_end]["data"] == {
        "reason": "forked",
        "native_resume": False,
        "replayed_events": 2,
    }
    check_stream(stream)


def test_a_fork_without_a_body_copies_everything(client: httpx.Client) -> None:
    sid = _source(client)
    answer = client.post(f"/v1/sessions/{sid}/fork")
    assert answer.status_code == 201, answer.text
    assert answer.json()["forkedFrom"]["nativeResume"] is True


def test_a_fork_of_a_running_turn_copies_what_is_stored(client: httpx.Client) -> None:
    sid = f"busy-{next(_ids)}"
    create(client, sid)
    # The mock's turn waits for the answers to its two permission requests: it runs on.
    assert client.post(f"/v1/sessions/{sid}/messages", json={"message": "permission"}).is_success
    first = wait_for(client, sid, "permission.requested")
    after = next(e["sequence"] for e in first if e["type"] == "permission.requested")
    wait_for(client, sid, "permission.requested", after=after)  # the second one
    state = client.get(f"/v1/sessions/{sid}/state").json()
    assert len(state["pending_permissions"]) == 2 and state["turns"][-1]["ended_sequence"] is None
    info = client.post(f"/v1/sessions/{sid}/fork", json={"sessionId": f"{sid}-copy"}).json()
    point = info["forkedFrom"]["sequence"]
    assert info["forkedFrom"]["nativeResume"] is False  # mid-turn: restored by replay
    copy = events_of(client, f"{sid}-copy")
    tail = [(e["type"], e["data"].get("status") or e["data"].get("reason")) for e in copy[point:]]
    assert tail == [
        ("session.resumed", "forked"),
        ("permission.resolved", "reject"),
        ("permission.resolved", "reject"),
        ("turn.ended", "interrupted"),
    ]
    assert client.get(f"/v1/sessions/{sid}-copy").json()["status"] == "idle"
    check_stream(copy)
    # The source's turn is untouched: answered, it ends as it would have.
    for permission_id in client.get(f"/v1/sessions/{sid}/state").json()["pending_permissions"]:
        path = f"/v1/sessions/{sid}/permissions/{permission_id}/reply"
        assert client.post(path, json={"reply": "once"}).status_code == 204
    ended = wait_for(client, sid, "turn.ended", after=point)
    assert [e["data"]["reason"] for e in ended if e["type"] == "turn.ended"] == ["completed"]


def test_bad_forks_are_problems(client: httpx.Client) -> None:
    sid = _source(client)
    last = client.get(f"/v1/sessions/{sid}").json()["lastSequence"]
    body = problem(client.post("/v1/sessions/nope/fork", json={}), 404, "session_not_found")
    assert body["sessionId"] == "nope"
    taken = client.post(f"/v1/sessions/{sid}/fork", json={"sessionId": sid})
    assert problem(taken, 409, "session_already_exists")["sessionId"] == sid
    past = client.post(f"/v1/sessions/{sid}/fork", json={"at": last + 1})
    assert f"sequence {last + 1} is past the end" in problem(past, 400, "invalid_request")["detail"]
    for bad in ({"at": 0}, {"at": -1}, {"sessionId": "bad id"}, {"at": "x"}):
        problem(client.post(f"/v1/sessions/{sid}/fork", json=bad), 400, "invalid_request")
    listed = {s["sessionId"] for s in client.get("/v1/sessions").json()["sessions"]}
    assert not {s for s in listed if s.startswith(f"{sid}-fork") or s == "nope"}
