"""Learning checks that could fail: training must beat the same network at random initialisation."""
import pytest

import workbench
from workbench.runs import RunReader


@pytest.mark.slow
def test_simclr_on_digits_beats_random_init(quick):
    result = workbench.train(quick(epochs=30, batch_size=256, run_name="learn", log_every=10, probe_size=0))
    with RunReader(result.run_dir) as r:
        knn = r.scalar("knn_acc")
        loss = r.scalar("loss")
    at_init, trained = knn.iloc[0], knn.iloc[-1]
    print(f"\nSimCLR on digits, 30 epochs: kNN accuracy at random init {at_init:.4f}, after training {trained:.4f}; "
          f"loss {loss.iloc[0]:.3f} -> {loss.iloc[-1]:.3f}")
    assert knn.index[0] == 0  # the step-0 evaluation is the same network before any update
    assert trained >= at_init + 0.03, (at_init, trained)
    assert loss.iloc[-5:].mean() < loss.iloc[:5].mean() - 0.5
