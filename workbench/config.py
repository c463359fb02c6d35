"""Run options: dataclasses whose fields carry their help text and allowed values.

One source of truth. The CLI flags and ``--help`` (:mod:`workbench.cli`), the app's "new run" form and the
validation are all generated from these fields. :class:`CommonOptions` holds what every run has (data,
optimisation, logging, device). Each task declares its own options (e.g. the backbone and probes of representation
learning), and each method declares a small dataclass of its own next to its code, with the paper's names and
defaults. A run's configuration composes the three (:class:`workbench.engine.config.TrainConfig`). A method may
also change the defaults of common options to its paper's (``Method.common_defaults``, e.g. Zero-DCE's optimiser):
the CLI, the app's form and the run's stored configuration all show the method's values. That
composition happens above the methods: this module imports no method.

    @dataclass
    class Options(MethodOptions):
        tau: float = option(0.2, "temperature of NT-Xent", gt=0, note="typical 0.05 to 1.0")
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and the allowed values."""


def option(default: Any, help: str = "", *, ge=None, gt=None, le=None, lt=None, choices: tuple | None = None,
           note: str = "", form: bool = True):
    """A dataclass field with its help text and allowed values: ``ge``/``gt``/``le``/``lt`` bounds, ``choices``, a
    ``note`` shown with the allowed range, ``form=False`` to keep it out of the app's "new run" form."""
    return field(default=default, metadata=dict(help=help, ge=ge, gt=gt, le=le, lt=lt, choices=choices, note=note,
                                                form=form))


