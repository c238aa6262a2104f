"""The installer (``agents.install``) and ``sandbox-agent install-agent``, against a fake ``npm``
on ``PATH`` (a real subprocess, ``helpers.fake_npm``): no registry is reached. CI installs the
real pinned CLIs with the same command."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox_agent.agents.install import (
    InstallError,
    command_of,
    install,
    installed_version,
    package_of,
)

from helpers.fake_npm import fake_npm, path_without_agents


def pinned_version(agent: str) -> str:
    """The version of ``agent``'s npm package in the catalog."""
    package = package_of(agent)
    assert package is not None
    return package.version


@pytest.fixture
def npm_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``PATH`` with the fake npm first (set for this process too)."""
    fake_npm(tmp_path / "fakebin")
    path = path_without_agents(tmp_path / "fakebin")
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("FAKE_NPM", raising=False)
    return path


def calls(directory: Path) -> list[str]:
    log = directory / "npm-calls.log"
    return log.read_text().splitlines() if log.exists() else []


async def test_install_puts_the_pinned_package_in_the_agents_dir(
    npm_path: str, tmp_path: Path
) -> None:
    target = tmp_path / "agents"
    lines: list[str] = []
    version = await install("claude", directory=target, on_output=lines.append)
    assert version == pinned_version("claude") == installed_version("claude", target)
    command = command_of("claude", target)
    assert command == [str(target / "node_modules" / ".bin" / "claude")]
    assert any("registry.npmjs.org/@anthropic-ai/claude-code" in line for line in lines)
    assert lines[-1] == "added 1 package in 1s"
    (argv,) = calls(target)
    assert f"--prefix {target}" in argv and "--save-exact" in argv and "--force" not in argv
    assert argv.endswith(f"@anthropic-ai/claude-code@{version}")

    # Installed already: npm is not run again; a reinstall forces it.
    assert await install("claude", directory=target) == version
    assert len(calls(target)) == 1
    assert await install("claude", directory=target, reinstall=True) == version
    assert "--force" in calls(target)[-1]


async def test_another_version_and_a_package_with_arguments(npm_path: str, tmp_path: Path) -> None:
    target = tmp_path / "agents"
    assert await install("codex", version="0.1.0", directory=target) == "0.1.0"
    assert installed_version("codex", target) == "0.1.0"
    # acp:opencode is the opencode package started as `opencode acp`.
    assert await install("acp:opencode", directory=target) == pinned_version("opencode")
    assert command_of("acp:opencode", target) == [
        str(target / "node_modules" / ".bin" / "opencode"),
        "acp",
    ]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("enotfound", "the npm registry could not be reached (ENOTFOUND)"),
        ("e404", "the package or version does not exist on the registry (E404)"),
        ("nobin", "npm succeeded but amp is not in"),
    ],
)
async def test_npm_failures_are_install_errors(
    npm_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, reason: str
) -> None:
    monkeypatch.setenv("FAKE_NPM", mode)
    with pytest.raises(InstallError) as caught:
        await install("amp", directory=tmp_path / "agents")
    assert caught.value.agent == "amp"
    assert caught.value.reason.startswith(reason)
    assert command_of("amp", tmp_path / "agents") is None or mode == "nobin"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_cancelled_install_kills_npm_and_its_children(
    npm_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NPM", "hang")
    target = tmp_path / "agents"
    task = asyncio.create_task(install("claude", directory=target))
    pid_file = target / "child.pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    child = int(pid_file.read_text())
    assert _running(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not _running(child):
            break
        await asyncio.sleep(0.05)
    assert not _running(child)


async def test_npm_missing_and_unknown_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InstallError, match="npm was not found on PATH"):
        await install("opencode", directory=tmp_path / "agents")
    with pytest.raises(InstallError, match="no npm package is known"):
        await install("acp:gemini", directory=tmp_path / "agents")


# -- the CLI ----------------------------------------------------------------------------------
def install_agent(
    *args: str, path: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", "install-agent", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_cli_installs_one_or_several_agents(npm_path: str, tmp_path: Path) -> None:
    target = tmp_path / "agents"
    result = install_agent("claude", "amp", "mock", "--agents-dir", str(target), path=npm_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"installed claude {pinned_version('claude')} in {target}",
        f"installed amp {pinned_version('amp')} in {target}",
        "mock is built in: nothing to install",
    ]
    again = install_agent("claude", "--agents-dir", str(target), path=npm_path)
    assert again.stdout.strip() == (
        f"claude {pinned_version('claude')} is installed already in {target}"
    )
    pinned = install_agent(
        "claude", "--agent-version", "2.0.0", "--reinstall", "--verbose",
        "--agents-dir", str(target), path=npm_path,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == f"installed claude 2.0.0 in {target}"
    # --verbose shows npm's own lines.
    assert "npm http fetch GET 200 https://registry.npmjs.org/@anthropic-ai/claude-code" in (
        pinned.stderr
    )
    assert (
        json.loads(
            (target / "node_modules" / "@anthropic-ai" / "claude-code" / "package.json").read_text()
        )["version"]
        == "2.0.0"
    )
    # The agents dir may also come from the environment.
    from_env = install_agent("codex", path=npm_path, env={"SANDBOX_AGENT_AGENTS_DIR": str(target)})
    assert from_env.returncode == 0 and installed_version("codex", target) is not None


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["claude"], {"FAKE_NPM": "enotfound"},
         "install failed: claude: the npm registry could not be reached (ENOTFOUND)"),
        (["codex"], {"FAKE_NPM": "e404"},
         "install failed: codex: the package or version does not exist on the registry (E404)"),
        (["nope"], {}, "unsupported agent 'nope'"),
        (["acp:gemini"], {}, "acp:gemini: no npm package is known"),
        (["claude", "codex", "--agent-version", "1.0.0"], {}, "one agent only"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line_and_exit_1(
    npm_path: str, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = install_agent(*args, "--agents-dir", str(tmp_path / "a"), path=npm_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {message}"] or (
        message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    ), result.stderr
    assert result.stdout == ""


def test_cli_without_npm(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = install_agent("amp", "--agents-dir", str(tmp_path / "a"), path=str(tmp_path / "empty"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: install failed: amp: npm was not found on PATH (install Node.js 20+ and npm)"
    )


def test_cli_shows_npm_progress_on_a_terminal(npm_path: str, tmp_path: Path) -> None:
    """On a terminal a spinner line shows the latest line of npm's output."""
    target = tmp_path / "agents"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox_agent", "install-agent", "opencode",
         "--agents-dir", str(target)],
        stdin=secondary, stdout=secondary, stderr=secondary,
        env={**os.environ, "PATH": npm_path, "TERM": "xterm", "COLUMNS": "200"},
    )  # fmt: skip
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.wait(30) == 0
    text = output.decode(errors="replace")
    assert "installing opencode (opencode-ai@" in text
    assert "registry.npmjs.org/opencode-ai" in text
    assert f"installed opencode {pinned_version('opencode')}" in text
