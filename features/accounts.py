"""Account features: roll-ups of the lead builders over the account's contacts, plus its history and firmographics.

Each (account, cutoff) row is expanded to its contacts (the account's leads created strictly before the cutoff,
see `contact_pairs`), the lead builders run on those (lead, cutoff) pairs through one lead FeatureContext (so every
point-in-time rule of the lead features holds: events strictly before the cutoff, deals counted once closed), and
each account builder aggregates them back to the row. Builders are listed explicitly in `account_feature_specs`;
they carry a group, direction and concept like the lead registry, so reasons read the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cached_property, partial

import numpy as np
import pandas as pd

from leadscore.features.account_spine import KEY, contact_pairs
from leadscore.features.build import feature_columns
from leadscore.features.context import FeatureContext, FeatureParams
from leadscore.features.demographic import SENIORITY_LEVELS
from leadscore.features.registry import FeatureSpec, all_features

SENIOR = SENIORITY_LEVELS[:3]  # director and above
ENGAGED_ACTIVE_DAYS = 3  # a contact is engaged when active on at least this many days of the last 30


class AccountContext:
    """The account spine's rows and, aligned to them, their contacts' lead features (built once, on demand)."""

    def __init__(
        self,
        spine: pd.DataFrame,
        *,
        leads: pd.DataFrame,
        accounts: pd.DataFrame | None = None,
        events: pd.DataFrame | None = None,
        opportunities: pd.DataFrame,
        params: FeatureParams | None = None,
    ) -> None:
        self.spine = spine[[KEY, "cutoff_time"]].reset_index(drop=True)
        self.n = len(self.spine)
        self.pairs = contact_pairs(self.spine, leads, opportunities, known_only=True)
        pair_leads = self.pairs["lead_id"]
        self.lead_context = FeatureContext(
            self.pairs[["lead_id", "cutoff_time"]],
            leads=leads,
            accounts=accounts,
            events=None if events is None else events[events["lead_id"].isin(pair_leads)],
            opportunities=opportunities,
            params=params,
        )
        self.row = self.pairs["row"].to_numpy()
        self.open = self.pairs["undecided"].to_numpy()  # open as far as anything before the cutoff tells
        self._lead_features: dict[str, pd.Series] = {}

    def lead_feature(self, name: str) -> pd.Series:
        """A lead builder's values on every (contact, cutoff) pair."""
        if name not in self._lead_features:
            self._lead_features[name] = feature_columns(self.lead_context, [name])[name]
        return self._lead_features[name]

    def lead_features(self, names: list[str]) -> pd.DataFrame:
        """Several lead features on the pairs (the lead model's inputs), sharing this context's joins."""
        missing = [n for n in names if n not in self._lead_features]
        if missing:
            built = feature_columns(self.lead_context, missing)
            self._lead_features.update({n: built[n] for n in missing})
        return pd.DataFrame({n: self._lead_features[n] for n in names})

    @cached_property
    def active_days_ago(self) -> np.ndarray:
        """Per pair: days since the contact's last activity (NaN: never active)."""
        return pd.to_numeric(self.lead_feature("events_days_since_last"), errors="coerce").to_numpy(dtype=float)

    def active_within(self, days: float) -> np.ndarray:
        return np.nan_to_num(self.active_days_ago, nan=np.inf) <= days

    @cached_property
    def engaged(self) -> np.ndarray:
        """Per pair: the contact was active on ENGAGED_ACTIVE_DAYS or more days of the last 30."""
        active_days = pd.to_numeric(self.lead_feature("events_active_days_30d"), errors="coerce")
        return active_days.fillna(0).to_numpy(dtype=float) >= ENGAGED_ACTIVE_DAYS

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Per row: pairs where `mask` holds."""
        return np.bincount(self.row[mask], minlength=self.n).astype("float64")

    def total(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.row, weights=np.nan_to_num(values), minlength=self.n)

    def extreme(self, values: np.ndarray, how: str) -> np.ndarray:
        """Per row: the max (or min) of the pairs' values, NaN when none has one."""
        out = np.full(self.n, -np.inf if how == "max" else np.inf)
        known = ~np.isnan(values)
        (np.maximum if how == "max" else np.minimum).at(out, self.row[known], values[known])
        return np.where(np.isinf(out), np.nan, out)

    def distinct(self, values: pd.Series, mask: np.ndarray) -> np.ndarray:
        """Per row: distinct non-missing `values` among the pairs where `mask` holds."""
        keep = mask & values.notna().to_numpy()
        pairs = pd.DataFrame({"row": self.row[keep], "value": values.to_numpy()[keep]}).drop_duplicates()
        return np.bincount(pairs["row"].to_numpy(), minlength=self.n).astype("float64")

    def first(self, name: str) -> pd.Series:
        """A lead feature that is the same for every contact of the account (its firmographics), per row."""
        values = self.lead_feature(name)
        first_pair = pd.Series(np.arange(len(self.row))).groupby(self.row).first()
        taken = pd.Series(values.iloc[first_pair.to_numpy()].to_numpy(), index=first_pair.index, dtype=values.dtype)
        return taken.reindex(range(self.n)).rename(name)


