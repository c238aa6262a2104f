"""Running the kit's child-process modules (``appender``, ``subscriber``, ``crash_writer``)."""

from __future__ import annotations

import asyncio
import json
import sys
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
