"""JSON Schema export of the event model: one self-contained schema per public shape.

``event_json_schemas()`` returns them by name; ``write_json_schemas(dir)`` writes each to
``<name>.schema.json``. The text is deterministic (sorted keys, two-space indent, trailing
newline), so a committed copy can be compared byte for byte with a fresh export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from sandbox_agent.events.envelope import EventDraft, UniversalEvent
from sandbox_agent.events.items import UniversalItem
from sandbox_agent.events.parts import ContentPart
from sandbox_agent.events.payloads import EVENT_DATA_MODELS, KNOWN_EVENT_TYPES, UnknownEventData

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_SUFFIX = ".schema.json"

JsonSchema = dict[str, Any]


def event_json_schemas() -> dict[str, JsonSchema]:
    """The JSON Schemas (draft 2020-12) of the event model, by name.

    - ``UniversalEvent``: a stored event; ``data`` is any object.
    - ``EventDraft``: what writers append; the store fills in the rest.
    - ``UniversalItem`` and ``ContentPart``: the items of ``item.*`` events and their parts.
    - ``TypedEvent``: a ``UniversalEvent`` whose ``data`` matches the model of its ``type``;
      a type this version does not know is allowed with any object as ``data``.
    """
    content_part = TypeAdapter(ContentPart).json_schema()
    content_part.update(
        title="ContentPart",
        description="A part of an item's content, chosen by its type; unknown types are kept.",
    )
    schemas = {
        "UniversalEvent": UniversalEvent.model_json_schema(),
        "EventDraft": EventDraft.model_json_schema(),
        "UniversalItem": UniversalItem.model_json_schema(),
        "ContentPart": content_part,
        "TypedEvent": _typed_event_schema(),
    }
    return {name: {"$schema": JSON_SCHEMA_DIALECT, **schema} for name, schema in schemas.items()}


def _typed_event_schema() -> JsonSchema:
    models: list[type[BaseModel]] = [
        UniversalEvent,
        *dict.fromkeys(EVENT_DATA_MODELS.values()),
        UnknownEventData,
    ]
    refs, defs = models_json_schema([(model, "validation") for model in models])

    def branch(title: str, type_schema: JsonSchema, data_model: type[BaseModel]) -> JsonSchema:
        return {
            "title": title,
            "type": "object",
            "properties": {"type": type_schema, "data": refs[(data_model, "validation")]},
            "required": ["type", "data"],
        }

    branches = [branch(name, {"const": name}, model) for name, model in EVENT_DATA_MODELS.items()]
    branches.append(
        branch(
            "unknown type",
            {"type": "string", "not": {"enum": sorted(KNOWN_EVENT_TYPES)}},
            UnknownEventData,
        )
    )
    return {
        "title": "TypedEvent",
        "description": (
            "A UniversalEvent whose data matches the payload model of its type. An event type"
            " this version does not know is valid with any object as data (kept as it is)."
        ),
        "allOf": [refs[(UniversalEvent, "validation")]],
        "oneOf": branches,
        **defs,
    }


def schema_text(schema: JsonSchema) -> str:
    """``schema`` as deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_schemas(directory: str | Path) -> list[Path]:
    """Write each schema to ``directory/<name>.schema.json`` (creating the directory).

    Returns the paths written. Other files in ``directory`` are left alone.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in event_json_schemas().items():
        path = target / f"{name}{SCHEMA_SUFFIX}"
        path.write_text(schema_text(schema), encoding="utf-8", newline="\n")
        written.append(path)
    return written
