"""The contrastive-learning workbench.

Data flows one way: ``data -> methods -> engine -> diagnostics -> runs -> readers`` (app, notebooks, CLI).
The core package never imports streamlit, ipywidgets or plotly.

Quick start::

    import workbench
    result = workbench.train(method="simclr", dataset="digits", epochs=5)
    reader = workbench.runs.RunReader(result.run_dir)
    probes = workbench.evaluate(result.run_dir)      # linear, naive Bayes, label budgets, few-shot, spectrum
    probes.table                                     # a DataFrame, one row per probe / budget / block
"""
from workbench.config import ConfigError
from workbench.engine.config import TrainConfig
from workbench.engine.api import train, start_training
from workbench.engine.evaluate import evaluate_run as evaluate

__all__ = ["TrainConfig", "ConfigError", "train", "start_training", "evaluate"]
__version__ = "0.1.0"
