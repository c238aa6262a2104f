"""``diff(a, b)``: what changed between two states of a session, for debugging."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sandbox_agent.replay.state import (
    Anomaly,
    ErrorEntry,
    ItemState,
    PermissionState,
    QuestionState,
    SessionState,
    TurnState,
)

_SESSION_FIELDS = (
    "status",
    "agent",
    "agent_mode",
    "permission_mode",
    "model",
    "variant",
    "directory",
    "title",
    "native_session_id",
    "unparsed_count",
)
_SHORT = 120


class Change(BaseModel):
    field: str
    before: Any = None
    after: Any = None


class ItemSummary(BaseModel):
    item_id: str
    kind: str
    role: str | None = None
    status: str
    text: str = Field(description="the item's text, shortened")

    @classmethod
    def of(cls, item: ItemState) -> ItemSummary:
        return cls(
            item_id=item.item_id,
            kind=item.kind,
            role=item.role,
            status=item.status,
            text=shorten(item.text or _gist(item.content)),
        )


class ItemChange(BaseModel):
    item_id: str
    kind: str
    role: str | None = None
    changes: list[Change]


class StateDiff(BaseModel):
    """The difference from state ``a`` (at ``from_sequence``) to state ``b``."""

    from_sequence: int
    to_sequence: int
    events: int
    counts: dict[str, int] = Field(default_factory=dict)
    session: list[Change] = Field(default_factory=list)
    items_added: list[ItemSummary] = Field(default_factory=list)
    items_removed: list[str] = Field(default_factory=list)
    items_changed: list[ItemChange] = Field(default_factory=list)
    turns_started: list[TurnState] = Field(default_factory=list)
    turns_ended: list[TurnState] = Field(default_factory=list)
    permissions_opened: list[PermissionState] = Field(default_factory=list)
    permissions_resolved: list[PermissionState] = Field(default_factory=list)
    questions_opened: list[QuestionState] = Field(default_factory=list)
    questions_resolved: list[QuestionState] = Field(default_factory=list)
    errors_added: list[ErrorEntry] = Field(default_factory=list)
    anomalies_added: list[Anomaly] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.events == 0 and not any(
            getattr(self, name)
            for name in type(self).model_fields
            if name not in ("from_sequence", "to_sequence", "events")
        )


def _gist(content: list[dict[str, Any]]) -> str:
    """What an item without text holds: ``tool_call read_file``, ``file_ref a.py``, ..."""
    return "; ".join(
        " ".join(
            str(x)
            for x in (part.get("type"), part.get("name") or part.get("path") or part.get("call_id"))
            if x
        )
        for part in content
    )


def shorten(text: str, limit: int = _SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff(a: SessionState, b: SessionState) -> StateDiff:
    """What changed from ``a`` to ``b`` (usually two points of one session, ``a`` the earlier)."""
    counts = {
        kind: b.counts.get(kind, 0) - a.counts.get(kind, 0)
        for kind in sorted(set(a.counts) | set(b.counts))
        if b.counts.get(kind, 0) != a.counts.get(kind, 0)
    }
    session = [
        Change(field=name, before=getattr(a, name), after=getattr(b, name))
        for name in _SESSION_FIELDS
        if getattr(a, name) != getattr(b, name)
    ]
    if a.ended != b.ended:
        session.append(
            Change(
                field="ended",
                before=None if a.ended is None else a.ended.model_dump(mode="json"),
                after=None if b.ended is None else b.ended.model_dump(mode="json"),
            )
        )
    before_items = {item.item_id: item for item in a.items}
    after_ids = {item.item_id for item in b.items}
    permissions_a = {**a.pending_permissions, **a.resolved_permissions}
    questions_a = {**a.pending_questions, **a.resolved_questions}
    errors_a = {(e.sequence, e.message) for e in a.errors}
    anomalies_a = {(x.sequence, x.kind, x.message) for x in a.anomalies}
    return StateDiff(
        from_sequence=a.last_sequence,
        to_sequence=b.last_sequence,
        events=b.event_count - a.event_count,
        counts=counts,
        session=session,
        items_added=[ItemSummary.of(i) for i in b.items if i.item_id not in before_items],
        items_removed=[i.item_id for i in a.items if i.item_id not in after_ids],
        items_changed=[
            change
            for item in b.items
            if item.item_id in before_items
            and (change := _item_change(before_items[item.item_id], item)) is not None
        ],
        turns_started=[
            t for i, t in enumerate(b.turns) if i >= len(a.turns) and t.started_sequence is not None
        ],
        turns_ended=[
            t
            for i, t in enumerate(b.turns)
            if t.ended_sequence is not None
            and (i >= len(a.turns) or a.turns[i].ended_sequence != t.ended_sequence)
        ],
        permissions_opened=[
            p
            for pid, p in {**b.pending_permissions, **b.resolved_permissions}.items()
            if pid not in permissions_a and p.requested_sequence is not None
        ],
        permissions_resolved=[
            p for pid, p in b.resolved_permissions.items() if a.resolved_permissions.get(pid) != p
        ],
        questions_opened=[
            q
            for qid, q in {**b.pending_questions, **b.resolved_questions}.items()
            if qid not in questions_a and q.requested_sequence is not None
        ],
        questions_resolved=[
            q for qid, q in b.resolved_questions.items() if a.resolved_questions.get(qid) != q
        ],
        errors_added=[e for e in b.errors if (e.sequence, e.message) not in errors_a],
        anomalies_added=[
            x for x in b.anomalies if (x.sequence, x.kind, x.message) not in anomalies_a
        ],
    )


def _item_change(a: ItemState, b: ItemState) -> ItemChange | None:
    changes = [
        Change(field=name, before=getattr(a, name), after=getattr(b, name))
        for name in ("status", "role", "kind", "delta_count")
        if getattr(a, name) != getattr(b, name)
    ]
    if a.text != b.text:
        changes.append(Change(field="text", before=shorten(a.text), after=shorten(b.text)))
    if a.content != b.content:
        changes.append(
            Change(
                field="content",
                before=f"{len(a.content)} part(s)",
                after=f"{len(b.content)} part(s)",
            )
        )
    if not changes:
        return None
    return ItemChange(item_id=b.item_id, kind=b.kind, role=b.role, changes=changes)


def format_diff(d: StateDiff) -> str:
    """A plain-text report of ``d``, one change a line."""
    lines = [f"from sequence {d.from_sequence} to {d.to_sequence}: {d.events:+d} event(s)"]
    if d.counts:
        lines.append("  events by type: " + ", ".join(f"{k} {v:+d}" for k, v in d.counts.items()))
    lines += [f"  {c.field}: {c.before!r} -> {c.after!r}" for c in d.session]
    for item in d.items_added:
        who = "/".join(x for x in (item.kind, item.role) if x)
        lines.append(f"  + item {item.item_id} ({who}, {item.status}) {item.text!r}")
    lines += [f"  - item {item_id}" for item_id in d.items_removed]
    for change in d.items_changed:
        for c in change.changes:
            lines.append(f"  ~ item {change.item_id} {c.field}: {c.before!r} -> {c.after!r}")
    for t in d.turns_started:
        lines.append(f"  + turn {t.turn_id or '(no id)'} started at {t.started_sequence}")
    for t in d.turns_ended:
        why = t.reason or "no reason"
        lines.append(f"  + turn {t.turn_id or '(no id)'} ended at {t.ended_sequence} ({why})")
    for p in d.permissions_opened:
        lines.append(f"  + permission {p.permission_id} requested: {p.action}")
    for p in d.permissions_resolved:
        lines.append(f"  + permission {p.permission_id} resolved: {p.status}")
    for q in d.questions_opened:
        lines.append(f"  + question {q.question_id} asked: {q.prompt!r}")
    for q in d.questions_resolved:
        answer = f" {q.response!r}" if q.response is not None else ""
        lines.append(f"  + question {q.question_id} {q.status}{answer}")
    for e in d.errors_added:
        lines.append(f"  ! error at {e.sequence}: {e.message}")
    for x in d.anomalies_added:
        lines.append(f"  ! anomaly at {x.sequence}: {x.kind}: {x.message}")
    if len(lines) == 1:
        lines.append("  no change")
    return "\n".join(lines) + "\n"
