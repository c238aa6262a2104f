"""Whether a process runs, for tests that check which processes a stop left behind."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state, ppid, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # no /proc: trust the signal
        return stat_fields(pid)[0] != "Z"
    return True


def gone_within(pid: int, seconds: float = 5) -> bool:
    """Wait up to ``seconds`` for ``pid`` to stop running."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
