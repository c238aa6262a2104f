"""Session streams as a well-behaved writer produces them: ``Stream``, a builder with fixed ids
and times, ``canonical_session`` (one session touching every kind of content), and
``make_event`` for events that skip validation (as a store might hand back)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox_agent.events import EventDraft, UniversalEvent

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class Stream:
    """Builds a session's events as a well-behaved writer would, with fixed ids and times."""

    def __init__(self, session_id: str = "s1", *, step_ms: int = 250) -> None:
        self.session_id = session_id
        self.step = timedelta(milliseconds=step_ms)
        self.events: list[UniversalEvent] = []

    def add(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        source: str = "agent",
        synthetic: bool = False,
        sequence: int | None = None,
        raw: Any = None,
    ) -> UniversalEvent:
        number = len(self.events) + 1
        draft = EventDraft(
            type=type,
            data=data or {},
            source=source,
            synthetic=synthetic,
            raw=raw,
        )
        event = draft.to_event(
            session_id=self.session_id,
            sequence=number if sequence is None else sequence,
            event_id=f"evt_{self.session_id}_{number:05d}",
            time=T0 + self.step * number,
        )
        self.events.append(event)
        return event

    # -- conveniences ---------------------------------------------------------------------
    def started(self, agent: str = "mock", **metadata: Any) -> Stream:
        self.add("session.started", {"metadata": {"agent": agent, **metadata}}, source="daemon")
        return self

    def turn(self, turn_id: str | None = "t1") -> Stream:
        self.add("turn.started", {"phase": "started", "turn_id": turn_id}, source="daemon")
        return self

    def turn_end(self, turn_id: str | None = "t1", reason: str = "completed") -> Stream:
        self.add("turn.ended", {"phase": "ended", "turn_id": turn_id, "reason": reason})
        return self

    def queued(self, queue_id: str = "q_1", message: str = "next") -> Stream:
        """A prompt queued behind the running turn."""
        self.add(
            "prompt.queued",
            {"queue_id": queue_id, "message": message, "attachments": []},
            source="client",
        )
        return self

    def dequeued(self, queue_id: str = "q_1", reason: str = "started") -> Stream:
        self.add("prompt.dequeued", {"queue_id": queue_id, "reason": reason}, source="daemon")
        return self

    def item_start(
        self, item_id: str, role: str = "assistant", kind: str = "message", **kw: Any
    ) -> Stream:
        item = {"item_id": item_id, "kind": kind, "role": role, "status": "in_progress", **kw}
        self.add("item.started", {"item": item}, source="client" if role == "user" else "agent")
        return self

    def delta(self, item_id: str, text: str) -> Stream:
        self.add("item.delta", {"item_id": item_id, "delta": text})
        return self

    def item_done(
        self,
        item_id: str,
        content: list[dict[str, Any]],
        role: str = "assistant",
        kind: str = "message",
        status: str = "completed",
    ) -> Stream:
        item = {
            "item_id": item_id,
            "kind": kind,
            "role": role,
            "status": status,
            "content": content,
        }
        self.add("item.completed", {"item": item}, source="client" if role == "user" else "agent")
        return self

    def user(self, item_id: str, text: str) -> Stream:
        content = [{"type": "text", "text": text}]
        self.item_start(item_id, "user", content=content)
        return self.item_done(item_id, content, "user")

    def assistant(self, item_id: str, *chunks: str) -> Stream:
        self.item_start(item_id)
        for chunk in chunks:
            self.delta(item_id, chunk)
        return self.item_done(item_id, [{"type": "text", "text": "".join(chunks)}])

    def tool_call(self, item_id: str, name: str, arguments: dict[str, Any], call_id: str) -> Stream:
        self.item_start(item_id, kind="tool_call")
        part = {
            "type": "tool_call",
            "name": name,
            "arguments": json.dumps(arguments),
            "call_id": call_id,
        }
        return self.item_done(item_id, [part], kind="tool_call")

    def tool_result(
        self, item_id: str, call_id: str, output: str, *extra: dict[str, Any]
    ) -> Stream:
        self.item_start(item_id, role="tool", kind="tool_result")
        parts = [{"type": "tool_result", "call_id": call_id, "output": output}, *extra]
        return self.item_done(item_id, parts, role="tool", kind="tool_result")

    def permission(self, pid: str, action: str, status: str = "accept", **metadata: Any) -> Stream:
        self.permission_request(pid, action)
        return self.permission_resolve(pid, action, status, **metadata)

    def permission_request(self, pid: str, action: str) -> Stream:
        data = {"permission_id": pid, "action": action, "status": "requested"}
        self.add("permission.requested", data)
        return self

    def permission_resolve(self, pid: str, action: str, status: str, **metadata: Any) -> Stream:
        data = {
            "permission_id": pid,
            "action": action,
            "status": status,
            "metadata": metadata or None,
        }
        self.add("permission.resolved", data, source="client")
        return self

    def question_ask(self, qid: str, prompt: str, options: Sequence[str] = ()) -> Stream:
        data = {
            "question_id": qid,
            "prompt": prompt,
            "options": list(options),
            "status": "requested",
        }
        self.add("question.requested", data)
        return self

    def question_answer(
        self, qid: str, prompt: str, response: str | None, options: Sequence[str] = ()
    ) -> Stream:
        status = "answered" if response is not None else "rejected"
        data = {
            "question_id": qid,
            "prompt": prompt,
            "options": list(options),
            "status": status,
            "response": response,
        }
        self.add("question.resolved", data, source="client")
        return self

    def error(self, message: str, code: str | None = None) -> Stream:
        self.add("error", {"message": message, "code": code})
        return self

    def ended(self, reason: str = "completed", by: str = "agent", **kw: Any) -> Stream:
        self.add("session.ended", {"reason": reason, "terminated_by": by, **kw}, source="daemon")
        return self


