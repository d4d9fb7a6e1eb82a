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
Models this module cannot explain raise `UnsupportedModelError`: several trees per iteration (multiclass) and
leaves whose tables would be too large make `booster_contributions` fall back to `pred_contrib`; linear trees,
which `pred_contrib` refuses too, end in LightGBM's own error.
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# LightGBM's kZeroThreshold (1e-35f as a double): smaller magnitudes are read as 0 and count as "zero" for splits
# whose missing type is Zero
ZERO_THRESHOLD = float(np.float32(1e-35))
MAX_TABLE_VALUES = 1 << 25  # 256 MiB of float64 tables at most; deeper models fall back to pred_contrib
MAX_PATH_FEATURES = 20  # distinct features along one path (a table of 2 ** 20 rows); more falls back too
NUMERIC_NONE, NUMERIC_ZERO, NUMERIC_NAN, CATEGORICAL = 0, 1, 2, 3
_MISSING_KIND = {"None": NUMERIC_NONE, "Zero": NUMERIC_ZERO, "NaN": NUMERIC_NAN}


class UnsupportedModelError(ValueError):
    """A booster whose trees this module does not explain (the caller uses LightGBM's pred_contrib instead)."""


@dataclass(frozen=True)
class ShapTables:
    """A booster's trees flattened into arrays, with each leaf's table of contributions per bit pattern.

    Every node of a tree (split or leaf) has a position, numbered in preorder so that a parent comes before its
    children; a position's pattern is its parent's with the parent split's feature bit cleared when the row does
    not take the branch to it. A leaf's pattern then has bit j set iff the row satisfies every split on its j-th
    feature (features numbered by first appearance along the path, which children share with their parents).
    """

    n_features: int
    n_trees: int
    n_leaves: int
    base_value: float  # the expected value: sum over trees of the count-weighted mean leaf value
    tree_node_start: np.ndarray  # int32 (trees + 1): the tree's splits are [start, next start)
    tree_pos_start: np.ndarray  # int32 (trees + 1): its positions (splits and leaves)
    tree_leaf_start: np.ndarray  # int32 (trees + 1): its leaves
    node_feature: np.ndarray  # int32 per split
    node_threshold: np.ndarray  # float64 per split (numeric)
    node_kind: np.ndarray  # int8 per split: NUMERIC_NONE / NUMERIC_ZERO / NUMERIC_NAN / CATEGORICAL
    node_default_left: np.ndarray  # bool per split: where a missing value goes (numeric splits)
    node_cat_start: np.ndarray  # int32 per split: its category bitset is cat_words[start:end]
    node_cat_end: np.ndarray
    cat_words: np.ndarray  # uint32 bitsets of the categories that go left
    pos_parent: np.ndarray  # int32 per position: the parent's position within the tree (-1 at the root)
    pos_split: np.ndarray  # int32: the parent's split, numbered within the tree
    pos_left: np.ndarray  # uint8: 1 when this position is its parent's left child
    pos_bit: np.ndarray  # int32: the parent split's feature bit along this path
    leaf_pos: np.ndarray  # int32 per leaf: its position within the tree
    leaf_feature_start: np.ndarray  # int32 (leaves + 1): leaf_features[start:next] = the leaf's distinct features
    leaf_features: np.ndarray  # int32
    leaf_table_start: np.ndarray  # int64 per leaf: table[start + pattern * k + j] for feature j of k
    table: np.ndarray  # float64

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.tree_node_start,
            self.tree_pos_start,
            self.tree_leaf_start,
            self.node_feature,
            self.node_threshold,
            self.node_kind,
            self.node_default_left,
            self.node_cat_start,
            self.node_cat_end,
            self.cat_words,
            self.pos_parent,
            self.pos_split,
            self.pos_left,
            self.pos_bit,
            self.leaf_pos,
            self.leaf_feature_start,
            self.leaf_features,
            self.leaf_table_start,
            self.table,
        )


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
    """Walks each tree once in preorder, collecting its splits, positions, leaves and their cover fractions."""

    def __init__(self) -> None:
        self.tree_node_start, self.tree_pos_start, self.tree_leaf_start = [0], [0], [0]
        self.node_feature, self.node_threshold, self.node_kind, self.node_default_left = [], [], [], []
        self.node_cat_start, self.node_cat_end, self.cat_words = [], [], []
        self.pos_parent, self.pos_split, self.pos_left, self.pos_bit = [], [], [], []
        self.leaf_pos: list[int] = []
        self.leaf_z: list[dict[int, float]] = []  # feature -> zero fraction along the path, in order of appearance
        self.leaf_value: list[float] = []
        self.base_value = 0.0

    def add_tree(self, root: dict) -> None:
        first_node, first_pos = len(self.node_feature), len(self.pos_parent)
        if "split_index" not in root:  # a single leaf: a constant, added to the base value
            _check_leaf(root)
            self.base_value += float(root["leaf_value"])
        else:
            total = float(root["internal_count"])
            # (node, parent position, parent split, is left child, bit of the parent's feature, zero fractions)
            stack = [(root, -1, -1, False, 0, {})]
            while stack:
                node, parent, split, left, bit, z = stack.pop()
                position = len(self.pos_parent) - first_pos
                self.pos_parent.append(parent)
                self.pos_split.append(split)
                self.pos_left.append(left)
                self.pos_bit.append(bit)
                if "split_index" not in node:
                    _check_leaf(node)
                    self.leaf_pos.append(position)
                    self.leaf_z.append(z)
                    self.leaf_value.append(float(node["leaf_value"]))
                    self.base_value += float(node["leaf_count"]) / total * float(node["leaf_value"])
                    continue
                index = self._add_split(node) - first_node
                feature = int(node["split_feature"])
                feature_bit = list(z).index(feature) if feature in z else len(z)
                count = float(node["internal_count"])
                for child, is_left in ((node["right_child"], False), (node["left_child"], True)):
                    child_z = {**z, feature: z.get(feature, 1.0) * _count(child) / count}
                    stack.append((child, position, index, is_left, feature_bit, child_z))
        self.tree_node_start.append(len(self.node_feature))
        self.tree_pos_start.append(len(self.pos_parent))
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
            threshold = float(node["threshold"])
            # dump_model writes +-inf as +-1e300 (LightGBM's AvoidInf); a split on missing values has threshold inf
            self.node_threshold.append(threshold if abs(threshold) < 1e300 else np.copysign(np.inf, threshold))
        else:
            raise UnsupportedModelError(f"decision type {node['decision_type']!r}")
        self.node_cat_start.append(start)
        self.node_cat_end.append(len(self.cat_words))
        return len(self.node_feature) - 1

    def finish(self, n_features: int) -> ShapTables:
        sizes = np.asarray([len(z) for z in self.leaf_z], dtype=np.int64)
        if len(sizes) and sizes.max() > MAX_PATH_FEATURES:
            raise UnsupportedModelError(f"a path splits on {sizes.max()} distinct features: too deep for tables")
        lengths = (1 << sizes) * sizes
        total = int(lengths.sum())
        if total > MAX_TABLE_VALUES:
            raise UnsupportedModelError(
                f"tables of {total:,} values (paths with up to {sizes.max()} distinct features): too deep"
            )
        table_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        table = np.zeros(total, dtype=np.float64)
        values = np.asarray(self.leaf_value, dtype=np.float64)
        for k in sorted(set(sizes.tolist()) - {0}):
            same_k = np.flatnonzero(sizes == k)
            step = max(1, (1 << 20) // ((1 << k) * k))  # about 8 MiB of table per batch of leaves
            for leaves in (same_k[i : i + step] for i in range(0, len(same_k), step)):
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
            tree_pos_start=np.asarray(self.tree_pos_start, dtype=i32),
            tree_leaf_start=np.asarray(self.tree_leaf_start, dtype=i32),
            node_feature=np.asarray(self.node_feature, dtype=i32),
            node_threshold=np.asarray(self.node_threshold, dtype=np.float64),
            node_kind=np.asarray(self.node_kind, dtype=np.int8),
            node_default_left=np.asarray(self.node_default_left, dtype=np.uint8),
            node_cat_start=np.asarray(self.node_cat_start, dtype=i32),
            node_cat_end=np.asarray(self.node_cat_end, dtype=i32),
            cat_words=np.asarray(self.cat_words, dtype=np.uint32),
            pos_parent=np.asarray(self.pos_parent, dtype=i32),
            pos_split=np.asarray(self.pos_split, dtype=i32),
            pos_left=np.asarray(self.pos_left, dtype=np.uint8),
            pos_bit=np.asarray(self.pos_bit, dtype=i32),
            leaf_pos=np.asarray(self.leaf_pos, dtype=i32),
            leaf_feature_start=np.concatenate([[0], np.cumsum(sizes)]).astype(i32),
            leaf_features=np.asarray([f for z in self.leaf_z for f in z], dtype=i32),
            leaf_table_start=table_start,
            table=table,
        )


