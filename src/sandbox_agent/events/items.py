"""``UniversalItem``: a message, tool call, tool result, system or status entry of a session."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox_agent.events.parts import ContentPart

ItemKind = Literal["message", "tool_call", "tool_result", "system", "status", "unknown"]
ItemRole = Literal["user", "assistant", "system", "tool"]
ItemStatus = Literal["in_progress", "completed", "failed"]


class UniversalItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    item_id: str
    native_item_id: str | None = None
    parent_id: str | None = None
    # Plain str, not ItemKind: a kind added by a newer writer must not be rejected.
    kind: ItemKind | str = "message"
    role: ItemRole | str | None = None
    status: ItemStatus | str = "in_progress"
    content: list[ContentPart] = Field(default_factory=list)