RUN_NAME_MAX = 100
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_run_name(name: str) -> str:
    """A run name is one folder inside the runs folder: letters, digits, ``.``, ``_`` and ``-``, not starting
    with ``.`` (so never ``.``, ``..`` or hidden), at most ``RUN_NAME_MAX`` characters. The CLI, the app's form
    and the notebooks all pass through here (``CommonOptions``)."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name) or len(name) > RUN_NAME_MAX:
        why = ("is longer than %d characters" % RUN_NAME_MAX if isinstance(name, str) and len(name) > RUN_NAME_MAX
               else "must be one folder name of letters, digits, '.', '_' and '-', not starting with '.'")
        raise ConfigError(f"run_name={name!r} {why} (it names a folder inside the runs folder)")
    return name


@dataclass(frozen=True)
class Spec:
    """One option as the CLI, the app and validation see it."""

    name: str
    type: type  # bool, int, float or str
    optional: bool  # None is allowed (an automatic default)
    default: Any
    help: str = ""
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    choices: tuple | None = None
    note: str = ""
    form: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words: ``an integer >= 1, or None (automatic)``."""
        if self.choices:
            text = f"one of {', '.join(map(str, self.choices))}"
        else:
            text = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[self.type]
            bounds = [f"{op} {v}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                      if v is not None]
            if bounds:
                text += " " + " and ".join(bounds)
        if self.optional:
            text += ", or None (automatic)"
        return f"{text} ({self.note})" if self.note else text

    def coerce(self, value: Any) -> Any:
        """``value`` as this option's type (``50.0`` for an integer option is 50), or a :class:`ConfigError`."""
        if value is None and self.optional:
            return None
        ok = False
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{self.name}={value!r} is not allowed: {self.allowed()}")
        return value

    def check(self, value: Any) -> None:
        if value is None and self.optional:
            return
        inside = ((self.choices is None or value in self.choices) and (self.ge is None or value >= self.ge)
                  and (self.gt is None or value > self.gt) and (self.le is None or value <= self.le)
                  and (self.lt is None or value < self.lt))
        if not inside:
            raise ConfigError(f"{self.name}={value!r} is not allowed: {self.allowed()}")


@lru_cache(maxsize=None)
def specs(cls: type) -> tuple[Spec, ...]:
    """The :class:`Spec` of every field of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        md = dict(f.metadata)
        out.append(Spec(f.name, base, optional, f.default, **{k: md[k] for k in md if k in Spec.__annotations__}))
    return tuple(out)


@dataclass
class Options:
    """Base of every options dataclass: values are coerced to their type and checked against their range."""

    def __post_init__(self):
        for s in specs(type(self)):
            value = s.coerce(getattr(self, s.name))
            s.check(value)
            setattr(self, s.name, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MethodOptions(Options):
    """A method's own options (none by default): subclass it next to the method, with the paper's names."""


@dataclass
class CommonOptions(Options):
    """What every run has, whatever its task and method."""

    method: str = option("simclr", "the method to train; its own options are listed under its name")
    dataset: str | None = option(None, "dataset name (see `workbench datasets`) or folder:<path>; default: the "
                                 "task's embedded default (digits, or photos for low-light methods)")
    data_root: str = option("data", "where datasets are cached or downloaded")
    download: bool = option(False, "allow downloading the dataset (needs internet)")
    epochs: int = option(30, "epochs to train", ge=1, le=100_000)
    batch_size: int | None = option(None, "the global batch; default: the task's (256 for representation "
                                    "learning, 16 for low-light)", ge=2, le=65_536, note="contrastive methods need negatives")
    optimizer: str = option("adamw", "the optimiser (adam: L2 decay added to the gradient, torch.optim.Adam)",
                            choices=("adamw", "adam", "sgd", "lars"))
    lr: float | None = option(None, "peak learning rate; default: 1e-3 for adamw and adam, 0.06 x batch/256 for sgd, "
                              "0.3 x batch/256 for lars", gt=0, le=10)
    weight_decay: float | None = option(None, "weight decay; default: 1e-4 for adamw and adam, 5e-4 for sgd, 1e-6 "
                                        "for lars", ge=0, le=1)
    grad_clip: float = option(0.0, "clip the global gradient norm to this before each step (0: off)", ge=0)
    momentum: float = option(0.9, "SGD / LARS momentum", ge=0, lt=1)
    warmup_epochs: float = option(1.0, "linear learning-rate warm-up before the --lr-schedule", ge=0, le=10_000)
    lr_schedule: str = option("cosine", "the learning rate after the warm-up: 'cosine' (decays to 0 at the last "
                              "step) or 'constant' (the peak lr to the end, as DEPICT's and Zero-DCE's official "
                              "training)", choices=("cosine", "constant"))
    precision: str = option("auto", "arithmetic of the model's forward and backward passes: auto (bf16 autocast on "
                            "a GPU with bf16, fp16 on older GPUs, bf16 on a CPU with native bf16 (AVX512-BF16 or "
                            "AMX) for representation learning on images from 16 px, fp32 otherwise), fp32, bf16, or fp16 (CUDA only)",
                            choices=PRECISIONS, note="losses, similarity scores, diagnostics and probes are fp32")
    channels_last: bool = option(True, "keep the convolution weights in channels-last memory format (measured "
                                 "1.3-1.45x on CPU, the usual layout for tensor cores on GPU)")
    threads: int = option(0, "intra-op CPU threads of the training process (0: automatic: with bf16 autocast on "
                          "a CPU, one core is left free, else torch's default)", ge=0, le=1024,
                          note="bf16 on a CPU measured 2x faster on 1 thread than fp32, and 16x slower on 2 "
                               "threads sharing 2 busy cores", form=False)
    compile: bool = option(False, "torch.compile the backbone (falls back to eager with a warning event when the "
                           "compiler is missing); its compilation time is logged as an event", form=False)
    device: str = option("auto", "auto | cpu | cuda | cuda:N | mps")
    seed: int = option(0, "seed of the weights, the batch order, the augmentations and every other draw of a step",
                       ge=0, le=2 ** 53 - 1,
                       note="at most 2^53 - 1, the largest integer a browser form holds exactly")
    log_every: int = option(10, "steps between live diagnostics (pos/neg histograms, geometry)", ge=1, le=1_000_000)
    eval_every: int = option(1, "epochs between evaluations (kNN and snapshot, or PSNR/SSIM)", ge=1, le=100_000)
    runs_dir: str = option("runs", "the folder that holds the runs", form=False)
    run_name: str | None = option(None, "name of the run folder under --runs-dir (default: method-dataset-time)",
                                  note=f"letters, digits, '.', '_', '-'; not starting with '.'; at most "
                                       f"{RUN_NAME_MAX} characters")
    resume: bool = option(False, "continue the run --run-name from its last checkpoint", form=False)
    progress: bool = option(True, "show a progress bar", form=False)

    def __post_init__(self):
        super().__post_init__()
        if self.run_name is not None:
            check_run_name(self.run_name)

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        batch = self.batch_size or 256
        return {"adamw": 1e-3, "adam": 1e-3, "sgd": 0.06 * batch / 256, "lars": 0.3 * batch / 256}[self.optimizer]

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return {"adamw": 1e-4, "adam": 1e-4, "sgd": 5e-4, "lars": 1e-6}[self.optimizer]
