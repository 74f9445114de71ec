"""Every benchmark section still runs: `bench/run.py --quick` with a tiny workload each.

No figure is judged here (a tiny run on a busy machine says nothing about speed); the
section must finish with status 0 and print the figures `make bench` reports.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
assert _spec is not None and _spec.loader is not None
run = sys.modules["bench_run"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(run)
QUICK_TIMEOUT_SECONDS, SECTIONS = run.QUICK_TIMEOUT_SECONDS, run.SECTIONS


@pytest.mark.timeout(QUICK_TIMEOUT_SECONDS + 90)
@pytest.mark.parametrize("section", list(SECTIONS))
def test_bench_section_runs_and_prints_its_figures(section: str, infra: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", section],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_SECONDS + 80,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    for figure in SECTIONS[section].figures:
        lines = [line for line in out.splitlines() if figure in line]
        assert lines, f"{section} printed no {figure!r}:\n{out[-3000:]}"
        assert any(re.search(r"\d", line) for line in lines), f"{figure!r} has no number: {lines}"
    print(out)


def test_bench_run_fails_when_a_section_fails_or_is_unknown(tmp_path: Path) -> None:
    broken = tmp_path / "bench_broken.py"
    broken.write_text("raise SystemExit('this section is broken')\n")
    section = run.Section(broken, (), ())
    sections = dict(run.SECTIONS)
    try:
        run.SECTIONS.clear()
        run.SECTIONS["broken"] = section
        assert run.main(["--quick"]) == 1
        assert run.main(["--quick", "no-such-section"]) == 2
    finally:
        run.SECTIONS.clear()
        run.SECTIONS.update(sections)
