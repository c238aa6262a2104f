"""The architecture's import rule: a layer imports only the layers below it
(events <- store <- replay <- server/sdk/cli; agents know only events; the ``testing`` kit
sits over store, replay and sdk; ``paths``, the data dir, is open to all). The kit never
imports the root package ``sandbox_agent`` (it would pull in the whole SDK)."""

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
    # The test kit tests stores, replays and SDK users; it runs servers as processes only.
    "testing": {"events", "paths", "store", "replay", "sdk", "testing"},
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


def test_the_testing_kit_never_imports_the_root_package() -> None:
    offences = []
    for path in sorted((PACKAGE / "testing").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module] if node.level == 0 else []
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if "sandbox_agent" in names:
                offences.append(str(path.relative_to(PACKAGE)))
    assert offences == []
