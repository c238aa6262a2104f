"""Running the kit's child-process modules (``appender``, ``subscriber``, ``crash_writer``), and
killing a forked child at a chosen moment (``kill_after``, the loop of the crash trials)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any


async def spawn(module: str, *args: object) -> asyncio.subprocess.Process:
    """Start ``python -m sandbox_agent.testing.<module> args...`` with piped stdout, stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"sandbox_agent.testing.{module}",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def expect_line(child: asyncio.subprocess.Process, want: str, timeout: float = 60) -> None:
    """Wait for the child to print ``want`` (failing with its stderr if it dies first)."""
    assert child.stdout is not None
    async with asyncio.timeout(timeout):
        line = (await child.stdout.readline()).decode().strip()
    if line != want:
        stderr = await child.stderr.read() if child.stderr else b""
        raise AssertionError(f"child printed {line!r}, not {want!r}; stderr:\n{stderr.decode()}")


async def json_result(child: asyncio.subprocess.Process, timeout: float = 120) -> Any:
    """The last stdout line of the child, parsed as JSON, once it exits successfully."""
    async with asyncio.timeout(timeout):
        stdout, stderr = await child.communicate()
    if child.returncode != 0:
        raise AssertionError(f"child exited with {child.returncode}; stderr:\n{stderr.decode()}")
    return json.loads(stdout.decode().strip().splitlines()[-1])


async def stop(children: list[asyncio.subprocess.Process]) -> None:
    """Kill the children still running and reap them."""
    for child in children:
        if child.returncode is None:
            child.kill()
            await child.wait()


def kill_after(
    pid: int,
    progress: int,
    delay: float,
    started: Callable[[bytes], bool] | None = None,
    never_started: str = "the child never started",
    timeout: float = 60,
) -> bytes:
    """SIGKILL the forked child ``pid`` ``delay`` seconds after ``started(what it wrote)`` first
    holds (after ``delay`` seconds from now when ``started`` is None), reading what it writes to
    the pipe ``progress`` meanwhile; sooner if it exits first. Returns all it wrote, what was
    still in the pipe included, and closes the pipe. ``SystemExit(never_started)`` when it has
    not started within ``timeout`` seconds."""
    deadline = time.monotonic() + delay if started is None else None
    seen = b""
    give_up = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if now > give_up:
            raise SystemExit(never_started)
        wait = 0.05 if deadline is None else max(0.0, deadline - now)
        ready, _, _ = select.select([progress], [], [], wait)
        if ready:
            chunk = os.read(progress, 65536)
            if not chunk:
                break  # the child ended on its own
            seen += chunk
            if deadline is None and started is not None and started(seen):
                deadline = time.monotonic() + delay
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(progress, 65536):
        seen += chunk
    os.close(progress)
    return seen
