"""The feature catalog: every built-in feature, collected from the explicit list each group module keeps.

A builder's function name is its output column and the first line of its docstring its description, which
analysts read in reports and sales reads in the reasons of a score. See `features.spec` for what a feature declares.
"""

from __future__ import annotations

import functools

from leadscore.features import behavioral, demographic, firmographic, history, product
from leadscore.features.spec import GROUPS, FeatureSpec

__all__ = ["GROUPS", "FeatureSpec", "all_features", "declared_directions", "feature_set", "without_known_at"]


# The order of the groups is the order of the model's columns: models trained before the explicit lists were
# trained on it.
GROUP_MODULES = (demographic, behavioral, firmographic, history, product)


@functools.cache
def _catalog() -> dict[str, FeatureSpec]:
    catalog: dict[str, FeatureSpec] = {}
    for module in GROUP_MODULES:
        for spec in module.FEATURES:
            if spec.name in catalog:
                raise ValueError(f"feature {spec.name!r} listed twice")
            catalog[spec.name] = spec
    return catalog


def all_features() -> dict[str, FeatureSpec]:
    """Every built-in feature, group by group as each group module lists them."""
    return dict(_catalog())


def declared_directions() -> dict[str, int]:
    """Feature -> declared business direction (+1 or -1), for every feature that declares one."""
    return {name: spec.direction for name, spec in all_features().items() if spec.direction}


def without_known_at(specs: dict[str, FeatureSpec], known_at: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Feature -> the lead fields it reads that sales fills in later and that have no `known_at` time: without
    those times the feature would read today's values at every past cutoff."""
    lacking = {n: [f for f in s.filled_late if f not in known_at] for n, s in specs.items()}
    return {n: fields for n, fields in lacking.items() if fields}


def feature_set(name: str, custom: dict[str, list[str]] | None = None, *, known_at: tuple[str, ...] = ()) -> list[str]:
    """The named list of features: 'default' (all), one group's name, or a set defined in config. The built-in
    sets leave out the features whose late-filled lead fields have no `known_at` time (a set of your own keeps
    what it lists)."""
    specs = all_features()
    custom = custom or {}
    if name in custom:
        unknown = [f for f in custom[name] if f not in specs]
        if unknown:
            raise ValueError(f"feature set {name!r}: unknown feature(s) {unknown}")
        return list(custom[name])
    late = without_known_at(specs, known_at)
    model = {n: s for n, s in specs.items() if s.for_model and n not in late}
    if name == "default":
        return list(model)
    if name in GROUPS:
        return [n for n, s in model.items() if s.group == name]
    if name == "profile":
        return [n for n, s in model.items() if s.group in ("demographic", "firmographic")]
    raise ValueError(f"unknown feature set {name!r}: use 'default', 'profile', a group {list(GROUPS)} or a custom set")
