"""What a feature is: its name, group, description (its business definition), kind and unit.

A builder's function name is its output column and the first line of its docstring its description, which
analysts read in reports and sales reads in the reasons of a score.

A feature may also declare its business `direction`: +1 when more of it never lowers the chance of converting
(more pricing-page views), -1 when more of it never raises it (more days since the last activity). The model
factory turns declared directions into monotone constraints, and the reasons use them to never call above-typical
activity bad. Features measuring one idea (page views over 7, 30 and 90 days) share a `concept`, so that a lead's
reasons name each idea once.

A feature reading lead fields that sales fills in after the lead was created (BANT answers, the details that make
a profile complete) declares them as `filled_late`: a CRM export holds their value of today, not of a past cutoff,
so the feature is point in time only when the leads table says when each was filled in (`tables.leads.known_at`).
Without that it stays out of the default feature set (`features.registry.feature_set`), with a warning.

A boolean feature's description is the statement when true; `when_false` words
it when false ("The lead signed up with a free e-mail domain"), so that no reason reads as a double negative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

GROUPS = ("demographic", "firmographic", "behavioral", "product_usage", "history", "deal")  # deal: opportunity level
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
    filled_late: tuple[str, ...] = ()  # lead fields sales fills in later: point in time only with their known_at
    when_false: str = ""  # a boolean's statement when false; empty: "<description>: no"

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"feature {self.name}: unknown group {self.group!r}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"feature {self.name}: direction must be -1, 0 or 1, got {self.direction!r}")
        if self.direction and self.kind == "categorical":
            raise ValueError(f"feature {self.name}: a categorical feature has no direction")
        if self.when_false and self.kind != "boolean":
            raise ValueError(f"feature {self.name}: only a boolean feature has a statement for false")
        if not self.concept:
            object.__setattr__(self, "concept", self.name)


def feature(
    group: str,
    *,
    kind: Kind = "numeric",
    unit: str = "",
    for_model: bool = True,
    direction: Direction = 0,
    concept: str = "",
    at_most: float | None = None,
    filled_late: tuple[str, ...] = (),
    when_false: str = "",
) -> Callable[[Callable], Callable]:
    """Describe a builder: its `spec` (name = the function's name, description = its docstring's first line).

    Nothing is registered: each group module lists its builders explicitly and `features.registry` collects them.
    """

    def wrap(function: Callable) -> Callable:
        doc = (function.__doc__ or "").strip().splitlines()
        if not doc:
            raise ValueError(f"feature builder {function.__name__} needs a one-line docstring")
        function.spec = FeatureSpec(
            function.__name__,
            group,
            doc[0].rstrip("."),
            kind,
            unit,
            function,
            for_model,
            direction,
            concept,
            at_most,
            filled_late,
            when_false,
        )
        return function

    return wrap
