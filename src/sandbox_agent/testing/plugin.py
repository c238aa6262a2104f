"""The pytest plugin of sandbox-agent (entry point ``pytest11``, name ``sandbox_agent``).

Its fixtures, for any project with sandbox-agent installed:

- ``event_store``, ``event_store_url``, ``event_store_driver`` (``store_fixtures``): a fresh
  store, parametrized over memory, SQLite and Postgres (when ``SANDBOX_AGENT_TEST_PG_URL``
  answers).
- ``sandbox_server``, ``assert_consistent`` (``server_fixtures``): a real server process with
  the mock agent, and the check that a local store holds what the server has.

Loaded in every pytest run of every user, so importing it costs little: the stores, the
database libraries and hypothesis are imported only by the fixtures and modules that use them.
The fixtures need pytest-asyncio (``pip install 'sandbox-agent[testing]'``); without it they
fail, saying so, and nothing else changes.
"""

from __future__ import annotations

from typing import Any

import pytest

try:
    import pytest_asyncio  # noqa: F401  (the async fixtures need it)
except ImportError:  # pragma: no cover - depends on the user's environment
    _MISSING = "sandbox_agent's fixtures need pytest-asyncio: pip install 'sandbox-agent[testing]'"

    def _unavailable(name: str) -> Any:
        @pytest.fixture(name=name)
        def fixture() -> None:
            pytest.fail(_MISSING, pytrace=False)

        return fixture

    event_store = _unavailable("event_store")
    event_store_url = _unavailable("event_store_url")
    event_store_driver = _unavailable("event_store_driver")
else:
    from sandbox_agent.testing.store_fixtures import (
        event_store,
        event_store_driver,
        event_store_url,
    )

from sandbox_agent.testing.server_fixtures import assert_consistent, sandbox_server

__all__ = [
    "assert_consistent",
    "event_store",
    "event_store_driver",
    "event_store_url",
    "sandbox_server",
]
