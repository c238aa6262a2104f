"""``render_transcript``: a session as Markdown, plain text or JSON."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from sandbox_agent.events import UniversalEvent, format_time
from sandbox_agent.replay.state import SessionState, text_of
from sandbox_agent.replay.transcript import Transcript, TranscriptEntry, build_transcript

TranscriptFormat = Literal["markdown", "text", "json"]
FORMATS: tuple[TranscriptFormat, ...] = ("markdown", "text", "json")


def render_transcript(
    state: SessionState,
    format: TranscriptFormat = "markdown",
    *,
    private_reasoning: bool = False,
) -> str:
    """The transcript of ``state``: messages, tool calls and results, file refs with diffs,
    reasoning (public only unless ``private_reasoning``), permissions and questions with their
    answers, errors, turns with durations, and the stream's anomalies at the end."""
    transcript = build_transcript(state, private_reasoning=private_reasoning)
    if format == "json":
        data = transcript.model_dump(mode="json")
        # An entry holds only its kind's details: drop the other (empty) slots.
        data["entries"] = [{k: v for k, v in e.items() if v is not None} for e in data["entries"]]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if format not in FORMATS:
        raise ValueError(f"unknown transcript format {format!r}: use one of {', '.join(FORMATS)}")
    return _Renderer(markdown=format == "markdown").render(transcript)


def _fence(body: str, lang: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=2)
    ticks = "`" * (longest + 1)
    return f"{ticks}{lang}\n{body.rstrip(chr(10))}\n{ticks}"


def _indent(body: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in body.rstrip("\n").split("\n"))


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _arguments(arguments: Any) -> str:
    if not isinstance(arguments, str):
        return _pretty_json(arguments)
    try:
        return _pretty_json(json.loads(arguments))
    except ValueError:
        return arguments


def _seconds(value: float | None) -> str:
    return "" if value is None else f" after {value:.2f} s"


