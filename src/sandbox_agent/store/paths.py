"""Where things live by default: the data dir and the default SQLite store."""

from __future__ import annotations

import os

from sandbox_agent.paths import data_dir

__all__ = ["data_dir", "default_store_url"]


def default_store_url() -> str:
    """``$SANDBOX_AGENT_STORE``, else SQLite at ``<data dir>/sandbox-agent.db``."""
    configured = os.environ.get("SANDBOX_AGENT_STORE")
    if configured:
        return configured
    return f"sqlite:///{data_dir() / 'sandbox-agent.db'}"
