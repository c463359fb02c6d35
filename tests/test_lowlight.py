"""Low-light methods end to end: TML's stages and learning check, Zero-DCE, `workbench enhance` with bad input, the
run store's image triplets and the app's Images page on a low-light run."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torchvision.ops import StochasticDepth

import workbench
from workbench import TrainConfig
from workbench.config import ConfigError
from workbench.engine import Callback
from workbench.lowlight.enhance import load_enhancer
from workbench.lowlight.methods.tml import TML
from workbench.lowlight.nn.troublemaker import Troublemaker, brightness_ratio, darkness_code
from workbench.runs import RunReader

APP = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")
DATA = dict(dataset="photos", patches=256, patch_size=32, progress=False)  # options of every low-light run
SMALL = dict(DATA, ugdc_width=8, ugdc_levels=3)  # and a small TML network


@pytest.fixture(scope="module")
def tml_run(tmp_path_factory):
    """A short TML run on photo patches: TM 2 epochs, PM 13, EM 5 (16 steps each)."""
    d = tmp_path_factory.mktemp("runs")
    result = workbench.train(method="tml", epochs=20, tm_epochs=2, em_epochs=5, lr=3e-3, runs_dir=str(d),
                             run_name="tml", **SMALL)
    assert result.status == "finished"
    return d / "tml"


def test_defaults_follow_the_kind_of_method():
    assert TrainConfig(method="tml").dataset == "photos" and TrainConfig(method="tml").batch_size == 16
    assert TrainConfig(method="simclr").dataset == "digits" and TrainConfig(method="simclr").batch_size == 256
    with pytest.raises(ConfigError, match="troublemaker"):
        TrainConfig(method="tml", troublemaker="magic")


def test_tml_stages_follow_the_plan_and_end_stage_moves_them():
    m = TML(width=4, levels=2, stage_steps=(2, 3, 4))
    assert [m.stage(s) for s in range(10)] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)
    notes = [m.step(images, i, g).notes for i in range(6)]
    assert "troublemaker" in notes[0][0] and "predicting" in notes[2][0] and "enhancing" in notes[5][0]
    m2 = TML(width=4, levels=2, stage_steps=(100, 100, 100))
    m2.steps_done += 7
    m2.end_stage()  # the troublemaker stage ends now; the predicting stage keeps its 100 steps
    assert m2.stage_ends.tolist() == [7, 107, 207] and m2.stage() == 1
    synthetic = TML(width=4, levels=2, troublemaker="synthetic", stage_steps=(100, 3, 4))
    assert synthetic.troublemaker is None and synthetic.stage(0) == 1  # no troublemaker stage at all


def test_troublemaker_only_darkens_and_starts_at_the_brightness_ratio():
    tm = Troublemaker()
    x = torch.rand(2, 3, 20, 24) * 0.9 + 0.05
    dark = tm(x, torch.tensor([[0.2, 2.0], [0.8, 1.0]]))
    assert dark.shape == x.shape and (dark <= x + 1e-6).all() and (dark >= 0).all()
    ratio = brightness_ratio(dark, x)  # untrained: about c * x (the smooth min(log c, 0) is a little below log c)
    assert 0.1 < ratio[0] < 0.2 and 0.4 < ratio[1] < 0.8, ratio


def test_darkness_code_recovers_brightness_ratio_and_gamma():
    x = torch.rand(3, 3, 16, 16) * 0.6 + 0.4  # dark stays above the 1/255 floor of the logs
    dark = 0.5 * x ** torch.tensor([1.0, 2.0, 3.5]).view(3, 1, 1, 1)
    code = darkness_code(dark, x)
    naive = [float((d.mean() / xi.mean())) for d, xi in zip(dark, x)]
    assert torch.allclose(code[:, 0], torch.tensor(naive), atol=1e-5)
    assert torch.allclose(code[:, 1], torch.tensor([1.0, 2.0, 3.5]), atol=1e-4)


def test_tml_learns_to_enhance_beyond_the_dark_input(tml_run):
    with RunReader(tml_run) as r:
        df = r.scalars(["psnr", "psnr_input", "psnr_pm", "ssim", "ssim_input", "stage", "tm_l1"])
        events = r.events()["message"].tolist()
        snap = r.snapshot("lowlight")
    first, last = df["psnr"].dropna().iloc[0], df["psnr"].dropna().iloc[-1]
    floor = df["psnr_input"].dropna().iloc[-1]
    print(f"\nTML held-out synthetic pairs: dark input PSNR {floor:.2f} dB, before training {first:.2f}, after "
          f"{last:.2f} (PM alone {df['psnr_pm'].dropna().iloc[-1]:.2f}); SSIM input "
          f"{df['ssim_input'].dropna().iloc[-1]:.3f} -> {df['ssim'].dropna().iloc[-1]:.3f}")
    assert last > floor + 3.0  # clearly better than leaving the image dark
    assert df["ssim"].dropna().iloc[-1] > df["ssim_input"].dropna().iloc[-1]
    assert sorted(df["stage"].dropna().unique().tolist()) == [0.0, 1.0, 2.0]
    assert df["tm_l1"].dropna().iloc[-1] < df["tm_l1"].dropna().iloc[0]  # the troublemaker fitted the family
    assert sum("TML stage" in e for e in events) == 3
    from workbench.diagnostics.image_quality import perceptual_metrics_available

    if perceptual_metrics_available()["lpips"]:  # no weights on disk: said once, never downloaded
        assert sum(e.startswith("LPIPS not computed") for e in events) == 1
    else:
        with RunReader(tml_run) as r:
            assert r.scalars(["lpips"])["lpips"].notna().any()
    # the image triplets for the app: input / first stage (PM) / enhanced (PM+EM) / reference
    assert snap.info["stages"] == ["pm", "pm+em"]
    n = len(snap["input"])
    for key in ("input", "first_stage", "enhanced", "reference"):
        assert snap[key].dtype == np.uint8 and snap[key].shape[:2] == (n, 3)
    assert snap["enhanced"].mean() > snap["input"].mean()
    from workbench.runs import list_runs

    row = list_runs(tml_run.parent).set_index("name").loc["tml"]  # what `workbench runs` and the Runs page show
    assert row["psnr"] == pytest.approx(last) and row["knn_acc"] is None


def test_tml_resume_keeps_the_stage_plan(tml_run, tmp_path):
    shutil.copytree(tml_run, tmp_path / "tml")
    result = workbench.train(method="tml", epochs=21, tm_epochs=2, em_epochs=5, lr=3e-3, runs_dir=str(tmp_path),
                             run_name="tml", resume=True, **SMALL)
    assert result.status == "finished" and result.step == 21 * 16
    m = load_enhancer(tmp_path / "tml")
    assert m.stage_ends.tolist() == [32, 240, 320] and m.em_trained


class DrawsFromTorchsGenerator(Callback):
    """Draws from torch's global generator after every step, as diagnostics or a notebook cell might."""

    def on_step_end(self, trainer, out):
        torch.rand(17)


