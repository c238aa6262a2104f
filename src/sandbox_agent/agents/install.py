"""Installing agent CLIs from the npm registry, and finding them.

Each agent is a pinned npm package (``AgentSpec.npm`` in ``catalog.py``; versions proven offline
on 2026-11-26, ``spec/agents.md``),
installed with ``npm install --prefix <agents dir> --save-exact`` so that installing one agent
never re-resolves another. Binaries are looked up in ``<agents dir>/node_modules/.bin`` first,
then on ``PATH``. The agents dir is ``$SANDBOX_AGENT_AGENTS_DIR``, else ``<data dir>/agents``.

Another version than the pinned one (a session's ``agentVersion``, ``--agent-version``) is a
semver version or range, or a dist tag (``check_version``), never a package spec of its own
(``file:``, ``npm:other@1``, ``git+https://``...) that would make npm install something else.
npm runs without the server's variables and the agents' credentials (``agent_environment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from sandbox_agent.agents.catalog import SPECS, NpmPackage
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.errors import AgentError
from sandbox_agent.paths import data_dir

#: Seconds an install may take before it is stopped (the biggest package is about 500 MB).
INSTALL_TIMEOUT_SECONDS = 900.0


class InstallError(AgentError):
    """npm is missing, the registry cannot be reached, or the package did not install."""

    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"install failed: {agent}: {reason}")
        self.agent = agent
        self.reason = reason


class InvalidAgentVersion(InstallError):
    """A version that is neither a semver version or range nor a dist tag."""

    def __init__(self, agent: str, version: str) -> None:
        shown = version if len(version) <= 80 else version[:80] + "..."
        super().__init__(agent, f"not a version, version range or dist tag: {shown!r}")
        self.version = version


_NUMBER = r"(?:0|[1-9][0-9]*|[xX*])"
_IDS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = rf"v?{_NUMBER}(?:\.{_NUMBER}(?:\.{_NUMBER}(?:-{_IDS})?(?:\+{_IDS})?)?)?"
_COMPARATOR = rf"(?:\^|~|[<>]=?|=)? *{_VERSION}"
_RANGE = rf"(?:{_VERSION} +- +{_VERSION}|{_COMPARATOR}(?: +{_COMPARATOR})*)"
#: A semver version or range as npm reads one (``1.2.3``, ``^1.2``, ``>=1 <2``, ``1 - 2``,
#: ``^1 || ^2``), or a dist tag (``latest``, ``next``, ``beta``): a letter, then letters,
#: digits, ``.``, ``_``, ``-``. No ``:``, ``/`` or ``@``, so never a spec of another source.
VERSION_PATTERN = re.compile(rf"{_RANGE}(?: *\|\| *{_RANGE})*|[A-Za-z][A-Za-z0-9._-]*")
#: Longest version accepted.
MAX_VERSION_CHARS = 256


def check_version(agent: str, version: str) -> None:
    """``InvalidAgentVersion`` unless ``version`` is a semver version or range or a dist tag."""
    if len(version) > MAX_VERSION_CHARS or not VERSION_PATTERN.fullmatch(version):
        raise InvalidAgentVersion(agent, version)


def agents_dir() -> Path:
    configured = os.environ.get("SANDBOX_AGENT_AGENTS_DIR")
    return Path(configured) if configured else data_dir() / "agents"


def package_of(agent: str) -> NpmPackage | None:
    """The pinned npm package of ``agent`` (None: built in, configured, or unknown)."""
    spec = SPECS.get(agent)
    return None if spec is None else spec.npm


def find_binary(name: str, directory: Path | None = None) -> Path | None:
    """``name`` in the agents dir's ``node_modules/.bin``, else on ``PATH``; None if neither."""
    local = (directory or agents_dir()) / "node_modules" / ".bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def installed_version(agent: str, directory: Path | None = None) -> str | None:
    """The version of ``agent``'s package in the agents dir (None: not installed there)."""
    package = package_of(agent)
    if package is None:
        return None
    manifest = (directory or agents_dir()) / "node_modules" / package.package / "package.json"
    try:
        version = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def command_of(agent: str, directory: Path | None = None) -> list[str] | None:
    """The command line that starts ``agent`` (without per-session flags); None: not found."""
    package = package_of(agent)
    if package is None:
        return None
    binary = find_binary(package.binary, directory)
    return None if binary is None else [str(binary), *package.args]


async def install(
    agent: str,
    *,
    version: str | None = None,
    reinstall: bool = False,
    directory: Path | None = None,
    on_output: Callable[[str], None] | None = None,
) -> str:
    """Install ``agent``'s pinned package (or ``version``); returns the installed version.

    A no-op when that version is installed already, unless ``reinstall``. ``on_output`` gets
    npm's output line by line (the CLI shows it as progress).
    """
    package = package_of(agent)
    if package is None:
        raise InstallError(agent, "no npm package is known for this agent")
    if version is not None:
        check_version(agent, version)
    wanted = version or package.version
    target = directory or agents_dir()
    if not reinstall and installed_version(agent, target) == wanted:
        return wanted
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(agent, "npm was not found on PATH (install Node.js 20+ and npm)")
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    argv = [
        npm, "install", "--prefix", str(target), "--save-exact", "--no-audit", "--no-fund",
        "--loglevel", "http", f"{package.package}@{wanted}",
    ]  # fmt: skip
    if reinstall:
        argv.insert(2, "--force")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        # Package scripts run in it: nothing of the server's, no credential.
        env=agent_environment(None, os.getcwd()),
    )
    tail: list[str] = []
    assert proc.stdout is not None

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            del tail[:-20]
            if on_output is not None:
                on_output(line)

    try:
        await asyncio.wait_for(asyncio.gather(pump(), proc.wait()), INSTALL_TIMEOUT_SECONDS)
    except TimeoutError:
        await _kill_group(proc)
        raise InstallError(
            agent, f"npm did not finish in {INSTALL_TIMEOUT_SECONDS:.0f} s"
        ) from None
    except BaseException:  # cancelled (Ctrl-C, server shutdown): npm and its scripts go too
        await asyncio.shield(_kill_group(proc))
        raise
    if proc.returncode != 0:
        raise InstallError(agent, _npm_reason(tail, proc.returncode))
    got = installed_version(agent, target)
    if got is None or command_of(agent, target) is None:
        raise InstallError(agent, f"npm succeeded but {package.binary} is not in {target}")
    return got


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL npm's process group (it leads one: ``start_new_session``), then reap npm."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def _npm_reason(tail: list[str], code: int | None) -> str:
    text = "\n".join(tail)
    for marker, reason in (
        ("ENOTFOUND", "the npm registry could not be reached (ENOTFOUND)"),
        ("ECONNREFUSED", "the npm registry refused the connection"),
        ("ETIMEDOUT", "the npm registry timed out"),
        ("E404", "the package or version does not exist on the registry (E404)"),
        ("ETARGET", "no such version on the registry (ETARGET)"),
    ):
        if marker in text:
            return reason
    errors = [line for line in tail if "ERR" in line] or tail[-3:]
    return f"npm exited with {code}: " + " | ".join(errors)[-500:]
