"""The architecture holds: import-linter's contracts (layers, no cycles), ruff, mypy on the public
seams, and no module grows past ~400 lines without saying why at its top.

These run the ecosystem's own tools as the README's test command does, so a change that breaks a
layer or adds a cycle fails the suite, not a reviewer's memory."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "platform" / "harp"
BIN = Path(sys.executable).parent
MAX_LINES = 400
LONG_REASON = "Why it is long:"


def _tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: install the dev extras (scripts/bootstrap.sh --dev)")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_import_contracts_are_kept():
    out = _run(_tool("lint-imports"))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].endswith(" 0 broken."), out.stdout[-2000:]


def test_ruff_is_clean():
    out = _run(_tool("ruff"), "check", "platform", "tests", "bench")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_mypy_on_the_public_seams():
    out = _run(_tool("mypy"))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_no_module_is_long_without_a_reason():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES and not any(LONG_REASON in line for line in lines[:40]):
            too_long.append(f"{path.relative_to(REPO)} ({len(lines)} lines)")
    assert not too_long, f"over {MAX_LINES} lines with no '{LONG_REASON}' at the top: {too_long}"
