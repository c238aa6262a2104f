"""Running the helper scripts of this folder as child processes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parent


async def spawn(script: str, *args: object) -> asyncio.subprocess.Process:
    """Start ``python helpers/<script> args...`` with piped stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HELPERS / script),
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
