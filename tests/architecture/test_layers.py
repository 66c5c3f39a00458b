"""The import contract (pyproject.toml, [tool.importlinter]) holds, and can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("governance", "agents", "reviews", "evidence", "demo", "console")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    for app in APPS:
        shutil.copytree(ROOT / app, tree / app, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_the_layers_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # A lazy import inside a function counts as much as one at the top.
        (
            "governance/gate.py",
            "\n\ndef _peek():\n    from evidence import metrics\n\n    return metrics\n",
            "governance is not allowed to import evidence",
        ),
        (
            "agents/runner.py",
            "\nimport reviews.models  # noqa\n",
            "agents is not allowed to import reviews",
        ),
        (
            "agents/llm.py",
            "\nfrom demo import model  # noqa\n",
            "agents is not allowed to import demo",
        ),
        (
            "demo/models.py",
            "\nimport console.urls  # noqa\n",
            "demo is not allowed to import console",
        ),
    ],
)
def test_the_contract_breaks_when_a_lower_layer_imports_a_higher_one(
    tmp_path, module, line, broken
):
    tree = _copy_tree(tmp_path)
    assert _lint(tree).returncode == 0, "the copy starts out clean"
    with (tree / module).open("a") as source:
        source.write(line)
    result = _lint(tree)
    assert result.returncode != 0
    assert broken in result.stdout
