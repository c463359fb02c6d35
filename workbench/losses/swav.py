"""SwAV (Caron et al., 2020): online codes by Sinkhorn-Knopp and the swapped prediction loss.

With prototypes ``C`` (K unit rows) and unit embeddings ``z``, scores ``s = z C^T`` (B x K). Codes are the
solution of an entropic optimal transport that spreads the batch evenly over the prototypes::

    Q = exp(s / eps)^T  (K x B),  Q /= sum(Q);  repeat n times: rows -> 1/K, columns -> 1/B;  codes = (B Q)^T

(computed in the log domain here; the same iterations, without overflow).

Swapped prediction: the code of one crop is predicted from every other crop v::

    l = - sum_k q_k log softmax(s_v / tau)_k
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workbench.losses.precision import fp32


def _logsumexp(x: torch.Tensor, dim: int | None, distributed: bool) -> torch.Tensor:
    """log(sum(exp(x))) over ``dim`` (all entries if None), across processes when ``distributed``."""
    if not distributed:
        return torch.logsumexp(x.flatten() if dim is None else x, dim=0 if dim is None else dim,
                               keepdim=dim is not None)
    import torch.distributed as dist

    m = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    total = torch.exp(x - m).sum() if dim is None else torch.exp(x - m).sum(dim=dim, keepdim=True)
    dist.all_reduce(total)
    return m + torch.log(total)


@torch.no_grad()
@fp32
def sinkhorn_knopp(scores: torch.Tensor, eps: float = 0.05, iters: int = 3, scaled: bool = True,
                   distributed: bool = False) -> torch.Tensor:
    """Codes for ``scores (B, K)``. Scaled (the default), each row sums to 1; unscaled, the transport plan's rows
    (samples) sum to 1/B and its columns (prototypes) to 1/K at convergence. Computed in the log domain, so a tiny
    eps cannot overflow or divide 0 by 0. ``distributed``: the batch is split over processes and the sums over
    samples are global (``torch.distributed``), as SwAV does on several GPUs."""
    log_q = (scores.float() / eps).T  # (K, B_local)
    b_total = torch.tensor(float(log_q.shape[1]), device=log_q.device)
    if distributed:
        import torch.distributed as dist

        dist.all_reduce(b_total)
    k = log_q.shape[0]
    log_q = log_q - _logsumexp(log_q, None, distributed)
    for _ in range(iters):
        log_q = log_q - _logsumexp(log_q, 1, distributed) - math.log(k)  # each prototype gets 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - torch.log(b_total)  # each sample 1/B
    q = torch.exp(log_q)
    return (q * b_total).T if scaled else q.T


@fp32
def swapped_prediction(codes: torch.Tensor, scores: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """``-mean_b sum_k codes_bk log softmax(scores_b / tau)_k``."""
    return -(codes * F.log_softmax(scores.float() / tau, dim=1)).sum(dim=1).mean()
