"""Lint, format and the layering contracts (docs/architecture.md, "Layers"), run as tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEXT_SUFFIXES = (".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".html", ".js")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean():
    out = _run(str(BIN / "ruff"), "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean():
    out = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layering_contracts_hold():
    out = _run(str(BIN / "lint-imports"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" not in out.stdout.lower().replace("0 broken", "")


def test_the_repository_stands_alone():
    """No tracked file points outside the clone (a user's clone has nothing beside it)."""
    files = _run("git", "ls-files").stdout.split()
    assert "docs/architecture.md" in files
    outside = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(errors="replace")
        if any(word in text for word in ("../" + "shared", "DESIGN" + ".md")):
            outside.append(name)
    assert outside == [], outside


def test_no_module_is_over_450_lines():
    """Small modules with one concern each: the source packages and the tests."""
    long = {}
    for folder in ("recon", "simulators", "devices", "plans", "services", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > 450:
                long[str(path.relative_to(ROOT))] = n
    assert long == {}, long
