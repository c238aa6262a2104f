"""Child processes of the adapters: own process group, stderr to a log file, JSON lines.

Every agent CLI runs through ``AgentProcess``: it starts in its own session (so ``stop()`` can end
the whole group, grandchildren included: several CLIs are node wrappers around a native binary),
in the session's directory with the environment ``environment.agent_environment`` made for it
(``PWD`` set to match: OpenCode finds its project config through ``$PWD``), with stdin and
stdout as pipes and stderr appended to a per-agent log file, never read by a parser. On Linux it
starts through ``setpriv --pdeathsig KILL``, so that an agent (a shared ``opencode serve`` above
all, which reads no stdin) dies with a server that was SIGKILLed instead of living on as an
orphan in its own process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Longest stdout line read (some CLIs put a whole tool output or image on one line).
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Seconds ``stop()`` waits after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 3.0


class AgentProcess:
    """One running agent CLI. Use ``await AgentProcess.spawn(...)``."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: Sequence[str], log_path: Path):
        self.proc = proc
        self.argv = list(argv)
        self.log_path = log_path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        log_path: Path,
        stdin: bool = True,
    ) -> AgentProcess:
        """Start ``argv`` in ``cwd``; raises ``OSError`` when it cannot be started."""
        await asyncio.to_thread(log_path.parent.mkdir, parents=True, exist_ok=True)
        log = await asyncio.to_thread(open, log_path, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *_with_parent_death_signal(argv),
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                limit=MAX_LINE_BYTES,
            )
        finally:
            log.close()
        logger.debug("started %s (pid %s), stderr to %s", argv[0], proc.pid, log_path)
        return cls(proc, argv, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def lines(self) -> AsyncIterator[bytes]:
        """Each stdout line (without its newline) until the process closes stdout."""
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:
                # Longer than MAX_LINE_BYTES: skip to the next newline rather than die.
                logger.warning(
                    "%s: stdout line over %d bytes dropped", self.argv[0], MAX_LINE_BYTES
                )
                continue
            if not line:
                return
            line = line.rstrip(b"\r\n")
            if line:
                yield line

    async def write_line(self, text: str) -> None:
        """Write one line to stdin; raises ``ConnectionError`` once the process is gone."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise ConnectionResetError(f"{self.argv[0]}: stdin is closed")
        async with self._write_lock:
            stdin.write(text.encode() + b"\n")
            await stdin.drain()

    async def write_json(self, message: Any) -> None:
        await self.write_line(json.dumps(message, separators=(",", ":")))

    def close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    async def wait(self) -> int:
        return await self.proc.wait()

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (no-op once it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """End the process and its group: close stdin, SIGTERM, then SIGKILL after ``grace``."""
        self.close_stdin()
        if self.proc.returncode is None:
            logger.debug("stopping %s (pid %s): SIGTERM", self.argv[0], self.proc.pid)
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "%s (pid %s) did not stop within %s s: SIGKILL",
                    self.argv[0],
                    self.proc.pid,
                    grace,
                )
                self.signal_group(signal.SIGKILL)
                await self.proc.wait()
        else:
            logger.debug("%s (pid %s) exited by itself", self.argv[0], self.proc.pid)
        # Children that outlived the leader (node wrappers' native binaries) go too.
        self.signal_group(signal.SIGKILL)
        return self.proc.returncode

    def stderr_tail(self, max_bytes: int = 4000) -> str:
        """The end of the log file (what the agent said on stderr), for error events."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - max_bytes))
                return log.read().decode(errors="replace")
        except OSError:
            return ""


_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` behind ``setpriv --pdeathsig KILL`` where setpriv exists (util-linux)."""
    if _SETPRIV is None:
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
