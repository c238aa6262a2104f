"""``sandbox-agent db upgrade|current``: placeholder, filled in with the migrations."""

from __future__ import annotations
