"""Read-only commands never create a store (issue 15, item 10): on a mistyped SQLite path they
exit 1 naming it, and leave neither the file nor its directory behind. ``db upgrade`` and the
server create a new store as before."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_agent.store import StoreNotFound, open_store


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_agent", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "list", "--store", "{url}"],
        ["db", "current", "{url}"],
        ["replay", "s1", "--store", "{url}"],
        ["replay", "--all", "--check", "--store", "{url}"],
        ["db", "rekey", "--store", "{url}?compress=zlib"],
    ],
    ids=["sessions list", "db current", "replay", "replay --all --check", "db rekey"],
)
def test_a_read_only_command_on_a_missing_sqlite_store_exits_1_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo" / "store.db"
    url = f"sqlite:///{missing}"
    result = _cli(*(part.format(url=url) for part in command))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"no store at {missing}" in result.stderr
    assert not missing.parent.exists()


def test_db_upgrade_creates_the_store_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.db"
    result = _cli("db", "upgrade", f"sqlite:///{path}")
    assert result.returncode == 0, result.stderr
    assert path.exists()
    assert _cli("sessions", "list", "--store", f"sqlite:///{path}").returncode == 0


def test_open_store_without_create_refuses_a_missing_file_and_opens_an_existing_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}?synchronous=full"

    async def run() -> None:
        with pytest.raises(StoreNotFound, match="no store at"):
            await open_store(url, create=False)
        assert not (tmp_path / "store.db").exists()
        async with await open_store(url):
            pass
        async with await open_store(url, create=False) as store:
            assert await store.all_sessions() == []

    asyncio.run(run())
