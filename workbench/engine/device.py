"""Device selection, mixed precision and compilation."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil

import torch

from workbench.config import PRECISIONS, ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not there is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but torch sees no CUDA GPU here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device='mps' was asked for but MPS is not available; use --device cpu or auto")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX): there bf16 autocast runs the
    convolutions 1.7x (2.7x with channels-last) faster than fp32; elsewhere it is emulated and slower."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


CPU_BF16_MIN_SIZE = 16  # px: below it bf16 gains nothing on a CPU (8 px digits: 1.45x with channels-last either way)


def resolve_precision(precision: str, device: torch.device, bf16_on_cpu: bool = True,
                      image_size: int | None = None) -> torch.dtype | None:
    """The autocast dtype of ``--precision`` on ``device`` (``None``: fp32, no autocast).

    ``auto``: bf16 on a CUDA GPU that has it, else fp16 (with a gradient scaler); bf16 on a CPU with native bf16
    when the task allows it (``bf16_on_cpu``; the low-light networks' iterated curves stay fp32) and the images
    are at least ``CPU_BF16_MIN_SIZE`` px (28 px: the SimCLR step 1.9-2.7x faster; 8 px: no faster, and bf16 on
    a CPU runs on one thread fewer, see :func:`cpu_threads`); fp32 elsewhere (MPS included). An explicit choice
    the device cannot run is a :class:`ConfigError` naming it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError(f"precision='fp16' needs a CUDA GPU (this run is on {device.type}); use bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision='bf16': this GPU has no bf16; use fp16 or fp32")
        if device.type not in ("cuda", "cpu"):
            raise ConfigError(f"precision='bf16' runs on cuda or cpu, not {device.type}; use fp32")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    small = image_size is not None and image_size < CPU_BF16_MIN_SIZE
    if device.type == "cpu" and bf16_on_cpu and not small and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device`` (from :func:`resolve_precision`); a no-op for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def step_rng(seed: int, step: int, rank: int, device: torch.device):
    """Torch's global generators (CPU, and ``device`` on a GPU) seeded from ``(seed, step, rank)`` for one step,
    then put back as they were.

    The methods draw their own randomness from the trainer's generators, but layers such as dropout or drop path
    (GDC's ``StochasticDepth``) draw from the global ones, which nothing else seeds: two runs with the same seed
    drew different drop-path masks (TML's PSNR after 6 epochs ranged from 17.6 to 19.7 dB at seed 0). Seeding per
    step makes such draws the same in every run with the same seed, in a resumed run as in an uninterrupted one,
    and whatever else the process draws between steps (diagnostics, a notebook) does not shift them; the caller's
    own stream is restored after each step."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        s = (seed * 1_000_003 + step * 8191 + rank) % (2 ** 63)
        torch.default_generator.manual_seed(s)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(s)
        yield


def cpu_threads(threads: int, device: torch.device, dtype: torch.dtype | None) -> int | None:
    """The intra-op threads a training run on ``device`` uses (``None``: leave torch's setting alone).

    ``threads`` > 0 is the user's choice. Automatic: with bf16 autocast on a CPU, all cores but one. Measured on
    a 2-core machine with other work running (SimCLR step, SmallConvNet, 2 x 256 views of 28 px): bf16 with
    channels-last 272 ms on 1 thread against 4,346 ms on 2 threads, fp32 510 ms on either; the bf16 kernels
    (AMX / AVX512-BF16) stall when their threads share busy cores, and the free core serves the dashboard and
    the data."""
    if device.type != "cpu":
        return None
    if threads:
        return threads
    if dtype == torch.bfloat16:
        return max(1, (os.cpu_count() or 1) - 1)
    return None


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    return dtype == torch.float16


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here (``None``: it can). The inductor needs a C++ compiler
    for CPU kernels and triton for GPU ones."""
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python"
    except Exception as e:  # pragma: no cover - a broken install
        return f"torch.compile is unavailable ({type(e).__name__})"
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++")):
        return "no C++ compiler (g++, c++ or clang++) on PATH for the CPU kernels"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if device.type not in ("cpu", "cuda"):
        return f"torch.compile is not used on {device.type}"
    return None


def compile_forward(module: torch.nn.Module, on_failure=None) -> None:
    """``module``'s forward compiled by ``torch.compile``; its hooks, parameters and state-dict keys unchanged
    (:func:`uncompile_forward` undoes it). Compilation happens at the first call (training or evaluation): if the
    compiler fails there, the module goes back to eager for good, ``on_failure(error)`` is told, and the call is
    answered eagerly."""
    compiled, eager = torch.compile(module.forward), module.forward

    def forward(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except Exception as e:
            if not is_compile_error(e):
                raise
            uncompile_forward(module)
            if on_failure is not None:
                on_failure(e)
        return eager(*args, **kwargs)

    module.forward = forward


def uncompile_forward(module: torch.nn.Module) -> None:
    module.__dict__.pop("forward", None)


def is_compile_error(e: BaseException) -> bool:
    """An error raised by the compiler stack (dynamo, inductor, triton), not by the model itself."""
    return any(c.__module__.startswith(("torch._dynamo", "torch._inductor", "triton")) for c in type(e).__mro__)
