"""pytest fixtures for applications built on a sandbox-agent server (the plugin re-exports them).

- ``sandbox_server``: a started ``ServerProcess`` (``sandbox_agent.testing.server``) with the
  mock agent answering at once, on a free 127.0.0.1 port, over a fresh SQLite store in
  ``tmp_path``: ``.url``, ``.store_url``, ``.log_path``, ``.kill()`` (SIGKILL), ``.restart()``
  (same URL and store), ``.stop()``. Stopped after the test.
- ``assert_consistent``: ``sandbox_agent.testing.consistency.assert_consistent``, as a fixture
  so that a test asks for it by name (``await assert_consistent(store, url, session_id)``).

The plugin loads this module in every pytest run: the server, the store and the replay engine
are imported when a fixture runs, not here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox_agent.testing.consistency import AssertConsistent
    from sandbox_agent.testing.server import ServerProcess

__all__ = ["assert_consistent", "sandbox_server"]


@pytest.fixture
def sandbox_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server process (mock agent, no delay, no token) on a fresh SQLite store:
    ``.url``, ``.store_url``, ``.kill()`` (SIGKILL), ``.restart()`` (same URL and store)."""
    from sandbox_agent.testing.server import ServerProcess

    directory = tmp_path / "sandbox-server"
    directory.mkdir(exist_ok=True)
    server = ServerProcess(f"sqlite:///{directory / 'server.db'}", directory / "server.log")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        server.kill()


@pytest.fixture
def assert_consistent() -> AssertConsistent:
    """``await assert_consistent(local_store, server_url, session_id, token=None)``: the local
    store holds the server's stream of the session, and both replay cleanly."""
    from sandbox_agent.testing.consistency import assert_consistent

    return assert_consistent