def _check_leaf(node: dict) -> None:
    if "leaf_coeff" in node or "leaf_const" in node or "leaf_features" in node:
        raise UnsupportedModelError("linear trees (linear_tree=true)")


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
@numba.njit(nogil=True, cache=True, inline="always")
def _goes_left(x, kind, threshold, default_left, cat_start, cat_end, cat_words):  # pragma: no cover - compiled
    if kind == CATEGORICAL:
        # LightGBM: NaN and int(x) < 0 go right; otherwise the category's bit in the set
        if np.isnan(x) or x <= -1.0 or x >= 2147483648.0:
            return np.int32(0)
        category = int(x)
        word = cat_start + category // 32
        if word >= cat_end:
            return np.int32(0)
        return np.int32((cat_words[word] >> np.uint32(category % 32)) & np.uint32(1))
    if np.isnan(x):
        if kind == NUMERIC_NAN:
            return np.int32(default_left)
        x = 0.0
    if -ZERO_THRESHOLD <= x <= ZERO_THRESHOLD:
        if kind == NUMERIC_ZERO:
            return np.int32(default_left)
        x = 0.0
    return np.int32(1) if x <= threshold else np.int32(0)


BLOCK = 256  # rows scored together, tree by tree and step by step: the inner loops run over rows


@numba.njit(nogil=True, cache=True)
def _contributions(
    XT,
    outT,
    tree_node_start,
    tree_pos_start,
    tree_leaf_start,
    node_feature,
    node_threshold,
    node_kind,
    node_default_left,
    node_cat_start,
    node_cat_end,
    cat_words,
    pos_parent,
    pos_split,
    pos_left,
    pos_bit,
    leaf_pos,
    leaf_feature_start,
    leaf_features,
    leaf_table_start,
    table,
):  # pragma: no cover - compiled
    """Add the SHAP values of the rows (columns of XT: features by rows) to outT (features + 1 by rows).

    Every inner loop runs over the rows of a block, so that its iterations are independent (no chain of additions
    into one feature's cell, and the compiler may vectorise them)."""
    n_rows = XT.shape[1]
    n_trees = tree_node_start.shape[0] - 1
    widest_nodes, widest_pos = 1, 1
    for t in range(n_trees):
        widest_nodes = max(widest_nodes, tree_node_start[t + 1] - tree_node_start[t])
        widest_pos = max(widest_pos, tree_pos_start[t + 1] - tree_pos_start[t])
    left = np.empty((widest_nodes, BLOCK), dtype=np.int32)
    pattern = np.empty((widest_pos, BLOCK), dtype=np.int32)
    at = np.empty(BLOCK, dtype=np.int64)
    for first in range(0, n_rows, BLOCK):
        size = min(BLOCK, n_rows - first)
        for t in range(n_trees):
            n0 = tree_node_start[t]
            p0 = tree_pos_start[t]
            # every split's decision for the block
            for node in range(n0, tree_node_start[t + 1]):
                feature = node_feature[node]
                kind = node_kind[node]
                threshold = node_threshold[node]
                default_left = node_default_left[node]
                cat_start = node_cat_start[node]
                cat_end = node_cat_end[node]
                for r in range(size):
                    left[node - n0, r] = _goes_left(
                        XT[feature, first + r], kind, threshold, default_left, cat_start, cat_end, cat_words
                    )
            # each position's pattern from its parent's, in preorder
            for r in range(size):
                pattern[0, r] = -1
            for q in range(1, tree_pos_start[t + 1] - p0):
                parent = pos_parent[p0 + q]
                split = pos_split[p0 + q]
                side = np.int32(pos_left[p0 + q])
                bit = pos_bit[p0 + q]
                for r in range(size):
                    pattern[q, r] = pattern[parent, r] & ~((left[split, r] ^ side) << bit)
            # each leaf's table row, added to its features
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                f0 = leaf_feature_start[leaf]
                k = leaf_feature_start[leaf + 1] - f0
                mask = np.int32((1 << k) - 1)
                position = leaf_pos[leaf]
                start = leaf_table_start[leaf]
                for r in range(size):
                    at[r] = start + np.int64(pattern[position, r] & mask) * k
                for j in range(k):
                    feature = leaf_features[f0 + j]
                    for r in range(size):
                        outT[feature, first + r] += table[at[r] + j]


