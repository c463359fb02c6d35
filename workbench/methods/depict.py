"""DEPICT: Deep Clustering via a Joint Convolutional Autoencoder Embedding and Relative Entropy Minimization
(Ghasedi Dizaji et al., 2017).

A conv autoencoder whose embedding ``z = tanh(W_e h)`` (as many units as clusters, as officially; ``--embed-dim 0``:
the backbone's h itself) feeds a softmax clustering head ``p_ik = softmax_k(w_k^T z_i + b_k)``. A corrupted path
(dropout on the input and the first block) is trained towards targets built from the clean path over the WHOLE
training set, once per epoch, and held fixed for that epoch::

    f_k = sum_i p_ik                       (soft cluster sizes, clean path, every training image)
    q_ik = (p_ik^2 / f_k) / sum_k' (p_ik'^2 / f_k')      (official code; the paper: p_ik / sqrt(f_k), --target paper)
    L = -(1/B) sum_i sum_k q_ik log p~_ik  +  ||x - x^~||^2 + 0.1 sum_l ||e_l - d_l||^2

``e_l`` is the clean output of encoder block l and ``d_l`` the decoder's reconstruction of it (layer-wise
reconstruction); as officially the gradient flows through both (a target held without gradient lets the official
encoder's features grow until the tanh embedding is one saturated point for every image: measured on 16 px digits).
Procedure: (1) ``pretrain`` steps of reconstruction only (under ``--pretrain-patience``, until the clean
reconstruction loss of a held-out 10% stops improving, logged each epoch as ``pretrain_val_reconstruction``, and
back to the best epoch's weights); (2) a clustering of the clean embeddings
of the training set (``--init-clustering``: AC-PIC, the official code's for the small sets USPS and MNIST-test, up
to 20,000 images; k-means with 40 restarts, its choice for MNIST-full and its other sets, above, and also in place
of an AC-PIC result that left a cluster below 10% of the balanced size n / K: a few outliers that nothing links to,
as on Fashion-MNIST, where AC-PIC gives five clusters of 2-3 images), the head initialised to the
unit-norm centroids (bias 0) and trained with cross-entropy on those labels plus reconstruction on 90% of the
training images, early-stopped as officially: after each epoch the NMI between the head's clean predictions on the
held-out 10% and the initial labels (no class labels), stop once it has not improved for more than
``--init-patience`` (5) epochs, and restore the best epoch's weights; (3) DEPICT epochs, each starting with the
whole-set target above, until the mean squared change of successive targets falls below 1e-7. Each of those
epochs logs that change (``target_change``) and ``moved_from_init``, the share of training images whose clean
assignment is no longer the first clustering's label.

Follows ``herandy/DEPICT`` (``functions.py``: ``build_MdA``, ``train_RLC``, whose init stage is ``train_fn_init``).
``--encoder official`` is ``build_MdA`` with the MNIST / USPS settings (``dataset_settings``): convs 4x4 and 5x5,
stride 2, paddings 0 and 2, 50 maps, LeakyReLU(0.01), no batch-norm, the flattened maps into the tanh embedding,
and its mirror of transposed convs as the decoder (178,211 parameters at 28 px, as lasagne counts them).
It is the default (``--encoder auto``) from 16 px (USPS, the official code's smallest set) up. Departs: on smaller
images (8 px digits; ``--encoder backbone``) the encoder is the workbench backbone (4 conv-BN-ReLU blocks, pooled)
and every hidden block is reconstructed with weight 0.1 (officially 2 conv layers); with ``--encoder official`` the
last decoder layer is linear (officially tanh, on images scaled to [-1, 1]; here the pixels are mean/std
normalised: measured on a 10,000-image Fashion-MNIST subset, 20 of 60 epochs, the official scaling and tanh give test
ACC 0.565 against 0.564; on digits with the backbone, [-1, 1] pixels lower the first clustering from 0.865 / 0.874
to 0.773 / 0.796, seeds 0 / 1) and 8 px digits go 8 -> 3 -> 2 px through the MNIST layout; AC-PIC's incremental
path integral is computed to its leading order in z (exact up to O(z^3) at the official z = 0.01; officially by dense
matrix inversions), and under ``--init-clustering auto`` a degenerate AC-PIC result (above) is replaced by k-means
(officially USPS and MNIST-test always keep AC-PIC's result; ``--init-clustering acpic`` keeps it too); the init
stage's held-out split is random (officially stratified by class), its epochs fill the engine's fixed steps per
epoch by continuing into a second permutation of the 90%, it lasts at most
``--init-epochs`` (20; officially 1000) and its best weights (as pre-training's under ``--pretrain-patience``) are
held in memory, not in checkpoints (after a resume, a stage that ends before its held-out score improves again
keeps the weights it has); pre-training runs a fixed ``--pretrain-epochs`` by default,
half the run, 60 of 120 epochs (on digits the initial clustering's ACC is 0.851 after 20 of 60 and 0.865-0.874
after 60 of 120, three seeds), where the official ``train_MdA_val`` trains up to 4000 epochs at lr 1e-4 until the
clean reconstruction loss of a held-out 10% (left out of pre-training) has not improved for 100 epochs, then
restores the best epoch's weights: ``--pretrain-patience 100`` is that rule, capped by ``--pretrain-epochs``, on a
random split (officially stratified by class) that the init stage's early stop reuses, as officially; each epoch's
target comes from one clean pass at the epoch's start (officially from each batch's prediction right after its
update, collected over the previous epoch); once the targets converge they are no longer rebuilt but training goes
on to ``--epochs`` (officially it stops); the backbone's batch-norm (the official encoder has none) keeps the
running statistics of the clean pass only (``encode_blocks``). Defaults (``common_defaults``): Adam without decay,
batch 100 as officially, but lr 1e-3 (officially 1e-4 over up to 4000 epochs; ``--lr 1e-4`` is the official one)
under the engine's one warm-up + cosine schedule over the whole run and one Adam state through the stages, where
officially each stage (pre-training, init, DEPICT) is a fresh Adam at a constant lr: ``--lr 1e-4 --lr-schedule
constant --warmup-epochs 0 --stage-optimizer fresh`` is the official optimisation. Measured on digits, seeds 0 / 1 /
2, test ACC: at the official constant 1e-4 (200 of 350 epochs pre-training) one Adam through the stages takes the
first clustering's 0.864 / 0.875 / 0.796 (train) to 0.872 / 0.858 / 0.797, a fresh Adam per stage to 0.844 / 0.872 /
0.797; the defaults take 0.865 / 0.874 / 0.874 to 0.850 / 0.897 / 0.878 in a third of the steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench import process_group
from workbench.config import ConfigError, MethodOptions, option
from workbench.methods.base import Method, StepOutput, fit_pretraining
from workbench.nn.autoencoders import DEPICTDecoder, DEPICTEncoder, LayerwiseDecoder, encode_blocks

PRETRAIN, INIT, DEPICT_STAGE = 0, 1, 2
CONVERGED_MSE = 1e-7
INIT_HOLDOUT = 0.1  # the init stage's validation share (train_RLC: test_size=0.10)
OFFICIAL_MIN_SIZE = 16  # "auto": the official encoder from USPS's 16 px up; on 8 px digits it keeps 2x2 maps
ACPIC_MAX = 20000  # "auto": AC-PIC up to this many training images (USPS, MNIST-test), k-means above (MNIST-full)
ACPIC_MIN_SHARE = 0.1  # "auto": AC-PIC's clusters must hold at least this share of the balanced size n / K


def knn_transition_graph(x: np.ndarray, k: int = 20, a: float = 1.0):
    """AC-PIC's directed k-nearest-neighbour graph (``gacBuildDigraph``), row-normalised to a transition matrix:
    ``w_ij = exp(-d_ij^2 / sigma^2)`` for the k nearest neighbours j of i, plus a self-loop of weight 1;
    ``sigma^2`` = the mean squared distance to the k nearest neighbours times ``a``, doubled while some point's
    nearest neighbour would get a weight below 1e-5. Returns the sparse ``P`` and the neighbour indices
    (column 0: the point itself)."""
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    n, k = len(x), min(k, len(x) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    d2 = dist ** 2
    sig2 = d2[:, 1:max(k + 1, 4)].mean() * a
    sig2 = sig2 if sig2 > 0 else 1.0
    while np.any(np.exp(-d2[:, 1] / sig2) < 1e-5):
        sig2 *= 2
    w = sp.csr_matrix((np.exp(-d2[:, 1:] / sig2).ravel(), (np.repeat(np.arange(n), k), idx[:, 1:].ravel())),
                      shape=(n, n)) + sp.identity(n, format="csr")
    return (sp.diags(1.0 / np.asarray(w.sum(1)).ravel()) @ w).tocsr(), idx


def acpic(x: np.ndarray, n_clusters: int, k: int = 20, a: float = 1.0) -> np.ndarray:
    """Agglomerative clustering via maximum incremental path integral (AC-PIC, Zhang et al. 2013), the official
    DEPICT's initial clustering of USPS and MNIST-test (``predict_ac_mpi``: k 20, a 1, z 0.01).

    Start from the connected components of the nearest-neighbour graph (``gacNNMerge``), then repeatedly merge the
    two clusters A, B with the largest incremental path integral ``L_AB - L_A - L_B``, where
    ``L_C = 1^T (I - z P_CC)^{-1} 1 / |C|^2`` sums the paths within C. Since ``(I - zP)^{-1} = sum_t z^t P^t`` and
    z = 0.01, the increment is computed to its leading order, which is exact up to O(z^3):
    ``z^2 (1_A^T P_AB P_BA 1_A / |A|^2 + 1_B^T P_BA P_AB 1_B / |B|^2)`` (the paths of length 0 and 1 cancel),
    so the official dense matrix inversions become sparse products and 10,000 points take seconds."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    p, idx = knn_transition_graph(np.asarray(x, dtype=np.float64), k, a)
    n = len(x)
    nn1 = sp.csr_matrix((np.ones(n), (np.arange(n), idx[:, 1])), shape=(n, n))
    labels = connected_components(nn1, directed=True, connection="weak")[1]
    m = int(labels.max()) + 1
    if m <= n_clusters:
        return labels
    member = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, m))
    out_flow = (member.T @ p).tocsr()  # (m, n): sum over a in A of P_ab
    in_flow = (p @ member).T.tocsr()  # (m, n): sum over a in A of P_ba
    out_rows, in_rows = [out_flow[i] for i in range(m)], [in_flow[i] for i in range(m)]
    two_step = (out_flow.multiply(in_flow) @ member).toarray()  # [A, B] = 1_A^T P_AB P_BA 1_A
    np.fill_diagonal(two_step, 0)
    size = np.bincount(labels, minlength=m).astype(np.float64)
    gain = two_step / size[:, None] ** 2 + two_step.T / size[None, :] ** 2
    np.fill_diagonal(gain, -np.inf)
    for _ in range(m - n_clusters):
        i, j = sorted(np.unravel_index(int(np.argmax(gain)), gain.shape))
        labels[labels == j] = i
        size[i] += size[j]
        out_rows[i], in_rows[i] = out_rows[i] + out_rows[j], in_rows[i] + in_rows[j]
        two_step[:, i] += two_step[:, j]  # paths X -> A u B -> X: the sum of the two
        prod = out_rows[i].multiply(in_rows[i]).tocoo()
        two_step[i] = np.bincount(labels[prod.col], weights=prod.data, minlength=m)
        two_step[i, i] = two_step[j] = two_step[:, j] = 0
        gain[i] = gain[:, i] = two_step[i] / size[i] ** 2 + two_step[:, i] / size ** 2
        gain[j] = gain[:, j] = gain[i, i] = -np.inf
    return np.unique(labels, return_inverse=True)[1]


