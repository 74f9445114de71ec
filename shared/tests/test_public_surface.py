"""shared's public surface: services reach only `shared` (its __all__), __all__ holds only what
some code outside shared uses, and the wheel carries no test helper. The import ban itself is
ruff's TID251 (pyproject.toml)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
import zipfile
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


def _uv() -> list[str]:
    """The uv that runs this workspace: $UV under `uv run`, else uv as a module of this Python or of
    the one the virtualenv was made from (where `pip install --user uv` puts it)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [[os.environ["UV"]]] if os.environ.get("UV") else []
    candidates += [[sys.executable, "-m", "uv"], [str(base), "-m", "uv"]]
    for command in candidates:
        try:
            if subprocess.run([*command, "--version"], capture_output=True, check=False).returncode == 0:
                return command
        except OSError:
            continue
    raise AssertionError(f"no uv found among {candidates}")


def test_the_shared_wheel_carries_no_test_helper(tmp_path: Path) -> None:
    # --offline: hatchling, the build backend, is in uv's cache since `uv sync` built the members.
    subprocess.run(
        [*_uv(), "build", "--package", "shared", "--wheel", "--offline", "--quiet", "-o", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("shared-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = sorted(n for n in names if not n.startswith("shared-"))
    assert "shared/__init__.py" in code and "shared/lua/gcra_reserve.lua" in code
    assert all(n.startswith("shared/") for n in code), code
    assert [n for n in code if "testing" in n or "testkit" in n or "/tests/" in n] == []
