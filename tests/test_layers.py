"""Imports flow one way: service -> system/client -> actors, transport, sim -> core,
supervision, persistence. This test reads every module's imports and fails on an
import against that direction, so the layering cannot erode unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

import actorq

PACKAGE = Path(actorq.__file__).parent

# What each layer must never import (by the first name under `actorq.`).
FORBIDDEN: dict[str, set[str]] = {
    "core": {"actors", "transport", "sim", "system", "service", "client", "persistence"},
    "supervision": {"actors", "transport", "sim", "system", "service", "client", "persistence"},
    "persistence": {"actors", "transport", "sim", "system", "service", "client"},
    "actors": {"transport", "sim", "system", "service", "client"},
    "transport": {"sim", "service"},
    "sim": {"service", "transport", "client"},
    "system": {"service", "sim", "transport", "client"},
    "client": {"service", "sim"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "actorq":  # from actorq import faults, ...
                names.update(f"actorq.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n.split(".")[1] for n in names if n.startswith("actorq.")}


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_imports_flow_down() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        for imported in _imports(path) & FORBIDDEN.get(layer, set()):
            wrong.append(f"{path.relative_to(PACKAGE)} imports actorq.{imported}")
    assert wrong == []


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from actorq.system import ActorSystem\nimport actorq.sim.report\n")
    assert _imports(module) == {"system", "sim"}
