"""What the session layer records around an adapter's turn (``base.py``, "Who records what").

For each prompt the session layer appends ``prompt_drafts(...)`` (``turn.started``, then the
user's message item started and completed at once) before it calls ``adapter.send``; after
``adapter.cancel()`` it appends ``turn_ended_draft("cancelled")``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox_agent.agents.base import Attachment
from sandbox_agent.events import (
    ContentPart,
    EventDraft,
    FileRefPart,
    ImagePart,
    ItemEventData,
    TextPart,
    TurnEndedData,
    TurnStartedData,
    UniversalItem,
)


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
    item = UniversalItem(item_id=item_id, kind="message", role="user", content=content)
    started = item.model_copy(update={"status": "in_progress"})
    completed = item.model_copy(update={"status": "completed"})
    return [
        EventDraft(
            type="turn.started",
            data=TurnStartedData(turn_id=turn_id),
            source="daemon",
            synthetic=True,
        ),
        EventDraft(type="item.started", data=ItemEventData(item=started), source="client"),
        EventDraft(type="item.completed", data=ItemEventData(item=completed), source="client"),
    ]


def turn_ended_draft(reason: str, *, turn_id: str | None = None) -> EventDraft:
    """A daemon-made ``turn.ended`` (``completed``, ``cancelled``, ``interrupted``, ``error``).

    Without ``turn_id`` the normaliser fills in the open turn's.
    """
    return EventDraft(
        type="turn.ended",
        data=TurnEndedData(turn_id=turn_id, reason=reason),
        source="daemon",
        synthetic=True,
    )
