"""Training: TOML configurations, the loop of the paper's protocol, checkpoints and result files.

    from hamecho.training import load_config, run_one, read_result
    config = load_config("configs/linear/JapaneseVowels.toml", {"train.steps": 2000})
    result = read_result(run_one(config, "rhel", seed=2345))

Modules, in the order they build on each other: ``config`` (the typed configuration), ``state`` (the
loop state a checkpoint holds), ``evaluation`` (evaluation and early stopping), ``checkpoints``,
``results`` (paths and result files) and ``loop`` (:func:`run_one`, :func:`train_config`).
"""
from .checkpoints import load_checkpoint
from .config import Config, ConfigError, config_from_dict, load_config
from .evaluation import metric_name
from .loop import Interrupted, build_model, choices_for, load_data, optimizer_for, run_one, train_config
from .results import RESULT_FORMAT, format_metric, read_result, run_paths
from .state import LoopState

__all__ = ["Config", "ConfigError", "Interrupted", "LoopState", "RESULT_FORMAT", "build_model", "config_from_dict",
           "format_metric", "load_checkpoint", "load_config", "load_data", "metric_name", "optimizer_for",
           "choices_for", "read_result", "run_one", "run_paths", "train_config"]
