"""The feature registry: every feature's name, group, description (its business definition) and unit.

A builder's function name is its output column and the first line of its docstring its description, which
analysts read in reports and sales reads in the reasons of a score.

A feature may also declare its business `direction`: +1 when more of it never lowers the chance of converting
(more pricing-page views), -1 when more of it never raises it (more days since the last activity). The model
factory turns declared directions into monotone constraints, and the reasons use them to never call above-typical
activity bad. Features measuring one idea (page views over 7, 30 and 90 days) share a `concept`, so that a lead's
reasons name each idea once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

GROUPS = ("demographic", "firmographic", "behavioral", "product_usage", "history")
Kind = Literal["numeric", "categorical", "boolean"]
Direction = Literal[-1, 0, 1]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    group: str
    description: str
    kind: Kind
    unit: str
    build: Callable
    for_model: bool = True  # False: an input of the rules (grades), left out of the default model feature set
    direction: Direction = 0  # declared business direction: +1 more never lowers the probability, -1 never raises
    concept: str = ""  # features of one idea share it (one reason per concept); empty: the feature's own name
    at_most: float | None = None  # the builder caps its values here: reasons say "365 days or more"

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"feature {self.name}: unknown group {self.group!r}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"feature {self.name}: direction must be -1, 0 or 1, got {self.direction!r}")
        if self.direction and self.kind == "categorical":
            raise ValueError(f"feature {self.name}: a categorical feature has no direction")
        if not self.concept:
            object.__setattr__(self, "concept", self.name)


REGISTRY: dict[str, FeatureSpec] = {}


def register(spec: FeatureSpec) -> FeatureSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"feature {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def feature(
    group: str,
    *,
    kind: Kind = "numeric",
    unit: str = "",
    for_model: bool = True,
    direction: Direction = 0,
    concept: str = "",
    at_most: float | None = None,
) -> Callable[[Callable], Callable]:
    """Register a builder under its own name, described by the first line of its docstring."""

    def wrap(function: Callable) -> Callable:
        doc = (function.__doc__ or "").strip().splitlines()
        if not doc:
            raise ValueError(f"feature builder {function.__name__} needs a one-line docstring")
        register(FeatureSpec(function.__name__, group, doc[0].rstrip("."), kind, unit, function, for_model,
                             direction, concept, at_most))  # fmt: skip
        return function

    return wrap


def all_features() -> dict[str, FeatureSpec]:
    """The registry, with every builder module imported so that all features are listed."""
    from leadscore.features import behavioral, demographic, firmographic, history, product  # noqa: F401

    return dict(REGISTRY)


def declared_directions() -> dict[str, int]:
    """Feature -> declared business direction (+1 or -1), for every feature that declares one."""
    return {name: spec.direction for name, spec in all_features().items() if spec.direction}


def feature_set(name: str, custom: dict[str, list[str]] | None = None) -> list[str]:
    """The named list of features: 'default' (all), one group's name, or a set defined in config."""
    specs = all_features()
    custom = custom or {}
    if name in custom:
        unknown = [f for f in custom[name] if f not in specs]
        if unknown:
            raise ValueError(f"feature set {name!r}: unknown feature(s) {unknown}")
        return list(custom[name])
    model = {n: s for n, s in specs.items() if s.for_model}
    if name == "default":
        return list(model)
    if name in GROUPS:
        return [n for n, s in model.items() if s.group == name]
    if name == "profile":
        return [n for n, s in model.items() if s.group in ("demographic", "firmographic")]
    raise ValueError(f"unknown feature set {name!r}: use 'default', 'profile', a group {list(GROUPS)} or a custom set")
