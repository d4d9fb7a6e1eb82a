"""Exact path-dependent TreeSHAP for LightGBM boosters, in time linear in the depth of each leaf.

The values are those of LightGBM's `predict(pred_contrib=True)` (Lundberg's `tree_path_dependent` TreeSHAP, with
data counts as covers), computed another way, after the idea of WOODELF: for a leaf with value `v` and the set `F`
of distinct features split on along its path, feature `i` in `F` receives

    v * (o_i - z_i) * sum over S within F minus {i} of |S|! (|F| - |S| - 1)! / |F|! * prod_{j in S} o_j
                                                        * prod_{j not in S, j != i} z_j

where `z_j` is the product of the cover fractions (child count / parent count) of the path's splits on `j` and
`o_j` is 1 when the row satisfies every split on `j` along the path, else 0. Since the `o`'s are bits, a leaf's
whole contribution vector depends only on which of its at most `depth` features the row satisfies: a table of
`2 ** |F|` rows per leaf, built once per model. Scoring a row is then, per tree, one decision per split, one bit
pattern per leaf, and `|F|` additions per leaf: trees x leaves x depth, against trees x leaves x depth squared for
LightGBM's recursion. The decisions are LightGBM's own (`Tree::NumericalDecision`, `Tree::CategoricalDecision`):
numeric `x <= threshold` with the split's missing-value rule, categorical "category in the split's set goes left",
so a model with native categorical splits is explained as it is, without re-encoding.

Rows are scored by a numba kernel (compiled once, cached on disk) that releases the GIL, so threads share the rows.
Models this module cannot explain (linear trees, several trees per iteration, leaves whose tables would be too
large) raise `UnsupportedModelError`; the caller falls back to `pred_contrib`.
"""

from __future__ import annotations

import logging
import math
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np

log = logging.getLogger(__name__)

# LightGBM's kZeroThreshold (1e-35f as a double): smaller magnitudes are read as 0 and count as "zero" for splits
# whose missing type is Zero
ZERO_THRESHOLD = float(np.float32(1e-35))
MAX_TABLE_VALUES = 1 << 25  # 256 MiB of float64 tables at most; deeper models fall back to pred_contrib
NUMERIC_NONE, NUMERIC_ZERO, NUMERIC_NAN, CATEGORICAL = 0, 1, 2, 3
_MISSING_KIND = {"None": NUMERIC_NONE, "Zero": NUMERIC_ZERO, "NaN": NUMERIC_NAN}


class UnsupportedModelError(ValueError):
    """A booster whose trees this module does not explain (the caller uses LightGBM's pred_contrib instead)."""


@dataclass(frozen=True)
class ShapTables:
    """A booster's trees flattened into arrays, with each leaf's table of contributions per bit pattern."""

    n_features: int
    n_trees: int
    n_leaves: int
    base_value: float  # the expected value: sum over trees of the count-weighted mean leaf value
    tree_node_start: np.ndarray  # int32 (trees + 1): the tree's splits are nodes [start, next start)
    tree_leaf_start: np.ndarray  # int32 (trees + 1)
    node_feature: np.ndarray  # int32 per split
    node_threshold: np.ndarray  # float64 per split (numeric)
    node_kind: np.ndarray  # int8 per split: NUMERIC_NONE / NUMERIC_ZERO / NUMERIC_NAN / CATEGORICAL
    node_default_left: np.ndarray  # bool per split: where a missing value goes (numeric splits)
    node_cat_start: np.ndarray  # int32 per split: its category bitset is cat_words[start:end]
    node_cat_end: np.ndarray
    cat_words: np.ndarray  # uint32 bitsets of the categories that go left
    leaf_step_start: np.ndarray  # int32 (leaves + 1): the leaf's path is steps [start, next start)
    step_node: np.ndarray  # int32: the split, numbered within its tree
    step_left: np.ndarray  # bool: the path goes left there
    step_bit: np.ndarray  # int32: the position of the split's feature within the leaf's features
    leaf_feature_start: np.ndarray  # int32 (leaves + 1): leaf_features[start:next] = the leaf's distinct features
    leaf_features: np.ndarray  # int32
    leaf_table_start: np.ndarray  # int64 per leaf: table[start + pattern * k + j] for feature j of k
    table: np.ndarray  # float64


