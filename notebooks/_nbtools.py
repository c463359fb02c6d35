"""What the notebook builders (``_build_*.py``) share: cell constructors and writing a notebook reproducibly."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def write(cells: list, out: Path, prefix: str) -> None:
    """Write ``cells`` to ``out`` without outputs and with stable cell ids (``prefix-NN``), so that regenerating
    gives an identical file."""
    for i, cell in enumerate(cells):
        cell.id = f"{prefix}-{i:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"wrote {out} ({len(cells)} cells)")
