"""Fixtures of the MySQL driver's tests: ``mysql_url`` is the URL of a fresh, empty database
(skipped, or failed under CI=true, when the server cannot be reached)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mysql_helpers import fresh_database


@pytest.fixture
async def mysql_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url
