import os

import pytest
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    return d


@pytest.fixture
def quick(runs_dir):
    """A TrainConfig factory for fast digits runs in a temporary runs folder."""
    from workbench import TrainConfig

    def make(**kw):
        base = dict(dataset="digits", epochs=1, batch_size=128, progress=False, runs_dir=str(runs_dir),
                    probe_size=200, log_every=2)
        base.update(kw)
        return TrainConfig(**base)

    return make
