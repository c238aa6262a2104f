"""The reducer: the one fold from a session's events to its ``SessionState``.

Pure and deterministic: no I/O, no clock. A stream that breaks an invariant of ``events.md`` is
still folded; each breach is recorded as an ``Anomaly`` at the sequence where it showed (or, with
``strict=True``, raised as ``InvariantViolation``). Every check reads only the state, so folding
a stream in one go, event by event, or from a snapshot onwards gives equal states.

Speed: a ``Replayer`` mutates one working state in place (pydantic models without assignment
validation) and buffers each item's deltas until the state is read, so an ``item.delta`` costs a
dict lookup and a list append.

A *working* replayer (``Replayer(state, working=True)``) keeps only what a writer needs to act,
so that its memory does not grow with the session's history (``working_state``): no items, the
newest turn only (``turn_count`` counts them all), no errors, resumes, anomalies, resolved
questions or unparsed entries (``unparsed_count`` counts them), and of the resolved permissions
only the client's ``accept_for_session`` ones (the daemon's automatic answers, one for each
request an ``always`` rule matched, add no rule and would grow with the history). Every field
it keeps equals the full fold's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox_agent.events import (
    AgentUnparsedData,
    ErrorData,
    PermissionData,
    PromptDequeuedData,
    PromptQueuedData,
    QuestionData,
    SessionEndedData,
    SessionResumedData,
    SessionStartedData,
    TurnEndedData,
    TurnStartedData,
    UniversalEvent,
)
from sandbox_agent.replay.anomalies import AnomalyKind
from sandbox_agent.replay.errors import InvariantViolation
from sandbox_agent.replay.state import (
    UNPARSED_KEPT,
    Anomaly,
    EndedInfo,
    ErrorEntry,
    ItemState,
    PermissionState,
    QuestionState,
    QueuedPrompt,
    ResumeInfo,
    SessionState,
    SessionStatus,
    TurnState,
    UnparsedEntry,
)

M = TypeVar("M", bound=BaseModel)


class _ItemPayload(BaseModel):
    """The ``item`` of ``item.started`` / ``item.completed``, with content left as JSON."""

    model_config = ConfigDict(extra="ignore")

    item_id: str
    native_item_id: str | None = None
    parent_id: str | None = None
    kind: str = "message"
    role: str | None = None
    status: str = "in_progress"
    content: list[dict[str, Any]] = Field(default_factory=list)


class _Pending:
    """Deltas of one item not yet folded into its ``text``."""

    __slots__ = ("chunks", "count", "item", "last")

    def __init__(self, item: ItemState) -> None:
        self.item = item
        self.chunks: list[str] = []
        self.count = 0
        self.last = 0


def status_of(state: SessionState) -> SessionStatus:
    if state.ended is not None:
        return "ended"
    if state.pending_permissions or state.pending_questions:
        return "awaiting_input"
    if state.open_turn is not None:
        return "running"
    return "idle"


def working_state(state: SessionState) -> SessionState:
    """What a working replayer keeps of ``state`` (a full fold): a new state sharing the parts
    it keeps with ``state``."""
    return state.model_copy(
        update={
            "items": [],
            "turns": state.turns[-1:],
            "resumes": [],
            "errors": [],
            "anomalies": [],
            "unparsed": [],
            "resolved_questions": {},
            "resolved_permissions": _always(state.resolved_permissions),
        }
    )


def _always(permissions: dict[str, PermissionState]) -> dict[str, PermissionState]:
    # What later "always" answers need (``AgentSessionConfig.always``).
    return {pid: p for pid, p in permissions.items() if _is_rule(p)}


def _is_rule(permission: PermissionState) -> bool:
    # The client's "always" answers only: the daemon's automatic ones each matched a rule
    # already kept, and there is one per matching request, so they grow with the history.
    return permission.status == "accept_for_session" and not permission.automatic


#: The handlers a working replayer skips: they only build what it does not keep.
_NOT_WORKING = ("item.delta", "item.started", "item.completed", "error")


class Replayer:
    """Folds events into a working state, one ``apply`` at a time.

    ``Replayer(state)`` continues from ``state`` (a copy of it, unless ``copy=False``, in which
    case the replayer takes it over). Read the result with ``state`` (a copy; the replayer goes
    on) or ``finish()`` (no copy; the replayer is done). After an ``InvariantViolation`` in
    strict mode the replayer must not be used again.

    With ``working=True`` (from a full state, or none) the replayer keeps only the working state
    (``working_state``; the module's docstring), whatever the length of the stream.
    """

    __slots__ = (
        "_count",
        "_finished",
        "_handlers",
        "_items",
        "_last",
        "_last_time",
        "_pending",
        "_state",
        "_strict",
        "_turns_dropped",
        "_working",
    )

    def __init__(
        self,
        state: SessionState | None = None,
        *,
        strict: bool = False,
        copy: bool = True,
        working: bool = False,
    ) -> None:
        if state is None:
            state = SessionState()
        elif copy:
            state = state.model_copy(deep=True)
        self._working = working
        #: Turns a working replayer no longer holds (``turn_count``).
        self._turns_dropped = 0
        if working:
            self._turns_dropped = max(len(state.turns) - 1, 0)
            state = working_state(state)
        self._state = state
        self._strict = strict
        self._finished = False
        self._items = {item.item_id: item for item in state.items}
        self._pending: dict[str, _Pending] = {}
        # Written on every event, so kept here and put into the state when it is read.
        self._last = state.last_sequence
        self._count = state.event_count
        self._last_time = state.last_time
        # A class-level table of plain functions: bound methods kept on the instance would put
        # every replayer (and the whole state it holds) in a reference cycle, left for the
        # collector instead of freed when the fold ends.
        self._handlers = _WORKING_HANDLERS if working else _HANDLERS

    # -- reading the result -----------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        return self._state.session_id

    @property
    def last_sequence(self) -> int:
        return self._last

    @property
    def working(self) -> bool:
        """Whether this replayer keeps only the working state."""
        return self._working

    @property
    def turn_count(self) -> int:
        """How many turns the stream has (``len(state.turns)`` of the full fold)."""
        return self._turns_dropped + len(self._state.turns)

    @property
    def anomalies(self) -> list[Anomaly]:
        """The anomalies found so far (the live list: read it, do not change it)."""
        return self._state.anomalies

    @property
    def state(self) -> SessionState:
        """A copy of the state so far; the replayer can go on."""
        return self._settled().model_copy(deep=True)

    @property
    def view(self) -> SessionState:
        """The state so far without a copy: read it, never change it; it is valid until the
        next ``apply``. For a writer that checks its live state often (the server)."""
        return self._settled()

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the state so far (what a snapshot stores), without copying it."""
        return self._settled().to_json()

    def to_json_text(self) -> str:
        """``to_json`` as JSON text."""
        return self._settled().to_json_text()

    def finish(self) -> SessionState:
        """The state, without a copy; the replayer cannot be used afterwards."""
        state = self._settled()
        self._finished = True
        return state

    def _settled(self) -> SessionState:
        if self._finished:
            raise RuntimeError("this Replayer has finished; start a new one from its state")
        for pending in self._pending.values():
            self._fold(pending)
        self._pending.clear()
        s = self._state
        s.last_sequence, s.event_count, s.last_time = self._last, self._count, self._last_time
        s.status = status_of(s)
        return s

    # -- folding --------------------------------------------------------------------------
    def apply_all(self, events: Iterable[UniversalEvent]) -> Replayer:
        apply = self.apply
        for event in events:
            apply(event)
        return self

    def apply(self, event: UniversalEvent) -> Replayer:
        if self._finished:
            raise RuntimeError("this Replayer has finished; start a new one from its state")
        s = self._state
        seq = event.sequence
        if seq == self._last + 1:
            self._last = seq
        else:
            self._out_of_line(seq)
        kind = event.type
        if self._count == 0:
            self._first_event(event)
        elif event.session_id != s.session_id:
            self._anomaly(
                seq,
                "foreign_session",
                f"event of session {event.session_id!r} in the stream of {s.session_id!r}",
            )
        self._count += 1
        counts = s.counts
        counts[kind] = counts.get(kind, 0) + 1
        self._last_time = event.time
        if event.native_session_id is not None:
            s.native_session_id = event.native_session_id
        if s.ended is not None and kind != "session.resumed":
            self._anomaly(
                seq,
                "event_after_session_ended",
                f"{kind} after session.ended at sequence {s.ended.sequence}",
            )
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(self, event, seq)
        return self

    def _out_of_line(self, seq: int) -> None:
        last = self._last
        if seq <= last:
            self._anomaly(seq, "sequence_repeat", f"sequence {seq} after {last}")
            return
        missing = f"{last + 1}" if seq == last + 2 else f"{last + 1}..{seq - 1}"
        self._anomaly(seq, "sequence_gap", f"sequence {seq} after {last}: {missing} missing")
        self._last = seq

    def _first_event(self, event: UniversalEvent) -> None:
        s = self._state
        if s.session_id is None:
            s.session_id = event.session_id
        elif event.session_id != s.session_id:
            self._anomaly(
                event.sequence,
                "foreign_session",
                f"event of session {event.session_id!r} in the stream of {s.session_id!r}",
            )
        s.first_time = event.time
        if event.type != "session.started":
            self._anomaly(
                event.sequence,
                "missing_session_started",
                f"the stream starts with {event.type}, not session.started",
            )

    def _anomaly(self, sequence: int, kind: AnomalyKind, message: str) -> None:
        anomaly = Anomaly(sequence=sequence, kind=kind, message=message)
        if self._strict:
            raise InvariantViolation(anomaly)
        if not self._working:
            self._state.anomalies.append(anomaly)

    def _parse(self, model: type[M], event: UniversalEvent) -> M | None:
        try:
            return model.model_validate(event.data)
        except ValidationError as exc:
            self._malformed(event, exc)
            return None

    def _malformed(self, event: UniversalEvent, exc: ValidationError) -> None:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "data"
        self._anomaly(
            event.sequence,
            "malformed_event",
            f"{event.type} payload does not match its schema: {where}: {first['msg']}",
        )

    # -- items ----------------------------------------------------------------------------
    def _item_payload(self, event: UniversalEvent) -> _ItemPayload | None:
        try:
            return _ItemPayload.model_validate(event.data.get("item"))
        except ValidationError as exc:
            self._malformed(event, exc)
            return None

    def _add_item(self, payload: _ItemPayload, seq: int) -> ItemState:
        # The payload is validated already: constructing the item again would copy its content.
        item = ItemState.model_construct(
            item_id=payload.item_id,
            native_item_id=payload.native_item_id,
            parent_id=payload.parent_id,
            kind=payload.kind,
            role=payload.role,
            status=payload.status,
            content=payload.content,
            first_sequence=seq,
            last_sequence=seq,
        )
        self._items[item.item_id] = item
        self._state.items.append(item)
        return item

    @staticmethod
    def _fold(pending: _Pending, text: bool = True) -> None:
        item = pending.item
        if text:
            item.streamed += "".join(pending.chunks)
        item.delta_count += pending.count
        item.last_sequence = pending.last

    def _settle(self, item_id: str, text: bool = True) -> None:
        pending = self._pending.pop(item_id, None)
        if pending is not None:
            self._fold(pending, text)

    @staticmethod
    def _describe(item: ItemState, payload: _ItemPayload) -> None:
        item.native_item_id = payload.native_item_id or item.native_item_id
        item.parent_id = payload.parent_id or item.parent_id
        item.kind = payload.kind
        item.role = payload.role
        item.status = payload.status
        item.content = payload.content

    def _item_started(self, event: UniversalEvent, seq: int) -> None:
        payload = self._item_payload(event)
        if payload is None:
            return
        item_id = payload.item_id
        item = self._items.get(item_id)
        if item is None:
            item = self._add_item(payload, seq)
            item.started_sequence = seq
            return
        self._settle(item_id)
        if item.started_sequence is not None:
            self._anomaly(
                seq,
                "item_started_twice",
                f"item {item_id!r} already started at sequence {item.started_sequence}",
            )
        else:
            after = "completion" if item.completed else "deltas"
            self._anomaly(
                seq,
                "item_started_late",
                f"item {item_id!r} started after its {after} (first seen at {item.first_sequence})",
            )
            item.started_sequence = seq
        item.last_sequence = seq
        if not item.completed:  # a completion's content is authoritative; a late start is not
            self._describe(item, payload)

    def _item_delta(self, event: UniversalEvent, seq: int) -> None:
        data = event.data
        item_id = data.get("item_id")
        delta = data.get("delta")
        pending = self._pending.get(item_id) if type(item_id) is str else None
        if pending is None:
            if not isinstance(item_id, str) or not isinstance(delta, str):
                self._anomaly(seq, "malformed_event", "item.delta needs a string item_id and delta")
                return
            pending = self._open_pending(item_id, data.get("native_item_id"), seq)
            if pending is None:
                return
        elif type(delta) is not str:
            self._anomaly(seq, "malformed_event", "item.delta needs a string item_id and delta")
            return
        pending.chunks.append(delta)
        pending.count += 1
        pending.last = seq

    def _open_pending(self, item_id: str, native_item_id: Any, seq: int) -> _Pending | None:
        item = self._items.get(item_id)
        if item is None:
            self._anomaly(seq, "delta_before_start", f"delta for item {item_id!r} before its start")
            native = native_item_id if isinstance(native_item_id, str) else None
            item = self._add_item(_ItemPayload(item_id=item_id, native_item_id=native), seq)
        elif item.completed_sequence is not None:
            self._anomaly(
                seq,
                "delta_after_completion",
                f"delta for item {item_id!r} completed at sequence {item.completed_sequence}",
            )
            # Counted, not folded (the completion's text stands): the count says whether the
            # item ever had a delta, which the session layer's normaliser reads back.
            item.delta_count += 1
            return None
        elif item.role == "user" and item.delta_count == 0:
            self._anomaly(seq, "user_item_with_delta", f"user item {item_id!r} received a delta")
        pending = self._pending[item_id] = _Pending(item)
        return pending

    def _item_completed(self, event: UniversalEvent, seq: int) -> None:
        payload = self._item_payload(event)
        if payload is None:
            return
        item_id = payload.item_id
        item = self._items.get(item_id)
        first_completion = True
        if item is None:
            self._anomaly(
                seq, "completed_without_start", f"item {item_id!r} completed without a start"
            )
            item = self._add_item(payload, seq)
        else:
            self._settle(item_id, text=False)  # the completion replaces the text
            if item.completed_sequence is not None:
                first_completion = False
                self._anomaly(
                    seq,
                    "item_completed_twice",
                    f"item {item_id!r} already completed at sequence {item.completed_sequence}",
                )
            self._describe(item, payload)
        if item.status == "in_progress":
            item.status = "completed"
        item.streamed = ""  # from now on the content is the text
        item.completed_sequence = seq
        item.last_sequence = seq
        if (
            first_completion
            and item.kind == "message"
            and item.role != "user"
            and item.text
            and item.delta_count == 0
        ):
            self._anomaly(
                seq,
                "completed_without_delta",
                f"message {item_id!r} completed with text but received no delta",
            )

    # -- session --------------------------------------------------------------------------
    def _session_started(self, event: UniversalEvent, seq: int) -> None:
        s = self._state
        if s.started_sequence is not None:
            self._anomaly(
                seq,
                "session_started_twice",
                f"session.started again (first at sequence {s.started_sequence})",
            )
            return
        if self._count > 1:
            self._anomaly(
                seq,
                "session_started_not_first",
                f"session.started after {self._count - 1} events",
            )
        s.started_sequence = seq
        data = self._parse(SessionStartedData, event)
        metadata = (data.metadata if data is not None else None) or {}
        s.metadata = metadata

        def text(*keys: str) -> str | None:
            for key in keys:
                value = metadata.get(key)
                if isinstance(value, str):
                    return value
            return None

        s.agent = text("agent")
        s.agent_mode = text("agentMode", "agent_mode")
        s.permission_mode = text("permissionMode", "permission_mode")
        s.model = text("model")
        s.variant = text("variant")
        s.directory = text("directory")
        s.title = text("title")

    def _session_ended(self, event: UniversalEvent, seq: int) -> None:
        s = self._state
        turn = s.open_turn
        if turn is not None:
            self._anomaly(
                seq,
                "turn_open_at_session_end",
                f"session ended while turn {turn.turn_id or '(no id)'} from sequence "
                f"{turn.started_sequence} was running",
            )
        data = self._parse(SessionEndedData, event)
        if data is None:
            data = SessionEndedData(reason="unknown", terminated_by="unknown")
        s.ended = EndedInfo(
            sequence=seq,
            time=event.time,
            reason=data.reason,
            terminated_by=data.terminated_by,
            message=data.message,
            exit_code=data.exit_code,
            stderr=None if data.stderr is None else data.stderr.model_dump(mode="json"),
        )

    def _session_resumed(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(SessionResumedData, event)
        s = self._state
        s.ended = None
        if self._working:
            return
        s.resumes.append(
            ResumeInfo(
                sequence=seq,
                time=event.time,
                reason=data.reason if data is not None else "unknown",
                native_resume=data.native_resume if data is not None else False,
                replayed_events=data.replayed_events if data is not None else 0,
            )
        )

    # -- turns ----------------------------------------------------------------------------
    def _turn_started(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(TurnStartedData, event)
        s = self._state
        running = s.open_turn
        if running is not None:
            self._anomaly(
                seq,
                "turn_started_while_running",
                f"turn started while turn {running.turn_id or '(no id)'} from sequence "
                f"{running.started_sequence} runs",
            )
        s.turns.append(
            TurnState(
                turn_id=data.turn_id if data is not None else None,
                started_sequence=seq,
                started_time=event.time,
            )
        )
        self._trim_turns()

    def _turn_ended(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(TurnEndedData, event)
        turn_id = data.turn_id if data is not None else None
        s = self._state
        turn = s.open_turn
        if turn is None:
            self._anomaly(seq, "turn_ended_without_start", "turn.ended with no turn running")
            turn = TurnState(turn_id=turn_id)
            s.turns.append(turn)
            self._trim_turns()
        elif turn_id is not None and turn.turn_id is not None and turn_id != turn.turn_id:
            self._anomaly(
                seq, "turn_id_mismatch", f"turn.ended for {turn_id!r} while {turn.turn_id!r} runs"
            )
        turn.ended_sequence = seq
        turn.ended_time = event.time
        turn.reason = data.reason if data is not None else None

    def _trim_turns(self) -> None:
        # Only the newest turn can be open, so a working replayer keeps that one.
        turns = self._state.turns
        if self._working and len(turns) > 1:
            self._turns_dropped += len(turns) - 1
            del turns[:-1]

    # -- human in the loop ----------------------------------------------------------------
    def _permission_requested(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(PermissionData, event)
        if data is None:
            return
        s = self._state
        pid = data.permission_id
        if pid in s.pending_permissions or pid in s.resolved_permissions:
            self._anomaly(
                seq, "permission_requested_twice", f"permission {pid!r} was already requested"
            )
            s.resolved_permissions.pop(pid, None)
        s.pending_permissions[pid] = PermissionState(
            permission_id=pid, action=data.action, metadata=data.metadata, requested_sequence=seq
        )

    def _permission_resolved(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(PermissionData, event)
        if data is None:
            return
        s = self._state
        pid = data.permission_id
        permission = s.pending_permissions.pop(pid, None)
        if permission is None:
            if pid in s.resolved_permissions:
                self._anomaly(
                    seq, "permission_resolved_twice", f"permission {pid!r} was already resolved"
                )
            else:
                self._anomaly(
                    seq, "resolved_unknown_permission", f"permission {pid!r} was never requested"
                )
            permission = PermissionState(permission_id=pid, action=data.action)
            s.resolved_permissions.pop(pid, None)
        permission.status = data.status
        permission.resolved_sequence = seq
        permission.resolved_metadata = data.metadata
        permission.automatic = event.synthetic
        if not self._working or _is_rule(permission):
            s.resolved_permissions[pid] = permission

    def _question_requested(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(QuestionData, event)
        if data is None:
            return
        s = self._state
        qid = data.question_id
        if qid in s.pending_questions or qid in s.resolved_questions:
            self._anomaly(seq, "question_requested_twice", f"question {qid!r} was already asked")
            s.resolved_questions.pop(qid, None)
        s.pending_questions[qid] = QuestionState(
            question_id=qid, prompt=data.prompt, options=data.options, requested_sequence=seq
        )

    def _question_resolved(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(QuestionData, event)
        if data is None:
            return
        s = self._state
        qid = data.question_id
        question = s.pending_questions.pop(qid, None)
        if question is None:
            if qid in s.resolved_questions:
                self._anomaly(
                    seq, "question_resolved_twice", f"question {qid!r} was already resolved"
                )
            else:
                self._anomaly(seq, "resolved_unknown_question", f"question {qid!r} was never asked")
            question = QuestionState(question_id=qid, prompt=data.prompt, options=data.options)
            s.resolved_questions.pop(qid, None)
        question.status = data.status
        question.response = data.response
        question.resolved_sequence = seq
        if not self._working:
            s.resolved_questions[qid] = question

    # -- the prompt queue -----------------------------------------------------------------
    def _prompt_queued(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(PromptQueuedData, event)
        if data is None:
            return
        s = self._state
        s.queued_count += 1
        if any(prompt.queue_id == data.queue_id for prompt in s.queued):
            self._anomaly(seq, "prompt_queued_twice", f"prompt {data.queue_id!r} already waits")
            return
        s.queued.append(
            QueuedPrompt(
                queue_id=data.queue_id,
                message=data.message,
                attachments=[
                    a.model_dump(mode="json", exclude_none=True) for a in data.attachments
                ],
                queued_sequence=seq,
            )
        )

    def _prompt_dequeued(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(PromptDequeuedData, event)
        if data is None:
            return
        s = self._state
        waiting = [prompt for prompt in s.queued if prompt.queue_id != data.queue_id]
        if len(waiting) == len(s.queued):
            self._anomaly(
                seq, "dequeued_unknown_prompt", f"prompt {data.queue_id!r} is not waiting"
            )
        s.queued = waiting

    # -- errors ---------------------------------------------------------------------------
    def _error(self, event: UniversalEvent, seq: int) -> None:
        data = self._parse(ErrorData, event)
        if data is None:
            return
        self._state.errors.append(
            ErrorEntry(
                sequence=seq,
                time=event.time,
                message=data.message,
                code=data.code,
                details=data.details,
            )
        )

    def _unparsed(self, event: UniversalEvent, seq: int) -> None:
        s = self._state
        s.unparsed_count += 1
        if self._working:
            return  # the entries are for reading the history, not for acting
        data = self._parse(AgentUnparsedData, event)
        if data is None:
            return
        s.unparsed.append(
            UnparsedEntry(
                sequence=seq, error=data.error, location=data.location, raw_hash=data.raw_hash
            )
        )
        del s.unparsed[:-UNPARSED_KEPT]


_Handler = Callable[[Replayer, UniversalEvent, int], None]
#: The full fold's handler of each event type (``Replayer.apply``).
_HANDLERS: dict[str, _Handler] = {
    "item.delta": Replayer._item_delta,
    "item.started": Replayer._item_started,
    "item.completed": Replayer._item_completed,
    "session.started": Replayer._session_started,
    "session.ended": Replayer._session_ended,
    "session.resumed": Replayer._session_resumed,
    "turn.started": Replayer._turn_started,
    "turn.ended": Replayer._turn_ended,
    "permission.requested": Replayer._permission_requested,
    "permission.resolved": Replayer._permission_resolved,
    "question.requested": Replayer._question_requested,
    "question.resolved": Replayer._question_resolved,
    "error": Replayer._error,
    "agent.unparsed": Replayer._unparsed,
    "prompt.queued": Replayer._prompt_queued,
    "prompt.dequeued": Replayer._prompt_dequeued,
}
#: A working replayer's: without those that only build what it does not keep.
_WORKING_HANDLERS = {kind: h for kind, h in _HANDLERS.items() if kind not in _NOT_WORKING}


def replay(
    events: Iterable[UniversalEvent],
    *,
    strict: bool = False,
    state: SessionState | None = None,
) -> SessionState:
    """Fold ``events`` (continuing from ``state`` when given, which is left unchanged) into a
    session state. Non-strict by default: anomalies are recorded and the fold goes on;
    ``strict=True`` raises ``InvariantViolation`` at the first one."""
    return Replayer(state, strict=strict).apply_all(events).finish()
