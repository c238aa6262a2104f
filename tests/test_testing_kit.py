"""The rest of the store kit: the ``event_store`` fixture through the pytest plugin, the plugin's
light import, the state machine against a broken store, and the draft strategy."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from sandbox_agent.events import EventDraft
from sandbox_agent.store import open_store
from sandbox_agent.testing.machine import run_store_machine, store_machine
from sandbox_agent.testing.strategies import drafts
from sandbox_agent.testing.support import new_session, same_as_draft

pytest_plugins = ["pytester"]


def plugin_args() -> list[str]:
    """``-p`` the plugin unless its entry point loads it already (twice is an error)."""
    names = {e.name for e in entry_points(group="pytest11")}
    return [] if "sandbox_agent" in names else ["-p", "sandbox_agent.testing.plugin"]


def test_event_store_runs_a_test_against_memory_sqlite_and_postgres(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_users_code="""
import pytest

from sandbox_agent.testing.support import deltas, new_session


@pytest.mark.asyncio
async def test_appends(event_store, event_store_url, event_store_driver):
    assert event_store_url.startswith(
        {"memory": "memory:", "sqlite": "sqlite:", "postgres": "postgresql"}[event_store_driver]
    )
    sid = await new_session(event_store)
    stored = await event_store.append(sid, deltas(3))
    assert [e.sequence for e in stored] == [1, 2, 3]
"""
    )
    result = pytester.runpytest_subprocess(
        *plugin_args(), "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", "-v"
    )
    result.stdout.fnmatch_lines(
        [
            "*test_appends?memory? PASSED*",
            "*test_appends?sqlite? PASSED*",
            "*test_appends?postgres?*",
        ]
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 2, outcomes


def test_the_plugin_imports_no_store_driver_library_or_hypothesis() -> None:
    heavy = ["hypothesis", "sqlalchemy", "asyncpg", "aiosqlite", "sandbox_agent.testing.databases"]
    code = (
        "import sys, pytest, sandbox_agent.testing.plugin as p\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
        "print(sorted(n for n in p.__all__ if hasattr(p, n)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == str(
        sorted(
            [
                "assert_consistent",
                "event_store",
                "event_store_driver",
                "event_store_url",
                "sandbox_server",
            ]
        )
    )


class GapOnSecondEvent:
    """The memory store, but sequence 2 is never used in what it answers."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def append(self, *args: object, **kwargs: object) -> object:
        events = await self.inner.append(*args, **kwargs)  # type: ignore[attr-defined]
        return [e.model_copy(update={"sequence": e.sequence + (e.sequence > 1)}) for e in events]


def test_the_state_machine_passes_a_correct_factory_and_catches_a_broken_store() -> None:
    run_store_machine(lambda: open_store("memory://"), examples=10, steps=15)

    async def broken() -> GapOnSecondEvent:
        return GapOnSecondEvent(await open_store("memory://"))

    machine = store_machine(broken, name="BrokenMachine")  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        run_store_machine(machine, examples=30, steps=15, phases=[Phase.generate])


@settings(max_examples=30, deadline=None)
@given(st.lists(drafts(), max_size=6, unique_by=lambda d: d.event_id))
async def test_drafts_are_stored_as_given(batch: list[EventDraft]) -> None:
    async with await open_store("memory://") as store:
        sid = await new_session(store)
        stored = await store.append(sid, batch)
        assert all(same_as_draft(e, d) for e, d in zip(stored, batch, strict=True))
        assert await store.read(sid) == stored
