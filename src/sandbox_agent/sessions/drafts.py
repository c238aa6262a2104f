"""The drafts the session layer writes itself (``agents/base.py``, "Who records what").

For each prompt it appends ``prompt_drafts(...)`` (``turn.started``, then the user's message
item started and completed at once) before it calls ``adapter.send``; after
``adapter.cancel()`` it appends ``turn_ended_draft("cancelled")`` (``agents/drafts.py``). Its
queue moves are ``prompt.queued``/``prompt.dequeued``; after a restart, ``closing_drafts``
close what the previous server left open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox_agent.agents.base import Attachment
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.events import (
    ContentPart,
    ErrorData,
    EventDraft,
    FileRefPart,
    ImagePart,
    ItemEventData,
    PermissionData,
    PromptDequeuedData,
    QuestionData,
    TextPart,
    UniversalItem,
    trusted_draft,
)
from sandbox_agent.events.payloads import normalise_data
from sandbox_agent.replay import QueuedPrompt, SessionState


def prompt_drafts(
    prompt: str,
    attachments: Sequence[Attachment] = (),
    *,
    item_id: str,
    turn_id: str | None = None,
) -> list[EventDraft]:
    """``turn.started`` and the prompt as one user message item (``events.md`` invariant 6).

    The item's content is the prompt's text, then one part per attachment: ``image`` for an
    image, ``file_ref`` (action ``read``) for any other file. ``item_id`` is the session layer's
    choice (``Normaliser.new_item_id()``).
    """
    content: list[ContentPart] = [TextPart(text=prompt)]
    for attachment in attachments:
        if attachment.mime is not None and attachment.mime.startswith("image/"):
            content.append(ImagePart(path=attachment.path, mime=attachment.mime))
        else:
            content.append(FileRefPart(path=attachment.path, action="read"))
    # Validated once, then the three drafts are built in canonical form: this runs on every
    # prompt (a test checks that each draft equals its validated form).
    started = normalise_data(
        "item.started",
        ItemEventData(
            item=UniversalItem(item_id=item_id, kind="message", role="user", content=content)
        ),
    )
    completed = {"item": {**started["item"], "status": "completed"}}
    turn: dict[str, Any] = {"phase": "started", "turn_id": turn_id, "metadata": None}
    return [
        trusted_draft("turn.started", turn, source="daemon", synthetic=True),
        trusted_draft("item.started", started, source="client"),
        trusted_draft("item.completed", completed, source="client"),
    ]


def daemon_draft(event_type: str, data: object) -> EventDraft:
    """A draft the server records on its own account (source ``daemon``, synthetic)."""
    return EventDraft.model_validate(
        {"type": event_type, "data": data, "source": "daemon", "synthetic": True}
    )


def client_draft(event_type: str, data: object) -> EventDraft:
    """A draft of what the client did (source ``client``)."""
    return EventDraft.model_validate({"type": event_type, "data": data, "source": "client"})


def dequeued_drafts(prompts: Sequence[QueuedPrompt], reason: str) -> list[EventDraft]:
    """``prompt.dequeued`` of each of ``prompts``, for ``reason``."""
    return [
        daemon_draft("prompt.dequeued", PromptDequeuedData(queue_id=p.queue_id, reason=reason))
        for p in prompts
    ]


def closing_drafts(
    state: SessionState, reason: str = "interrupted", turn_reason: str = "interrupted"
) -> list[EventDraft]:
    """What closes the requests and the turn that a server which stopped left open: every
    pending permission resolved ``reject`` and question ``rejected`` (``metadata.reason:
    <reason>``), then ``turn.ended {<turn_reason>}`` for an open turn."""
    drafts: list[EventDraft] = []
    interrupted = {"reason": reason}
    for p in state.pending_permissions.values():
        permission = PermissionData(
            permission_id=p.permission_id,
            action=p.action,
            status="reject",
            metadata={**(p.metadata or {}), **interrupted},
        )
        drafts.append(daemon_draft("permission.resolved", permission))
    for q in state.pending_questions.values():
        question = QuestionData.model_validate(
            {
                "question_id": q.question_id,
                "prompt": q.prompt,
                "options": q.options,
                "status": "rejected",
                "response": None,
                "metadata": interrupted,
            }
        )
        drafts.append(daemon_draft("question.resolved", question))
    if state.open_turn is not None:
        drafts.append(turn_ended_draft(turn_reason))
    return drafts


def store_failure_drafts(state: SessionState, message: str) -> list[EventDraft]:
    """What ends a turn whose agent was stopped because the store could not be reached
    (``sessions/store_retry.py``): ``error {code: store_unavailable}``, its pending requests
    resolved (``metadata.reason: store_unavailable``), ``turn.ended {error}``. Nothing when no
    turn is open."""
    if state.open_turn is None:
        return []
    error = daemon_draft("error", ErrorData(message=message, code="store_unavailable"))
    return [error, *closing_drafts(state, reason="store_unavailable", turn_reason="error")]