def depict_target(p: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """Target distribution from soft assignments ``p (N, K)``: the paper's ``p / sqrt(f)`` or DEC's ``p^2 / f``."""
    f = p.sum(dim=0, keepdim=True)  # soft cluster sizes
    q = p / f.sqrt() if form == "paper" else p ** 2 / f
    return q / q.sum(dim=1, keepdim=True)


@dataclass
class DEPICTOptions(MethodOptions):
    n_clusters: int | None = option(None, "clusters of the softmax head (default: the number of classes)", ge=2)
    pretrain_epochs: float = option(60.0, "epochs of reconstruction only before the clustering objective "
                                    "(officially until the held-out reconstruction stops improving: hundreds)", ge=0)
    pretrain_patience: int = option(-1, "end pre-training once the clean reconstruction loss of a held-out 10% of "
                                    "the training images (left out of pre-training) has not improved for more than "
                                    "this many epochs, and keep the best epoch's weights (train_MdA_val: 100, the "
                                    "same split as the init stage's); --pretrain-epochs stays the most it runs; -1: "
                                    "pre-train for --pretrain-epochs", ge=-1)
    init_epochs: int = option(20, "at most this many epochs of cross-entropy on the initial clustering's labels "
                              "before the DEPICT targets (officially up to 1000; early-stopped, see --init-patience)",
                              ge=0)
    init_patience: int = option(5, "end the init stage once the NMI between the head's predictions and the initial "
                                "labels on a held-out 10% of the training images has not improved for more than this "
                                "many epochs, and keep the best epoch's weights (train_RLC: 5; the split is random, "
                                "officially stratified by class); -1: no early stopping, all --init-epochs", ge=-1)
    encoder: str = option("auto", "the autoencoder's encoder: 'official' (build_MdA: 2 strided convs of 50 channels, "
                          "LeakyReLU, no batch-norm, no pooling, mirrored by transposed convs; replaces --backbone), "
                          "'backbone' (the run's --backbone, pooled, with a layer-wise decoder of 2x2 transposed "
                          f"convs) or 'auto' (official from {OFFICIAL_MIN_SIZE} px, the size of its smallest set, "
                          "USPS; backbone below: 8 px digits)", choices=("auto", "official", "backbone"))
    embed_dim: int | None = option(None, "size of the tanh embedding z = tanh(W h) the head and decoder read "
                                   "(default: as many as clusters, as officially); 0: the backbone's h itself", ge=0)
    target: str = option("dec", "target form: 'dec' p^2/f (the official code) or 'paper' p/sqrt(f)",
                         choices=("dec", "paper"))
    init_clustering: str = option("auto", "the clustering that initialises the head: 'acpic' (the official code's "
                                  "for USPS and MNIST-test), 'kmeans' (its choice for MNIST-full and the other sets) "
                                  f"or 'auto' (AC-PIC up to {ACPIC_MAX} training images, else k-means; k-means also "
                                  "when AC-PIC leaves a cluster below "
                                  f"{ACPIC_MIN_SHARE:.0%} of the balanced size n / K, i.e. outliers)",
                                  choices=("auto", "acpic", "kmeans"))
    stage_optimizer: str = option("shared", "the optimiser over the stages (pre-training, init, DEPICT): 'shared', "
                                  "one optimiser state through the run, or 'fresh', each stage starts a new one "
                                  "(officially each stage is its own run of a new Adam at a constant lr: with "
                                  "--lr-schedule constant --warmup-epochs 0)", choices=("shared", "fresh"))


class DEPICT(Method):
    name = "depict"
    Options = DEPICTOptions
    # officially Adam 1e-4, batch 100, no decay, over up to 4000 epochs; 1e-3 fits the workbench's short runs
    common_defaults = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=100, epochs=120)

    def __init__(self, backbone: nn.Module, views, images: torch.Tensor, n_clusters: int, size: int,
                 pretrain_steps: int = 100, init_epochs: int = 1, target: str = "dec", embed_dim: int | None = None,
                 dropouts: tuple[float, ...] = (0.1, 0.1, 0.0), rec_weight: float = 1.0, hidden_weight: float = 0.1,
                 kmeans_restarts: int = 40, init_clustering: str = "auto", init_patience: int = 5,
                 encoder: str = "auto", pretrain_patience: int = -1, stage_optimizer: str = "shared"):
        if encoder == "auto":
            encoder = "official" if size >= OFFICIAL_MIN_SIZE else "backbone"
        if encoder == "official":
            backbone = DEPICTEncoder(images.shape[1], size)
        super().__init__(backbone)
        if encoder == "official":
            self.notes_for_first_step.append(
                f"DEPICT's official encoder (build_MdA: 2 strided convs of 50 maps, no batch-norm; "
                f"{sum(p.numel() for p in backbone.parameters()):,} parameters) replaces the {size} px backbone; "
                "--encoder backbone keeps it")
        self.encoder, self.init_patience, self.pretrain_patience = encoder, init_patience, pretrain_patience
        self.stage_optimizer, self.fresh_optimizer_due = stage_optimizer, False
        self.views, self.n_clusters, self.target, self.dropouts = views, n_clusters, target, dropouts
        self.rec_weight, self.hidden_weight = rec_weight, hidden_weight
        self.images = images  # the training set (uint8, on the CPU): k-means and the whole-set targets
        self.pretrain_steps, self.init_epochs, self.kmeans_restarts = pretrain_steps, init_epochs, kmeans_restarts
        self.init_clustering_auto = init_clustering == "auto"  # AC-PIC falls back to k-means if it degenerates
        self.init_clustering = init_clustering if init_clustering != "auto" else (
            "acpic" if len(images) <= ACPIC_MAX else "kmeans")
        with torch.no_grad():
            blocks, _ = encode_blocks(backbone.eval(), torch.zeros(1, images.shape[1], size, size))
        backbone.train()
        self.embed_dim = embed_dim = n_clusters if embed_dim is None else embed_dim  # 0: z is the backbone's h
        self.embedding = nn.Linear(backbone.out_dim, embed_dim) if embed_dim else nn.Identity()
        zdim = embed_dim or backbone.out_dim
        self.decoder = (DEPICTDecoder(zdim, backbone) if isinstance(backbone, DEPICTEncoder) else
                        LayerwiseDecoder(zdim, images.shape[1], tuple(b.shape[1] for b in blocks),
                                         tuple(blocks[-1].shape[2:])))
        self.head = nn.Linear(zdim, n_clusters)
        n = len(images)
        for name, value in dict(stage=torch.tensor(PRETRAIN), steps_done=torch.tensor(0), init_left=torch.tensor(0),
                                converged=torch.tensor(False), labels=torch.zeros(n, dtype=torch.long),
                                q=torch.zeros(n, n_clusters), holdout=torch.zeros(n, dtype=torch.bool),
                                init_best=torch.tensor(-1.0, dtype=torch.float64), init_since=torch.tensor(0),
                                pretrain_best=torch.tensor(float("inf"), dtype=torch.float64),
                                pretrain_since=torch.tensor(0)).items():
            self.register_buffer(name, value)
        self.best_state: dict | None = None  # the early-stopped stage's best weights (in memory, not checkpointed)
        self.order: torch.Tensor | None = None  # this epoch's batches (steps, batch) of training-set indices
        self.epoch_start, self.epoch_logs, self.epoch_notes = 0, {}, []

    @classmethod
    def from_config(cls, cfg, backbone, views, bundle):
        n, classes = len(bundle.train), bundle.num_classes
        k = cfg.n_clusters or max(2, classes)
        if k > n // 2:
            raise ConfigError(f"n_clusters={k} is not allowed: the {n} training images give at most {n // 2} "
                              "clusters of two images")
        pretrain, note = fit_pretraining(cfg.pretrain_epochs, cfg.epochs, bundle.steps_per_epoch(cfg.batch_size),
                                         "DEPICT", "the clustering stages")
        method = cls(backbone, views, bundle.train.images, n_clusters=k, size=views.config.size,
                     init_epochs=cfg.init_epochs, target=cfg.target, embed_dim=cfg.embed_dim,
                     init_clustering=cfg.init_clustering, init_patience=cfg.init_patience, encoder=cfg.encoder,
                     pretrain_steps=pretrain, pretrain_patience=cfg.pretrain_patience,
                     stage_optimizer=cfg.stage_optimizer)
        if note:
            method.notes_for_first_step.append(note)
        if classes and k > 4 * classes:
            method.warnings_for_first_step.append(
                f"n_clusters={k} is more than 4x the dataset's {classes} classes: DEPICT's balanced target spreads "
                "every class over several clusters, and ACC (one cluster per class) will be low")
        return method

    def embed_clusters(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.embedding(h)) if self.embed_dim else h

    @torch.no_grad()
    def clean_passes(self, rows: torch.Tensor | None = None):
        """The clean path in eval mode over the training images ``rows`` (all: ``None``), ``views.eval_batch()`` (up
        to 1024) at a time: yields ``(x, blocks, z)``, the prepared images, the encoder's block outputs and the
        embedding, for the whole-set targets and the held-out scores; training mode comes back when the passes end."""
        was, device = self.training, self.head.weight.device
        self.eval()
        try:
            for c in (torch.arange(len(self.images)) if rows is None else rows).split(self.views.eval_batch()):
                x = self.views.prepare(self.images[c].to(device))
                blocks, h = encode_blocks(self.backbone, x)
                yield x, blocks, self.embed_clusters(h)
        finally:
            self.train(was)

    @torch.no_grad()
    def whole_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean embeddings z and soft assignments p of every training image (eval mode)."""
        z = torch.cat([z.float() for _, _, z in self.clean_passes()])
        return z, torch.softmax(self.head(z.to(self.head.weight.dtype)).float(), dim=1)

    @torch.no_grad()
    def init_head_by_clustering(self) -> str:
        """AC-PIC or k-means on the clean embeddings; head = unit-norm centroids, bias 0 (``Clustering``,
        ``build_eml``). Under ``--init-clustering auto``, an AC-PIC result with a cluster smaller than
        ``ACPIC_MIN_SHARE`` of the balanced size n / K (a handful of outliers that nothing else links to, which
        DEPICT's balanced target cannot grow into a cluster) is replaced by k-means, the official code's choice for
        every set but USPS and MNIST-test. Returns what initialised the head, for the run's events."""
        z = self.whole_set()[0].cpu()
        used = "AC-PIC" if self.init_clustering == "acpic" else "k-means"
        labels = None
        if self.init_clustering == "acpic":
            labels = acpic(z.double().numpy(), self.n_clusters)
            sizes = np.bincount(labels, minlength=self.n_clusters)
            floor = ACPIC_MIN_SHARE * len(z) / self.n_clusters
            if self.init_clustering_auto and sizes.min() < floor:
                used = (f"k-means (AC-PIC left clusters of {sorted(sizes.tolist())[:3]}... images, below "
                        f"{ACPIC_MIN_SHARE:.0%} of the balanced {len(z) / self.n_clusters:.0f}: outliers, "
                        "not clusters)")
                labels = None
        if labels is None:
            from sklearn.cluster import KMeans

            labels = KMeans(self.n_clusters, n_init=self.kmeans_restarts, random_state=0).fit_predict(z.numpy())
        labels = torch.as_tensor(labels).long()
        centers = torch.stack([z[labels == k].mean(0) if (labels == k).any() else z.mean(0)
                               for k in range(self.n_clusters)])
        self.head.weight.copy_(F.normalize(centers, dim=1).to(self.head.weight))
        self.head.bias.zero_()
        self.labels.copy_(labels)
        return used

    def network_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.state_dict().items()
                if k.split(".")[0] in ("backbone", "embedding", "decoder", "head")}

    @torch.no_grad()
    def holdout_nmi(self) -> float:
        """NMI between the head's clean predictions and the initial clustering's labels on the held-out images
        (``train_RLC``'s ``val_nmi``: unsupervised, no class labels)."""
        from sklearn.metrics import normalized_mutual_info_score

        rows = self.holdout.nonzero().flatten()
        pred = torch.cat([self.head(z).argmax(1).cpu() for _, _, z in self.clean_passes(rows)])
        return float(normalized_mutual_info_score(self.labels[rows].numpy(), pred.numpy()))

    @torch.no_grad()
    def holdout_reconstruction(self) -> float:
        """The clean reconstruction loss of the held-out images (``train_MdA_val``'s ``validation_error``: the loss
        of :meth:`reconstruction` without corruption, eval mode)."""
        rows = self.holdout.nonzero().flatten()
        total = sum(float(self.reconstruction(x, blocks, z)) * len(x) for x, blocks, z in self.clean_passes(rows))
        return total / len(rows)

    def draw_holdout(self, generator: torch.Generator) -> None:
        """The held-out 10% that pre-training's and the init stage's early stops score (officially both
        ``train_test_split(..., test_size=0.10, random_state=42)``: the same split twice)."""
        n = len(self.images)
        self.holdout.zero_()
        self.holdout[torch.randperm(n, generator=generator)[: max(1, round(INIT_HOLDOUT * n))]] = True

    def keep_if_best(self, improved: bool, score: float, best: torch.Tensor, since: torch.Tensor) -> None:
        """An early-stopped stage's epoch score: on improvement record it and keep the weights in memory, else count
        one more epoch without improvement."""
        if improved:
            best.fill_(score)
            since.zero_()
            self.best_state = self.network_state()
        else:
            since.add_(1)

    def pretrain_step_epoch(self) -> bool:
        """Pre-training's epoch boundary under ``--pretrain-patience``: score the held-out reconstruction, keep the
        best weights; True when it has not improved for more than the patience."""
        loss = self.holdout_reconstruction()
        self.epoch_logs = {"pretrain_val_reconstruction": loss}
        self.keep_if_best(loss < float(self.pretrain_best), loss, self.pretrain_best, self.pretrain_since)
        if int(self.pretrain_since) > self.pretrain_patience:
            self.epoch_notes.append(f"pre-training ends early: the held-out reconstruction ({loss:.4f}) has not "
                                    f"improved for {int(self.pretrain_since)} epochs")
            return True
        return False

    def init_step_epoch(self) -> bool:
        """The init stage's epoch boundary: score the held-out NMI, keep the best weights; True when it stops."""
        nmi = self.holdout_nmi()
        self.epoch_logs = {"init_val_nmi": nmi}
        self.keep_if_best(nmi > float(self.init_best), nmi, self.init_best, self.init_since)
        self.init_left.sub_(1)
        if int(self.init_left) <= 0 or int(self.init_since) > self.init_patience >= 0:
            if self.init_patience >= 0 and self.best_state is not None:
                self.load_state_dict(self.best_state, strict=False)
                self.epoch_notes.append(f"init stage ends: held-out NMI to the initial labels {nmi:.4f}, best "
                                        f"{float(self.init_best):.4f}, whose weights are restored")
            self.best_state = None
            return True
        return False

    def batch_order(self, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A random permutation, as the engine's; at the epoch boundary it also advances DEPICT's stages and builds
        the epoch's whole-set target. During an early-stopped stage (pre-training under ``--pretrain-patience``, the
        init stage) the batches leave out the held-out images (a permutation of the rest, continued into a second
        one to fill the epoch's steps)."""
        n, stage_before = len(self.images), int(self.stage)
        self.epoch_start, self.epoch_logs, self.epoch_notes = int(self.steps_done), {}, []
        pretraining_ends = int(self.stage) == PRETRAIN and int(self.steps_done) >= self.pretrain_steps
        if int(self.stage) == PRETRAIN and self.pretrain_patience >= 0:
            if not self.holdout.any():
                self.draw_holdout(generator)
            elif int(self.steps_done) > 0:
                pretraining_ends = self.pretrain_step_epoch() or pretraining_ends
            if pretraining_ends and self.best_state is not None:
                self.load_state_dict(self.best_state, strict=False)
                self.epoch_notes.append(f"pre-training's best held-out reconstruction {float(self.pretrain_best):.4f}"
                                        " (its weights are restored)")
                self.best_state = None
        if pretraining_ends:
            name = self.init_head_by_clustering()
            self.stage.fill_(INIT)
            self.init_left.fill_(self.init_epochs)
            stop = (f"at most {self.init_epochs} epoch(s), early-stopped on the NMI to its labels of a held-out "
                    f"{INIT_HOLDOUT:.0%} (patience {self.init_patience})" if self.init_patience >= 0
                    else f"{self.init_epochs} epoch(s)")
            self.epoch_notes.append(f"clustering begins: head initialised by {name} on the embeddings of {n} images; "
                                    f"cross-entropy on its labels for {stop}, then the DEPICT targets")
            if self.init_patience >= 0 and self.init_epochs > 0:
                if not self.holdout.any():
                    self.draw_holdout(generator)
                self.init_best.fill_(self.holdout_nmi())
                self.init_since.zero_()
                self.best_state = self.network_state()
                self.epoch_logs = {"init_val_nmi": float(self.init_best)}
        elif int(self.stage) == INIT:
            if self.init_patience >= 0:
                if self.init_step_epoch():
                    self.stage.fill_(DEPICT_STAGE)
            else:
                self.init_left.sub_(1)
        if int(self.stage) == INIT and int(self.init_left) <= 0:
            self.stage.fill_(DEPICT_STAGE)
        stage = int(self.stage)
        if stage != stage_before and self.stage_optimizer == "fresh":
            self.fresh_optimizer_due = True
            self.epoch_notes.append(f"the {('init', 'DEPICT')[stage - INIT]} stage starts a fresh optimiser "
                                    "(--stage-optimizer fresh)")
        if (stage == PRETRAIN and self.pretrain_patience >= 0) or (stage == INIT and self.init_patience >= 0):
            pool = (~self.holdout).nonzero().flatten()
            reps = -(-steps * batch_size // len(pool))
            self.order = torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(reps)])
            self.order = self.order[: steps * batch_size].view(steps, -1)
        else:
            self.order = torch.randperm(n, generator=generator)[: steps * batch_size].view(steps, -1)
        if int(self.stage) == DEPICT_STAGE and not bool(self.converged):
            p = self.whole_set()[1].cpu()
            q = depict_target(p.double(), self.target).float()
            change = float((q - self.q).pow(2).mean())
            self.q.copy_(q)
            # how far the clustering stage has taken the head from the first clustering (its labels set the head's
            # cluster ids, so no matching is needed): near 0 when the balanced targets only sharpen the clusters
            self.epoch_logs.update({"target_change": change, "target_clusters_used":
                                    (torch.bincount(q.argmax(1), minlength=self.n_clusters) > 0).float().mean().item(),
                                    "moved_from_init": (p.argmax(1) != self.labels.cpu()).float().mean().item()})
            if change < CONVERGED_MSE:
                self.converged.fill_(True)
                self.epoch_notes.append(f"DEPICT targets converged (mean squared change {change:.2e} < 1e-7): the "
                                        "target is held from here on")
        return self.order

    def batch_indices(self, step: int) -> torch.Tensor:
        """Training-set indices of this process's share of the batch of global step ``step``."""
        if self.order is None:
            raise RuntimeError("DEPICT's clustering steps need the epoch's batch order: call batch_order first")
        return self.order[step - self.epoch_start][process_group.rank()::process_group.world_size()]

    def reconstruction(self, x: torch.Tensor, clean_blocks: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """``||x - x^~||^2 + 0.1 sum_l ||e_l - d_l||^2`` (means over elements, ``build_MdA``'s ``loss_recons``):
        the decoder reads ``z`` (corrupted in training, clean for the held-out score) and its reconstruction of each
        block is compared with the clean block output ``e_l``."""
        x_hat, *hidden = self.decoder(z, [tuple(b.shape[1:]) for b in clean_blocks] + [tuple(x.shape[1:])])
        return self.rec_weight * F.mse_loss(x_hat.float(), x.float()) + self.hidden_weight * sum(
            F.mse_loss(d.float(), e.float()) for d, e in zip(hidden, clean_blocks))

    def step(self, images: torch.Tensor, step: int, generator: torch.Generator) -> StepOutput:
        self.steps_done.fill_(step + 1)
        x = self.views.prepare(images)
        # the hidden reconstructions' targets, with their gradient as officially (build_MdA's tar1, tar2): it keeps
        # the encoder's un-normalised features from growing until the tanh embedding saturates to one point
        clean_blocks, _ = encode_blocks(self.backbone, x)
        noisy_blocks, h_noisy = encode_blocks(self.backbone, x, self.dropouts, generator)
        z_noisy = self.embed_clusters(h_noisy)
        rec = self.reconstruction(x, clean_blocks, z_noisy)
        stage = int(self.stage)
        logs = {"reconstruction": rec.detach(), "stage": float(stage), **self.epoch_logs}
        notes, self.epoch_notes = self.epoch_notes, []
        fresh, self.fresh_optimizer_due = self.fresh_optimizer_due, False
        if stage == PRETRAIN:
            return StepOutput(loss=rec, logs=logs, notes=notes)
        rows = self.batch_indices(step).to(self.q.device)
        target = F.one_hot(self.labels[rows], self.n_clusters).float() if stage == INIT else self.q[rows]
        log_p = F.log_softmax(self.head(z_noisy).float(), dim=1)
        cluster_loss = -(target.to(log_p.device) * log_p).sum(1).mean()
        with torch.no_grad():
            used = torch.bincount(log_p.argmax(1), minlength=self.n_clusters) > 0
        logs.update(cluster_loss=cluster_loss.detach(), clusters_used=used.float().mean())
        return StepOutput(loss=cluster_loss + rec, logs=logs, notes=notes, fresh_optimizer=fresh)

    @torch.no_grad()
    def assign(self, h: torch.Tensor) -> torch.Tensor | None:
        if int(self.stage) == PRETRAIN:
            return None  # the head is not initialised yet
        return self.head(self.embed_clusters(h)).argmax(1)
