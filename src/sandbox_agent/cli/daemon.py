"""``sandbox-agent daemon start|stop|status``: the server in the background, with pid and log
files in ``<data dir>/daemon/``. ``start`` passes any option it does not know itself on to
``sandbox-agent server`` (the token through the environment, not the command line). ``stop`` sends
SIGTERM, the server's graceful stop (streams end, agents stop, the store closes), and SIGKILL only
after a timeout."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from sandbox_agent.cli.app import app, err_console, fail, group
from sandbox_agent.cli.server import DEFAULT_HOST, DEFAULT_PORT, require_server_extra

daemon_app = group("Run the server in the background.")
app.add_typer(daemon_app, name="daemon")

Host = Annotated[str, typer.Option("-H", "--host")]
Port = Annotated[int, typer.Option("-p", "--port")]


def daemon_files(host: str, port: int) -> tuple[Path, Path]:
    """(pid file, log file) of the daemon serving ``host:port``."""
    from sandbox_agent.paths import data_dir  # platformdirs: not for ``--help``

    folder = data_dir() / "daemon"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"daemon-{re.sub(r'[^A-Za-z0-9]', '-', host)}-{port}"
    return folder / f"{stem}.pid", folder / f"{stem}.log"


def healthy(host: str, port: int) -> bool:
    import httpx  # here, not at the top: the server command must not pay for it

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://{host}:{port}/v1/health", timeout=2).status_code == 200
    return False


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc: trust the signal
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is None or not _running(pid):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


#: Server options the daemon must know itself: its files and its health check use them.
_OWN_OPTIONS = ("-H", "--host", "-p", "--port")


# Unknown options land in ``server_options`` instead of being refused.
@daemon_app.command("start", context_settings={"ignore_unknown_options": True})
def start(
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    token: Annotated[
        str | None, typer.Option("-t", "--token", envvar="SANDBOX_AGENT_TOKEN")
    ] = None,
    store: Annotated[str | None, typer.Option("--store")] = None,
    server_options: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SERVER_OPTION",
            help="Further options of `sandbox-agent server`, passed on as they are.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the server in the background (no-op when it already runs).

    Other options go to `sandbox-agent server` as they are: `daemon start -p 2470 --no-token`.

    After a `--` everything does: `daemon start -p 2470 -- --acp-agent 'x=x-acp' --root /w`.

    Give `-H` and `-p` to `daemon start` itself: its files and its health check use them.
    """
    require_server_extra("sandbox-agent daemon start")
    extra = list(server_options or ())
    for option in extra:
        if option.split("=", 1)[0] in _OWN_OPTIONS:
            fail(f"give {option.split('=', 1)[0]} to daemon start itself, not after --")
    pid_file, log_file = daemon_files(host, port)
    if healthy(host, port):
        note = " (the options given were not applied)" if extra else ""
        err_console().print(f"daemon already running on {host}:{port}{note}")
        return
    starting = _pid(pid_file)
    if starting is not None:
        # An earlier start's server, not answering yet: wait for it rather than start a second
        # one, which could not bind the port and would take the first one's pid file with it.
        if _wait_healthy(host, port, starting):
            err_console().print(f"daemon running (PID {starting}, logs: {log_file})")
            return
        fail(f"daemon PID {starting} does not answer on {host}:{port}; see {log_file}")
    command = [sys.executable, "-m", "sandbox_agent", "server", "-H", host, "-p", str(port)]
    command += ["--store", store] if store else []
    command += extra
    env = dict(os.environ)
    if token:
        env["SANDBOX_AGENT_TOKEN"] = token  # not on the command line, where ps shows it
    with log_file.open("ab") as log:
        logged = log.tell()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    pid_file.write_text(str(process.pid))
    if _wait_healthy(host, port, process.pid):
        err_console().print(f"daemon running (PID {process.pid}, logs: {log_file})")
        return
    if process.poll() is not None:
        pid_file.unlink(missing_ok=True)
        sys.stderr.write(_tail(log_file, logged))
        fail(f"the server exited with {process.returncode}; see {log_file}")
    # Not left running unanswered with its pid file: the next start would take it for ours.
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    pid_file.unlink(missing_ok=True)
    sys.stderr.write(_tail(log_file, logged))
    fail(f"the server did not answer within 30 s, so it was stopped; see {log_file}")


def _wait_healthy(host: str, port: int, pid: int, seconds: float = 30) -> bool:
    """Whether the process ``pid`` answers on ``host:port`` within ``seconds`` (False once it
    is gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if healthy(host, port):
            return True
        if not _running(pid):
            return False
        time.sleep(0.2)
    return False


def _tail(log_file: Path, offset: int, max_bytes: int = 4000) -> str:
    """What the server wrote to its log after ``offset`` (its last ``max_bytes``)."""
    with log_file.open("rb") as log:
        log.seek(max(offset, log.seek(0, os.SEEK_END) - max_bytes))
        return log.read().decode(errors="replace")


@daemon_app.command("stop")
def stop(host: Host = DEFAULT_HOST, port: Port = DEFAULT_PORT) -> None:
    """SIGTERM (graceful), then SIGKILL after 10 s."""
    pid_file, _ = daemon_files(host, port)
    pid = _pid(pid_file)
    if pid is None:
        err_console().print("daemon not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _running(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    err_console().print(f"daemon stopped (PID {pid})")


@daemon_app.command("status")
def status(host: Host = DEFAULT_HOST, port: Port = DEFAULT_PORT) -> None:
    """Whether the daemon runs; exit code 1 when it does not."""
    pid_file, log_file = daemon_files(host, port)
    pid = _pid(pid_file)
    if pid is not None or healthy(host, port):
        err_console().print(f"daemon running (PID {pid or 0}, logs: {log_file})")
        return
    err_console().print("daemon not running")
    raise typer.Exit(1)
