"""An ACP agent that shows what it was given: ``python probe_acp_agent.py OUTDIR``.

At start it writes its whole environment to ``OUTDIR/env.json``. JSON-RPC 2.0 over stdio, one
object per line: ``initialize`` offers image prompts, ``session/new`` answers
``{"sessionId": "probe-<pid>"}``, ``session/prompt`` appends the prompt's content blocks as one
line to ``OUTDIR/prompts.jsonl`` and ends the turn (``end_turn``); any other request gets a
``-32601`` error, notifications are ignored.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _answer(message: dict[str, Any], out: Path) -> dict[str, Any]:
    method = message.get("method")
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        capabilities = {"promptCapabilities": {"image": True, "embeddedContext": True}}
        reply["result"] = {"protocolVersion": 1, "agentCapabilities": capabilities}
    elif method == "session/new":
        reply["result"] = {"sessionId": f"probe-{os.getpid()}"}
    elif method == "session/prompt":
        with open(out / "prompts.jsonl", "a") as prompts:
            prompts.write(json.dumps(message["params"]["prompt"]) + "\n")
        reply["result"] = {"stopReason": "end_turn"}
    else:
        reply["error"] = {"code": -32601, "message": f"method not found: {method}"}
    return reply


def main() -> None:
    out = Path(sys.argv[1])
    (out / "env.json").write_text(json.dumps(dict(os.environ)))
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "id" in message and "method" in message:
            sys.stdout.write(json.dumps(_answer(message, out)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
