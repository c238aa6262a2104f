"""``sandbox-agent daemon start|stop|status``: the server in the background, with pid and log
files in ``<data dir>/daemon/``. ``stop`` sends SIGTERM, the server's graceful stop (streams end,
agents stop, the store closes), and SIGKILL only after a timeout."""

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

from sandbox_agent.cli.app import app, err_console, fail
from sandbox_agent.server.config import DEFAULT_HOST, DEFAULT_PORT
from sandbox_agent.store import data_dir

daemon_app = typer.Typer(help="Run the server in the background.", no_args_is_help=True)
app.add_typer(daemon_app, name="daemon")

Host = Annotated[str, typer.Option("-H", "--host")]
Port = Annotated[int, typer.Option("-p", "--port")]


def daemon_files(host: str, port: int) -> tuple[Path, Path]:
    """(pid file, log file) of the daemon serving ``host:port``."""
    folder = data_dir() / "daemon"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"daemon-{re.sub(r'[^A-Za-z0-9]', '-', host)}-{port}"
    return folder / f"{stem}.pid", folder / f"{stem}.log"


def healthy(host: str, port: int) -> bool:
    import httpx  # here, not at the top: the server command must not pay for it

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://{host}:{port}/v1/health", timeout=2).status_code == 200
    return False


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


@daemon_app.command("start")
def start(
    host: Host = DEFAULT_HOST,
    port: Port = DEFAULT_PORT,
    token: Annotated[
        str | None, typer.Option("-t", "--token", envvar="SANDBOX_AGENT_TOKEN")
    ] = None,
    store: Annotated[str | None, typer.Option("--store")] = None,
) -> None:
    """Start the server in the background (no-op when it already runs)."""
    pid_file, log_file = daemon_files(host, port)
    if healthy(host, port):
        err_console().print(f"daemon already running on {host}:{port}")
        return
    command = [sys.executable, "-m", "sandbox_agent", "server", "-H", host, "-p", str(port)]
    command += ["--token", token] if token else []
    command += ["--store", store] if store else []
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            fail(f"the server exited with {process.returncode}; see {log_file}")
        if healthy(host, port):
            err_console().print(f"daemon running (PID {process.pid}, logs: {log_file})")
            return
        time.sleep(0.2)
    fail(f"the server did not answer within 30 s; see {log_file}")


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
        try:
            os.kill(pid, 0)
        except OSError:
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
