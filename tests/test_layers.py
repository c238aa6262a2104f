"""The architecture's import rule (``docs/architecture.md``): a layer imports only the layers
below it, events <- store <- replay <- agents (which know only events) <- sessions <- server,
sdk <- cli, with ``api`` (the wire models, over events) beside them, ``consumers`` over the
store beside replay, and the ``testing`` kit over store, replay, consumers and the SDK;
``paths`` and ``version`` are open to all. Nothing inside the package imports the root
package ``sandbox_agent`` (it pulls in the SDK), and every module belongs to a layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sandbox_agent"

#: Modules of the package's root open to every layer.
SHARED = {"paths", "version"}

ALLOWED: dict[str, set[str]] = {
    "events": {"events"},
    "store": {"events", "store"},
    "replay": {"events", "store", "replay"},
    # Consumers of the global log: a layer over the store, beside replay.
    "consumers": {"events", "store", "consumers"},
    "agents": {"events", "agents"},
    "sessions": {"events", "store", "replay", "agents", "sessions"},
    "api": {"events", "api"},
    "server": {"events", "store", "replay", "agents", "sessions", "api", "inspector", "server"},
    "sdk": {"events", "store", "replay", "api", "sdk"},
    "cli": {
        "events",
        "store",
        "replay",
        "consumers",
        "agents",
        "sessions",
        "api",
        "inspector",
        "server",
        "sdk",
        "cli",
    },
    # The web UI over any store: the server mounts it, the cli's ``inspect`` serves it.
    "inspector": {"events", "store", "replay", "api", "inspector"},
    # The test kit tests stores, replays and SDK users; it runs servers as processes only.
    "testing": {"events", "store", "replay", "consumers", "api", "sdk", "testing"},
}
ROOT_MODULES = {"__init__", "__main__", *SHARED}


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
    allowed = ALLOWED[layer] | SHARED
    offences = {
        str(path.relative_to(PACKAGE)): sorted(_imported_layers(path) - allowed)
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: bad for path, bad in offences.items() if bad} == {}


def test_every_module_of_the_package_belongs_to_a_layer() -> None:
    strays = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.iterdir())
        if (path.is_dir() and (path / "__init__.py").exists() and path.name not in ALLOWED)
        or (path.suffix == ".py" and path.stem not in ROOT_MODULES)
    ]
    assert strays == []


def test_the_shared_modules_import_no_layer() -> None:
    for name in SHARED:
        assert _imported_layers(PACKAGE / f"{name}.py") == set(), name


def test_nothing_inside_the_package_imports_the_root_package() -> None:
    offences = []
    inside = [p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem in SHARED]
    for path in sorted(inside):
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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, at any depth (in functions too: a lazy
    import still ties the two modules together), except under ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in modules else child.module)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found & modules


def test_the_modules_import_each_other_without_circles() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: _imported_modules(path, set(paths)) - {name} for name, path in paths.items()}
    circles: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            walk(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    assert circles == []
