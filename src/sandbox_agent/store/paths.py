"""Where things live by default: the data dir and the default SQLite store."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox_agent.paths import data_dir
from sandbox_agent.store.errors import StoreConfigError

__all__ = ["data_dir", "database_path", "default_store_url"]


def default_store_url() -> str:
    """``$SANDBOX_AGENT_STORE``, else SQLite at ``<data dir>/sandbox-agent.db``."""
    configured = os.environ.get("SANDBOX_AGENT_STORE")
    if configured:
        return configured
    return f"sqlite:///{data_dir() / 'sandbox-agent.db'}"


def database_path(url: str) -> Path:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
    _, _, path = url.partition(":///")
    if not path or path == ":memory:":
        raise StoreConfigError(
            f"invalid SQLite URL {url!r}: give a file, sqlite:///relative.db or "
            "sqlite:////absolute/path.db (use memory:// for an in-memory store)"
        )
    return Path(path)