# -- building the tables --------------------------------------------------------------------------------------------
def shap_tables(booster: lgb.Booster, *, num_iteration: int | None = None) -> ShapTables:
    """Flatten the trees `Booster.predict(num_iteration=...)` would use into ShapTables: the first `num_iteration`
    (None: the booster's best iteration, if any; <= 0: all)."""
    if num_iteration is None:
        num_iteration = booster.best_iteration
    model = booster.dump_model(num_iteration=num_iteration if num_iteration > 0 else -1)
    if model.get("num_tree_per_iteration", 1) != 1:
        raise UnsupportedModelError(f"{model['num_tree_per_iteration']} trees per iteration (multiclass)")
    n_features = int(model["max_feature_idx"]) + 1
    builder = _Builder()
    for tree in model["tree_info"]:
        builder.add_tree(tree["tree_structure"])
    return builder.finish(n_features)


class _Builder:
    """Walks each tree once, collecting its splits, the paths of its leaves and their cover fractions."""

    def __init__(self) -> None:
        self.tree_node_start, self.tree_leaf_start = [0], [0]
        self.node_feature, self.node_threshold, self.node_kind, self.node_default_left = [], [], [], []
        self.node_cat_start, self.node_cat_end, self.cat_words = [], [], []
        self.leaf_steps: list[list[tuple[int, bool, int]]] = []  # (split in tree, goes left, feature)
        self.leaf_z: list[dict[int, float]] = []  # feature -> zero fraction along the path
        self.leaf_value: list[float] = []
        self.base_value = 0.0

    def add_tree(self, root: dict) -> None:
        if "leaf_coeff" in root or "leaf_const" in root:
            raise UnsupportedModelError("linear trees (linear_tree=true)")
        first_node = len(self.node_feature)
        if "split_index" not in root:  # a single leaf: a constant, added to the base value
            self.base_value += float(root["leaf_value"])
        else:
            total = float(root["internal_count"])
            stack = [(root, [], {})]
            while stack:
                node, steps, z = stack.pop()
                if "split_index" not in node:
                    if "leaf_coeff" in node or "leaf_const" in node:
                        raise UnsupportedModelError("linear trees (linear_tree=true)")
                    self.leaf_steps.append(steps)
                    self.leaf_z.append(z)
                    self.leaf_value.append(float(node["leaf_value"]))
                    self.base_value += float(node["leaf_count"]) / total * float(node["leaf_value"])
                    continue
                index = self._add_split(node) - first_node
                feature = int(node["split_feature"])
                count = float(node["internal_count"])
                for child, left in ((node["right_child"], False), (node["left_child"], True)):
                    fraction = _count(child) / count
                    stack.append((child, [*steps, (index, left, feature)], {**z, feature: z.get(feature, 1.0) * fraction}))
        self.tree_node_start.append(len(self.node_feature))
        self.tree_leaf_start.append(len(self.leaf_value))

    def _add_split(self, node: dict) -> int:
        self.node_feature.append(int(node["split_feature"]))
        self.node_default_left.append(bool(node.get("default_left", False)))
        start = len(self.cat_words)
        if node["decision_type"] == "==":
            categories = [int(c) for c in str(node["threshold"]).split("||")]
            words = np.zeros(max(categories) // 32 + 1, dtype=np.uint32)
            for category in categories:
                words[category // 32] |= np.uint32(1 << (category % 32))
            self.cat_words.extend(words.tolist())
            self.node_kind.append(CATEGORICAL)
            self.node_threshold.append(0.0)
        elif node["decision_type"] == "<=":
            self.node_kind.append(_MISSING_KIND[node.get("missing_type", "None")])
            self.node_threshold.append(float(node["threshold"]))
        else:
            raise UnsupportedModelError(f"decision type {node['decision_type']!r}")
        self.node_cat_start.append(start)
        self.node_cat_end.append(len(self.cat_words))
        return len(self.node_feature) - 1

    def finish(self, n_features: int) -> ShapTables:
        sizes = [len(z) for z in self.leaf_z]
        total = sum((1 << k) * k for k in sizes)
        if total > MAX_TABLE_VALUES:
            raise UnsupportedModelError(
                f"tables of {total:,} values (paths with up to {max(sizes)} distinct features): too deep"
            )
        # bit position of each distinct feature: its order of first appearance along the path
        step_node, step_left, step_bit, features, step_start, feature_start = [], [], [], [], [0], [0]
        for steps, z in zip(self.leaf_steps, self.leaf_z, strict=True):
            order = {feature: position for position, feature in enumerate(z)}
            for index, left, feature in steps:
                step_node.append(index)
                step_left.append(left)
                step_bit.append(order[feature])
            features.extend(z)
            step_start.append(len(step_node))
            feature_start.append(len(features))
        table_start = np.zeros(len(sizes), dtype=np.int64)
        if sizes:
            table_start[1:] = np.cumsum([(1 << k) * k for k in sizes])[:-1]
        table = np.zeros(total, dtype=np.float64)
        values = np.asarray(self.leaf_value, dtype=np.float64)
        for k in sorted(set(sizes) - {0}):
            leaves = np.flatnonzero(np.asarray(sizes) == k)
            z = np.asarray([list(self.leaf_z[leaf].values()) for leaf in leaves], dtype=np.float64)
            block = leaf_tables(z, values[leaves])  # (leaves, patterns, k)
            where = table_start[leaves][:, None] + np.arange((1 << k) * k)[None, :]
            table[where] = block.reshape(len(leaves), -1)
        i32 = np.int32
        return ShapTables(
            n_features=n_features,
            n_trees=len(self.tree_node_start) - 1,
            n_leaves=len(sizes),
            base_value=self.base_value,
            tree_node_start=np.asarray(self.tree_node_start, dtype=i32),
            tree_leaf_start=np.asarray(self.tree_leaf_start, dtype=i32),
            node_feature=np.asarray(self.node_feature, dtype=i32),
            node_threshold=np.asarray(self.node_threshold, dtype=np.float64),
            node_kind=np.asarray(self.node_kind, dtype=np.int8),
            node_default_left=np.asarray(self.node_default_left, dtype=np.bool_),
            node_cat_start=np.asarray(self.node_cat_start, dtype=i32),
            node_cat_end=np.asarray(self.node_cat_end, dtype=i32),
            cat_words=np.asarray(self.cat_words, dtype=np.uint32),
            leaf_step_start=np.asarray(step_start, dtype=i32),
            step_node=np.asarray(step_node, dtype=i32),
            step_left=np.asarray(step_left, dtype=np.bool_),
            step_bit=np.asarray(step_bit, dtype=i32),
            leaf_feature_start=np.asarray(feature_start, dtype=i32),
            leaf_features=np.asarray(features, dtype=i32),
            leaf_table_start=table_start,
            table=table,
        )


def _count(node: dict) -> float:
    return float(node["internal_count"] if "split_index" in node else node["leaf_count"])


def leaf_tables(z: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Contributions of leaves sharing k distinct path features, for every pattern of satisfied features.

    z: (leaves, k) zero fractions; value: (leaves,). Returns (leaves, 2**k, k): entry [l, p, i] is the SHAP value
    of the leaf's feature i for a row that satisfies exactly the features whose bits are set in p.
    """
    n, k = z.shape
    patterns = (np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1  # (2**k, k) bits o_j
    ones = patterns.astype(np.float64)
    # weight of a subset S of the other k - 1 features: |S|! (k - |S| - 1)! / k!
    weight = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)])
    out = np.empty((n, 1 << k, k))
    for i in range(k):
        # coefficients of y^s in prod_{j != i} (o_j y + z_j): the sum over subsets S of size s
        coef = np.zeros((n, 1 << k, k))
        coef[..., 0] = 1.0
        for j in range(k):
            if j == i:
                continue
            shifted = np.zeros_like(coef)
            shifted[..., 1:] = coef[..., :-1] * ones[None, :, j, None]
            coef = coef * z[:, None, j, None] + shifted
        total = coef @ weight  # (n, 2**k)
        out[..., i] = value[:, None] * (ones[None, :, i] - z[:, None, i]) * total
    return out


# -- scoring rows --------------------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _goes_left(x, kind, threshold, default_left, cat_start, cat_end, cat_words):  # pragma: no cover - compiled
    if kind == CATEGORICAL:
        # LightGBM: NaN and negative values go right; otherwise the truncated value's bit in the set
        if np.isnan(x) or x <= -1.0 or x >= 2147483648.0:  # int(x) < 0 (C++ truncates toward zero)
            return False
        category = int(x)
        word = cat_start + category // 32
        if word >= cat_end:
            return False
        return ((cat_words[word] >> np.uint32(category % 32)) & np.uint32(1)) == np.uint32(1)
    if np.isnan(x):
        if kind == NUMERIC_NAN:
            return default_left
        x = 0.0
    if -ZERO_THRESHOLD <= x <= ZERO_THRESHOLD:
        if kind == NUMERIC_ZERO:
            return default_left
        x = 0.0
    return x <= threshold


@numba.njit(nogil=True, cache=True)
def _contributions(
    X, out, tree_node_start, tree_leaf_start, node_feature, node_threshold, node_kind, node_default_left,
    node_cat_start, node_cat_end, cat_words, leaf_step_start, step_node, step_left, step_bit, leaf_feature_start,
    leaf_features, leaf_table_start, table,
):  # pragma: no cover - compiled
    n_rows = X.shape[0]
    n_trees = tree_node_start.shape[0] - 1
    widest = 1
    for t in range(n_trees):
        widest = max(widest, tree_node_start[t + 1] - tree_node_start[t])
    left = np.empty(widest, dtype=np.bool_)
    block = 64  # rows scored together tree by tree: one tree's tables stay in cache for the block
    for first in range(0, n_rows, block):
        last = min(first + block, n_rows)
        for t in range(n_trees):
            n0 = tree_node_start[t]
            n1 = tree_node_start[t + 1]
            for r in range(first, last):
                for node in range(n0, n1):
                    left[node - n0] = _goes_left(
                        X[r, node_feature[node]], node_kind[node], node_threshold[node], node_default_left[node],
                        node_cat_start[node], node_cat_end[node], cat_words,
                    )
                for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                    f0 = leaf_feature_start[leaf]
                    k = leaf_feature_start[leaf + 1] - f0
                    pattern = (1 << k) - 1
                    for s in range(leaf_step_start[leaf], leaf_step_start[leaf + 1]):
                        if left[step_node[s]] != step_left[s]:
                            pattern &= ~(1 << step_bit[s])
                    at = leaf_table_start[leaf] + pattern * k
                    for j in range(k):
                        out[r, leaf_features[f0 + j]] += table[at + j]


def contributions(tables: ShapTables, X: np.ndarray, *, n_threads: int = 1) -> np.ndarray:
    """SHAP values (rows, features + 1; the last column is the base value) of rows X given as LightGBM reads them:
    float64, categorical columns as their integer codes, missing as NaN."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != tables.n_features:
        raise ValueError(f"expected {tables.n_features} columns, got shape {X.shape}")
    out = np.zeros((X.shape[0], tables.n_features + 1), dtype=np.float64)
    out[:, -1] = tables.base_value
    arrays = (
        tables.tree_node_start, tables.tree_leaf_start, tables.node_feature, tables.node_threshold, tables.node_kind,
        tables.node_default_left, tables.node_cat_start, tables.node_cat_end, tables.cat_words,
        tables.leaf_step_start, tables.step_node, tables.step_left, tables.step_bit, tables.leaf_feature_start,
        tables.leaf_features, tables.leaf_table_start, tables.table,
    )  # fmt: skip
    parts = max(1, min(n_threads, len(X) // 256))
    if parts == 1:
        _contributions(X, out, *arrays)
        return out
    bounds = np.linspace(0, len(X), parts + 1).astype(int)
    with ThreadPoolExecutor(parts) as pool:  # the kernel releases the GIL: one slice of rows per thread
        list(pool.map(lambda a, b: _contributions(X[a:b], out[a:b], *arrays), bounds[:-1], bounds[1:]))
    return out


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_tables(booster: lgb.Booster, *, num_iteration: int | None = None) -> ShapTables:
    """shap_tables, built once per booster and number of trees (kept while the booster lives)."""
    per_booster = _CACHE.setdefault(booster, {})
    if num_iteration not in per_booster:
        per_booster[num_iteration] = shap_tables(booster, num_iteration=num_iteration)
    return per_booster[num_iteration]
