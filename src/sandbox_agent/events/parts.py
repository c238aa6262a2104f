"""Content parts of an item, tagged by ``type``; unknown part types are kept as they are."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

KNOWN_PART_TYPES = frozenset(
    {"text", "json", "tool_call", "tool_result", "file_ref", "reasoning", "image", "status"}
)


def _require_type(schema: dict[str, Any]) -> None:
    # The union picks a part by its "type", so the JSON Schema requires it despite the default.
    schema["required"] = ["type", *(name for name in schema.get("required", []) if name != "type")]


class _Part(BaseModel):
    # extra="allow": fields added by a newer writer survive a round trip through an older reader.
    model_config = ConfigDict(extra="allow", json_schema_extra=_require_type)


class TextPart(_Part):
    type: Literal["text"] = "text"
    text: str


class JsonPart(_Part):
    # The wire name is "json", which would shadow BaseModel.json; hence the alias.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["json"] = "json"
    value: Any = Field(default=None, alias="json")


class ToolCallPart(_Part):
    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: str = "{}"
    call_id: str


class ToolResultPart(_Part):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    output: str


class FileRefPart(_Part):
    type: Literal["file_ref"] = "file_ref"
    path: str
    action: Literal["read", "write", "patch"]
    diff: str | None = None


class ReasoningPart(_Part):
    type: Literal["reasoning"] = "reasoning"
    text: str
    visibility: Literal["public", "private"] = "public"


class ImagePart(_Part):
    type: Literal["image"] = "image"
    path: str
    mime: str | None = None


class StatusPart(_Part):
    type: Literal["status"] = "status"
    label: str
    detail: str | None = None


class UnknownPart(_Part):
    """A part of a type this version does not know; every field is kept."""

    # In the JSON Schema, a known type is not an UnknownPart, so that exactly one part matches.
    type: str = Field(json_schema_extra={"not": {"enum": [*sorted(KNOWN_PART_TYPES)]}})


def _part_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in KNOWN_PART_TYPES else "unknown"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[JsonPart, Tag("json")]
    | Annotated[ToolCallPart, Tag("tool_call")]
    | Annotated[ToolResultPart, Tag("tool_result")]
    | Annotated[FileRefPart, Tag("file_ref")]
    | Annotated[ReasoningPart, Tag("reasoning")]
    | Annotated[ImagePart, Tag("image")]
    | Annotated[StatusPart, Tag("status")]
    | Annotated[UnknownPart, Tag("unknown")],
    Discriminator(_part_tag),
]
