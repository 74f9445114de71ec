"""shared's public surface: services reach only `shared` (its __all__), and __all__ holds only what
some code outside shared uses. The import ban itself is ruff's TID251 (pyproject.toml)."""

from __future__ import annotations

import ast
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import shared

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "shared"


def _outside_shared() -> Iterator[Path]:
    """Every Python file of the repository outside shared/ (services, their tests, benches, deploy)."""
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"node_modules", "build", "dist"}]
        if Path(folder) == ROOT:
            dirs[:] = [d for d in dirs if d != "shared"]
        yield from (Path(folder) / f for f in files if f.endswith(".py"))


def test_every_private_module_of_shared_is_banned_outside_it() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lint = config["tool"]["ruff"]["lint"]
    banned = set(lint["flake8-tidy-imports"]["banned-api"])
    private = {f"shared.{p.stem}" for p in PACKAGE.glob("_*.py") if p.stem != "__init__"}
    assert private, "shared has no private modules: the glob is wrong"
    assert private - banned == set(), "add these to [tool.ruff.lint.flake8-tidy-imports.banned-api]"
    assert {b for b in banned if b.startswith("shared.")} - private == set(), "banned modules that are gone"
    assert "TID251" in lint["select"]
    assert lint["per-file-ignores"]["shared/**"] == ["TID251"]


def test_every_exported_name_is_used_outside_shared() -> None:
    used: set[str] = set()
    for path in _outside_shared():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "shared":
                used.update(alias.name for alias in node.names)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "shared"
            ):
                used.add(node.attr)
    unused = sorted(set(shared.__all__) - used)
    assert unused == [], f"exported by shared but used by no one outside it (keep them private): {unused}"
    assert len(shared.__all__) == len(set(shared.__all__))
