"""The console's files and the app that serves them, without a running stack (fast checks).

The browser tests (tests/test_console.py) prove the console works; these keep it safe to
change: nothing that the CSP would block, and nothing that turns data into markup.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from gateway.console import CONTENT_TYPES, INDEX, STATIC_DIR, Console, load

SCRIPTS = sorted(STATIC_DIR.glob("*.js"))


def test_every_console_file_has_an_explicit_content_type() -> None:
    files = load()
    assert INDEX in files and "sw.js" in files and "app.js" in files
    for name, f in files.items():
        assert Path(name).suffix in CONTENT_TYPES, name
        assert f.content_type == CONTENT_TYPES[Path(name).suffix]


def test_index_has_no_inline_script_style_or_handlers() -> None:
    html = (STATIC_DIR / INDEX).read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    # Absolute paths: /console (no slash) serves this page too, where relative URLs would break.
    assert re.findall(r'(?:src|href)="(?!/console/|#|data:)[^"]*"', html) == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_console_scripts_never_parse_strings_as_html_or_code(script: Path) -> None:
    source = re.sub(r"(?m)^\s*//.*$", "", script.read_text())  # comments may name them
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert banned not in source, f"{script.name} uses {banned}"
    assert not re.search(r"setAttribute\(\s*[\"']style", source)
    # Modules import each other absolutely, the way index.html loads them.
    assert re.findall(r'from "(?!/console/)[^"]*"', source) == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console", 200),
        ("/console/", 200),
        ("/console/index.html", 200),
        ("/console/%2e%2e/__init__.py", 404),
        ("/console/../__init__.py", 404),
        ("/console/static/app.js", 404),
        ("/console/.hidden", 404),
    ],
)
async def test_console_app_answers_only_from_its_table(tmp_path: Path, path: str, status: int) -> None:
    (tmp_path / INDEX).write_text("<!doctype html><p>hi</p>")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path.parent / "__init__.py").write_text("outside")
    transport = httpx.ASGITransport(app=Console(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        r = await client.get(path)
    assert r.status_code == status, (path, r.text)
    if status == 200:
        assert r.text == "<!doctype html><p>hi</p>"


def test_console_without_index_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("")
    with pytest.raises(RuntimeError, match=r"index\.html"):
        Console(tmp_path)
