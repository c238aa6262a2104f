"""``sandbox-agent schema``: placeholder, filled in by the schema export work."""

from __future__ import annotations
