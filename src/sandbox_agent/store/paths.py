"""Where things live by default: the data dir and the default SQLite store."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir


def data_dir() -> Path:
    """``$SANDBOX_AGENT_DATA_DIR``, else the user data dir (``~/.local/share/sandbox-agent``)."""
    configured = os.environ.get("SANDBOX_AGENT_DATA_DIR")
    return Path(configured) if configured else Path(user_data_dir("sandbox-agent", appauthor=False))


def default_store_url() -> str:
    """``$SANDBOX_AGENT_STORE``, else SQLite at ``<data dir>/sandbox-agent.db``."""
    configured = os.environ.get("SANDBOX_AGENT_STORE")
    if configured:
        return configured
    return f"sqlite:///{data_dir() / 'sandbox-agent.db'}"