def test_one_seed_gives_one_run_whatever_else_draws_from_torchs_generator(tmp_path):
    """GDC's drop path draws from torch's global generator, which the engine seeds per step: two runs with the same
    seed train alike even when other code draws between their steps."""
    options = dict(method="tml", epochs=3, tm_epochs=1, em_epochs=1, runs_dir=str(tmp_path), **SMALL)
    assert any(isinstance(m, StochasticDepth) and m.p > 0 for m in TML(width=8, levels=3).modules())
    torch.manual_seed(1)
    plain = workbench.train(run_name="a", **options)
    torch.manual_seed(2)
    disturbed = workbench.train(callbacks=[DrawsFromTorchsGenerator()], run_name="b", **options)
    other_seed = workbench.train(run_name="c", seed=1, **options)
    with RunReader(plain.run_dir) as a, RunReader(disturbed.run_dir) as b, RunReader(other_seed.run_dir) as c:
        la, lb, lc = (r.scalar("loss").to_numpy() for r in (a, b, c))
    assert len(la) == 48 and np.array_equal(la, lb)
    assert not np.allclose(la[16:], lc[16:])


def test_zerodce_trains_and_brightens(tmp_path):
    result = workbench.train(method="zerodce", epochs=2, runs_dir=str(tmp_path), run_name="dce", **DATA)
    with RunReader(result.run_dir) as r:
        df = r.scalars(["psnr", "psnr_input", "brightness", "loss"])
    print(f"\nZero-DCE 2 epochs: PSNR {df['psnr'].dropna().iloc[0]:.2f} -> {df['psnr'].dropna().iloc[-1]:.2f} "
          f"(dark input {df['psnr_input'].dropna().iloc[-1]:.2f}), brightness {df['brightness'].dropna().iloc[-1]:.3f}")
    assert df["psnr"].dropna().iloc[-1] > df["psnr_input"].dropna().iloc[-1]
    assert df["loss"].dropna().iloc[-1] < df["loss"].dropna().iloc[0]


