"""Crash recovery: SIGKILL the server mid-turn, restart it on the same store, and check that
every acknowledged event is there, the stream is clean, and the session goes on."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from sandbox_agent.testing.consistency import check_stream
from sandbox_agent.testing.server import (
    OK_PROMPT,
    ServerProcess,
    create,
    events_of,
    stream_turn,
    wait_for,
)

PROMPTS = ["markdown", "demo", "tool", "permission", "question", "status", OK_PROMPT]


class _Follower(threading.Thread):
    """Reads a session's SSE stream until the connection dies: what a client saw."""

    def __init__(self, url: str, session_id: str, after: int) -> None:
        super().__init__(daemon=True)
        self.url, self.session_id, self.after = url, session_id, after
        self.seen: list[dict[str, Any]] = []
        self.ready = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=self.url) as client:
            path = f"/v1/sessions/{self.session_id}/events/sse"
            with connect_sse(client, "GET", path, params={"offset": self.after}) as source:
                self.ready.set()
                for sse in source.iter_sse():
                    self.seen.append(json.loads(sse.data))
        self.ready.set()


def _kill_mid_turn(server: ServerProcess, follower: _Follower, rng: random.Random) -> None:
    """SIGKILL the server once a client has seen the first 1-4 events of the turn: mid-turn,
    unless the turn ended first (the caller counts which it was)."""
    seen_enough = rng.randint(1, 4)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = list(follower.seen)
        if len(seen) >= seen_enough or "turn.ended" in [e["type"] for e in seen]:
            break
        time.sleep(0.002)
    server.kill()


def _trial(server: ServerProcess, rng: random.Random, number: int) -> bool:
    """One crash trial; True when the kill landed mid-turn (recovery ended the turn)."""
    session_id = f"crash-{number}"
    with server.client() as client:
        create(client, session_id)
        if rng.random() < 0.5:
            stream_turn(client, session_id, OK_PROMPT)
        before = events_of(client, session_id)
        follower = _Follower(server.url, session_id, before[-1]["sequence"])
        follower.start()
        follower.ready.wait(5)
        acknowledged = list(before)
        prompt = rng.choice(PROMPTS)
        sent = client.post(f"/v1/sessions/{session_id}/messages", json={"message": prompt})
        assert sent.status_code == 204
    _kill_mid_turn(server, follower, rng)
    follower.join(10)
    acknowledged += follower.seen
    server.start()
    with server.client() as client:
        stored = events_of(client, session_id)
        check_stream(stored)
        by_sequence = {e["sequence"]: e for e in stored}
        for event in acknowledged:
            assert by_sequence.get(event["sequence"]) == event
        # The prompt was acknowledged (204): its turn.started and user item are stored.
        types = [e["type"] for e in stored[len(before) :]]
        assert "turn.started" in types
        ended = stored[len(before) + types.index("turn.ended")]
        mid_turn = ended["data"]["reason"] == "interrupted"  # recovery ended it, not the agent
        assert ended["source"] == "daemon" if mid_turn else ended["data"]["reason"] == "completed"
        resumed = [e for e in stored if e["type"] == "session.resumed"]
        assert resumed and resumed[-1]["data"]["reason"] == "server_restart"
        assert resumed[-1]["data"]["native_resume"] is True
        state = client.get(f"/v1/sessions/{session_id}/state").json()
        assert state["status"] == "idle" and not state["pending_permissions"]
        assert not state["pending_questions"]
        for question in state["resolved_questions"].values():
            assert question["status"] in ("answered", "rejected")
        events = stream_turn(client, session_id, OK_PROMPT)
        assert events[-1]["type"] == "turn.ended" and events[-1]["data"]["reason"] == "completed"
        check_stream(events_of(client, session_id))
    return mid_turn


