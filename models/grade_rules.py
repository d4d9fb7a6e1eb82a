"""The grading rules as typed, validated settings: profile fit (A-D), engagement (1-4), stages, and the routing
table (stage x cell -> action and SLA, dormant leads recycled).

They live in the project's TOML under [grades]; the defaults suit the sample CRM and are documented here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadscore.features.demographic import MAX_LEAD_AGE_DAYS
from leadscore.features.schemas import EVENT_TYPES
from leadscore.models.capacity import CapacityRules

FIT_GRADES = ("A", "B", "C", "D")
ENGAGEMENT_GRADES = ("1", "2", "3", "4")
STAGES = ("IQL", "MQL", "PQL", "SQL")


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # a value of the wrong type is an error, never coerced


class Tier(_Rules):
    min: float
    points: float = Field(ge=0, le=100)


class FitCategory(_Rules):
    """One explicit category: a feature, its weight (%) and the points (0-100) each value is worth."""

    feature: str
    weight: float = Field(gt=0, le=100)
    points: dict[str, float] = Field(default_factory=dict, description="categorical value -> points")
    tiers: list[Tier] = Field(default_factory=list, description="numeric: points of the highest tier reached")
    default: float = Field(0.0, ge=0, le=100, description="points for a missing or unlisted value")

    @model_validator(mode="after")
    def _one_kind(self) -> FitCategory:
        if bool(self.points) == bool(self.tiers):
            raise ValueError("give either 'points' (categorical) or 'tiers' (numeric)")
        if any(not 0 <= p <= 100 for p in self.points.values()):
            raise ValueError("points must be between 0 and 100")
        return self


def _weights_sum_to_100(categories: dict, section: str) -> None:
    total = sum(c.weight for c in categories.values())
    if abs(total - 100.0) > 1e-6:
        parts = ", ".join(f"{name}={c.weight:g}" for name, c in categories.items())
        raise ValueError(f"{section}: category weights must sum to 100, got {total:g} ({parts})")


def _descending(cutoffs: dict[str, float], grades: tuple[str, ...], section: str) -> None:
    expected = list(grades[:-1])
    if sorted(cutoffs) != sorted(expected):
        raise ValueError(f"{section}.cutoffs: give exactly {expected}, got {sorted(cutoffs)}")
    values = [cutoffs[g] for g in expected]
    if values != sorted(values, reverse=True) or len(set(values)) != len(values):
        raise ValueError(f"{section}.cutoffs must strictly decrease from {expected[0]} to {expected[-1]}: {values}")


class FitRules(_Rules):
    cutoffs: dict[str, float] = Field(default_factory=lambda: {"A": 70.0, "B": 50.0, "C": 30.0})
    categories: dict[str, FitCategory] = Field(
        default_factory=lambda: {
            "seniority": FitCategory(
                feature="lead_seniority",
                weight=30,
                points={"c_level": 100, "vp": 90, "director": 70, "manager": 40, "individual": 15},
            ),
            "industry": FitCategory(
                feature="account_industry",
                weight=25,
                points={
                    "software": 100,
                    "fintech": 90,
                    "healthcare": 60,
                    "manufacturing": 50,
                    "retail": 40,
                    "media": 40,
                    "education": 20,
                    "government": 10,
                },
            ),
            "company_size": FitCategory(
                feature="account_employee_count",
                weight=20,
                tiers=[
                    Tier(min=0, points=10),
                    Tier(min=10, points=40),
                    Tier(min=50, points=100),
                    Tier(min=5001, points=60),
                ],
            ),
            "email": FitCategory(feature="lead_email_is_business", weight=15, points={"1": 100, "0": 0}),
            "country": FitCategory(
                feature="lead_country",
                weight=10,
                default=40,
                points={"US": 100, "GB": 100, "DE": 100, "CA": 100, "AU": 100},
            ),
        }
    )

    @model_validator(mode="after")
    def _check(self) -> FitRules:
        _weights_sum_to_100(self.categories, "grades.fit.categories")
        _descending(self.cutoffs, FIT_GRADES, "grades.fit")
        return self


class EngagementCategory(_Rules):
    """One implicit category: event types whose recency-decayed count earns points, capped at 100."""

    events: list[str]
    weight: float = Field(gt=0, le=100)
    points_per_event: float = Field(gt=0)
    window_days: float | None = Field(None, gt=0, description="count only events this recent")


class EngagementRules(_Rules):
    half_life_days: float = Field(14.0, gt=0)
    cutoffs: dict[str, float] = Field(default_factory=lambda: {"1": 50.0, "2": 25.0, "3": 10.0})
    categories: dict[str, EngagementCategory] = Field(
        default_factory=lambda: {
            "high_intent": EngagementCategory(
                events=["pricing_page_view", "demo_request"], weight=35, points_per_event=25, window_days=30
            ),
            "web": EngagementCategory(
                events=["page_view", "content_download", "form_submit"], weight=20, points_per_event=8, window_days=30
            ),
            "email": EngagementCategory(
                events=["email_open", "email_click"], weight=15, points_per_event=8, window_days=30
            ),
            "events": EngagementCategory(events=["webinar_attended"], weight=10, points_per_event=60, window_days=90),
            "product": EngagementCategory(
                events=["trial_signup", "product_login", "feature_used", "upgrade_page_view"],
                weight=20,
                points_per_event=10,
                window_days=14,
            ),
        }
    )

    @model_validator(mode="after")
    def _check(self) -> EngagementRules:
        _weights_sum_to_100(self.categories, "grades.engagement.categories")
        _descending(self.cutoffs, ENGAGEMENT_GRADES, "grades.engagement")
        return self


class ColumnEngagementRules(_Rules):
    """Flat mode: engagement read from columns of the export (visits, time on site, ...) instead of events; each
    category is a column with points per value or numeric tiers, as in the fit rules."""

    cutoffs: dict[str, float] = Field(default_factory=lambda: {"1": 50.0, "2": 25.0, "3": 10.0})
    categories: dict[str, FitCategory]

    @model_validator(mode="after")
    def _check(self) -> ColumnEngagementRules:
        _weights_sum_to_100(self.categories, "flat.engagement.categories")
        _descending(self.cutoffs, ENGAGEMENT_GRADES, "flat.engagement")
        return self


CELLS = tuple(f + e for f in FIT_GRADES for e in ENGAGEMENT_GRADES)
ANY_CELL, DORMANT = "*", "dormant"
BANDS = ("hot", "warm", "cold")  # the model's priority band: the routing table's third axis
NEW_ACTIVITY_EVENTS = ("demo_request", "form_submit", "pricing_page_view", "trial_signup", "upgrade_page_view")


class Action(_Rules):
    action: str
    sla_hours: float | None = Field(None, gt=0, description="none: no deadline (nurture, recycle, review)")

    def text(self) -> str:
        return self.action + (f", {self.sla_hours:g} h" if self.sla_hours else "")


class BandRules(_Rules):
    """The priority band from the calibrated probability, relative to the base rate of new leads (what a lead
    converts at on arrival, stored with the model by `train`): hot from `hot_lift` x that rate, cold below
    `cold_lift` x that rate, warm in between."""

    hot_lift: float = Field(2.0, gt=0, description="hot: probability >= hot_lift x the base rate of new leads")
    cold_lift: float = Field(0.1, gt=0, description="cold: probability < cold_lift x the base rate of new leads")

    @model_validator(mode="after")
    def _ordered(self) -> BandRules:
        if self.cold_lift >= self.hot_lift:
            raise ValueError(
                f"grades.routing.bands: cold_lift ({self.cold_lift:g}) must be below hot_lift ({self.hot_lift:g})"
            )
        return self

    def cutoffs(self, base_rate: float) -> BandCutoffs:
        return BandCutoffs(hot=self.hot_lift * base_rate, cold=self.cold_lift * base_rate, base_rate=base_rate)


@dataclass(frozen=True)
class BandCutoffs:
    """The band cut-offs as probabilities, for one model: hot at or above `hot`, cold below `cold`."""

    hot: float
    cold: float
    base_rate: float


SALES_CELLS = ("A1", "B1", "A2", "A3", "B2", "B3")
HOT_ROUTE = Action(action="sales call", sla_hours=24)  # the tightest SLA of the table
REVIEW = Action(action="review")


def _sales_matrix(rest: Action) -> dict[str, Action]:
    """The Eloqua-style SLAs: A1, B1 within 24 h; A2, A3, B2, B3 within 48 h; every other cell `rest`."""
    return {
        **{c: Action(action="sales call", sla_hours=24) for c in SALES_CELLS[:2]},
        **{c: Action(action="sales follow-up", sla_hours=48) for c in SALES_CELLS[2:]},
        ANY_CELL: rest,
    }


def _default_routes() -> dict[str, dict[str, Action]]:
    nurture, recycle = Action(action="nurture"), Action(action="recycle")
    # a hot lead is never nurtured or recycled: a sales call within the tightest SLA, whatever its stage and cell
    hot = {f"{ANY_CELL}/hot": HOT_ROUTE, f"{DORMANT}/hot": HOT_ROUTE}
    # a cold lead that the rules send to sales is reviewed first ("rules say sales, model says unlikely")
    cold_sales = {f"{c}/cold": REVIEW for c in SALES_CELLS}
    return {
        # contact details at most: marketing's, whatever the cell
        "IQL": {ANY_CELL: nurture, DORMANT: recycle, **hot},
        "MQL": {**_sales_matrix(nurture), DORMANT: recycle, **hot, **cold_sales},
        "PQL": {**_sales_matrix(nurture), DORMANT: recycle, **hot, **cold_sales},
        # sales-qualified or accepted by sales: stays with sales, never nurtured; a dormant one too (sales decides)
        "SQL": {**_sales_matrix(Action(action="sales follow-up", sla_hours=48)), **hot, f"{ANY_CELL}/cold": REVIEW},
    }


def _known_key(key: str, known: set[str]) -> bool:
    where, slash, band = key.partition("/")
    return where in known and (not slash or band in BANDS)


def _lookups(cell: str, *, dormant: bool, band: str | None) -> list[str]:
    """The keys a lead's route is looked up by, most specific first; the band outranks the cell."""
    order = [f"{cell}/{band}", f"{ANY_CELL}/{band}", cell, ANY_CELL] if band else [cell, ANY_CELL]
    if dormant:
        order = ([f"{DORMANT}/{band}"] if band else []) + [DORMANT] + order
    return order


