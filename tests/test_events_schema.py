"""The JSON Schema export: the committed copy in docs/schema/ is what the models export, byte for
byte, and the schemas say what the models accept (one branch per known type, unknown types kept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sandbox_agent.cli import app
from sandbox_agent.events import EVENT_DATA_MODELS, KNOWN_EVENT_TYPES, event_json_schemas
from sandbox_agent.events.parts import KNOWN_PART_TYPES
from sandbox_agent.events.schema import schema_text

DOCS_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schema"
REGENERATE = "regenerate them with: sandbox-agent schema -o docs/schema"


def test_committed_schemas_equal_a_fresh_export_byte_for_byte(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schema", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output

    fresh = {path.name: path.read_bytes() for path in tmp_path.glob("*.schema.json")}
    committed = {path.name: path.read_bytes() for path in DOCS_SCHEMA.glob("*.schema.json")}
    assert sorted(committed) == sorted(fresh), (
        f"docs/schema/ holds {sorted(committed)}, the models export {sorted(fresh)}; delete"
        f" docs/schema/*.schema.json and {REGENERATE}"
    )
    stale = sorted(name for name in fresh if committed[name] != fresh[name])
    assert not stale, f"docs/schema/ is out of date ({', '.join(stale)}); {REGENERATE}"


def test_schema_files_are_sorted_pretty_json_with_a_trailing_newline() -> None:
    for path in DOCS_SCHEMA.glob("*.schema.json"):
        text = path.read_text(encoding="utf-8")
        pretty = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert text == pretty, path.name


def test_schema_command_without_output_prints_all_schemas_as_one_json_object() -> None:
    result = CliRunner().invoke(app, ["schema"])

    assert result.exit_code == 0, result.output
    assert result.stdout == schema_text(event_json_schemas())
    assert json.loads(result.stdout) == event_json_schemas()


def test_export_names_the_envelope_draft_item_part_and_typed_event_schemas() -> None:
    schemas = event_json_schemas()

    assert sorted(schemas) == [
        "ContentPart",
        "EventDraft",
        "TypedEvent",
        "UniversalEvent",
        "UniversalItem",
    ]
    for name, schema in schemas.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["title"] == name


def test_every_ref_points_into_the_defs_of_its_own_file() -> None:
    for name, schema in event_json_schemas().items():
        defs = schema.get("$defs", {})
        for ref in _refs(schema):
            assert ref.startswith("#/$defs/"), (name, ref)
            assert ref.removeprefix("#/$defs/") in defs, (name, ref)


def test_typed_event_has_one_branch_per_known_type_and_one_for_unknown_types() -> None:
    typed = event_json_schemas()["TypedEvent"]
    *known, unknown = typed["oneOf"]

    assert typed["allOf"] == [{"$ref": "#/$defs/UniversalEvent"}]
    assert [branch["properties"]["type"] for branch in known] == [
        {"const": name} for name in EVENT_DATA_MODELS
    ]
    for branch in known:
        model = EVENT_DATA_MODELS[branch["properties"]["type"]["const"]]
        assert branch["properties"]["data"] == {"$ref": f"#/$defs/{model.__name__}"}
        assert branch["required"] == ["type", "data"]
    # Exactly one branch matches any event: the unknown branch excludes every known type.
    assert unknown["properties"]["type"] == {
        "type": "string",
        "not": {"enum": sorted(KNOWN_EVENT_TYPES)},
    }
    assert typed["$defs"]["UnknownEventData"]["additionalProperties"] is True


def test_content_part_schema_requires_type_and_keeps_unknown_part_types_apart() -> None:
    schema = event_json_schemas()["ContentPart"]
    parts = [schema["$defs"][ref["$ref"].removeprefix("#/$defs/")] for ref in schema["oneOf"]]

    known = {part["properties"]["type"]["const"]: part for part in parts[:-1]}
    assert set(known) == KNOWN_PART_TYPES
    for part in parts:
        # The union picks a part by "type", so a part without one matches no branch.
        assert part["required"][0] == "type", part["title"]
        assert part["additionalProperties"] is True, part["title"]
    assert parts[-1]["properties"]["type"]["not"] == {"enum": sorted(KNOWN_PART_TYPES)}
    assert "json" in known["json"]["properties"]
    assert "value" not in known["json"]["properties"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
