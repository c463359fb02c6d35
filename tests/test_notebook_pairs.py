"""The tutorial notebooks are jupytext pairs: ``notebooks/NAME.ipynb`` (opened in Jupyter, run by nbval in
``make test``, committed without outputs) and ``notebooks/NAME.py`` (the same cells as a percent script, the file
to read in a review). An edit to one side only fails here.

Edit either side, then ``jupytext --sync notebooks/NAME.ipynb`` (or save in Jupyter, where the jupytext extension
writes both): the newer file updates the other one.
"""
import difflib
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IPYNB = sorted(NOTEBOOKS.glob("*.ipynb"))
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))
FORMATS = "ipynb,py:percent"
SYNC = "edit one side, then run `jupytext --sync notebooks/{name}.ipynb` (the newer file wins)"


def cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


def test_there_are_notebooks():
    assert IPYNB, f"no notebooks found in {NOTEBOOKS}"


def test_every_notebook_has_its_pair():
    stems_nb, stems_py = {p.stem for p in IPYNB}, {p.stem for p in SCRIPTS}
    no_script = sorted(f"{s}.ipynb" for s in stems_nb - stems_py)
    no_notebook = sorted(f"{s}.py" for s in stems_py - stems_nb)
    assert not no_script, (f"notebooks without their percent script: {no_script}; create it with "
                           "`jupytext --set-formats ipynb,py:percent notebooks/NAME.ipynb`")
    assert not no_notebook, (f"scripts in notebooks/ without their notebook: {no_notebook}; every .py there is a "
                             "notebook's pair: create it with `jupytext --sync notebooks/NAME.py`")


@pytest.mark.parametrize("ipynb", IPYNB, ids=lambda p: p.stem)
def test_pair_is_declared_in_both_files(ipynb):
    script = ipynb.with_suffix(".py")
    if not script.exists():
        pytest.fail(f"{script.name} is missing (see test_every_notebook_has_its_pair)")
    assert jupytext.read(ipynb).metadata.get("jupytext", {}).get("formats") == FORMATS, \
        f"{ipynb.name}: notebook metadata jupytext.formats should be {FORMATS!r}"
    meta = jupytext.read(script).metadata.get("jupytext", {})
    assert meta.get("formats") == FORMATS and meta.get("text_representation", {}).get("format_name") == "percent", \
        f"{script.name} should be a percent script paired as {FORMATS!r} (its header says {meta})"


@pytest.mark.parametrize("ipynb", IPYNB, ids=lambda p: p.stem)
def test_notebook_and_script_have_the_same_cells(ipynb):
    script = ipynb.with_suffix(".py")
    if not script.exists():
        pytest.fail(f"{script.name} is missing (see test_every_notebook_has_its_pair)")
    a, b = cells(ipynb), cells(script)
    hint = SYNC.format(name=ipynb.stem)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            diff = "\n".join(difflib.unified_diff(x[1].splitlines(), y[1].splitlines(), f"{ipynb.name} ({x[0]})",
                                                  f"{script.name} ({y[0]})", lineterm=""))
            pytest.fail(f"cell {i} differs between {ipynb.name} and {script.name}; {hint}\n{diff}")
    assert len(a) == len(b), f"{ipynb.name} has {len(a)} cells, {script.name} {len(b)}; {hint}"


@pytest.mark.parametrize("ipynb", IPYNB, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(ipynb):
    dirty = [i for i, c in enumerate(jupytext.read(ipynb).cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{ipynb.name}: cells {dirty} keep outputs or execution counts; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace notebooks/{ipynb.name}`")
