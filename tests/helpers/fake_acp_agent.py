"""A tiny ACP agent that records how it was stopped: ``python fake_acp_agent.py PIDFILE``.

JSON-RPC 2.0 over stdin/stdout, one JSON object per line: ``initialize`` answers
``{"protocolVersion": 1, "agentCapabilities": {}}``, ``session/new`` answers
``{"sessionId": "fake-1"}``, any other request gets a ``-32601`` error; notifications are ignored.

It writes its pid to PIDFILE at start. When its stdin reaches EOF it writes ``stdin EOF`` to the
sibling file ``stopped_marker(PIDFILE)``, on SIGTERM ``SIGTERM``, and exits 0. A SIGKILL (what
an agent gets when its server dies without a graceful stop) leaves no marker.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any


def stopped_marker(pid_file: Path) -> Path:
    """Where the agent of ``pid_file`` writes how it was stopped."""
    return pid_file.with_name(pid_file.name + ".stopped")


def _stopped(marker: Path, how: str) -> None:
    # One stop only: a SIGTERM arriving while the EOF is being recorded must not rewrite it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    marker.write_text(how)
    os._exit(0)


def _answer(message: dict[str, Any]) -> dict[str, Any]:
    method = message.get("method")
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        reply["result"] = {"protocolVersion": 1, "agentCapabilities": {}}
    elif method == "session/new":
        reply["result"] = {"sessionId": "fake-1"}
    else:
        reply["error"] = {"code": -32601, "message": f"method not found: {method}"}
    return reply


def main() -> None:
    pid_file = Path(sys.argv[1])
    marker = stopped_marker(pid_file)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        _stopped(marker, "SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    pid_file.write_text(str(os.getpid()))
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "id" in message and "method" in message:
            sys.stdout.write(json.dumps(_answer(message)) + "\n")
            sys.stdout.flush()
    _stopped(marker, "stdin EOF")


if __name__ == "__main__":
    main()
