"""The layering is a test: the import-linter contracts in pyproject.toml hold for the package, and they bite (an
arrow back up, added to a copy of the package, breaks them)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this copy of the package, not the installed one
    return subprocess.run(LINT + ["--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    p = lint(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("methods/simclr.py", "import workbench.engine", "one-way layers"),
    ("lowlight/methods/tml.py", "import workbench.lowlight.evaluation", "one-way layers"),
    ("config.py", "import workbench.methods", "one-way layers"),
    ("diagnostics/scores.py", "import workbench.runs", "one-way layers"),
    ("runs/store.py", "import plotly", "only workbench.ui imports UI libraries"),
])
def test_an_arrow_back_up_breaks_a_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "workbench", tmp_path / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "workbench" / module
    target.write_text(target.read_text() + f"\n{line}  # the arrow under test\n")
    p = lint(tmp_path)
    assert p.returncode != 0 and "1 broken" in p.stdout, p.stdout
    report = p.stdout.split("Broken contracts", 1)[1]  # the broken contract's name, then the offending chains
    importer = "workbench." + module.removesuffix(".py").replace("/", ".")
    assert contract in report and importer in report, p.stdout
