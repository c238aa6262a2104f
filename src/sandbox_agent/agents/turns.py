"""What the session layer records around an adapter's turn (``base.py``, "Who records what").

For each prompt the session layer appends ``prompt_drafts(...)`` (``turn.started``, then the
user's message item started and completed at once) before it calls ``adapter.send``; after
``adapter.cancel()`` it appends ``turn_ended_draft("cancelled")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox_agent.agents.base import Attachment
from sandbox_agent.events import (
    ContentPart,
    EventDraft,
    FileRefPart,
    ImagePart,
    ItemEventData,
    TextPart,
    TurnEndedData,
    UniversalItem,
    trusted_draft,
)
from sandbox_agent.events.payloads import normalise_data


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