def test_zerodce_uses_the_official_optimiser_unless_overridden():
    # Li-Chongyi/Zero-DCE, lowlight_train.py: Adam(lr 1e-4, weight_decay 1e-4) with no scheduler, clip_grad_norm
    # 0.1, batch 8
    from workbench.engine.build import build

    cfg = TrainConfig(method="zerodce", **DATA)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.batch_size) == ("adam", 1e-4, 1e-4, 0.1, 8)
    assert (cfg.lr_schedule, cfg.warmup_epochs) == ("constant", 0.0)
    parts = build(cfg, torch.device("cpu"))
    opt, scheduler = parts.optimizer, parts.scheduler
    assert type(opt) is torch.optim.Adam  # L2 in the gradient, as torch.optim.Adam(weight_decay=...), not AdamW
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["weight_decay"] == 1e-4
    lrs = []
    for _ in range(parts.steps_per_epoch * cfg.epochs):  # the lr of every step of the run: 1e-4 from first to last
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs == pytest.approx([1e-4] * len(lrs))
    assert TrainConfig(method="zerodce").replace(method="tml").lr_schedule == "cosine"
    stored = {k: v for k, v in cfg.to_dict().items() if k not in ("lr_schedule", "warmup_epochs")}
    assert TrainConfig.from_dict(stored).lr_schedule == "cosine"  # a run stored before --lr-schedule trained so
    mine = TrainConfig(method="zerodce", lr=3e-4, grad_clip=0.0, batch_size=16, optimizer="adamw")
    assert (mine.optimizer, mine.lr, mine.weight_decay, mine.grad_clip, mine.batch_size) == (
        "adamw", 3e-4, 1e-4, 0.0, 16)
    for other in ("tml", "simclr"):  # everyone else keeps the generic defaults, clipping off
        o = TrainConfig(method=other)
        assert (o.optimizer, o.lr, o.grad_clip) == ("adamw", None, 0.0)
    assert TrainConfig(method="zerodce").replace(method="tml").optimizer == "adamw"  # not carried to tml
    old = {k: v for k, v in TrainConfig(method="zerodce", optimizer="adamw", lr=None, batch_size=16).to_dict().items()
           if k != "grad_clip"}  # a run stored before these defaults: it keeps what it trained with
    restored = TrainConfig.from_dict(old)
    assert (restored.optimizer, restored.lr, restored.grad_clip, restored.batch_size) == ("adamw", None, 0.0, 16)
    # conv weights N(0, 0.02) (weights_init), biases as torch's default
    torch.manual_seed(0)
    from workbench.lowlight.methods.zerodce import ZeroDCE
    w = torch.cat([c.weight.flatten() for c in ZeroDCE().net.modules() if isinstance(c, torch.nn.Conv2d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 5e-4


def test_grad_clip_bounds_the_gradient_norm_of_a_step(tmp_path):
    # one plain SGD step (lr 1, no momentum, no decay, no warm-up): the weights move by exactly the clipped gradient
    from workbench.engine.build import build

    kw = dict(DATA, patches=8, batch_size=8, epochs=1, optimizer="sgd", momentum=0.0, lr=1.0, weight_decay=0.0,
              warmup_epochs=0.0, grad_clip=1e-3)
    before = {k: v.clone() for k, v in build(TrainConfig(method="zerodce", **kw), torch.device("cpu"))
              .method.state_dict().items()}
    result = workbench.train(method="zerodce", runs_dir=str(tmp_path), run_name="clip", **kw)
    after = torch.load(result.run_dir / "checkpoints" / "last.pt", map_location="cpu")["model"]
    moved = torch.cat([(after[k] - before[k]).flatten() for k in before if before[k].is_floating_point()])
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_enhance_cli_reports_every_bad_file_and_keeps_going(tml_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((37, 53, 3)) * 80).astype(np.uint8)).save(src / "odd.png")
    Image.fromarray((rng.random((20, 30)) * 60).astype(np.uint8)).save(src / "gray.png")
    Image.fromarray((rng.random((24, 24, 4)) * 90).astype(np.uint8), "RGBA").save(src / "rgba.png")
    Image.fromarray((rng.random((16, 18)) * 9000).astype(np.uint16)).save(src / "deep16.png")
    Image.fromarray((rng.random((10, 12, 3)) * 80).astype(np.uint8)).save(src / "odd.bmp")  # same stem as odd.png
    (src / "notes.png").write_text("this is not an image")
    good = src / "cut.jpg"
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "workbench", "enhance", str(src), "--run", str(tml_run), "--out",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr  # some files failed, and the command says so
    assert "notes.png" in p.stderr and "cut.jpg" in p.stderr and "5 enhanced" in p.stderr
    # files are taken in sorted order: odd.bmp gets odd_enhanced.png, odd.png keeps its suffix in the name
    for name, size in (("odd", (12, 10)), ("odd.png", (53, 37)), ("gray", (30, 20)), ("rgba", (24, 24)),
                       ("deep16", (18, 16))):
        with Image.open(out / f"{name}_enhanced.png") as im:
            assert im.size == size and im.mode == "RGB"


def test_enhance_says_when_the_run_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="no run at .*missing.*workbench runs"):
        load_enhancer(tmp_path / "missing")
    p = subprocess.run([sys.executable, "-m", "workbench", "enhance", str(tmp_path), "--run", "missing", "--out",
                        str(tmp_path / "o"), "--max-pixels", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--max-pixels: 0 is not allowed" in p.stderr  # was: every file "skipped"


def test_enhance_refuses_a_run_that_does_not_enhance(tmp_path):
    workbench.train(dataset="digits", epochs=1, batch_size=128, progress=False, runs_dir=str(tmp_path),
                    run_name="simclr", probe_size=100)
    with pytest.raises(ConfigError, match="does not enhance images"):
        load_enhancer(tmp_path / "simclr")
    p = subprocess.run([sys.executable, "-m", "workbench", "enhance", str(tmp_path), "--run", "simclr", "--runs-dir",
                        str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "does not enhance images" in p.stderr


def test_images_page_shows_triplets_curves_and_a_wipe(tml_run, tmp_path):
    shutil.copytree(tml_run, tmp_path / "tml")
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["runs_dir"] = str(tmp_path)
    at.run()
    at.switch_page("views/images.py").run()
    assert not at.exception, at.exception
    captions = [c for im in at.get("image") for c in [im.proto.imgs[0].caption]] if at.get("image") else []
    text = " ".join(m.value for m in at.markdown)
    assert "held-out synthetic pairs" in text and "dark input" in text
    assert len(at.get("plotly_chart")) == 2  # PSNR and SSIM over training
    assert len(at.get("image")) >= 5, captions  # input, PM, enhanced, reference, wipe
    at.slider(key="ll_wipe").set_value(10).run()
    assert not at.exception
    at.number_input(key="ll_image").set_value(3).run()
    assert not at.exception
    assert any(c.startswith("enhanced · PSNR") for c in captions) and "reference (normal light)" in captions
    at.toggle(key="ll_follow").set_value(False).run()  # pick an earlier evaluation
    at.select_slider[0].set_value(at.select_slider[0].options[0]).run()
    assert not at.exception
    assert "**Step 0**" in " ".join(m.value for m in at.markdown)


@pytest.mark.parametrize("page", ["scores", "embeddings", "clusters"])
def test_representation_pages_point_a_lowlight_run_to_the_images_page(tml_run, tmp_path, page):
    shutil.copytree(tml_run, tmp_path / "tml")
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["runs_dir"] = str(tmp_path)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    assert any("low-light enhancement run" in i.value and "Images" in i.value for i in at.info)


def test_tml_fits_its_troublemaker_to_lol_pairs_and_scores_them(tmp_path):
    """With ``lol_dir``, stage 0 learns from the user's real pairs (their brightness ratio, here 0.45: far from the synthetic family's) and every
    evaluation also scores the pairs (``lol_psnr`` next to ``lol_psnr_input``)."""
    from skimage import data

    for sub in ("low", "high"):
        (tmp_path / "lol" / "our485" / sub).mkdir(parents=True)
    for i, photo in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        high = photo[:48, :56]
        Image.fromarray(high).save(tmp_path / "lol" / "our485" / "high" / f"{i}.png")
        Image.fromarray((high * 0.45).round().astype(np.uint8)).save(tmp_path / "lol" / "our485" / "low" / f"{i}.png")
    result = workbench.train(method="tml", epochs=3, tm_epochs=1, em_epochs=1, lol_dir=str(tmp_path / "lol"),
                             runs_dir=str(tmp_path / "runs"), run_name="lol",
                             **{**SMALL, "patches": 64, "ugdc_width": 4, "ugdc_levels": 2})
    assert result.status == "finished"
    with RunReader(result.run_dir) as r:
        df = r.scalars(["lol_psnr", "lol_psnr_input", "lol_ssim"])
    assert len(df["lol_psnr"].dropna()) == 4 and df["lol_psnr_input"].dropna().iloc[0] < 20
    m = load_enhancer(result.run_dir)
    seen = m.codes[: int(m.codes_seen), 0]
    assert abs(float(seen.mean()) - 0.45) < 0.03, seen  # the ratios of the pairs, not of the synthetic family
    with pytest.raises(Exception, match="LOL pairs"):
        workbench.train(method="tml", epochs=1, lol_dir=str(tmp_path / "absent"), runs_dir=str(tmp_path / "runs"),
                        run_name="absent", **SMALL)
