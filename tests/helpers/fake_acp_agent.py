"""A tiny ACP agent that records how it was stopped: ``python fake_acp_agent.py PIDFILE``.

JSON-RPC 2.0 over stdin/stdout, one JSON object per line: ``initialize`` answers
``{"protocolVersion": 1, "agentCapabilities": {}}``, ``session/new`` answers
``{"sessionId": "fake-<pid>"}`` (a new native session per process: it cannot load one), any
other request gets a ``-32601`` error; notifications are ignored.

It writes its pid to PIDFILE at start. On SIGTERM it writes ``SIGTERM`` to the sibling file
``stopped_marker(PIDFILE)`` and exits 0. At the end of its stdin it waits up to
``EOF_WAIT_SECONDS`` for that SIGTERM (writing ``stdin EOF`` if none comes): a server's graceful
stop closes stdin and sends SIGTERM at once, while a SIGKILLed server closes the pipe too, as it
dies, and then its agents get SIGKILL (the parent-death signal), which leaves no marker. So
``SIGTERM`` in the marker means the server stopped its agent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

EOF_WAIT_SECONDS = 5.0


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
        reply["result"] = {"sessionId": f"fake-{os.getpid()}"}
    else:
        reply["error"] = {"code": -32601, "message": f"method not found: {method}"}
    return reply


def main() -> None:
    pid_file = Path(sys.argv[1])
    marker = stopped_marker(pid_file)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        sys.stderr.write("fake agent: SIGTERM\n")
        _stopped(marker, "SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    pid_file.write_text(str(os.getpid()))
    sys.stderr.write(f"fake agent: pid {os.getpid()}\n")
    sys.stderr.flush()
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and "id" in message and "method" in message:
            sys.stdout.write(json.dumps(_answer(message)) + "\n")
            sys.stdout.flush()
    sys.stderr.write("fake agent: stdin EOF\n")
    sys.stderr.flush()
    # Short sleeps, not one long one: a SIGTERM that came while the last read returned (the
    # server closes stdin, then signals) is only handled by the interpreter at a loop's jump
    # back, never inside a C call such as one long time.sleep.
    deadline = time.monotonic() + EOF_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.02)
    _stopped(marker, "stdin EOF")


if __name__ == "__main__":
    main()
