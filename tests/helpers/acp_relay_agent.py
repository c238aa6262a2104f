"""An ACP agent process for the ACP endpoint's relay (tests/test_acp_endpoint.py).

JSON-RPC 2.0 over stdio, one object per line. It keeps its state in the process: any request
before ``initialize`` gets ``-32600`` "not initialized", and a prompt for a session this process
neither created nor loaded gets ``-32602`` "unknown session". ``initialize`` -> protocol 1 with
``loadSession``; ``session/new`` -> ``{"sessionId": "relay-<pid>-<n>"}``; ``session/load`` of
any id -> ``{}`` (after one ``session/update`` replaying a bit of history); ``session/prompt``
with the text ``ask`` writes a line that is not JSON, asks ``session/request_permission``
(options allow_once ``yes`` / reject_once ``no``), waits for the client's answer, says which
option was chosen as an ``agent_message_chunk`` and ends the turn; any other prompt is answered
``relay: <text>``. The notification ``exit`` ends the process with code 3; any other request
gets ``-32601``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def say(session: str, text: str) -> None:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    params = {"sessionId": session, "update": update}
    send({"jsonrpc": "2.0", "method": "session/update", "params": params})


def error(request: dict[str, Any], code: int, message: str) -> None:
    send({"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": message}})


def main() -> None:
    waiting: dict[str, Any] | None = None  # the prompt waiting for the permission's answer
    initialized = False
    sessions: set[str] = set()
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        if method is None and waiting is not None and message.get("id") == "perm-1":
            outcome = message["result"]["outcome"]
            say(
                waiting["params"]["sessionId"],
                f"chose {outcome.get('optionId', outcome['outcome'])}",
            )
            send({"jsonrpc": "2.0", "id": waiting["id"], "result": {"stopReason": "end_turn"}})
            waiting = None
            continue
        if method == "exit":
            sys.exit(3)
        if "id" not in message or method is None:
            continue
        params = message.get("params") or {}
        if method == "initialize":
            initialized = True
            result = {"protocolVersion": 1, "agentCapabilities": {"loadSession": True}}
            send({"jsonrpc": "2.0", "id": message["id"], "result": result})
        elif not initialized:
            error(message, -32600, "not initialized")
        elif method == "session/new":
            session = f"relay-{os.getpid()}-{len(sessions) + 1}"
            sessions.add(session)
            send({"jsonrpc": "2.0", "id": message["id"], "result": {"sessionId": session}})
        elif method == "session/load":
            sessions.add(params["sessionId"])
            say(params["sessionId"], "(history)")
            send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
        elif method == "session/prompt":
            session = params["sessionId"]
            if session not in sessions:
                error(message, -32602, f"unknown session {session}")
                continue
            text = " ".join(b.get("text", "") for b in params["prompt"])
            if text != "ask":
                say(session, f"relay: {text}")
                send({"jsonrpc": "2.0", "id": message["id"], "result": {"stopReason": "end_turn"}})
                continue
            sys.stdout.write("this is not JSON\n")
            waiting = message
            permission = {
                "sessionId": session,
                "toolCall": {"toolCallId": "call-1", "title": "Run ls", "kind": "execute"},
                "options": [
                    {"optionId": "yes", "name": "Yes", "kind": "allow_once"},
                    {"optionId": "no", "name": "No", "kind": "reject_once"},
                ],
            }
            send(
                {
                    "jsonrpc": "2.0",
                    "id": "perm-1",
                    "method": "session/request_permission",
                    "params": permission,
                }
            )
        else:
            error(message, -32601, f"method not found: {method}")


if __name__ == "__main__":
    main()
