"""The behaviour every agent adapter must have, written once (``spec/agents.md``).

An adapter's test module subclasses ``AgentContract`` and implements ``make_adapter``; pytest
then runs every ``test_*`` below against it. ``SessionHarness`` stands in for the session layer
(normalise, number, keep; record ``turn.started`` and the user item, ``turn.ended`` on cancel),
and ``stream_violations`` checks a stored stream against the invariants of ``events.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from sandbox_agent.agents import (
    AgentAdapter,
    AgentSessionConfig,
    Attachment,
    EventSink,
    turn_ended_draft,
)
from sandbox_agent.events import (
    KNOWN_EVENT_TYPES,
    EventDraft,
    SessionResumedData,
    SessionStartedData,
    UniversalEvent,
    new_event_id,
    parse_data,
    utc_now,
)
from sandbox_agent.sessions import Normaliser, prompt_drafts

TERMINAL = ("turn.ended", "session.ended")
V01_CAPABILITY_FLAGS = {
    "planMode",
    "permissions",
    "questions",
    "toolCalls",
    "toolResults",
    "textMessages",
    "images",
    "fileAttachments",
    "sessionLifecycle",
    "errorEvents",
    "reasoning",
    "status",
    "commandExecution",
    "fileChanges",
    "mcpTools",
    "streamingDeltas",
    "itemStarted",
    "variants",
    "sharedProcess",
}


def number(drafts: Sequence[EventDraft], session_id: str, first: int = 1) -> list[UniversalEvent]:
    """What a store does with normalised drafts: number them from ``first``, in order."""
    return [
        draft.to_event(
            session_id=session_id,
            sequence=first + i,
            event_id=draft.event_id or new_event_id(),
            time=draft.time or utc_now(),
        )
        for i, draft in enumerate(drafts)
    ]


class SessionHarness:
    """A stand-in for the session layer: drafts -> normaliser -> numbered events in a list."""

    def __init__(self, session_id: str = "s1") -> None:
        self.session_id = session_id
        self.normaliser = Normaliser()
        self.events: list[UniversalEvent] = []
        #: Every draft the adapter gave the sink, as given.
        self.adapter_drafts: list[EventDraft] = []
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._adapter: AgentAdapter | None = None
        self._ended = False

    @property
    def adapter(self) -> AgentAdapter:
        assert self._adapter is not None, "create() first"
        return self._adapter

    async def sink(self, drafts: Sequence[EventDraft]) -> None:
        self.adapter_drafts.extend(drafts)
        await self.append(drafts)

    async def append(self, drafts: Sequence[EventDraft]) -> None:
        async with self._lock:
            self._store(self.normaliser.normalise(drafts))
        async with self._changed:
            self._changed.notify_all()

    def _store(self, drafts: Sequence[EventDraft]) -> None:
        stored = number(drafts, self.session_id, first=len(self.events) + 1)
        self.events += stored
        for event in stored:
            if event.type == "session.ended":
                self._ended = True
            elif event.type == "session.resumed":
                self._ended = False

    async def create(
        self,
        make_adapter: Callable[[EventSink], AgentAdapter],
        config: AgentSessionConfig | None = None,
        resume: str | None = None,
    ) -> AgentAdapter:
        adapter = self._adapter = make_adapter(self.sink)
        config = config or AgentSessionConfig(session_id=self.session_id, agent=adapter.id)
        await adapter.start(config, resume)
        started = EventDraft(
            type="session.started",
            data=SessionStartedData(metadata={"agent": adapter.id, "agentMode": config.agent_mode}),
            source="daemon",
            synthetic=True,
            native_session_id=adapter.native_session_id,
        )
        await self.append([started])
        return adapter

    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> int:
        """Record the prompt as the session layer does, then hand it to the adapter.

        Returns the index in ``events`` where this turn begins.
        """
        async with self._lock:
            start = len(self.events)
            drafts: list[EventDraft] = []
            if self._ended:
                resumed = SessionResumedData(reason="reopened", native_resume=True)
                drafts.append(EventDraft(type="session.resumed", data=resumed, source="daemon"))
            item_id = self.normaliser.new_item_id()
            drafts += prompt_drafts(prompt, attachments, item_id=item_id)
            self._store(self.normaliser.normalise(drafts))
        await self.adapter.send(prompt, attachments)
        return start

    async def cancel(self) -> None:
        await self.adapter.cancel()
        await self.append([turn_ended_draft("cancelled")])

    async def wait_for(
        self, predicate: Callable[[UniversalEvent], bool], *, after: int = 0, seconds: float = 5.0
    ) -> UniversalEvent:
        """The first event from index ``after`` on that matches, waiting for it if needed."""

        async def wait() -> UniversalEvent:
            async with self._changed:
                while True:
                    for event in self.events[after:]:
                        if predicate(event):
                            return event
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), seconds)

    async def turn(self, prompt: str, until: Sequence[str] = TERMINAL) -> list[UniversalEvent]:
        """Send ``prompt``; the events from its ``turn.started`` to the first of ``until``."""
        start = await self.send(prompt)
        last = await self.wait_for(lambda e: e.type in until, after=start)
        return self.events[start : last.sequence]

    async def settle(self, seconds: float = 0.05) -> None:
        """Give background tasks a moment (to check that nothing more arrives)."""
        await asyncio.sleep(seconds)


def summary(events: Sequence[UniversalEvent]) -> list[str]:
    """One line per event: its type, and the item / request id it is about."""
    lines = []
    for event in events:
        data = event.data
        if "item" in data:
            lines.append(f"{event.type} {data['item']['item_id']}")
        elif event.type == "item.delta":
            lines.append(f"{event.type} {data['item_id']}")
        elif "permission_id" in data:
            lines.append(f"{event.type} {data['permission_id']}")
        elif "question_id" in data:
            lines.append(f"{event.type} {data['question_id']}")
        else:
            lines.append(event.type)
    return lines


def stream_violations(events: Sequence[UniversalEvent], *, lifecycle: bool = True) -> list[str]:
    """The invariants (``events.md``) that ``events``, a whole stored stream, breaks.

    Checks sequences, ``session.started``, items (3, 4, 6) and turn brackets (7). With
    ``lifecycle`` also that nothing but ``session.resumed`` follows ``session.ended`` (9).
    """
    problems: list[str] = []
    if [e.sequence for e in events] != list(range(1, len(events) + 1)):
        problems.append("sequences are not 1..N")
    starts = [e.sequence for e in events if e.type == "session.started"]
    if events and starts != [events[0].sequence]:
        problems.append(f"session.started at {starts}, expected once, first")
    started: set[str] = set()
    user_items: set[str] = set()
    deltas: set[str] = set()
    turn_open = ended = False
    for e in events:
        where = f"#{e.sequence} {e.type}"
        if lifecycle and ended and e.type != "session.resumed":
            problems.append(f"{where} after session.ended")
        if e.type == "item.started":
            item = e.data["item"]
            if item["item_id"] in started:
                problems.append(f"{where}: second start of {item['item_id']}")
            started.add(item["item_id"])
            if item.get("role") == "user":
                user_items.add(item["item_id"])
        elif e.type == "item.delta":
            if e.data["item_id"] not in started:
                problems.append(f"{where}: delta before start of {e.data['item_id']}")
            if e.data["item_id"] in user_items:
                problems.append(f"{where}: delta on user item {e.data['item_id']}")
            deltas.add(e.data["item_id"])
        elif e.type == "item.completed":
            item = e.data["item"]
            if item["item_id"] not in started:
                problems.append(f"{where}: completion before start of {item['item_id']}")
            text = [p for p in item["content"] if p.get("type") == "text" and p.get("text")]
            if (
                item.get("kind") == "message"
                and item.get("role") != "user"
                and text
                and item["item_id"] not in deltas
            ):
                problems.append(f"{where}: text message {item['item_id']} without a delta")
        elif e.type == "turn.started":
            if turn_open:
                problems.append(f"{where} while a turn is open")
            turn_open = True
        elif e.type == "turn.ended":
            if not turn_open:
                problems.append(f"{where} outside a turn")
            turn_open = False
        elif e.type == "session.ended":
            if turn_open:
                problems.append(f"{where} inside a turn")
            ended = True
        elif e.type == "session.resumed":
            ended = False
    return problems


class AgentContract:
    """The shared adapter suite. Subclass as ``Test<Agent>Contract`` and implement
    ``make_adapter``; set ``plain_prompt`` (a turn that just answers) and ``long_prompt`` (a turn
    long enough to be cancelled half-way)."""

    plain_prompt = "Reply with exactly the single word OK."
    long_prompt = "demo"

    def make_adapter(self, sink: EventSink) -> AgentAdapter:
        raise NotImplementedError

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SessionHarness]:
        harness = SessionHarness()
        await harness.create(self.make_adapter)
        yield harness
        await harness.adapter.stop()

    async def test_start_emits_nothing(self, harness: SessionHarness) -> None:
        assert harness.adapter_drafts == []
        assert summary(harness.events) == ["session.started"]

    async def test_a_plain_turn_ends_with_turn_ended(self, harness: SessionHarness) -> None:
        events = await harness.turn(self.plain_prompt)
        assert [e.type for e in events[:3]] == ["turn.started", "item.started", "item.completed"]
        assert events[1].data["item"]["role"] == "user"
        assert events[1].source == "client"
        assert events[-1].type == "turn.ended"
        assert events[-1].data["reason"] == "completed"
        assert any(e.source == "agent" for e in events), "the agent said nothing"

    async def test_cancel_ends_the_running_turn_and_nothing_follows(
        self, harness: SessionHarness
    ) -> None:
        start = await harness.send(self.long_prompt)
        # Wait until the agent is under way (past turn.started and the user item).
        await harness.wait_for(lambda e: e.source == "agent", after=start)
        await harness.cancel()
        last = harness.events[-1]
        assert (last.type, last.data["reason"]) == ("turn.ended", "cancelled")
        count = len(harness.events)
        await harness.settle(0.2)
        assert len(harness.events) == count, summary(harness.events[count:])

    async def test_a_turn_after_a_cancelled_one_works(self, harness: SessionHarness) -> None:
        start = await harness.send(self.long_prompt)
        await harness.wait_for(lambda e: e.source == "agent", after=start)
        await harness.cancel()
        events = await harness.turn(self.plain_prompt)
        assert events[-1].type == "turn.ended"
        assert events[-1].data["reason"] == "completed"

    async def test_cancel_without_a_turn_does_nothing(self, harness: SessionHarness) -> None:
        await harness.cancel()
        assert summary(harness.events) == ["session.started"]

    async def test_every_draft_validates_as_its_types_payload(
        self, harness: SessionHarness
    ) -> None:
        await harness.turn(self.plain_prompt)
        start = await harness.send(self.long_prompt)
        await harness.wait_for(lambda e: e.source == "agent", after=start)
        await harness.cancel()
        assert harness.adapter_drafts
        for draft in harness.adapter_drafts:
            assert draft.type in KNOWN_EVENT_TYPES, draft.type
            parse_data(draft.type, draft.data)
            assert draft.event_id is None, "event ids are the session layer's"
            assert draft.source in ("agent", "daemon", "client")
            assert draft.source == "daemon" or not draft.synthetic, "synthetic means daemon"

    async def test_the_stream_keeps_the_invariants(self, harness: SessionHarness) -> None:
        await harness.turn(self.plain_prompt)
        start = await harness.send(self.long_prompt)
        await harness.wait_for(lambda e: e.source == "agent", after=start)
        await harness.cancel()
        await harness.turn(self.plain_prompt)
        assert stream_violations(harness.events) == []

    async def test_stop_ends_a_running_turn_and_is_idempotent(
        self, harness: SessionHarness
    ) -> None:
        start = await harness.send(self.long_prompt)
        await harness.wait_for(lambda e: e.source == "agent", after=start)
        await harness.adapter.stop()
        count = len(harness.events)
        await harness.adapter.stop()
        await harness.settle(0.2)
        assert len(harness.events) == count

    async def test_capabilities_are_the_v01_flags(self, harness: SessionHarness) -> None:
        assert set(harness.adapter.capabilities.model_dump()) == V01_CAPABILITY_FLAGS

    async def test_modes_and_models_answer_before_start(self) -> None:
        async def sink(drafts: Sequence[EventDraft]) -> None:
            raise AssertionError("an unstarted adapter emitted")

        adapter = self.make_adapter(sink)
        modes = await adapter.modes()
        assert "build" in [mode.id for mode in modes]
        models = await adapter.models()
        if models.default_model is not None:
            assert models.default_model in [model.id for model in models.models]