def _run_trials(tmp_path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    server = ServerProcess(
        f"sqlite:///{tmp_path / 's.db'}", tmp_path / "server.log", mock_delay_ms=20
    ).start()
    try:
        mid_turn = sum(_trial(server, rng, number) for number in range(count))
        print(f"{mid_turn} of {count} kills mid-turn")  # shown by pytest -rP
        # Most kills must land inside a turn, or the trials prove little (as the store's).
        assert mid_turn >= count * 3 // 4, f"{mid_turn} of {count} kills mid-turn"
        # Every session of the store is still clean after all those crashes.
        with server.client() as client:
            sessions = client.get("/v1/sessions", params={"limit": 1000}).json()["sessions"]
            assert len(sessions) == count
            for info in sessions:
                check_stream(events_of(client, info["sessionId"]))
        # And the replay engine's check as a user runs it, over every session of the store.
        command = [sys.executable, "-m", "sandbox_agent", "replay", "--all", "--check", "--json"]
        done = subprocess.run(
            [*command, "--store", server.store_url], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        reports = json.loads(done.stdout)
        assert len(reports) == count and all(r["anomalies"] == [] for r in reports)
    finally:
        server.stop()


def test_sigkill_mid_turn_loses_nothing_acknowledged(tmp_path: Path) -> None:
    _run_trials(tmp_path, 6, seed=20251126)  # 300 in the slow suite


@pytest.mark.slow
@pytest.mark.timeout(3000)  # about 4 s a trial on a loaded 2-core machine
def test_sigkill_mid_turn_300_trials(tmp_path: Path) -> None:
    _run_trials(tmp_path, 300, seed=300)


def test_a_turn_running_at_a_crash_ends_interrupted_and_pending_requests_are_rejected(
    tmp_path: Path,
) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log").start()
    try:
        with server.client() as client:
            create(client, "q1")
            prompt = (
                "Use the AskUserQuestion tool to ask exactly one yes/no question, then wait for "
                "a reply. Do not answer yourself."
            )
            client.post("/v1/sessions/q1/messages", json={"message": prompt})
            wait_for(client, "q1", "question.requested")
        server.kill()
        server.start()
        with server.client() as client:
            events = events_of(client, "q1")
            tail = [(e["type"], e["source"]) for e in events[-3:]]
            assert tail == [
                ("question.resolved", "daemon"),
                ("turn.ended", "daemon"),
                ("session.resumed", "daemon"),
            ]
            assert events[-3]["data"]["status"] == "rejected"
            assert events[-3]["data"]["metadata"] == {"reason": "interrupted"}
            assert events[-2]["data"]["reason"] == "interrupted"
            assert events[-1]["data"]["reason"] == "server_restart"
            check_stream(events)
        # A graceful stop, then a start: the session resumes again and goes on.
        assert server.stop() in (0, -15)  # uvicorn re-raises the SIGTERM it handled
        server.start()
        with server.client() as client:
            assert stream_turn(client, "q1", OK_PROMPT)[-1]["type"] == "turn.ended"
            events = events_of(client, "q1")
            assert [e["type"] for e in events].count("session.resumed") == 2
            check_stream(events)
    finally:
        server.stop()


def test_always_answers_survive_a_restart(tmp_path: Path) -> None:
    # "always" is remembered by the adapter; after a crash the new adapter learns the earlier
    # answers from the stored stream, so a matching request is answered without asking.
    server = ServerProcess(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "log").start()
    try:
        with server.client() as client:
            create(client, "p1")
            events = stream_turn(client, "p1", "permission")
            pid = events[-1]["data"]["permission_id"]
            client.post(f"/v1/sessions/p1/permissions/{pid}/reply", json={"reply": "always"})
            for e in events_of(client, "p1"):
                if e["type"] == "permission.requested" and e["data"]["permission_id"] != pid:
                    other = e["data"]["permission_id"]
                    client.post(
                        f"/v1/sessions/p1/permissions/{other}/reply", json={"reply": "once"}
                    )
            wait_for(client, "p1", "turn.ended")
        server.kill()
        server.start()
        with server.client() as client:
            after = events_of(client, "p1")[-1]["sequence"]
            stream_turn(client, "p1", "permission")
            wait_for(client, "p1", "permission.resolved", after=after)
            auto = [
                e
                for e in events_of(client, "p1", offset=after)
                if e["type"] == "permission.resolved"
                and e["data"]["status"] == "accept_for_session"
            ]
            assert auto and auto[0]["source"] == "daemon" and auto[0]["synthetic"] is True
            check_stream(events_of(client, "p1"))
    finally:
        server.stop()
