"""The normaliser: the one step every draft passes between a writer and the store.

The session layer's append path is ``draft -> Normaliser.normalise -> store.append``, for the
adapter's drafts and its own alike. The normaliser makes the stream keep the invariants of
``events.md`` whatever the agent did:

1. ``native_session_id``: a draft carrying one sets the session's (the latest wins, so a resume
   continues the agent's newest session); a draft without one inherits it.
2. Item ids: an item or delta with an empty ``item_id`` gets the id already given to its
   ``native_item_id``, or a fresh ``itm_<n>`` (n counts per session from 1); ids an adapter
   chose are kept. A ``parent_id`` that is a known native id is translated; anything else is
   kept as it is. Adapters must not choose ids of the form ``itm_<n>``.
3. An ``item.started`` of an item already started (or completed) is dropped.
4. An ``item.completed`` of an item never started gets a synthetic ``item.started`` (the same
   item, ``in_progress``) first; an ``item.delta`` of an item never started gets one for an empty
   assistant message (the completion's content is authoritative anyway).
5. The completion of a message item whose role is not ``user``, with text and no delta so far,
   gets one synthetic ``item.delta`` with all its text parts joined by newlines first.
6. A second ``session.started`` is dropped.
7. A ``turn.ended`` outside a turn is dropped (an adapter's late one after a cancel); one without
   ``turn_id`` gets the open turn's. A ``session.ended`` inside a turn gets a synthetic
   ``turn.ended`` first (reason ``completed``, ``error`` or, when terminated, ``interrupted``).
8. Items still open (started, not completed) when a turn ends other than ``completed`` (a
   cancel, an idle timeout, an error, a restart) or when the session ends get a synthetic
   ``item.completed`` each, status ``failed``, with the content they started with and the text
   their deltas built, before that ``turn.ended``: the next turn's output starts new items.

Dropped drafts are simply absent from the result: sequences are the store's, so nothing dropped
ever leaves a gap. Synthetic drafts have source ``daemon``, ``synthetic=True`` and no ``raw``.

The normaliser is pure (no I/O) and deterministic, and all its state is a fold of the stored
events: ``Normaliser.from_events(stored)`` after a restart continues exactly as the live one
would have. Its state is also a function of the reducer's ``SessionState``, so
``Normaliser.from_state(snapshot)`` then ``observe`` of the events after it is the same
normaliser again: the session layer folds a stream once, from its newest snapshot.
``normalise`` assumes its result gets appended; if the append fails, rebuild from the store
(or ``observe`` what did get stored into a normaliser built before).

Memory: the normaliser remembers every item not yet completed and the ``RECENT_ITEMS`` items
completed last (by their latest completion); an older item is forgotten (its id, whether it had a
delta, the native ids it introduced), so a loaded session's memory does not grow with its
history. The rules above hold for every item it remembers; an agent that refers to an item
completed more than ``RECENT_ITEMS`` completions ago gets the treatment of a new item (a start
is kept rather than dropped, a bare delta gets a synthetic start; a native parent id is no
longer translated). Agents refer to an item while it runs or just after, so a window of 64
covers them; it costs about 20 KB per loaded session once full (200 sessions: about 4 MB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox_agent.events import (
    EventDraft,
    ItemDeltaData,
    ItemEventData,
    TextPart,
    TurnEndedData,
    UniversalEvent,
    UniversalItem,
)
from sandbox_agent.events.payloads import normalise_data
from sandbox_agent.replay import SessionState

_OUR_ITEM_ID = re.compile(r"itm_([0-9]+)")

#: How many completed items the normaliser remembers (the module's docstring, "Memory").
RECENT_ITEMS = 64

# The turn.ended reason for a turn that a session.ended cuts short.
_TURN_REASON_AT_SESSION_END = {"completed": "completed", "error": "error"}


@dataclass(eq=False)
class _Open:
    """An item started and not completed: what its synthetic completion needs (invariant 8)."""

    #: The item's fields as its start gave them (those the reducer keeps).
    item: dict[str, Any]
    #: Its deltas' text, in pieces (the joined text is what counts for equality).
    text: list[str] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Open)
            and self.item == other.item
            and "".join(self.text) == "".join(other.text)
        )


#: The item fields an open item keeps, with their defaults (``UniversalItem``'s).
_ITEM_FIELDS: dict[str, Any] = {
    "item_id": None,
    "native_item_id": None,
    "parent_id": None,
    "kind": "message",
    "role": None,
    "content": [],
}


@dataclass
class _State:
    native_session_id: str | None = None
    session_started: bool = False
    turn_open: bool = False
    turn_id: str | None = None
    next_item: int = 1
    native_to_item: dict[str, str] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    delta_seen: set[str] = field(default_factory=set)
    open_items: dict[str, _Open] = field(default_factory=dict)
    #: The remembered completed items, oldest completion first (at most ``RECENT_ITEMS``).
    completed: dict[str, None] = field(default_factory=dict)
    #: The native ids each remembered item introduced into ``native_to_item`` (forgotten with it).
    natives_of: dict[str, list[str]] = field(default_factory=dict)


class Normaliser:
    """One session's normaliser. Two are equal when they would treat every future draft alike."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(
        self, native_session_id: str | None = None, *, recent_items: int = RECENT_ITEMS
    ) -> None:
        self._state = _State(native_session_id=native_session_id)
        #: How many completed items it remembers (``RECENT_ITEMS``).
        self.recent_items = recent_items

    @classmethod
    def from_events(
        cls, events: Iterable[UniversalEvent | EventDraft], *, recent_items: int = RECENT_ITEMS
    ) -> Normaliser:
        """The normaliser of a session whose stored stream is ``events`` (in order)."""
        normaliser = cls(recent_items=recent_items)
        for event in events:
            normaliser.observe(event)
        return normaliser

    @classmethod
    def from_state(cls, state: SessionState, *, recent_items: int = RECENT_ITEMS) -> Normaliser:
        """The normaliser of a session whose stored stream folds to ``state`` (the reducer's
        state, e.g. a snapshot): equal to ``from_events`` of that stream."""
        normaliser = cls(state.native_session_id or None, recent_items=recent_items)
        own = normaliser._state
        own.session_started = state.started_sequence is not None
        turn = state.open_turn
        ended = state.ended
        # A session.ended closes the turn for the normaliser (the reducer flags it instead).
        if turn is not None and (ended is None or (turn.started_sequence or 0) > ended.sequence):
            own.turn_open = True
            own.turn_id = turn.turn_id
        completed = sorted(
            (item for item in state.items if item.completed_sequence is not None),
            key=lambda item: item.completed_sequence or 0,
        )
        forgotten = {item.item_id for item in completed[: max(len(completed) - recent_items, 0)]}
        for item in state.items:
            normaliser._note_id(item.item_id)
            normaliser._note_id(item.parent_id)
            if item.item_id in forgotten:
                continue
            normaliser._note_item(item.item_id, item.native_item_id)
            if item.started_sequence is not None or item.completed_sequence is not None:
                own.started.add(item.item_id)
            if item.delta_count:
                own.delta_seen.add(item.item_id)
            if item.started_sequence is not None and item.completed_sequence is None:
                fields = {name: getattr(item, name) for name in _ITEM_FIELDS}
                own.open_items[item.item_id] = _Open(fields, [item.streamed])
        own.completed = {item.item_id: None for item in completed if item.item_id not in forgotten}
        return normaliser

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Normaliser)
            and self._state == other._state
            and self.recent_items == other.recent_items
        )

    @property
    def native_session_id(self) -> str | None:
        return self._state.native_session_id

    @property
    def remembered(self) -> int:
        """How many entries its memory of items holds (ids, native ids, open items): bounded
        by the open items plus ``recent_items``, whatever the session's length."""
        state = self._state
        return sum(
            len(part)
            for part in (
                state.native_to_item,
                state.started,
                state.delta_seen,
                state.open_items,
                state.completed,
                state.natives_of,
            )
        )

    @property
    def turn_open(self) -> bool:
        """Whether the stream has a ``turn.started`` not yet ended."""
        return self._state.turn_open

    def continue_from(self, next_item: int) -> None:
        """Give no ``itm_<n>`` below ``next_item`` (a stream continued from another server's)."""
        self._state.next_item = max(self._state.next_item, next_item)

    def new_item_id(self) -> str:
        """A fresh ``itm_<n>`` of this session (e.g. for the user's message item)."""
        item_id = f"itm_{self._state.next_item}"
        self._state.next_item += 1
        return item_id

    def normalise(self, drafts: Iterable[EventDraft]) -> list[EventDraft]:
        """The drafts to append in place of ``drafts``; the state assumes they get appended."""
        result: list[EventDraft] = []
        for draft in drafts:
            for out in self._normalise_one(draft):
                self.observe(out)
                result.append(out)
        return result

    def observe(self, event: UniversalEvent | EventDraft) -> None:
        """Fold one stored event (or appended draft) into the state."""
        state = self._state
        if event.native_session_id:
            state.native_session_id = event.native_session_id
        data = event.data
        if event.type == "session.started":
            state.session_started = True
        elif event.type == "turn.started":
            state.turn_open = True
            state.turn_id = _str_or_none(data.get("turn_id"))
        elif event.type in ("turn.ended", "session.ended"):
            state.turn_open = False
            state.turn_id = None
        elif event.type in ("item.started", "item.completed"):
            item = data.get("item")
            if isinstance(item, dict):
                item_id = self._note_item(item.get("item_id"), item.get("native_item_id"))
                if item_id is not None:
                    self._note_open(event.type, item_id, item)
                    state.started.add(item_id)
                self._note_id(item.get("parent_id"))
        elif event.type == "item.delta":
            item_id = self._note_item(data.get("item_id"), data.get("native_item_id"))
            if item_id is not None:
                state.delta_seen.add(item_id)
                open_item = state.open_items.get(item_id)
                delta = data.get("delta")
                if open_item is not None and isinstance(delta, str):
                    open_item.text.append(delta)

    def _note_open(self, event_type: str, item_id: str, item: dict[str, Any]) -> None:
        """Track the open items as the reducer does: a start opens an item not yet seen (or
        describes again one still open), a completion closes it for good."""
        state = self._state
        if event_type == "item.completed":
            state.open_items.pop(item_id, None)
            state.completed.pop(item_id, None)  # moved to the newest end
            state.completed[item_id] = None
            if len(state.completed) > self.recent_items:
                self._forget(next(iter(state.completed)))
            return
        fields = {name: item.get(name, default) for name, default in _ITEM_FIELDS.items()}
        fields["item_id"] = item_id
        known = state.open_items.get(item_id)
        if known is not None:  # described again, ids kept unless given (as the reducer does)
            for name in ("native_item_id", "parent_id"):
                fields[name] = fields[name] or known.item[name]
            known.item = fields
        elif item_id not in state.started:
            state.open_items[item_id] = _Open(fields)

    # -- one draft ------------------------------------------------------------------------
    def _normalise_one(self, draft: EventDraft) -> list[EventDraft]:
        state = self._state
        # The session's id changes when a stored draft carries a new one (observe); a dropped
        # draft changes nothing, so that the state stays a fold of what is stored.
        if draft.native_session_id is None and state.native_session_id is not None:
            draft = draft.model_copy(update={"native_session_id": state.native_session_id})

        match draft.type:
            case "session.started":
                return [] if state.session_started else [draft]
            case "turn.ended":
                if not state.turn_open:
                    return []
                if draft.data.get("turn_id") is None and state.turn_id is not None:
                    draft = _with_data(draft, {**draft.data, "turn_id": state.turn_id})
                if draft.data.get("reason") == "completed":
                    return [draft]
                return [*self._close_open_items(draft), draft]
            case "session.ended" if state.turn_open:
                ended_reason = str(draft.data.get("reason"))
                reason = _TURN_REASON_AT_SESSION_END.get(ended_reason, "interrupted")
                ended = TurnEndedData(turn_id=state.turn_id, reason=reason)
                closed = self._close_open_items(draft)
                turn_ended = self._synthetic(draft, "turn.ended", ended.model_dump(mode="json"))
                return [*closed, turn_ended, draft]
            case "session.ended":
                return [*self._close_open_items(draft), draft]
            case "item.started":
                item_id = self._unchanged_item_id(draft)
                if item_id is not None:  # the common case, without validating it again
                    return [] if item_id in state.started else [draft]
                payload = ItemEventData.model_validate(draft.data)
                item = self._resolve_item(payload.item)
                if item.item_id in state.started:
                    return []
                return [_with_item(draft, payload, item)]
            case "item.delta":
                return self._normalise_delta(draft)
            case "item.completed":
                return self._normalise_completion(draft)
            case _:
                return [draft]

    def _normalise_delta(self, draft: EventDraft) -> list[EventDraft]:
        item_id = draft.data.get("item_id")
        if isinstance(item_id, str) and item_id in self._state.started:
            # The common case, a delta of a started item by its id: nothing to change (the
            # draft's data is canonical since EventDraft validated it).
            return [draft]
        delta = ItemDeltaData.model_validate(draft.data)
        item_id = self._item_id(delta.item_id, delta.native_item_id)
        result: list[EventDraft] = []
        if item_id not in self._state.started:
            stub = UniversalItem(
                item_id=item_id,
                native_item_id=delta.native_item_id,
                kind="message",
                role="assistant",
                status="in_progress",
            )
            result.append(self._synthetic(draft, "item.started", _item_data(stub)))
        delta = delta.model_copy(update={"item_id": item_id})
        result.append(_with_data(draft, delta.model_dump(mode="json", by_alias=True)))
        return result

    def _unchanged_item_id(self, draft: EventDraft) -> str | None:
        """The id of the draft's item when normalising leaves the item as it is (it has an id
        and no native parent to map), else None. The draft's data is canonical already, since
        EventDraft validated it."""
        item = draft.data.get("item")
        if not isinstance(item, dict):
            return None
        item_id = item.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            return None
        parent = item.get("parent_id")
        state = self._state
        if parent and parent not in state.started and parent in state.native_to_item:
            return None
        return item_id

    def _normalise_completion(self, draft: EventDraft) -> list[EventDraft]:
        item_id = self._unchanged_item_id(draft)
        state = self._state
        if item_id is not None and item_id in state.started:
            item = draft.data["item"]
            needs_text = (
                item.get("kind") == "message"
                and item.get("role") != "user"
                and item_id not in state.delta_seen
            )
            # The same text as below (from the canonical part dicts): no synthetic delta when
            # it is empty, so the draft goes as it is (the common case: deltas came first).
            if not needs_text or not "\n".join(
                part["text"] for part in item.get("content", ()) if part.get("type") == "text"
            ):
                return [draft]
        payload = ItemEventData.model_validate(draft.data)
        item = self._resolve_item(payload.item)
        result: list[EventDraft] = []
        if item.item_id not in self._state.started:
            started = item.model_copy(update={"status": "in_progress"})
            result.append(self._synthetic(draft, "item.started", _item_data(started)))
        text = "\n".join(part.text for part in item.content if isinstance(part, TextPart))
        if (
            item.kind == "message"
            and item.role != "user"
            and text
            and item.item_id not in self._state.delta_seen
        ):
            delta = ItemDeltaData(
                item_id=item.item_id, native_item_id=item.native_item_id, delta=text
            )
            result.append(self._synthetic(draft, "item.delta", delta.model_dump(mode="json")))
        result.append(_with_item(draft, payload, item))
        return result

    def _close_open_items(self, cause: EventDraft) -> list[EventDraft]:
        """A synthetic ``item.completed {failed}`` for each open item (invariant 8), in the
        order they started; its content is the start's, then the deltas' text."""
        closed: list[EventDraft] = []
        for open_item in self._state.open_items.values():
            content = list(open_item.item["content"] or [])
            text = "".join(open_item.text)
            if text:
                content.append({"type": "text", "text": text})
            item = {**open_item.item, "status": "failed", "content": content}
            data = normalise_data("item.completed", {"item": item})
            # Through the completion's own rules: text with no delta gets its delta first.
            closed += self._normalise_completion(self._synthetic(cause, "item.completed", data))
        return closed

    # -- ids ------------------------------------------------------------------------------
    def _resolve_item(self, item: UniversalItem) -> UniversalItem:
        state = self._state
        update: dict[str, Any] = {"item_id": self._item_id(item.item_id, item.native_item_id)}
        parent = item.parent_id
        if parent and parent not in state.started and parent in state.native_to_item:
            update["parent_id"] = state.native_to_item[parent]
        return item.model_copy(update=update)

    def _item_id(self, item_id: str | None, native_item_id: str | None) -> str:
        if item_id:
            return item_id
        if not native_item_id:
            return self.new_item_id()
        known = self._state.native_to_item.get(native_item_id)
        if known is None:
            known = self.new_item_id()
            self._map_native(native_item_id, known)
        return known

    def _note_item(self, item_id: Any, native_item_id: Any) -> str | None:
        if not isinstance(item_id, str) or not item_id:
            return None
        self._note_id(item_id)
        if isinstance(native_item_id, str) and native_item_id:
            self._map_native(native_item_id, item_id)
        return item_id

    def _map_native(self, native_item_id: str, item_id: str) -> None:
        # The first item of a native id keeps it (until that item is forgotten).
        state = self._state
        if native_item_id not in state.native_to_item:
            state.native_to_item[native_item_id] = item_id
            state.natives_of.setdefault(item_id, []).append(native_item_id)

    def _forget(self, item_id: str) -> None:
        """Forget a completed item (the module's docstring, "Memory")."""
        state = self._state
        del state.completed[item_id]
        state.started.discard(item_id)
        state.delta_seen.discard(item_id)
        for native in state.natives_of.pop(item_id, ()):
            del state.native_to_item[native]

    def _note_id(self, value: Any) -> None:
        # Keeps new_item_id() clear of every itm_<n> already in the stream.
        match = _OUR_ITEM_ID.fullmatch(value) if isinstance(value, str) else None
        if match is not None:
            self._state.next_item = max(self._state.next_item, int(match.group(1)) + 1)

    @staticmethod
    def _synthetic(cause: EventDraft, event_type: str, data: dict[str, Any]) -> EventDraft:
        """A daemon-made draft inserted before ``cause`` (whose session id it shares)."""
        return EventDraft(
            type=event_type,
            data=data,
            source="daemon",
            synthetic=True,
            native_session_id=cause.native_session_id,
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _item_data(item: UniversalItem) -> dict[str, Any]:
    return ItemEventData(item=item).model_dump(mode="json", by_alias=True)


def _with_item(draft: EventDraft, payload: ItemEventData, item: UniversalItem) -> EventDraft:
    if item == payload.item:
        return draft
    updated = payload.model_copy(update={"item": item})
    return _with_data(draft, updated.model_dump(mode="json", by_alias=True))


def _with_data(draft: EventDraft, data: dict[str, Any]) -> EventDraft:
    # The data is already in canonical form (a model dump), so no re-validation is needed.
    return draft.model_copy(update={"data": data})
