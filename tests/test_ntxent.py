"""NT-Xent against an independent naive implementation that loops over anchors."""
import math

import pytest
import torch
import torch.nn.functional as F

from workbench.losses import NTXentLoss, nt_xent


def naive_nt_xent(z1, z2, tau):
    """l_i = -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau)), mean over the 2N anchors, with Python loops."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2]).double()]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        num = torch.exp(torch.dot(z[i], z[j]) / tau)
        den = sum(torch.exp(torch.dot(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total = total - torch.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,tau", [(8, 16, 0.5), (5, 3, 0.1), (16, 32, 1.0), (3, 8, 0.07)])
def test_values_and_gradients_match_naive(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    a = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    ours = nt_xent(a, b, tau)
    ga, gb = torch.autograd.grad(ours, [a, b])
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = naive_nt_xent(a2, b2, tau)
    ra, rb = torch.autograd.grad(ref, [a2, b2])
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # nt_xent computes in fp32: compare gradients at fp32 precision
    torch.testing.assert_close(ga, ra, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gb, rb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("tau", [1e-2, 1e-3, 1e-4])
def test_tiny_temperature_does_not_overflow(tau):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 16, generator=g, requires_grad=True)
    b = torch.randn(32, 16, generator=g)
    loss = nt_xent(a, b, tau)
    (grad,) = torch.autograd.grad(loss, [a])
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # naive exp(1/tau) overflows fp64 for tau=1e-3; compare where the naive version is representable
    if tau >= 1e-2:
        assert loss.item() == pytest.approx(naive_nt_xent(a.detach(), b, tau).item(), rel=1e-4)


def test_one_pair_has_zero_loss():
    # with N=1 the only candidate of each anchor is its positive: softmax over one logit = 1, loss 0
    a, b = torch.randn(1, 8, requires_grad=True), torch.randn(1, 8)
    loss = nt_xent(a, b, 0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    (grad,) = torch.autograd.grad(loss, [a])
    assert torch.isfinite(grad).all()


def test_perfect_views_with_orthogonal_negatives_give_the_analytic_value():
    # z1 = z2 = identity rows: s_pos = 1, the 2N-2 negatives are 0 -> l = -log(e^(1/t) / (e^(1/t) + 2N-2))
    n, tau = 4, 0.5
    z = torch.eye(n, 8)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_module_and_errors():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert NTXentLoss(0.3)(a, b).item() == pytest.approx(nt_xent(a, b, 0.3).item())
    with pytest.raises(ValueError, match="tau"):
        nt_xent(a, b, 0.0)
    with pytest.raises(ValueError, match="must both be"):
        nt_xent(a, b[:3], 0.5)