def _numbers(ctx: AccountContext, name: str) -> np.ndarray:
    return pd.to_numeric(ctx.lead_feature(name), errors="coerce").to_numpy(dtype=float)


def _senior(ctx: AccountContext) -> np.ndarray:
    return ctx.lead_feature("lead_seniority").isin(SENIOR).fillna(False).to_numpy(dtype=bool)


def account_contacts(ctx: AccountContext) -> pd.Series:
    """Contacts known at the company."""
    return pd.Series(ctx.count(np.ones(len(ctx.row), bool)), name="account_contacts")


def account_open_leads(ctx: AccountContext) -> pd.Series:
    """Open leads at the company."""
    return pd.Series(ctx.count(ctx.open), name="account_open_leads")


def account_senior_contacts(ctx: AccountContext) -> pd.Series:
    """Senior contacts (director, VP, C-level) known at the company."""
    return pd.Series(ctx.count(_senior(ctx)), name="account_senior_contacts")


def account_engaged_contacts_30d(ctx: AccountContext) -> pd.Series:
    """Contacts at the company active on 3 or more days of the last 30."""
    return pd.Series(ctx.count(ctx.engaged), name="account_engaged_contacts_30d")


def account_senior_engaged_contacts_30d(ctx: AccountContext) -> pd.Series:
    """Senior contacts (director, VP, C-level) at the company active on 3 or more days of the last 30."""
    return pd.Series(ctx.count(_senior(ctx) & ctx.engaged), name="account_senior_engaged_contacts_30d")


def account_departments_engaged_30d(ctx: AccountContext) -> pd.Series:
    """Departments with a contact active on 3 or more days of the last 30."""
    departments = ctx.lead_feature("lead_department")
    return pd.Series(ctx.distinct(departments, ctx.engaged), name="account_departments_engaged_30d")


def account_high_intent_events_30d(ctx: AccountContext) -> pd.Series:
    """Pricing-page views and demo requests across the company's contacts in the last 30 days."""
    counts = _numbers(ctx, "events_pricing_page_view_count_30d") + _numbers(ctx, "events_demo_request_count_30d")
    return pd.Series(ctx.total(counts), name="account_high_intent_events_30d")


def account_engagement_score(ctx: AccountContext) -> pd.Series:
    """Engagement score summed over the company's contacts (recent actions weigh more)."""
    return pd.Series(ctx.total(_numbers(ctx, "engagement_decayed_score")), name="account_engagement_score")


def account_best_contact_engagement(ctx: AccountContext) -> pd.Series:
    """Engagement score of the company's most engaged contact."""
    best = ctx.extreme(_numbers(ctx, "engagement_decayed_score"), "max")
    return pd.Series(best, name="account_best_contact_engagement")


def account_days_since_last_activity(ctx: AccountContext) -> pd.Series:
    """Days since any contact at the company was last active."""
    return pd.Series(ctx.extreme(ctx.active_days_ago, "min"), name="account_days_since_last_activity")


def account_best_contact_product_days_14d(ctx: AccountContext) -> pd.Series:
    """Most days any one contact at the company was active in the product in the last 14 days."""
    best = ctx.extreme(_numbers(ctx, "product_active_days_14d"), "max")
    return pd.Series(best, name="account_best_contact_product_days_14d")


def account_trial_contacts(ctx: AccountContext) -> pd.Series:
    """Contacts at the company who started a product trial."""
    return pd.Series(ctx.count(_numbers(ctx, "product_trial_started") > 0), name="account_trial_contacts")


def account_won_deals(ctx: AccountContext) -> pd.Series:
    """Deals the company had already won."""
    return pd.Series(ctx.extreme(_numbers(ctx, "history_account_won_deals"), "max"), name="account_won_deals")


def account_lost_deals(ctx: AccountContext) -> pd.Series:
    """Deals the company had already lost."""
    return pd.Series(ctx.extreme(_numbers(ctx, "history_account_lost_deals"), "max"), name="account_lost_deals")


SENIORITY_RANK = {level: rank for rank, level in enumerate(reversed(SENIORITY_LEVELS))}


