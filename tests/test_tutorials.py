"""workbench.ui.tutorial_charts: what the tutorial notebooks compute and draw outside the notebooks."""
import json

import numpy as np
import pytest

from workbench.ui.tutorial_charts import (check_finding, gradient_share_figure, gradient_shares, image_rows,
                                          negatives_for_half, share_summary, sweep_lines)


def test_gradient_shares_are_the_softmax_over_negatives():
    s = np.array([0.9, 0.1, -0.3, 0.5])
    for tau in (0.05, 0.2, 1.0):
        w = gradient_shares(s, tau)
        naive = np.exp(s / tau) / np.exp(s / tau).sum()
        np.testing.assert_allclose(w, naive, rtol=1e-12)
        assert w.sum() == pytest.approx(1.0)
    # stable at a tiny temperature (exp(90) overflows float32 and would be inf for tau=0.001 unscaled)
    w = gradient_shares(s, 0.001)
    assert np.isfinite(w).all() and w[0] == pytest.approx(1.0)
    # rows are anchors
    w2 = gradient_shares(np.stack([s, s[::-1]]), 0.2)
    np.testing.assert_allclose(w2[1], gradient_shares(s[::-1], 0.2))


def test_negatives_for_half_counts_the_largest_shares():
    assert negatives_for_half([0.6, 0.2, 0.2]) == 1
    assert negatives_for_half([0.2, 0.3, 0.1, 0.4]) == 2  # 0.4 + 0.3 >= 0.5
    assert negatives_for_half(np.full(100, 0.01)) == 50
    np.testing.assert_array_equal(negatives_for_half(np.array([[0.6, 0.2, 0.2, 0.0], [0.25] * 4])), [1, 2])
    # a smaller temperature concentrates the push on fewer negatives
    s = np.random.default_rng(0).uniform(-1, 1, 500)
    counts = [negatives_for_half(gradient_shares(s, t)) for t in (0.02, 0.1, 0.5, 2.0)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_share_summary_puts_the_push_on_the_hard_same_class_negatives_at_small_tau():
    # two classes, each a tight cluster: the hardest negatives of an anchor are its own class
    rng = np.random.default_rng(1)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    labels = np.repeat([0, 1], 20)
    z = centres[labels] + 0.05 * rng.normal(size=(40, 3))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    table = share_summary(z @ z.T, labels, [0.02, 1.0, 100.0])
    same = table["share on same-class negatives"]
    assert same[0.02] > 0.99 and same[0.02] > same[1.0] > same[100.0]
    assert same[100.0] == pytest.approx(19 / 39, abs=0.01)  # uniform weights: the fraction of same-class negatives
    assert table["same-class fraction of negatives"].iloc[0] == pytest.approx(19 / 39)


def test_figures_are_drawn():
    s = np.random.default_rng(0).uniform(-1, 1, 200)
    fig = gradient_share_figure(s, 0.1, positive=0.8)
    assert len(fig.data) == 3 and str(negatives_for_half(gradient_shares(s, 0.1))) in fig.layout.annotations[1].text
    fig = sweep_lines([0.1, 1.0], {"a": [1, 2], "b": [2, 1]}, "t", "x", "y", log_x=True)
    assert [t.name for t in fig.data] == ["a", "b"]
    fig = image_rows({"cluster 0": np.zeros((3, 8, 8), np.uint8), "cluster 1": np.zeros((0, 8, 8), np.uint8)},
                     "examples", per_row=4)
    assert fig.data[0].z.shape == (2 * 9, 4 * 9, 3)


def test_check_finding_records_and_fails_only_in_full_mode(tmp_path, capsys):
    report = tmp_path / "finding.json"
    assert check_finding("nb", "a claim", {"x": 0.5, "n": 3}, holds=True, smoke=False, report=report)
    assert json.loads(report.read_text())["holds"] is True
    assert "x = 0.5" in capsys.readouterr().out
    assert not check_finding("nb", "a claim", {"x": 0.1}, holds=False, smoke=True, report=report)  # smoke: printed
    assert json.loads(report.read_text())["smoke"] is True
    with pytest.raises(AssertionError, match="did not reproduce"):
        check_finding("nb", "a claim", {"x": 0.1}, holds=False, smoke=False, report=report)
    assert json.loads(report.read_text())["holds"] is False  # written before failing


def test_make_tutorials_runs_a_notebook_in_full_mode_and_tabulates_its_finding(tmp_path, monkeypatch):
    import nbformat

    from workbench.ui.tutorials import main

    monkeypatch.setenv("WORKBENCH_SMOKE", "1")  # the runner must clear it: the notebook sees full mode
    books = tmp_path / "nbs"
    books.mkdir()
    for name, holds in (("01_fine", "True"), ("02_broken", "False")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "import os\nfrom workbench.ui.tutorial_charts import check_finding\n"
            "SMOKE = os.environ.get('WORKBENCH_SMOKE') == '1'\n"
            f"check_finding('{name}', 'a claim', {{'x': 0.25}}, holds={holds}, smoke=SMOKE)")])
        nbformat.write(nb, books / f"{name}.ipynb")
    out = tmp_path / "out"
    assert main([str(books), "--out", str(out)]) == 1  # one finding did not hold
    rows = {r["notebook"]: r for r in json.loads((out / "index.json").read_text())}
    assert rows["01_fine"]["status"] == "finding holds" and rows["01_fine"]["numbers"] == {"x": 0.25}
    assert rows["02_broken"]["status"].startswith("no finding recorded") or "NOT" in rows["02_broken"]["status"]
    assert (out / "01_fine.html").exists() and "01_fine" in (out / "index.md").read_text()
    assert main([str(books), "--out", str(out), "--only", "01"]) == 0  # only the notebooks run now count
    assert "02_broken" in (out / "index.md").read_text()  # the other rows stay


