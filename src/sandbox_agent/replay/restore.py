"""Restore by replay (``replay.md``): the conversation so far as text for a fresh agent.

When a session continues on an agent process without its history, the next prompt is prefixed
with ``restore_text(state)``. It is built from the state, newest last, and bounded: when over
``max_events`` entries or ``max_chars`` characters the *oldest* entries go first, and a line says
how many were left out.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from sandbox_agent.replay.state import ItemState, SessionState

DEFAULT_MAX_EVENTS = 50
DEFAULT_MAX_CHARS = 12000
HEADER = "Previous conversation of this session, replayed as context (oldest first, newest last):"
ARGUMENTS_CHARS = 300
OUTPUT_CHARS = 600
ELLIPSIS = "…"


class RestoreEntry(NamedTuple):
    sequence: int
    label: str
    body: str

    def __str__(self) -> str:
        return f"{self.label}: {self.body}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _compact_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _item_entry(item: ItemState) -> RestoreEntry | None:
    if item.kind in ("status", "system", "unknown") or item.role == "system":
        return None
    lines = [item.text] if item.text else []
    for part in item.content:
        kind = part.get("type")
        if kind == "tool_call":
            args = _short(_compact_json(part.get("arguments", "")), ARGUMENTS_CHARS)
            lines.append(f"{part.get('name')}({args})")
        elif kind == "tool_result":
            lines.append(_short(str(part.get("output", "")), OUTPUT_CHARS))
        elif kind == "file_ref":
            lines.append(f"(file {part.get('action')}: {part.get('path')})")
    if not lines:
        return None
    if item.kind in ("tool_call", "tool_result"):
        label = item.kind.replace("_", " ").capitalize()
    else:
        label = (item.role or "assistant").capitalize()
    return RestoreEntry(item.first_sequence, label, "\n".join(lines))


def restore_entries(state: SessionState) -> list[RestoreEntry]:
    """What a restore replays, oldest first: messages, tool calls and results, answered
    questions."""
    entries = [entry for item in state.items if (entry := _item_entry(item)) is not None]
    for q in state.resolved_questions.values():
        if q.resolved_sequence is None:
            continue
        answer = f"answered {q.response!r}" if q.status == "answered" else q.status
        entries.append(RestoreEntry(q.resolved_sequence, "Question", f"{q.prompt} -> {answer}"))
    entries.sort(key=lambda entry: entry.sequence)
    return entries


_OMITTED_LINE = re.compile(r"^\[(\d+) earlier entr")


def _omitted(count: int) -> str:
    return f"[{count} earlier entr{'y' if count == 1 else 'ies'} left out]"


def restore_text(
    state: SessionState,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The replay text of ``state``; "" when there is nothing to replay.

    At most ``max_events`` entries and ``max_chars`` characters. Entries are dropped oldest
    first; when the newest entry alone is over the bound, its beginning is cut instead (the
    newest content is always kept)."""
    entries = restore_entries(state)
    if not entries or max_chars <= 0:
        return ""
    total = len(entries)
    kept = [str(entry) for entry in entries[-max(1, max_events) :]]
    size = sum(map(len, kept)) + len(kept) - 1  # entries and the newlines between them
    first = 0
    while True:
        left_out = total - (len(kept) - first)
        overhead = len(HEADER) + 1 + (len(_omitted(left_out)) + 1 if left_out else 0)
        if overhead + size <= max_chars or first == len(kept) - 1:
            break
        size -= len(kept[first]) + 1
        first += 1
    lines = [HEADER, *([_omitted(left_out)] if left_out else [])]
    budget = max_chars - overhead
    newest = entries[-1]
    if first == len(kept) - 1 and size > budget:
        # Only the newest entry is left and it is too long: keep its end.
        head = f"{newest.label}: {ELLIPSIS}"
        if budget <= len(head):
            return str(newest)[-max_chars:]
        kept[first] = head + newest.body[len(newest.body) - (budget - len(head)) :]
    return "\n".join([*lines, *kept[first:]])


def replayed_entries(state: SessionState, text: str) -> int:
    """How many entries of ``state`` the restore ``text`` holds (``session.resumed``'s
    ``replayed_events``)."""
    if not text:
        return 0
    lines = text.splitlines()
    omitted = _OMITTED_LINE.match(lines[1]) if len(lines) > 1 else None
    return len(restore_entries(state)) - (int(omitted.group(1)) if omitted else 0)