class RoutingRules(_Rules):
    """One routing table for `grade` and `predict`: stage -> key -> action, the key a cell (A1..D4), "*" (any other
    cell) or "dormant", alone or with the model's band ("A1/cold", "*/hot", "dormant/hot").

    A lead takes the first entry its stage has among: (dormant leads only) "dormant/<band>", "dormant"; then
    "<cell>/<band>", "*/<band>", "<cell>", "*". Without a model (`grade`) there is no band: "dormant", "<cell>", "*".
    """

    dormant_after_days: float | None = Field(
        90.0,
        gt=0,
        le=MAX_LEAD_AGE_DAYS,  # a lead without activity is as old as lead_age_days, which stops at a year
        description="days without any activity (or since creation) after which a lead is dormant",
    )
    bands: BandRules = Field(default_factory=BandRules)
    rejected_action: str = Field(
        "nurture", min_length=1, description="action of a lead sales rejected, until it shows new activity"
    )
    # what a lead does deliberately when it wants to talk: routine opens and page views, which a rejected lead keeps
    # producing, never overrule sales' "no"
    new_activity_events: list[str] = Field(
        default_factory=lambda: [
            "demo_request",
            "form_submit",
            "pricing_page_view",
            "trial_signup",
            "upgrade_page_view",
        ],
        description="event types that, after a rejection, bring the lead back to the routing table",
    )
    table: dict[str, dict[str, Action]] = Field(default_factory=_default_routes)

    @field_validator("table", mode="before")
    @classmethod
    def _default_rows(cls, table: object) -> object:
        """A stage left out keeps its default row: a config gives only the rows it changes."""
        return {**_default_routes(), **table} if isinstance(table, dict) else table

    @model_validator(mode="after")
    def _complete(self) -> RoutingRules:
        unknown_events = sorted(set(self.new_activity_events) - set(EVENT_TYPES))
        if unknown_events:
            raise ValueError(
                f"grades.routing.new_activity_events: unknown event type(s) {unknown_events}; use the contract's "
                f"event types: {', '.join(EVENT_TYPES)}"
            )
        if sorted(self.table) != sorted(STAGES):
            unknown = sorted(set(self.table) - set(STAGES))
            raise ValueError(f"grades.routing.table: unknown stage(s) {unknown}; the stages are {list(STAGES)}")
        known = {*CELLS, ANY_CELL, DORMANT}
        for stage, row in self.table.items():
            unknown = [k for k in row if not _known_key(k, known)]
            if unknown:
                raise ValueError(
                    f"grades.routing.table.{stage}: unknown key(s) {sorted(unknown)}; use A1..D4, '*' or 'dormant', "
                    f"alone or with a band: 'A1/cold', '*/hot' (bands: {', '.join(BANDS)})"
                )
            if ANY_CELL not in row and not set(CELLS) <= set(row):
                raise ValueError(f"grades.routing.table.{stage}: give '*' or every cell A1..D4")
        return self

    def route(self, stage: str, cell: str, *, dormant: bool = False, band: str | None = None) -> Action:
        row = self.table[stage]
        return next(row[k] for k in _lookups(cell, dormant=dormant, band=band) if k in row)


