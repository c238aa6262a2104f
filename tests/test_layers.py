"""The architecture's import rule: a layer imports only the layers below it
(events <- store <- replay <- server/sdk/cli; agents know only events; ``paths``, the data
dir, is open to all)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sandbox_agent"

ALLOWED: dict[str, set[str]] = {
    "events": {"events"},
    "store": {"events", "paths", "store"},
    "replay": {"events", "paths", "store", "replay"},
    "agents": {"events", "paths", "agents"},
    "sdk": {"events", "paths", "store", "replay", "sdk"},
}


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    layers: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sandbox_agent" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    offences = {
        str(path.relative_to(PACKAGE)): sorted(_imported_layers(path) - ALLOWED[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: bad for path, bad in offences.items() if bad} == {}
