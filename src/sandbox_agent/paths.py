"""The data dir, shared by every layer (the store's default database, agents, logs)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir


def data_dir() -> Path:
    """``$SANDBOX_AGENT_DATA_DIR``, else the user data dir (``~/.local/share/sandbox-agent``)."""
    configured = os.environ.get("SANDBOX_AGENT_DATA_DIR")
    return Path(configured) if configured else Path(user_data_dir("sandbox-agent", appauthor=False))