class BantRules(_Rules):
    """Which answers count as qualified, per BANT criterion."""

    qualified: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "lead_bant_budget": ["yes"],
            "lead_bant_authority": ["decision_maker"],
            "lead_bant_need": ["high"],
            "lead_bant_timeline": ["<3 months", "3-6 months"],
        }
    )


class StageRules(_Rules):
    mql_min_fit: str = Field("B", pattern="^[ABCD]$")
    mql_min_engagement: str = Field("2", pattern="^[1234]$")
    pql_min_active_days_14d: float = 3
    pql_min_features_used: float = 3
    pql_min_upgrade_page_views_30d: float = 0
    pql_min_profile_completeness: float = 60
    sql_min_probability: float | None = Field(
        None,
        ge=0,
        le=1,
        description="A/B leads at this model probability are SQL; none: stages are rules-only, so "
        "`grade` and `predict` agree without a model",
    )
    sql_fits: list[str] = Field(default_factory=lambda: ["A", "B"])
    sql_min_bant: int = Field(3, ge=1, le=4, description="BANT criteria met that make an A/B lead sales-qualified")


class GradeRules(_Rules):
    timezone: str = Field("UTC", description="business time zone for due-by times shown locally")
    fit: FitRules = Field(default_factory=FitRules)
    engagement: EngagementRules = Field(default_factory=EngagementRules)
    routing: RoutingRules = Field(default_factory=RoutingRules)
    bant: BantRules = Field(default_factory=BantRules)
    stages: StageRules = Field(default_factory=StageRules)
    capacity: CapacityRules | None = Field(None, description="leads sales can accept per week; none: no limit")

    def fit_features(self) -> list[str]:
        names = [c.feature for c in self.fit.categories.values()]
        names += list(self.bant.qualified)
        names += [
            "lead_has_contact_details",
            "lead_sales_accepted",
            "product_active_days_14d",
            "product_distinct_features_used",
            "product_upgrade_page_views_30d",
            "lead_profile_completeness",
            "product_trial_started",
            "events_days_since_last",
            "lead_age_days",
        ]
        return list(dict.fromkeys(names))
