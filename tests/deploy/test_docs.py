"""The documents point at files the repository has, and the contract is kept inside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
READMES = sorted(p for p in REPO.glob("**/README.md") if ".venv" not in p.parts and ".git" not in p.parts)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FILE_NAME = re.compile(r"`?\b([A-Za-z0-9_.-]+\.md)\b`?")


def test_the_contract_is_in_the_repository() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    for section in ("Identity", "Errors", "Tasks", "Scraping", "Notifications", "Cache", "Configuration"):
        assert f"\n## {section}\n" in text, section
    assert "\n## Operations\n" in text and "\n## Fair share\n" in text


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_links_and_named_documents_exist(readme: Path) -> None:
    text = readme.read_text()
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        path = (readme.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{readme.relative_to(REPO)} links to {target}, which does not exist"
    for name in set(_FILE_NAME.findall(text)):
        if name == "README.md":
            continue
        found = [p for p in REPO.rglob(name) if ".venv" not in p.parts and ".git" not in p.parts]
        assert found, f"{readme.relative_to(REPO)} names {name}, which the repository does not have"
