"""The kit's StoreContract run by pytest itself (``pytester``), as a driver author runs it: with
no conftest, under pytest-asyncio's strict and auto modes. A correct store passes; stores broken
on purpose fail, and the failure names the promise they break."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# Stores broken on purpose: the memory store behind a wrapper that changes one answer.
BROKEN_STORES = '''
from sandbox_agent.store import SequenceConflict, StoreError, open_store
from sandbox_agent.testing.contract import StoreContract


class Wrapper:
    """Everything as the wrapped store does it, but what a subclass changes."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.inner.close()


class WrongConflictError(Wrapper):
    async def append(self, session_id, drafts, expected_sequence=None):
        try:
            return await self.inner.append(session_id, drafts, expected_sequence)
        except SequenceConflict as exc:
            raise StoreError(f"conflict: {exc}") from None


def shifted(events):
    # Sequence 2 is never used: 1, 3, 4, ...
    return [e.model_copy(update={"sequence": e.sequence + (e.sequence > 1)}) for e in events]


class Gap(Wrapper):
    async def append(self, session_id, drafts, expected_sequence=None):
        return shifted(await self.inner.append(session_id, drafts, expected_sequence))

    async def read(self, session_id, after=0, limit=None):
        return shifted(await self.inner.read(session_id, after, limit))


class PartialBatch(Wrapper):
    async def append(self, session_id, drafts, expected_sequence=None):
        kept = list(drafts)[: max(1, len(drafts) - 1)] if drafts else []
        await self.inner.append(session_id, kept, expected_sequence)
        return [d.to_event(session_id=session_id, sequence=i + 1) for i, d in enumerate(drafts)]


class Broken(StoreContract):
    wrapper = Wrapper
    skip_groups = {"processes": "in-memory", "crash": "in-memory"}

    async def make_store(self):
        return self.wrapper(await open_store("memory://"))


class TestWrongConflictError(Broken):
    wrapper = WrongConflictError


class TestGap(Broken):
    wrapper = Gap


class TestPartialBatch(Broken):
    wrapper = PartialBatch
'''

GOOD_STORE = """
from sandbox_agent.testing.contract import StoreContract


class TestMemory(StoreContract):
    store_url = "memory://"
    skip_groups = {"processes": "memory:// lives in one process", "crash": "one process"}
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_correct_store_passes_in_strict_and_auto_mode_without_a_conftest(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makepyfile(test_memory=GOOD_STORE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"asyncio_mode={mode}", "-rs", "-k", "not subscribers"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 80 and outcomes["skipped"] == 5, outcomes
    result.stdout.fnmatch_lines(["*group 'processes' opted out: memory:// lives in one process*"])


@pytest.mark.parametrize(
    ("broken", "test", "promise"),
    [
        (
            "TestWrongConflictError",
            "test_append_with_a_stale_expected_sequence_raises_and_writes_nothing",
            "a stale expected_sequence raises SequenceConflict and writes nothing",
        ),
        ("TestGap", "test_append_numbers_events_from_one_without_gaps", "gapless sequences"),
        (
            "TestPartialBatch",
            "test_a_batch_is_stored_whole_and_in_order",
            "a batch is stored whole",
        ),
    ],
)
def test_a_broken_store_fails_naming_the_promise_it_breaks(
    pytester: pytest.Pytester, broken: str, test: str, promise: str
) -> None:
    pytester.makepyfile(test_broken=BROKEN_STORES)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", f"test_broken.py::{broken}::{test}"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*AssertionError: promise '{promise}' broken: *"])


def test_a_group_opted_out_of_without_a_known_name_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_typo="""
from sandbox_agent.testing.contract import StoreContract


class TestTypo(StoreContract):
    store_url = "memory://"
    skip_groups = {"proceses": "typo"}
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", "-k", "test_empty_batch"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skip_groups of TestTypo names unknown groups*proceses*"])


def test_processes_and_crash_skip_a_scheme_a_fresh_process_cannot_open(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_registered="""
from sandbox_agent.store import open_store, register_driver
from sandbox_agent.testing.contract import StoreContract


async def open_here(url, **options):
    return await open_store("sqlite:///" + url.partition(":///")[2], **options)


register_driver("herelite", open_here, replace=True)


class TestRegisteredHere(StoreContract):
    store_url = "herelite:///unused.db"

    async def fresh_store_url(self):
        return f"herelite:///{self.tmp_path}/store.db"
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", "-rs", "-k", "processes or killed"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["skipped"] == 4, outcomes
    result.stdout.fnmatch_lines(
        ["*scheme 'herelite' is neither built in nor a 'sandbox_agent.store_drivers' entry point*"]
    )
