"""An ACP agent process for the ACP endpoint's relay (tests/test_acp_endpoint.py).

JSON-RPC 2.0 over stdio, one object per line: ``initialize`` -> protocol 1, ``session/new`` ->
``{"sessionId": "relay-<pid>"}``; ``session/prompt`` writes a line that is not JSON, asks
``session/request_permission`` (options allow_once ``yes`` / reject_once ``no``), waits for the
client's answer, says which option was chosen as an ``agent_message_chunk`` and ends the turn;
the notification ``exit`` ends the process with code 3; any other request gets ``-32601``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    waiting: dict[str, Any] | None = None  # the prompt waiting for the permission's answer
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        if method is None and waiting is not None and message.get("id") == "perm-1":
            outcome = message["result"]["outcome"]
            chosen = outcome.get("optionId", outcome["outcome"])
            update = {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": f"chose {chosen}"},
            }
            session = waiting["params"]["sessionId"]
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {"sessionId": session, "update": update},
                }
            )
            send({"jsonrpc": "2.0", "id": waiting["id"], "result": {"stopReason": "end_turn"}})
            waiting = None
            continue
        if method == "exit":
            sys.exit(3)
        if "id" not in message or method is None:
            continue
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": message["id"], "result": {"protocolVersion": 1}})
        elif method == "session/new":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "result": {"sessionId": f"relay-{os.getpid()}"},
                }
            )
        elif method == "session/prompt":
            sys.stdout.write("this is not JSON\n")
            waiting = message
            params = {
                "sessionId": message["params"]["sessionId"],
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
                    "params": params,
                }
            )
        else:
            error = {"code": -32601, "message": f"method not found: {method}"}
            send({"jsonrpc": "2.0", "id": message["id"], "error": error})


if __name__ == "__main__":
    main()