class _Renderer:
    """One walk over the entries; ``markdown`` picks the markup."""

    def __init__(self, *, markdown: bool) -> None:
        self.md = markdown
        self.out: list[str] = []
        self.indent = ""  # plain text: the parts of a message sit under its heading
        self.tag = ""  # appended once to the next label (sequence of a tool item)

    # -- markup -----------------------------------------------------------------------------
    def bold(self, text: str) -> str:
        return f"**{text}**" if self.md else text

    def code(self, text: str) -> str:
        return f"`{text}`" if self.md else text

    def at(self, sequence: int | None) -> str:
        return "" if sequence is None else f" (#{sequence})"

    def line(self, text: str) -> None:
        if self.md:
            self.out += [text, ""]
        else:
            self.out.append(_indent(text, self.indent) if self.indent else text)

    def label(self, text: str) -> None:
        self.line(text + self.tag)
        self.tag = ""

    def block(self, body: str, lang: str = "") -> None:
        if body:
            self.line(_fence(body, lang) if self.md else _indent(body, "    "))

    def note(self, text: str) -> None:
        self.line(f"_{text}_" if self.md else f"== {text}")

    # -- the walk -------------------------------------------------------------------------
    def render(self, t: Transcript) -> str:
        title = f"Session {self.code(t.session_id or '(unknown)')}"
        self.line(f"# {title}" if self.md else title)
        facts = [
            f"agent: {t.agent or '?'}" + (f" ({t.agent_mode})" if t.agent_mode else ""),
            f"model: {t.model}" if t.model else None,
            f"title: {t.title}" if t.title else None,
            f"status: {t.status}",
            f"events: {t.event_count} (up to sequence {t.last_sequence})",
            f"from {format_time(t.first_time)} to {format_time(t.last_time)}"
            if t.first_time and t.last_time
            else None,
            f"unparsed agent output: {t.unparsed_count}" if t.unparsed_count else None,
        ]
        for fact in filter(None, facts):
            self.out.append(f"- {fact}" if self.md else f"  {fact}")
        self.out.append("")
        for entry in t.entries:
            getattr(self, f"_{entry.kind}")(entry)
        if t.anomalies:
            if self.out[-1]:
                self.out.append("")
            self.line("## Anomalies" if self.md else f"Anomalies ({len(t.anomalies)}):")
            for x in t.anomalies:
                self.out.append(f"- #{x.sequence} {self.code(x.kind)}: {x.message}")
        return "\n".join(self.out).rstrip("\n") + "\n"

    def _turn_started(self, e: TranscriptEntry) -> None:
        assert e.turn is not None
        name = f"Turn {e.turn.number}" + (f" {self.code(e.turn.turn_id)}" if e.turn.turn_id else "")
        self.line(f"{'##' if self.md else '=='} {name}{self.at(e.sequence)}")

    def _turn_ended(self, e: TranscriptEntry) -> None:
        assert e.turn is not None
        self.note(
            f"Turn {e.turn.number} ended: {e.turn.reason or 'no reason given'}"
            f"{_seconds(e.turn.duration_seconds)}{self.at(e.sequence)}"
        )

    def _item(self, e: TranscriptEntry) -> None:
        item = e.item
        assert item is not None
        state = "" if item.status == "completed" else f" [{item.status}]"
        if item.kind != "message" and item.parts:
            # Tool calls and results carry their own labels: no heading of their own.
            self.tag = state + self.at(e.sequence)
            for part in item.parts:
                self._part(part)
            return
        who = (item.role or item.kind).capitalize()
        heading = f"{self.bold(who)}{state}{self.at(e.sequence)}"
        only = item.parts[0] if len(item.parts) == 1 else None
        if not self.md and only is not None and only.get("type") == "text":
            self.line(f"{heading}: {only.get('text', '')}")  # the common case: one line
            return
        self.line(f"{heading}:")
        self.indent = "  "
        for part in item.parts:
            self._part(part)
        if item.streamed_text:
            self.line(item.streamed_text)
        self.indent = ""

    def _part(self, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if kind == "text":
            self.line(str(part.get("text", "")))
        elif kind == "tool_call":
            self.label(
                f"{self.bold('Tool call')} {self.code(str(part.get('name')))}"
                f" · call {self.code(str(part.get('call_id')))}"
            )
            self.block(_arguments(part.get("arguments", "")), "json")
        elif kind == "tool_result":
            self.label(f"{self.bold('Tool result')} · call {self.code(str(part.get('call_id')))}")
            self.block(str(part.get("output", "")))
        elif kind == "file_ref":
            path = self.code(str(part.get("path")))
            self.label(f"{self.bold('File')} {part.get('action')} {path}")
            if part.get("diff"):
                self.block(str(part["diff"]), "diff")
        elif kind == "reasoning":
            label = "Reasoning" + (" (private)" if part.get("visibility") == "private" else "")
            text = str(part.get("text", ""))
            if self.md:
                quoted = "\n".join(f"> {line}" for line in text.split("\n"))
                self.label(f"> {self.bold(label + ':')}\n{quoted}")
            else:
                self.label(f"{label}: {text}")
        elif kind == "image":
            mime = f" ({part['mime']})" if part.get("mime") else ""
            path = str(part.get("path"))
            self.label(f"![image]({path}){mime}" if self.md else f"Image {path}{mime}")
        elif kind == "status":
            detail = f": {part['detail']}" if part.get("detail") else ""
            self.label(f"Status {self.code(str(part.get('label')))}{detail}")
        elif kind == "json":
            self.label(self.bold("JSON"))
            self.block(_pretty_json(part.get("json")), "json")
        else:
            self.label(f"Part of type {self.code(str(kind))}")
            self.block(_pretty_json(part), "json")

    def _permission(self, e: TranscriptEntry) -> None:
        p = e.permission
        assert p is not None
        answer = (
            "pending"
            if p.resolved_sequence is None
            else f"{self.bold(p.status)}{self.at(p.resolved_sequence)}"
        )
        why = (p.resolved_metadata or {}).get("reason")
        reason = f" ({why})" if isinstance(why, str) else ""
        self.line(
            f"{self.bold('Permission')} {self.code(p.permission_id)}: {p.action}"
            f"{self.at(p.requested_sequence)} -> {answer}{reason}"
        )

    def _question(self, e: TranscriptEntry) -> None:
        q = e.question
        assert q is not None
        options = f" [{' / '.join(q.options)}]" if q.options else ""
        if q.resolved_sequence is None:
            answer = "pending"
        else:
            said = (
                f" {json.dumps(q.response, ensure_ascii=False)}" if q.response is not None else ""
            )
            answer = f"{self.bold(q.status)}{said}{self.at(q.resolved_sequence)}"
        self.line(
            f"{self.bold('Question')} {self.code(q.question_id)}: {q.prompt}{options}"
            f"{self.at(q.requested_sequence)} -> {answer}"
        )

    def _error(self, e: TranscriptEntry) -> None:
        err = e.error
        assert err is not None
        code = f" {self.code(err.code)}" if err.code else ""
        self.line(f"{self.bold('Error')}{code}: {err.message}{self.at(e.sequence)}")
        if err.details is not None:
            self.block(_pretty_json(err.details), "json")

    def _session_ended(self, e: TranscriptEntry) -> None:
        ended = e.ended
        assert ended is not None
        extra = "".join(
            [
                f", exit code {ended.exit_code}" if ended.exit_code is not None else "",
                f": {ended.message}" if ended.message else "",
            ]
        )
        self.note(
            f"Session ended: {ended.reason} (by {ended.terminated_by}){extra}{self.at(e.sequence)}"
        )
        stderr = ended.stderr or {}
        tail = stderr.get("tail") or stderr.get("head")
        if isinstance(tail, str) and tail:
            self.block(tail)

    def _session_resumed(self, e: TranscriptEntry) -> None:
        r = e.resumed
        assert r is not None
        how = "natively" if r.native_resume else f"by replay of {r.replayed_events} event(s)"
        self.note(f"Session resumed ({r.reason}) {how}{self.at(e.sequence)}")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_line(event: UniversalEvent) -> str:
    """One line about ``event``: sequence, time, type, source and the gist of its payload."""
    d = event.data
    kind = event.type
    item: dict[str, Any] = d["item"] if isinstance(d.get("item"), dict) else {}
    if kind == "item.delta":
        gist = f"{d.get('item_id')} {_clip(json.dumps(d.get('delta'), ensure_ascii=False))}"
    elif kind in ("item.started", "item.completed"):
        who = "/".join(str(x) for x in (item.get("kind"), item.get("role")) if x)
        text = text_of(p for p in item.get("content") or [] if isinstance(p, dict))
        gist = f"{item.get('item_id')} {who} {item.get('status')}"
        gist += f" {_clip(json.dumps(text, ensure_ascii=False))}" if text else ""
    elif kind in ("turn.started", "turn.ended"):
        gist = " ".join(str(x) for x in (d.get("turn_id"), d.get("reason")) if x)
    elif kind.startswith("permission."):
        gist = f"{d.get('permission_id')} {d.get('action')!r} {d.get('status')}"
    elif kind.startswith("question."):
        answer = f" {d['response']!r}" if d.get("response") is not None else ""
        gist = f"{d.get('question_id')} {d.get('prompt')!r} {d.get('status')}{answer}"
    elif kind == "error":
        gist = f"{d.get('code') or ''} {d.get('message')}".strip()
    elif kind == "session.ended":
        gist = f"{d.get('reason')} by {d.get('terminated_by')}"
    elif kind == "fs.changed":
        gist = f"{d.get('operation')} {d.get('path')}"
        gist += f" from {d['from_path']}" if d.get("from_path") else ""
        if d.get("size") is not None:
            gist += f" ({d['size']} bytes, sha256 {str(d.get('sha256'))[:12]})"
    else:
        gist = _clip(json.dumps(d, ensure_ascii=False, separators=(",", ":")))
    source = event.source + (", synthetic" if event.synthetic else "")
    return f"#{event.sequence} {format_time(event.time)} {kind} [{source}] {gist}".rstrip()
