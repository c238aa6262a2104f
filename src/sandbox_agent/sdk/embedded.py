"""Embedded mode: a ``sandbox-agent server`` child process on a free loopback port.

The child gets a random token (through its environment, not its command line), its own store
in a temporary directory unless one is given, and its own process group, so that closing
stops it and anything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from sandbox_agent.sdk.errors import SandboxAgentError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """A server child process; ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        *,
        store: str | None = None,
        token: str | None = None,
        mock_delay_ms: int | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = free_port()
        self.token = token or secrets.token_urlsafe(24)
        self._dir = Path(tempfile.mkdtemp(prefix="sandbox-agent-"))
        self.store = store or f"sqlite:///{self._dir / 'server.db'}"
        self.mock_delay_ms = mock_delay_ms
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._dir / "server.log"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "sandbox_agent", "server", "-H", "127.0.0.1"]
        command += ["-p", str(self.port), "--store", self.store, "--log-level", "warning"]
        if self.mock_delay_ms is not None:
            command += ["--mock-delay-ms", str(self.mock_delay_ms)]
        return [*command, *self.args]

    async def start(self) -> None:
        env = {**os.environ, "SANDBOX_AGENT_TOKEN": self.token}
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self._dir,
                start_new_session=True,  # its own process group: stop() reaches its children
            )
        deadline = time.monotonic() + self.startup_timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    log_text = self.log()
                    await self.stop()
                    raise SandboxAgentError.of(
                        "server_not_started", 503, f"the server exited:\n{log_text}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.base_url}/v1/health")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.05)
        log_text = self.log()
        await self.stop()
        raise SandboxAgentError.of(
            "server_not_started",
            503,
            f"the server did not answer within {self.startup_timeout}s:\n{log_text}",
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``; then remove the temp dir."""
        proc, self.proc = self.proc, None
        if proc is not None:
            self._signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout)
            # Kill what is left of the group, also when the leader exited on its own.
            self._signal_group(proc, signal.SIGKILL)
            await proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