def canonical_session(session_id: str = "s1") -> Stream:
    """A well-formed session touching every kind of content: the golden transcripts' input."""
    s = Stream(session_id).started(
        "mock", agentMode="build", model="mock-1", title="Fix the greeting"
    )
    s.turn("t1").user("u1", "Please fix the greeting in hello.py")
    s.item_start("r1")
    s.delta("r1", "Looking at the file.")
    s.item_done(
        "r1",
        [
            {"type": "reasoning", "text": "The greeting is misspelled.", "visibility": "public"},
            {"type": "reasoning", "text": "secret chain of thought", "visibility": "private"},
            {"type": "text", "text": "Looking at the file."},
        ],
    )
    s.tool_call("c1", "read_file", {"path": "hello.py"}, "call_1")
    s.tool_result("c1r", "call_1", 'print("helo")')
    s.permission("p1", "write hello.py", "accept")
    s.tool_result(
        "c2r",
        "call_2",
        "ok",
        {
            "type": "file_ref",
            "path": "hello.py",
            "action": "patch",
            "diff": '-print("helo")\n+print("hello")',
        },
    )
    s.assistant("a1", "Fixed: ", "the greeting now says hello.")
    s.turn_end("t1")
    s.turn("t2").user("u2", "Should I also add a test?")
    s.question_ask("q1", "Which framework?", ["pytest", "unittest"])
    s.question_answer("q1", "Which framework?", "pytest", ["pytest", "unittest"])
    s.assistant("a2", "Added ", "test_hello.py with pytest.")
    s.error("rate limited, retrying", "rate_limit")
    s.turn_end("t2")
    s.ended("completed", "agent", exit_code=0)
    return s


def make_event(session_id: str, sequence: int, kind: str, data: dict[str, Any]) -> UniversalEvent:
    """An event built without validating its payload (as a store might hand back)."""
    return UniversalEvent.model_construct(
        event_id=f"evt_{sequence}",
        sequence=sequence,
        time=T0 + timedelta(seconds=sequence),
        session_id=session_id,
        native_session_id=None,
        source="agent",
        synthetic=False,
        type=kind,
        data=data,
        raw=None,
    )
