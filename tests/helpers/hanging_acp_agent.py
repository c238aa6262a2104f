"""An ACP agent that hangs mid-turn when told to: ``python hanging_acp_agent.py OUTDIR``.

JSON-RPC 2.0 over stdio, one object per line. ``initialize`` answers protocol 1 (it cannot load
sessions), ``session/new`` answers ``{"sessionId": "hang-<pid>"}``. ``session/prompt``: when the
prompt's text ends with ``HANG`` (not merely contains it: a prompt after a restart carries the
conversation so far), one ``agent_message_chunk`` ``PARTIAL`` and then nothing, ever:
the prompt is never answered and ``session/cancel`` is ignored (SIGTERM still ends it). Ending
with ``SPIN`` instead: ``PARTIAL``, then a chunk ``.`` every ``SPIN_SECONDS``, for ever, also
deaf to ``session/cancel`` (busy, never silent). Any other prompt gets one chunk ``FRESH`` and
``end_turn``. Other requests: ``-32601``.

It appends what happens to ``OUTDIR/agent.jsonl``, one JSON object a line with its ``pid``:
``{"event": "start"}``, ``{"event": "prompt", "hang": bool}``, ``{"event": "cancel"}``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

PARTIAL = "a partial answer"
FRESH = "a fresh answer"
SPIN_SECONDS = 0.2
_stdout = threading.Lock()


def _note(out: Path, **entry: Any) -> None:
    with open(out / "agent.jsonl", "a") as log:
        log.write(json.dumps({"pid": os.getpid(), **entry}) + "\n")


def _send(message: dict[str, Any]) -> None:
    with _stdout:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def _spin(session_id: str) -> None:
    while True:
        time.sleep(SPIN_SECONDS)
        _chunk(session_id, ".")


def _chunk(session_id: str, text: str) -> None:
    update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    params = {"sessionId": session_id, "update": update}
    _send({"jsonrpc": "2.0", "method": "session/update", "params": params})


def _prompt(message: dict[str, Any], out: Path) -> None:
    params = message["params"]
    text = " ".join(b.get("text", "") for b in params["prompt"] if isinstance(b, dict))
    hang = text.rstrip().endswith(("HANG", "SPIN"))
    _note(out, event="prompt", hang=hang)
    if hang:
        _chunk(params["sessionId"], PARTIAL)
        if text.rstrip().endswith("SPIN"):
            threading.Thread(target=_spin, args=(params["sessionId"],), daemon=True).start()
        return  # never answered
    _chunk(params["sessionId"], FRESH)
    _send({"jsonrpc": "2.0", "id": message["id"], "result": {"stopReason": "end_turn"}})


def main() -> None:
    out = Path(sys.argv[1])
    _note(out, event="start")
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "method" not in message:
            continue
        method = message["method"]
        if "id" not in message:  # a notification
            if method == "session/cancel":
                _note(out, event="cancel")
            continue
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        if method == "initialize":
            reply["result"] = {"protocolVersion": 1, "agentCapabilities": {}}
        elif method == "session/new":
            reply["result"] = {"sessionId": f"hang-{os.getpid()}"}
        elif method == "session/prompt":
            _prompt(message, out)
            continue
        else:
            reply["error"] = {"code": -32601, "message": f"method not found: {method}"}
        _send(reply)


if __name__ == "__main__":
    main()
