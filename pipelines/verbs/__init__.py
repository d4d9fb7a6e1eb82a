"""The verbs of the command line, one module each: `run_<verb>` is what `leadscore <verb>` calls. Each returns the
summary the CLI prints (or prints as JSON); `echo` receives the human-readable lines.

The names are imported on first use, so that one verb never pays for importing the others.
"""

import importlib

_HOMES = {
    "run_build_training_set": "build_training_set",
    "run_explain": "explain",
    "run_grade": "grade",
    "run_grade_accounts": "accounts",
    "run_monitor_verb": "monitor",
    "run_predict": "predict",
    "run_predict_accounts": "accounts",
    "run_train": "train",
    "run_train_accounts": "accounts",
    "run_validation": "validate",
    "run_walk_forward": "backtest",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
