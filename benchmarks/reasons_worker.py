"""Reasons benchmark step, in its own process: exact SHAP values of the predict benchmark's champion, LightGBM's
`pred_contrib` against models.treeshap, on the same rows and the same two threads."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.predict_worker import _config
from leadscore.pipelines.config import load_settings


def feature_matrix(data: str, store: str, rows: int):
    """The champion and the feature matrix of the sample's open leads, repeated up to `rows` rows."""
    from leadscore.pipelines.verbs.scoring import champion_open_matrix

    model, X = champion_open_matrix(load_settings(_config(Path(store), data)))
    unique = len(X)
    X = X.iloc[np.arange(rows) % unique].reset_index(drop=True)
    return model, X, unique


def reasons(data: str, store: str, rows: str, threads: str = "2") -> dict:
    from leadscore.models import treeshap

    n_threads = int(threads)
    model, X, unique = feature_matrix(data, store, int(rows))
    booster, trees = model.booster_, model.best_iteration_
    prepared = model._prepare(X)
    start = time.perf_counter()
    import numba  # noqa: F401  (its import is part of the first call's cost, counted here)

    tables = treeshap.cached_tables(booster, num_iteration=trees)
    treeshap.booster_contributions(booster, prepared.head(1000), num_iteration=trees, n_threads=n_threads)
    first_call_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = booster.predict(prepared, pred_contrib=True, num_iteration=trees, num_threads=n_threads)
    pred_contrib_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = treeshap.booster_contributions(booster, prepared, num_iteration=trees, n_threads=n_threads)
    ours_s = time.perf_counter() - start
    leaves = np.diff(tables.tree_leaf_start)
    return {
        "rows": len(X),
        "unique_rows": unique,
        "trees": tables.n_trees,
        "max_leaves": int(leaves.max()) if len(leaves) else 1,
        "mean_leaves": float(leaves.mean()) if len(leaves) else 1.0,
        "features": tables.n_features,
        "categorical_splits": int((tables.node_kind == treeshap.CATEGORICAL).sum()),
        "splits": len(tables.node_kind),
        "threads": n_threads,
        "first_call_s": first_call_s,
        "pred_contrib_s": pred_contrib_s,
        "ours_s": ours_s,
        "pred_contrib_rows_per_s": len(X) / pred_contrib_s,
        "ours_rows_per_s": len(X) / ours_s,
        "ratio": pred_contrib_s / ours_s,
        "max_abs_diff": float(np.abs(ours - reference).max()),
    }


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    print(json.dumps({"reasons": reasons}[step](*args)))
