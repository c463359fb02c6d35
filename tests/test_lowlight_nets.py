"""Low-light networks: GDC (any size, fixed token count, linear cost), UGDC (any size, PM/EM presets' sizes) and
Zero-DCE's DCE-Net (79,416 parameters, the curve iteration)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from workbench.lowlight.nn import DCENet, GlobalDynamicConv, UGDC, apply_curves, enhancing_model, predicting_model
from workbench.lowlight.nn.ugdc import GDCDoubleConv

SIZES = [(1, 3, 37, 53), (2, 3, 5, 7), (1, 3, 64, 96), (2, 3, 1, 1)]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def check_grads(m: torch.nn.Module) -> None:
    for name, p in m.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in m.parameters())


# ---------------------------------------------------------------- (a) any input size, gradients flow
@pytest.mark.parametrize("shape", SIZES)
def test_gdc_keeps_shape_and_passes_gradients(shape):
    torch.manual_seed(0)
    g = GlobalDynamicConv(shape[1], grid=4, drop_path=0.1)
    x = torch.randn(shape, requires_grad=True)
    y = g(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    check_grads(g)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("levels", [3, 2, 1])
def test_ugdc_keeps_shape_and_passes_gradients(shape, levels):
    torch.manual_seed(0)
    net = predicting_model(width=8, levels=levels, grid=4)
    assert net.stride == 2 ** (levels - 1)
    assert any(isinstance(m, GDCDoubleConv) for m in net.modules())  # shallow presets keep the bottleneck's GDC
    x = torch.randn(shape, requires_grad=True)
    y = net(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    check_grads(net)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_ugdc_general_layout_and_output_channels():
    net = UGDC(in_channels=1, out_channels=2, widths=(4, 8, 16, 32), gdc_encoder=3, gdc_decoder=2, grid=2)
    assert net.stride == 8
    gdc_blocks = [m for m in net.modules() if isinstance(m, GDCDoubleConv)]
    assert len(gdc_blocks) == 3 + 2  # encoder levels 1-3, decoder levels 2 and 1
    assert [m.grid for m in net.modules() if isinstance(m, GlobalDynamicConv)] == [(8, 8), (4, 4), (2, 2), (4, 4),
                                                                                   (8, 8)]
    assert net(torch.randn(2, 1, 19, 11)).shape == (2, 2, 19, 11)


@pytest.mark.parametrize("shape", SIZES)
def test_dcenet_keeps_shape_and_passes_gradients(shape):
    torch.manual_seed(0)
    net = DCENet()
    x = torch.rand(shape)
    enhanced, curves = net(x)
    assert enhanced.shape == x.shape and curves.shape == (shape[0], 24, *shape[2:])
    assert curves.abs().max() <= 1 and 0 <= enhanced.min() and enhanced.max() <= 1  # |r| <= 1 keeps [0, 1]
    enhanced.mean().backward()
    check_grads(net)


# ---------------------------------------------------------------- (b) fixed number of tokens
def test_gdc_token_count_does_not_depend_on_input_size():
    g = GlobalDynamicConv(16, grid=8)
    small, large = torch.randn(1, 16, 12, 20), torch.randn(1, 16, 96, 160)
    q_small, q_large = g.query(small), g.query(large)
    assert q_small.shape == q_large.shape == (1, 64, 16) and g.tokens == 64
    assert g.attention(small).shape == (1, 64, 12, 20) and g.attention(large).shape == (1, 64, 96, 160)
    assert g.value.in_channels == g.tokens and g.pos.shape == (1, 16, 8, 8)


# ---------------------------------------------------------------- (c) cost linear in the pixel count
def test_gdc_cost_is_linear_in_pixels():
    torch.manual_seed(0)
    c = 16
    g = GlobalDynamicConv(c).eval()

    def flops(side: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            g(torch.randn(1, c, side, side))
        return counter.get_total_flops()

    flop_ratio = flops(128) / flops(64)

    def saved_bytes(side: int) -> int:  # activation memory kept for backward
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            g(torch.randn(1, c, side, side, requires_grad=True))
        return total

    memory_ratio = saved_bytes(128) / saved_bytes(64)
    # Counted, not timed: wall time belongs to benchmarks/ (on a loaded 2-core machine the ratio swung from ~4 to
    # 8.6 while FLOPs and saved activations stay put). Quadratic attention would give x16 on both.
    print(f"GDC 64x64 -> 128x128 (4x pixels): FLOPs x{flop_ratio:.2f}, saved activations x{memory_ratio:.2f} "
          "(quadratic attention: x16)")
    assert 3.6 < flop_ratio < 4.4
    assert 3.0 < memory_ratio < 4.4


# ---------------------------------------------------------------- (d) Zero-DCE
def test_dcenet_has_the_papers_parameter_count():
    assert n_params(DCENet()) == 79_416
    assert DCENet(iterations=4).conv7.out_channels == 12


def test_apply_curves_matches_a_hand_loop():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 2, 2)
    curves = torch.rand(1, 6, 2, 2) * 2 - 1
    expected = torch.empty_like(x)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                v = x[0, c, i, j].item()
                for k in range(2):
                    r = curves[0, 3 * k + c, i, j].item()
                    v = v + r * (v * v - v)
                expected[0, c, i, j] = v
    assert torch.allclose(apply_curves(x, curves), expected, atol=1e-6)


def test_apply_curves_sign():
    # LE(x) = x + r (x^2 - x) = x - r x (1 - x), as in the official code: on (0, 1) a negative r brightens and a
    # positive r darkens (the paper's text writes x + a x (1 - x), the same curve with a = -r).
    x = torch.rand(1, 3, 4, 4) * 0.8 + 0.1
    assert torch.equal(apply_curves(x, torch.zeros(1, 24, 4, 4)), x)
    assert (apply_curves(x, torch.full((1, 24, 4, 4), -0.5)) > x).all()
    assert (apply_curves(x, torch.full((1, 24, 4, 4), 0.5)) < x).all()
    with pytest.raises(ValueError):
        apply_curves(x, torch.zeros(1, 4, 4, 4))


# ---------------------------------------------------------------- (e) the paper's PM / EM, as the official code
# Rainbowman0/TML_LLIE, utils/train_utils.py builds UGDC / UGDC_Enhance (models/UGDC.py) for 400x640 inputs; their
# parameter counts, measured on that code, are the paper's 17.6 M / 4.7 M: independent numbers, not ours.
OFFICIAL_PM, OFFICIAL_EM = 17_580_103, 4_720_679


def test_presets_have_the_official_parameter_counts():
    with torch.no_grad():
        pm, em = predicting_model(), enhancing_model()
        counts = n_params(pm), n_params(em)
    print(f"PM {counts[0]:,} (official {OFFICIAL_PM:,})  EM {counts[1]:,} (official {OFFICIAL_EM:,})")
    assert counts == (OFFICIAL_PM, OFFICIAL_EM)


def test_presets_have_the_official_layout():
    pm = predicting_model()
    # GDC (the official SABlock) only in Down_SA at encoder levels 3-4 and Up_SA at decoder levels 3-2; Down(128,
    # 256) at level 2 is a plain double conv. Each GDC works on the block's input: 256, 512 (encoder), 1024, 512
    # (decoder: the skip concatenation)
    assert [type(b).__name__ for b in pm.encoder] == ["DoubleConv"] * 3 + ["GDCDoubleConv"] * 2
    assert [type(b).__name__ for b in pm.decoder] == ["GDCDoubleConv"] * 2 + ["DoubleConv"] * 2  # deepest first
    gdcs = [m for m in pm.modules() if isinstance(m, GlobalDynamicConv)]
    assert [g.channels for g in gdcs] == [256, 512, 1024, 512]
    # tokens: the official 5x5 patches of the 400x640 input's maps (50x80, 25x40, 50x80, 100x160)
    assert [g.tokens for g in gdcs] == [160, 40, 160, 640]
    for g in gdcs:
        assert g.drop_path.p == 0.2  # timm DropPath(0.2)
        assert g.norm.eps == 1e-6
    pos = torch.cat([g.pos.flatten() for g in gdcs])
    assert abs(pos.mean().item()) < 0.01 and abs(pos.std().item() - 1) < 0.01  # torch.normal(0, 1)


def test_tml_at_the_papers_options_builds_the_official_networks():
    from workbench import TrainConfig
    from workbench.lowlight.methods.tml import TML

    cfg = TrainConfig(method="tml", ugdc_width=64, ugdc_levels=5, troublemaker="synthetic")
    with torch.no_grad():
        m = TML.from_config(cfg, None)
    assert (n_params(m.predicting), n_params(m.enhancing)) == (OFFICIAL_PM, OFFICIAL_EM)