def contributions(tables: ShapTables, X: np.ndarray, *, n_threads: int = 1) -> np.ndarray:
    """SHAP values (rows, features + 1; the last column is the base value) of rows X given as LightGBM reads them:
    float64, categorical columns as their integer codes, missing as NaN."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != tables.n_features:
        raise ValueError(f"expected {tables.n_features} columns, got shape {X.shape}")
    arrays = tables.kernel_arrays()

    def part(rows: slice) -> np.ndarray:
        XT = np.ascontiguousarray(X[rows].T)  # features by rows: each split reads one contiguous run of values
        outT = np.zeros((tables.n_features + 1, XT.shape[1]), dtype=np.float64)
        outT[-1] = tables.base_value
        _contributions(XT, outT, *arrays)
        return outT.T

    parts = max(1, min(n_threads, len(X) // BLOCK))
    if parts == 1:
        return np.ascontiguousarray(part(slice(None)))
    bounds = np.linspace(0, len(X), parts + 1).astype(int)
    with ThreadPoolExecutor(parts) as pool:  # the kernel releases the GIL: one slice of rows per thread
        return np.concatenate(list(pool.map(part, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])))


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_tables(booster: lgb.Booster, *, num_iteration: int | None = None) -> ShapTables:
    """shap_tables, built once per booster and number of trees (kept while the booster lives); a model that cannot
    be explained raises UnsupportedModelError every time without being walked again."""
    per_booster = _CACHE.setdefault(booster, {})
    if num_iteration not in per_booster:
        try:
            per_booster[num_iteration] = shap_tables(booster, num_iteration=num_iteration)
        except UnsupportedModelError as exc:
            per_booster[num_iteration] = exc
            log.warning("fast TreeSHAP cannot explain this model (%s): using LightGBM's pred_contrib", exc)
    found = per_booster[num_iteration]
    if isinstance(found, UnsupportedModelError):
        raise found
    return found


def lightgbm_matrix(data: pd.DataFrame, *, pandas_categorical: list | None = None) -> np.ndarray:
    """The float64 matrix LightGBM scores for a DataFrame (what `Booster.predict` builds from it): numbers as
    float64, each category column as its codes in the training levels (`pandas_categorical`, in the order of the
    category columns), missing and unknown categories as NaN. Column-major, so each feature is one run of values."""
    out = np.empty(data.shape, dtype=np.float64, order="F")
    categorical = 0
    for j, column in enumerate(data.columns):
        values = data[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            if pandas_categorical is not None:
                values = values.cat.set_categories(pandas_categorical[categorical])
            categorical += 1
            codes = values.cat.codes.to_numpy()
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def booster_contributions(
    booster: lgb.Booster, data: pd.DataFrame, *, num_iteration: int | None = None, n_threads: int = 1
) -> np.ndarray:
    """`booster.predict(data, pred_contrib=True, num_iteration=num_iteration)` for a binary or regression booster,
    computed here with `n_threads` threads; LightGBM's own pred_contrib for models this module cannot explain."""
    try:
        tables = cached_tables(booster, num_iteration=num_iteration)
    except UnsupportedModelError:
        return booster.predict(data, pred_contrib=True, num_iteration=num_iteration)
    if data.shape[1] != tables.n_features:
        raise ValueError(f"the model has {tables.n_features} features, the data {data.shape[1]} columns")
    X = lightgbm_matrix(data, pandas_categorical=booster.pandas_categorical)
    return contributions(tables, X, n_threads=n_threads if n_threads and n_threads > 0 else os.cpu_count() or 1)