def test_fewshot_methods_compares_on_the_same_episodes():
    from workbench.ui.tutorial_charts import fewshot_methods

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 30)
    feats = rng.normal(size=(6, 16))[labels] * 2 + rng.normal(size=(180, 16))
    table = fewshot_methods(feats, labels, feats.mean(0), n_way=5, shots=(1, 5), n_query=10, episodes=50)
    assert list(table["method"]) == ["nearest centroid", "transductive k-means"] * 2
    assert (table["accuracy"] > 0.5).all() and (table["ci95"] >= 0).all()
    five = table[table.shots == 5].set_index("method")["accuracy"]
    assert five.min() > 0.8  # well separated classes


def test_tutorial_settings_smoke_mode_and_runs_dir(monkeypatch, tmp_path):
    """Every tutorial's first cell: smoke mode from WORKBENCH_SMOKE or CI; a fresh temporary runs folder in smoke
    mode, else $WORKBENCH_RUNS_DIR or the repository's runs/ (../runs from notebooks/)."""
    import os

    from workbench.ui.notebook import smoke_mode, tutorial_runs_dir

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("WORKBENCH_SMOKE", raising=False)
    assert not smoke_mode()
    monkeypatch.setenv("CI", "true")
    assert smoke_mode()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("WORKBENCH_SMOKE", "1")
    assert smoke_mode()
    a, b = tutorial_runs_dir("x", True), tutorial_runs_dir("x", True)
    assert a != b and os.path.isdir(a) and os.path.basename(a).startswith("workbench-x-")
    os.rmdir(a), os.rmdir(b)
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path))
    assert tutorial_runs_dir("x", False) == str(tmp_path)
    monkeypatch.delenv("WORKBENCH_RUNS_DIR")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert tutorial_runs_dir("x", False) == "../runs"
    monkeypatch.chdir(tmp_path)
    assert tutorial_runs_dir("x", False) == "runs"
