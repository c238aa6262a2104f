"""Where the helper scripts of this folder are, for tests that run them as child processes
(the store's child processes are the kit's: ``sandbox_agent.testing.children``)."""

from __future__ import annotations

from pathlib import Path

HELPERS = Path(__file__).resolve().parent
