"""``StoreContract``: the whole driver contract as a pytest class.

Subclass it in a test module of your driver and say how to get an empty store::

    from sandbox_agent.testing.contract import StoreContract

    class TestMyDriver(StoreContract):
        store_url = "mydb://localhost/test"   # or override ``make_store`` / ``fresh_store_url``

It runs under pytest-asyncio in strict or auto mode, with no conftest. See ``StoreContract``'s
docstring for the hooks, the groups and how to opt out of one.
"""

from __future__ import annotations

from sandbox_agent.testing.contract._frame import GROUPS, group, keeps
from sandbox_agent.testing.contract.append import AppendContract, ProjectionContract
from sandbox_agent.testing.contract.concurrency import ConcurrencyContract
from sandbox_agent.testing.contract.crash import CrashContract, run_crash_trials
from sandbox_agent.testing.contract.lifecycle import ForkContract, OpeningContract, PruneContract
from sandbox_agent.testing.contract.processes import ProcessesContract
from sandbox_agent.testing.contract.reading import ReadingContract, RoundTripContract
from sandbox_agent.testing.contract.sessions import SessionsContract
from sandbox_agent.testing.contract.snapshots import SnapshotsContract
from sandbox_agent.testing.contract.subscribe import SubscribeContract

__all__ = ["GROUPS", "StoreContract", "group", "keeps", "run_crash_trials"]


class StoreContract(
    SessionsContract,
    AppendContract,
    ProjectionContract,
    ReadingContract,
    RoundTripContract,
    SnapshotsContract,
    ForkContract,
    PruneContract,
    SubscribeContract,
    OpeningContract,
    ConcurrencyContract,
    ProcessesContract,
    CrashContract,
):
    """The behaviour every ``EventStore`` driver must have, written once.

    **Getting a store.** Each test gets a new, empty store. Set the class attribute
    ``store_url`` (SQLite URLs get a fresh file per store under ``tmp_path``; other URLs are
    used as given), or override the async hooks:

    - ``fresh_store_url()``: a URL of a new, empty store (a Postgres schema, a database);
      ``discard_store_url(url)`` removes it after the test. ``self.tmp_path`` is at hand.
    - ``make_store()``: an open, empty store (default: ``open_store(fresh_store_url())``).
      A driver without a URL overrides only this; the groups that need a URL then skip,
      saying why.
    - ``subscriber_url(url)``: the URL a subscriber opens to follow another store's appends
      (add a polling option if your driver needs one).

    **Groups.** Every test belongs to one group; a driver opts out of a group only with a
    reason, shown as the skip: ``skip_groups = {"processes": "in-memory: one process only"}``.

    - ``sessions``: create, get, list (order, pages, filters, cursors), update, delete; odd
      ids, overlong text, NUL refused in text fields (``InvalidText``), extreme times.
    - ``append``: gapless sequences, ``expected_sequence`` conflicts, idempotent retries,
      whole batches.
    - ``projection``: the session row follows its events (counts, status, ended_at, native id).
    - ``reading``: ``read`` and ``read_all`` ranges, paging, positions in commit order.
    - ``round_trip``: payloads, raw values, strings and times come back unchanged.
    - ``snapshots``: save, load (newest at or before, by version), JSON text, pruning.
    - ``fork``, ``prune``: ``fork_session`` and ``prune``.
    - ``subscribe``: stored then live events, paging, wake-ups, close, deletes, 10,000 events.
    - ``opening``: ``open_store`` of the URL (unknown options, the async context manager).
    - ``concurrency``: concurrent appenders as tasks and on several stores over one database
      (``shared_database``: None means all but ``memory://``), a ``read_all`` follower,
      deletes during appends.
    - ``processes``: subscribers and appenders in child processes; needs a URL that a fresh
      Python process can open (a built-in scheme or a ``sandbox_agent.store_drivers`` entry
      point), else it skips saying so.
    - ``crash``: ``crash_trials`` writers (default 15) killed with SIGKILL mid-append leave
      whole batches and lose no acknowledged one; the same URL requirement.

    **Failures name the promise broken**: ``promise 'gapless sequences' broken: ...``.
    """
