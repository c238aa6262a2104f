"""A session of the SDK: prompts, replies, its events (from the local store) and its state."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sandbox_agent.events import EventDraft, SessionResumedData, UniversalEvent
from sandbox_agent.replay import (
    ItemState,
    PermissionState,
    QuestionState,
    SessionState,
    replay,
    replayed_entries,
    restore_text,
    state_at,
)
from sandbox_agent.sdk.errors import MirrorConflict, SandboxAgentError
from sandbox_agent.sdk.mirror import Mirror, RemoteSessionLost, remote_offset, turn_open
from sandbox_agent.store import SequenceConflict, SessionRecord

if TYPE_CHECKING:
    from sandbox_agent.sdk.client import SandboxAgent

PermissionReply = Literal["once", "always", "reject"]

#: Events after which ``prompt`` returns: the turn ended, or it waits for an answer.
_TURN_END = frozenset({"turn.ended", "session.ended"})
_REQUESTS = frozenset({"permission.requested", "question.requested"})


@dataclass(frozen=True)
class TurnResult:
    """What a turn produced up to its end, or up to a request that waits for an answer."""

    #: The final assistant message text of the turn ("" when there is none).
    text: str
    #: The turn's items (user prompt, assistant messages, tool calls, ...) as replayed.
    items: list[ItemState]
    #: ``completed``, ``cancelled``, ``interrupted``, ``error``, ``session_ended``, or None
    #: while the turn waits for an answer (see ``pending_permissions`` / ``pending_questions``).
    #: A queued prompt cancelled before it started ends ``cancelled`` (or ``session_ended``)
    #: with only its ``prompt.dequeued`` event.
    end_reason: str | None
    pending_permissions: list[PermissionState] = field(default_factory=list)
    pending_questions: list[QuestionState] = field(default_factory=list)
    #: The local events of the turn, in order.
    events: list[UniversalEvent] = field(default_factory=list)

    @property
    def pending_permission(self) -> PermissionState | None:
        return self.pending_permissions[0] if self.pending_permissions else None

    @property
    def pending_question(self) -> QuestionState | None:
        return self.pending_questions[0] if self.pending_questions else None

    @classmethod
    def build(cls, state: SessionState, events: list[UniversalEvent]) -> TurnResult:
        """The result of the turn ``events``; pending requests come from ``state``.

        Items are replayed from the turn's own events, so that an item id the agent used
        before (a new sandbox numbers its items afresh) cannot mix two turns up."""
        items = replay(events).items
        said = [i for i in items if i.role == "assistant" and i.kind == "message" and i.text]
        end_reason: str | None = None
        last = events[-1] if events else None
        if last is not None and last.type == "turn.ended":
            end_reason = str(last.data.get("reason") or "completed")
        elif last is not None and last.type == "session.ended":
            end_reason = "session_ended"
        elif last is not None and last.type == "prompt.dequeued":
            # A queued prompt that never started: ``cancelled`` or ``session_ended``.
            end_reason = str(last.data.get("reason"))
        return cls(
            text=said[-1].text if said else "",
            items=items,
            end_reason=end_reason,
            pending_permissions=list(state.pending_permissions.values()),
            pending_questions=list(state.pending_questions.values()),
            events=events,
        )


class Session:
    """One session: remote calls go to the server, reads come from the SDK's local store.

    Get one from ``SandboxAgent.create_session``, ``get_session`` or ``resume_session``.
    """

    def __init__(
        self,
        sdk: SandboxAgent,
        record: SessionRecord,
        *,
        offset: int,
        restore: str | None,
        cursor: int = 0,
    ) -> None:
        self.id = record.id
        self.record = record
        self._sdk = sdk
        self._mirror = Mirror(sdk.http, sdk.store, self.id, offset=offset)
        # The client puts the cursor before the open turn's start, else at the stream's end.
        self._mirror.turn.sequence = record.last_sequence
        self._mirror.turn.open = cursor < record.last_sequence
        #: Replay text to put before the next prompt (after a restore on a new sandbox).
        self._restore = restore
        self._control = asyncio.Lock()
        self._cursor = cursor
        #: The local sequence the server had reached when we last changed the session.
        self._sync = 0
        #: A prompt of ours was accepted and ``wait`` has not followed its turn to the end.
        self._sent = False
        #: The queue id of our prompt while it waits behind another turn (202 from the server).
        self._queue_id: str | None = None

    def __repr__(self) -> str:
        return f"Session({self.id!r}, agent={self.record.agent!r})"

    @property
    def mirror(self) -> Mirror:
        return self._mirror

    @property
    def turn_running(self) -> bool:
        """True while a turn is open: from an accepted ``send``/``prompt`` until its turn
        ends, and while the local stream has a ``turn.started`` without its ``turn.ended``
        (no ``session.ended`` since), also while the turn waits for an answer. As of the
        newest local event this handle saw (its mirror's, its reads'); no I/O."""
        return self._mirror.turn.open

    @property
    def queue_id(self) -> str | None:
        """The server's queue id of this handle's last prompt while it may still wait behind
        a running turn (the server answered 202); None once ``wait``/``prompt`` saw its turn
        start, or when it started at once."""
        return self._queue_id

    # -- prompts --------------------------------------------------------------------------
    async def send(
        self,
        text: str,
        attachments: Sequence[dict[str, Any]] | None = None,
        *,
        if_idle: bool = False,
    ) -> int:
        """Send a prompt (restoring the session first when the server lost it). Returns the
        local sequence after which this turn's events are stored. While a turn runs the server
        queues it (``queue_id`` is set; ``wait`` then follows its own turn, after the ones
        before it); with ``if_idle`` the server refuses it instead (409 ``turn_in_progress``)."""
        async with self._control:
            info = await self._remote_info()
            message = f"{self._restore}\n\n{text}" if self._restore else text
            body: dict[str, Any] = {"message": message}
            if attachments:
                body["attachments"] = list(attachments)
            if if_idle:
                body["ifIdle"] = True
            answer = await self._sdk.request("POST", f"/v1/sessions/{self.id}/messages", json=body)
            self._queue_id = str(answer.json()["queueId"]) if answer.status_code == 202 else None
            self._restore = None
            if not self._mirror.running:
                # Re-read the mapping: another replica may have restored the session since.
                self._mirror.offset = remote_offset(await self.state())
                self._mirror.start()
            after = int(info.get("lastSequence", 0)) + self._mirror.offset
            self._cursor = self._sync = after
            self._sent = True
            self._mirror.turn.sent(after)
            return after

    async def prompt(
        self,
        text: str,
        attachments: Sequence[dict[str, Any]] | None = None,
        *,
        if_idle: bool = False,
    ) -> TurnResult:
        """Send a prompt and follow the turn to its end, or to a request that waits for an
        answer (then answer it and call ``wait()``). ``if_idle``: see ``send``."""
        return await self._follow_turn(await self.send(text, attachments, if_idle=if_idle))

    async def wait(self, timeout: float | None = None) -> TurnResult:
        """Follow the current turn on from where the last ``prompt``/``wait`` stopped, to its
        end or to a request that waits for an answer.

        When no turn runs (none open in the local stream, no prompt of ours still to come)
        it returns at once: the result of the session's last turn, or an empty one
        (``end_reason`` None, no events) when it had none. ``TimeoutError`` after ``timeout``
        seconds; the turn goes on, and the next ``wait()`` follows it from the same place."""
        async with asyncio.timeout(timeout):
            state = await self.state()
            if not (self._sent or self._turn_to_follow(state)):
                # The local copy may lag: a prompt whose answer was lost, events not yet
                # mirrored. What the server holds beyond it is waited for first.
                remote = await self._remote_last_sequence()
                if remote is not None and remote > state.last_sequence:
                    state = await self._caught_up(state.last_sequence, remote)
            if self._sent or self._turn_to_follow(state):
                return await self._follow_turn(self._cursor)
            return await self._last_turn(state)

    def _turn_to_follow(self, state: SessionState) -> bool:
        """A turn is open in ``state``, or one ended that ``wait`` has not returned yet."""
        self._mirror.turn.load(state)
        last = state.turns[-1] if state.turns else None
        ended_unseen = (
            last is not None
            and last.ended_sequence is not None
            and last.ended_sequence > self._cursor
        )
        return turn_open(state) or ended_unseen

    async def _remote_last_sequence(self) -> int | None:
        """The server's last sequence in local numbering (None: the server lost the session)."""
        try:
            info = await self._sdk.request_json("GET", f"/v1/sessions/{self.id}")
        except SandboxAgentError as exc:
            if exc.status == 404:
                return None
            raise
        return int(info.get("lastSequence", 0)) + self._mirror.offset

    async def catch_up(self, target: int) -> None:
        """Mirror the session and return once the local store holds its events up to the
        local sequence ``target``."""
        if not self._mirror.running:
            self._mirror.start()
        last = await self._sdk.store.last_sequence(self.id)
        if last < target:
            await self._caught_up(last, target)
        self._cursor = max(self._cursor, target)

    async def fork(self, new_id: str | None = None, at: int | None = None) -> Session:
        """``SandboxAgent.fork`` of this session."""
        return await self._sdk.fork(self.id, new_id, at)

    async def _caught_up(self, after: int, target: int) -> SessionState:
        """The local state once the mirror has stored every event up to ``target``."""
        if not self._mirror.running:
            self._mirror.start()
        if after < target:
            async for event in self._local_events(after):
                if event.sequence >= target:
                    break
        return await self.state()

    async def _last_turn(self, state: SessionState) -> TurnResult:
        """The result of the last turn of ``state``, which no longer runs."""
        turn = state.turns[-1] if state.turns else None
        if turn is None or turn.started_sequence is None:
            return TurnResult.build(state, [])
        end = turn.ended_sequence or state.last_sequence
        if state.ended is not None and state.ended.sequence > turn.started_sequence:
            end = min(end, state.ended.sequence)
        first = turn.started_sequence
        events = await self._sdk.store.read(self.id, after=first - 1, limit=end - first + 1)
        self._cursor = max(self._cursor, end)
        return TurnResult.build(state, events)

    async def _follow_turn(self, after: int) -> TurnResult:
        events: list[UniversalEvent] = []
        sync = self._sync
        async for event in self._local_events(after):
            if self._queue_id is not None:
                # The turns before our queued prompt are not ours: skip to its dequeue.
                if event.type != "prompt.dequeued" or event.data["queue_id"] != self._queue_id:
                    continue
                self._queue_id = None
                if event.data["reason"] != "started":
                    self._sent = False
                    events.append(event)
                    break
                continue
            events.append(event)
            if event.type in _TURN_END:
                self._sent = False
                break
            # Stop for an answer only once the local copy holds what the server had when we
            # last acted, so that an answer we gave is seen as given.
            if event.sequence >= sync and (event.type in _REQUESTS or event.sequence == sync):
                state = await self.state()  # latest: an "always" rule may have answered it
                if state.pending_permissions or state.pending_questions:
                    break
        end = events[-1].sequence if events else after
        self._cursor = end
        return TurnResult.build(await self.state(), events)

    # -- answers and control --------------------------------------------------------------
    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        path = f"/v1/sessions/{self.id}/permissions/{permission_id}/reply"
        await self._sdk.request("POST", path, json={"reply": reply})
        await self._mark_sync()

    async def reply_question(self, question_id: str, answers: list[list[str]]) -> None:
        path = f"/v1/sessions/{self.id}/questions/{question_id}/reply"
        await self._sdk.request("POST", path, json={"answers": answers})
        await self._mark_sync()

    async def reject_question(self, question_id: str) -> None:
        await self._sdk.request("POST", f"/v1/sessions/{self.id}/questions/{question_id}/reject")
        await self._mark_sync()

    async def cancel(self) -> None:
        """Interrupt the running turn (it ends with ``reason: cancelled``) and cancel the
        prompts queued behind it."""
        await self._sdk.request("POST", f"/v1/sessions/{self.id}/cancel")

    async def queued(self) -> list[dict[str, Any]]:
        """The prompts waiting behind the running turn, in the order they start
        (``{queueId, message, attachments, sequence}``, as the server has them)."""
        answer = await self._sdk.request_json("GET", f"/v1/sessions/{self.id}/queue")
        return list(answer.get("prompts", []))

    async def cancel_queued(self, queue_id: str | None = None) -> None:
        """Take a waiting prompt out of the queue (default: this handle's last one); its
        ``wait`` then ends ``cancelled``. ``SandboxAgentError`` 404 ``queued_prompt_not_found``
        when it is not waiting any more."""
        target = queue_id or self._queue_id
        if target is None:
            raise ValueError("no queued prompt of this session handle to cancel")
        await self._sdk.request("DELETE", f"/v1/sessions/{self.id}/queue/{target}")

    async def terminate(self) -> None:
        """Stop the agent; the session ends (``session.ended {terminated, daemon}``)."""
        await self._sdk.request("POST", f"/v1/sessions/{self.id}/terminate")

    async def _mark_sync(self) -> None:
        info = await self._sdk.request_json("GET", f"/v1/sessions/{self.id}")
        self._sync = int(info.get("lastSequence", 0)) + self._mirror.offset

    # -- reads (local store) --------------------------------------------------------------
    async def state(self, at: int | None = None) -> SessionState:
        """The session's state replayed from the local store (after sequence ``at``)."""
        return await state_at(self._sdk.store, self.id, at)

    async def events(
        self, after: int | None = None, follow: bool = True
    ) -> AsyncIterator[UniversalEvent]:
        """The local events after ``after``; with ``follow``, then every new one as it is
        stored (by this SDK's mirror, or by any replica sharing the store)."""
        start = after or 0
        if follow:
            async for event in self._local_events(start):
                yield event
            return
        while True:
            page = await self._sdk.store.read(self.id, after=start, limit=1000)
            for event in page:
                yield event
            if len(page) < 1000:
                return
            start = page[-1].sequence

    async def _local_events(self, after: int) -> AsyncIterator[UniversalEvent]:
        """``store.subscribe``, raising the mirror's error once it stopped and everything it
        stored was read."""
        store = self._sdk.store
        events = store.subscribe(self.id, after=after).__aiter__()
        next_event: asyncio.Future[UniversalEvent] | None = None
        last = after
        try:
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(anext(events))
                task = self._mirror.task
                if task is not None and not task.done():
                    waiting: set[asyncio.Future[Any]] = {next_event, task}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                elif (error := self._mirror.error()) is not None and not next_event.done():
                    if await store.last_sequence(self.id) <= last:
                        raise _translate(self.id, error)
                    await asyncio.wait({next_event})
                else:
                    await asyncio.wait({next_event})
                if next_event.done():
                    future, next_event = next_event, None
                    try:
                        event = future.result()
                    except StopAsyncIteration:
                        return
                    last = event.sequence
                    self._mirror.turn.see([event])
                    yield event
        finally:
            if next_event is not None:
                next_event.cancel()
                with contextlib.suppress(BaseException):
                    await next_event
            with contextlib.suppress(BaseException):
                await events.aclose()  # type: ignore[attr-defined]

    # -- the remote session ---------------------------------------------------------------
    async def _remote_info(self) -> dict[str, Any]:
        """``GET /v1/sessions/{id}``; restores the session first when the server lost it."""
        try:
            return await self._sdk.request_json("GET", f"/v1/sessions/{self.id}")
        except SandboxAgentError as exc:
            if exc.status != 404:
                raise
        await self._restore_remote()
        return await self._sdk.request_json("GET", f"/v1/sessions/{self.id}")

    async def ensure_remote(self) -> None:
        """Make sure the server has the session (restoring it if needed) and mirror it."""
        async with self._control:
            await self._remote_info()
            self._mirror.start()

    async def _restore_remote(self) -> None:
        """Recreate the session on a server that lost it (``sdk.md``, "Restore")."""
        await self._mirror.stop()
        store = self._sdk.store
        state = await state_at(store, self.id)
        if state.ended is not None and state.ended.terminated_by == "daemon":
            # A terminated session stays terminated, as on the server that lost it.
            raise SandboxAgentError.of(
                "invalid_request", 400, "invalid request: session terminated", sessionId=self.id
            )
        text = restore_text(state, self._sdk.replay_max_events, self._sdk.replay_max_chars)
        resumed = EventDraft(
            type="session.resumed",
            data=SessionResumedData(
                reason="sandbox_replaced",
                native_resume=False,
                replayed_events=replayed_entries(state, text),
            ),
            source="client",
            synthetic=True,
        )
        try:
            # expected_sequence makes this the claim: a second restorer (another replica)
            # fails here instead of creating a second remote session.
            stored = await store.append(self.id, [resumed], expected_sequence=state.last_sequence)
        except SequenceConflict as exc:
            raise MirrorConflict(
                self.id,
                f"session {self.id!r} was changed by another writer while restoring it "
                f"(another replica restores or mirrors it): {exc}",
            ) from exc
        try:
            body = {**self.record.init, "continueFrom": _continue_from(state)}
            await self._sdk.request("POST", f"/v1/sessions/{self.id}", json=body)
        except SandboxAgentError as exc:
            if exc.status != 409:  # 409: it exists already, which is what we want
                raise
        self._mirror.offset = stored[0].sequence - 1
        self._restore = text or None

    async def close(self) -> None:
        """Stop mirroring (what is stored stays)."""
        await self._mirror.stop()


_OUR_ITEM_ID = re.compile(r"itm_(\d+)")


def _continue_from(state: SessionState) -> dict[str, int]:
    """Where the new server's numbering continues, so that no item id or turn repeats."""
    numbers = [
        int(match.group(1))
        for item in state.items
        if (match := _OUR_ITEM_ID.fullmatch(item.item_id)) is not None
    ]
    return {"turns": len(state.turns), "nextItem": max(numbers, default=0) + 1}


def _translate(session_id: str, error: BaseException) -> BaseException:
    if isinstance(error, RemoteSessionLost):
        return SandboxAgentError.of(
            "session_not_found",
            404,
            f"the server lost session {session_id!r}; the next prompt or resume_session() "
            "restores it",
            sessionId=session_id,
        )
    return error
