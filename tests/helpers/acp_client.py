"""An ACP client of a real server's endpoint (``docs/acp.md``), for the real-agent tests.

``AcpClient(client, server_id, agent)`` POSTs JSON-RPC envelopes to ``/v1/acp/{server_id}``
(the first with ``?agent=``) and reads the agent's envelopes back from its SSE stream, from the
start: ``until(predicate)`` returns them up to the first one the predicate accepts.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import httpx

Envelope = dict[str, Any]


class AcpClient:
    def __init__(self, client: httpx.Client, server_id: str, agent: str) -> None:
        self.client = client
        self.path = f"/v1/acp/{server_id}"
        self.agent = agent
        self._ids = itertools.count(1)
        self._started = False

    def post(self, message: Envelope) -> httpx.Response:
        params = {} if self._started else {"agent": self.agent}
        self._started = True
        return self.client.post(
            self.path,
            content=json.dumps(message),
            headers={"Content-Type": "application/json"},
            params=params,
        )

    def request(self, method: str, **params: Any) -> Envelope:
        """Send a request; its JSON-RPC response (a 200 in any case)."""
        answer = self.post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        assert answer.status_code == 200, answer.text
        result: Envelope = answer.json()
        return result

    def request_later(self, method: str, **params: Any) -> tuple[int, Future[Envelope]]:
        """Send a request from a thread (a prompt answers at its turn's end): its id and the
        future of its response."""
        request_id = next(self._ids)
        future: Future[Envelope] = Future()
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}

        def run() -> None:
            try:
                answer = self.post(message)
                assert answer.status_code == 200, answer.text
                future.set_result(answer.json())
            except BaseException as exc:  # handed to the test through the future
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return request_id, future

    def answer(self, request_id: Any, result: Envelope) -> None:
        """The client's response to an agent's request (202)."""
        answer = self.post({"jsonrpc": "2.0", "id": request_id, "result": result})
        assert answer.status_code == 202, answer.text

    def until(self, predicate: Callable[[Envelope], bool]) -> list[Envelope]:
        """The agent's envelopes from the stream's start up to the first ``predicate`` accepts
        (the client's read timeout bounds the wait)."""
        seen: list[Envelope] = []
        headers = {"Accept": "text/event-stream"}
        with self.client.stream("GET", self.path, headers=headers) as stream:
            assert stream.status_code == 200, stream.read()
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                envelope = json.loads(line.removeprefix("data:").strip())
                seen.append(envelope)
                if predicate(envelope):
                    return seen
        raise AssertionError(f"the stream ended before the awaited envelope: {seen}")


def answer_to(request_id: Any) -> Callable[[Envelope], bool]:
    return lambda e: e.get("id") == request_id and "method" not in e


def asks_permission(envelope: Envelope) -> bool:
    return envelope.get("method") == "session/request_permission"


def updates(envelopes: list[Envelope], kind: str) -> list[Envelope]:
    """The ``session/update`` payloads of ``kind`` (``agent_message_chunk``, ``tool_call``...)."""
    return [
        e["params"]["update"]
        for e in envelopes
        if e.get("method") == "session/update" and e["params"]["update"]["sessionUpdate"] == kind
    ]


def chunk_text(envelopes: list[Envelope]) -> str:
    return "".join(u["content"]["text"] for u in updates(envelopes, "agent_message_chunk"))


def selected(option_id: str) -> Envelope:
    return {"outcome": {"outcome": "selected", "optionId": option_id}}


def assert_loaded_after_restart(events: list[dict[str, Any]], session_id: str, cwd: str) -> None:
    """The stored ``acp.message`` events of a server's restore: the endpoint gave the new
    adapter ``initialize``, then ``session/load`` of ``session_id`` in ``cwd``, which it
    answered with an empty result."""
    restore = [
        e["data"]["message"]
        for e in events
        if e["type"] == "acp.message" and e["data"].get("restore")
    ]
    assert [m.get("method") for m in restore if "method" in m] == ["initialize", "session/load"]
    [load] = [m for m in restore if m.get("method") == "session/load"]
    assert load["params"]["sessionId"] == session_id
    assert load["params"]["cwd"] == cwd
    [loaded] = [m for m in restore if m.get("id") == load["id"] and "method" not in m]
    assert loaded == {"jsonrpc": "2.0", "id": load["id"], "result": {}}
