"""README, "Adding a method": a method defined in one file plus one registry line trains through the CLI path,
takes its own options from the command line, and the app shows its run."""
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest
from torch import nn

from workbench.cli import main
from workbench.config import MethodOptions, option
from workbench.methods import METHODS
from workbench.methods.base import Method, StepOutput
from workbench.runs import RunReader

APP = Path(__file__).resolve().parent.parent / "app" / "Home.py"


# ---------------------------------------------------------------------- the one file a newcomer writes
@dataclass
class AlignOptions(MethodOptions):
    tau: float = option(0.5, "temperature of the in-batch softmax", gt=0)
    width: int = option(32, "output size of the head", ge=2)


class Align(Method):
    """A toy contrastive method: a linear head and a cross-entropy that matches each view to its partner."""

    name = "align"
    Options = AlignOptions

    def __init__(self, backbone: nn.Module, views, tau: float, width: int):
        super().__init__(backbone)
        self.views, self.tau = views, tau
        self.head = nn.Linear(backbone.out_dim, width)

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        return cls(backbone, views, cfg.tau, cfg.width)

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        x1, x2 = self.views(images, n=2, g=generator)
        z1, z2 = F.normalize(self.head(self.backbone(torch.cat([x1, x2]))), dim=1).chunk(2)
        loss = F.cross_entropy(z1 @ z2.T / self.tau, torch.arange(len(z1), device=z1.device))
        return StepOutput(loss=loss, z1=z1.detach(), z2=z2.detach())


# ---------------------------------------------------------------------- the test
def test_a_new_method_trains_from_the_cli_and_shows_in_the_app(runs_dir, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "align", Align)  # the registry line: METHODS = {..., "align": Align}
    rc = main(["train", "--method", "align", "--width", "16", "--tau", "0.3", "--epochs", "1", "--batch-size", "128",
               "--probe-size", "100", "--runs-dir", str(runs_dir), "--run-name", "mine", "--progress", "false"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "finished: step" in out.out and "kNN accuracy" in out.out
    with RunReader(runs_dir / "mine") as r:
        assert r.status().state == "finished"
        assert r.config["width"] == 16 and r.config["tau"] == 0.3 and "queue_size" not in r.config
        assert r.scalar("loss").notna().all() and "pos_mean" in r.scalar_keys()  # the live diagnostics ran
    with pytest.raises(SystemExit):  # argparse exits after printing the help
        main(["train", "--help"])
    assert "options of align:" in " ".join(capsys.readouterr().out.split())

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["runs_dir"] = str(runs_dir)
    at.run()
    assert not at.exception
    assert "mine" in at.dataframe[0].value["name"].tolist()
    assert "align" in at.selectbox(key="new_method").options
    at.switch_page("views/scores.py").run()
    assert not at.exception, at.exception
    assert not [i.value for i in at.info if "it has no" in i.value]  # no "this page does not show it" note
    assert at.get("plotly_chart")  # its pos/neg score charts