def account_best_contact_seniority(ctx: AccountContext) -> pd.Series:
    """Seniority of the company's most senior contact (0 individual, 1 manager, 2 director, 3 VP, 4 C-level)."""
    rank = ctx.lead_feature("lead_seniority").map(SENIORITY_RANK).astype("float64").to_numpy()
    return pd.Series(ctx.extreme(rank, "max"), name="account_best_contact_seniority")


def best_open_lead(ctx: AccountContext, *, feature: str, direction: int) -> pd.Series:
    """A lead feature's best value among the company's open leads (the highest for +1, the lowest for -1)."""
    values = np.where(ctx.open, _numbers(ctx, feature), np.nan)
    return pd.Series(ctx.extreme(values, "max" if direction > 0 else "min"), name=f"account_best_{feature}")


# the lead features rolled up as "the company's best open lead": the strongest single-lead signals
BEST_OF_LEADS = (
    "events_pricing_page_view_count_30d",
    "events_demo_request_count_30d",
    "events_active_days_30d",
    "events_days_since_last_high_intent",
    "product_distinct_features_used",
    "lead_email_is_business",
    "lead_profile_completeness",
    "engagement_decayed_score",
)


def _best_spec(feature: str) -> FeatureSpec:
    lead = all_features()[feature]
    return FeatureSpec(
        f"account_best_{feature}",
        lead.group,
        f"{lead.description} (the company's best open lead)",
        lead.kind,
        lead.unit,
        partial(best_open_lead, feature=feature, direction=lead.direction or 1),
        direction=lead.direction,
        concept=f"account_best_{lead.concept}",
        filled_late=lead.filled_late,
        when_false=f"{lead.when_false} (the company's best open lead)" if lead.when_false else "",
    )


def _spec(build: Callable, group: str, *, unit: str = "", direction: int = 0, concept: str = "") -> FeatureSpec:
    description = (build.__doc__ or "").strip().splitlines()[0].rstrip(".")
    return FeatureSpec(build.__name__, group, description, "numeric", unit, build, direction=direction, concept=concept)


# the account's own attributes: the lead features of the same name (same words in the reasons), taken once
FIRMOGRAPHICS = ("account_industry", "account_employee_count_log", "account_country")


def account_feature_specs() -> dict[str, FeatureSpec]:
    """Every account feature, in model order."""
    specs = [
        _spec(account_contacts, "firmographic", unit="contacts"),
        _spec(account_open_leads, "firmographic", unit="leads"),
        _spec(account_senior_contacts, "demographic", unit="contacts"),
        _spec(account_engaged_contacts_30d, "behavioral", unit="contacts", direction=1, concept="account_reach"),
        _spec(
            account_senior_engaged_contacts_30d, "behavioral", unit="contacts", direction=1, concept="buying_committee"
        ),
        _spec(
            account_departments_engaged_30d, "behavioral", unit="departments", direction=1, concept="buying_committee"
        ),
        _spec(account_high_intent_events_30d, "behavioral", unit="events", direction=1),
        _spec(account_engagement_score, "behavioral", unit="points", direction=1, concept="account_engagement"),
        _spec(account_best_contact_engagement, "behavioral", unit="points", direction=1, concept="account_engagement"),
        _spec(account_days_since_last_activity, "behavioral", unit="days", direction=-1, concept="account_engagement"),
        _spec(account_trial_contacts, "product_usage", unit="contacts", direction=1),
        _spec(account_best_contact_product_days_14d, "product_usage", unit="active days", direction=1),
        _spec(account_won_deals, "history", unit="deals", direction=1),
        _spec(account_lost_deals, "history", unit="deals"),
    ]
    specs.append(_spec(account_best_contact_seniority, "demographic", unit="", direction=1))
    specs += [_best_spec(name) for name in BEST_OF_LEADS]
    lead_specs = all_features()
    specs += [replace(lead_specs[name], build=partial(AccountContext.first, name=name)) for name in FIRMOGRAPHICS]
    return {spec.name: spec for spec in specs}


def account_directions() -> dict[str, int]:
    """Account feature -> declared business direction, for the model factory's monotone constraints."""
    return {name: spec.direction for name, spec in account_feature_specs().items() if spec.direction}


def build_account_features(context: AccountContext, feature_names: list[str] | None = None) -> pd.DataFrame:
    """The requested account features (all when None), one row per account spine row."""
    specs = account_feature_specs()
    names = list(specs) if feature_names is None else list(feature_names)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown account feature(s): {unknown}")
    return pd.DataFrame(
        {n: pd.Series(specs[n].build(context)).reset_index(drop=True) for n in names}, index=range(context.n)
    )


__all__ = ["AccountContext", "account_directions", "account_feature_specs", "build_account_features"]
