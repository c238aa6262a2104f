"""``AgentProcess``: own process group, stderr to the log, and no orphan when the server dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.process import AgentProcess

from helpers.pids import alive, gone_within

PARENT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from sandbox_agent.agents.environment import agent_environment
    from sandbox_agent.agents.process import AgentProcess

    async def main() -> None:
        child = await AgentProcess.spawn(
            [sys.executable, "-c", "import time; time.sleep(120)"],
            cwd=".", env=agent_environment(None, "."), log_path=Path(sys.argv[1]), stdin=False,
        )
        print(child.pid, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_an_agent_dies_with_a_server_killed_by_sigkill(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "agent.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        assert os.getpgid(child) == child, "the agent leads its own process group"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert gone_within(child, 10), "the agent outlived the server"
    finally:
        parent.kill()
        parent.wait()


async def test_stderr_goes_to_the_log_and_stop_ends_the_group(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "agent.log"
    script = (
        "import subprocess, sys, time\n"
        "sys.stderr.write('to the log\\n'); sys.stderr.flush()\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(grandchild.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    agent = await AgentProcess.spawn(
        [sys.executable, "-c", script], cwd=str(tmp_path),
        env=agent_environment(None, str(tmp_path)), log_path=log,
    )  # fmt: skip
    lines = agent.lines()
    grandchild = int(await anext(lines))
    await agent.stop(grace=1)
    assert await asyncio.to_thread(gone_within, grandchild, 10), "stop() ends the whole group"
    assert "to the log" in log.read_text()
    assert "to the log" in agent.stderr_tail()
