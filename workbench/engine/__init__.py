"""Training engine: a plain PyTorch loop with callbacks, checkpoints, device/AMP selection."""
from workbench.engine.callbacks import Callback, LiveDiagnostics, EpochEvaluation
from workbench.engine.trainer import Trainer, TrainResult, NonFiniteLoss
from workbench.engine.device import resolve_device

__all__ = ["Callback", "LiveDiagnostics", "EpochEvaluation", "Trainer", "TrainResult", "NonFiniteLoss",
           "resolve_device"]
