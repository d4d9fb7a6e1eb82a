"""Opportunity features: the deal's own point-in-time history, and its lead's activity and company's record.

Each (opportunity, cutoff) row reads
- the deal's fields as they stood at the cutoff, from the `opportunity_history` table (one row per change: field,
  new value, changed_at). A change is seen only when `changed_at` is strictly before the cutoff; a change at or
  after it does not exist yet. Without a history table only what cannot change after creation is read (the deal's
  age); the deal's current stage, amount and close date in the opportunities table are today's values and are never
  read for a past cutoff (the data contract does not say the amount is set at creation).
- the deal's lead at the same cutoff through one lead FeatureContext (every point-in-time rule of the lead features
  holds: events strictly before the cutoff, the company's other deals counted once closed).
- the activity of the deal's company and its contacts in windows before the cutoff, through one AccountContext on
  (the deal's account, cutoff): the account's leads created strictly before the cutoff, their events strictly before
  it (the account level's roll-ups, features/accounts.py).
- the lead's last score before the deal was opened, from the score history (`scores`: lead_id, as_of, score of
  the production runs, optionally model_name and model_version to order runs of one time): a run scored strictly
  before the deal's creation (and so before the cutoff); none, or no history, is a missing value, never a later
  score.
Builders are listed explicitly in `opportunity_feature_specs`; they carry a group, direction and concept like the
lead registry, so reasons read the same way.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property, partial

import numpy as np
import pandas as pd

from leadscore.features.account_spine import account_of_deals
from leadscore.features.accounts import AccountContext, account_feature_specs
from leadscore.features.build import feature_columns
from leadscore.features.context import NS_PER_DAY, FeatureContext, FeatureParams
from leadscore.features.keys import positions
from leadscore.features.opportunity_spine import KEY
from leadscore.features.pointintime import NAT, count_before, to_ns
from leadscore.features.registry import FeatureSpec, all_features
from leadscore.features.schemas import history_field


def history_changes(history: pd.DataFrame, field: str) -> pd.DataFrame:
    """One field's changes (opportunity_id, value, changed_at in ns), in time order; rows without a time are never
    known, so never read."""
    fields = history["field"].astype("string").map(lambda name: history_field(name) if pd.notna(name) else None)
    rows = history.loc[(fields == field).to_numpy(dtype=bool) & history["changed_at"].notna().to_numpy(dtype=bool)]
    changes = pd.DataFrame(
        {
            KEY: pd.array(rows[KEY].astype("string").to_numpy(), dtype="string"),
            "value": rows["value"].to_numpy(dtype=object) if "value" in rows else None,
            "changed_ns": to_ns(rows["changed_at"]),
        }
    )
    return changes.sort_values(["changed_ns"], kind="stable").reset_index(drop=True)


class OpportunityContext:
    """The opportunity spine's rows, the deal's fields as known before each cutoff, and its lead's context."""

    def __init__(
        self,
        spine: pd.DataFrame,
        *,
        opportunities: pd.DataFrame,
        leads: pd.DataFrame,
        history: pd.DataFrame | None = None,
        accounts: pd.DataFrame | None = None,
        events: pd.DataFrame | None = None,
        params: FeatureParams | None = None,
        scores: pd.DataFrame | None = None,
    ) -> None:
        self.spine = spine[[KEY, "cutoff_time"]].reset_index(drop=True)
        self.spine[KEY] = self.spine[KEY].astype("string")
        self.n = len(self.spine)
        self.cutoff_ns = to_ns(self.spine["cutoff_time"])
        self.history = history
        deal_ids = opportunities[KEY].astype("string")
        self.deals = opportunities.iloc[positions(self.spine[KEY], pd.Index(deal_ids))].reset_index(drop=True)
        pairs = pd.DataFrame({"lead_id": self.deals["lead_id"].to_numpy(), "cutoff_time": self.spine["cutoff_time"]})
        lead_ids = set(pairs["lead_id"].dropna())
        self.lead_context = FeatureContext(
            pairs,
            leads=leads,
            accounts=accounts,
            events=None if events is None else events[events["lead_id"].isin(lead_ids)],
            opportunities=opportunities,
            params=params,
        )
        self.scores = scores
        self._tables = {"leads": leads, "accounts": accounts, "events": events, "opportunities": opportunities}
        self._params = params

    @cached_property
    def account(self) -> AccountContext:
        """The deal's company at each cutoff (its own account, else its lead's), with the contacts known then."""
        t = self._tables
        spine = pd.DataFrame(
            {
                "account_id": account_of_deals(t["leads"], self.deals).to_numpy(),
                "cutoff_time": self.spine["cutoff_time"],
            }
        )
        return AccountContext(
            spine,
            leads=t["leads"],
            accounts=t["accounts"],
            events=t["events"],
            opportunities=t["opportunities"],
            params=self._params,
        )

    def account_feature(self, name: str) -> pd.Series:
        """An account builder's values for each row's company at the row's cutoff."""
        return pd.Series(account_feature_specs()[name].build(self.account)).reset_index(drop=True)

    def lead_feature(self, name: str) -> pd.Series:
        """A lead builder's values for each row's lead at the row's cutoff."""
        return feature_columns(self.lead_context, [name])[name]

    def value_at(self, field: str) -> tuple[pd.Series, np.ndarray]:
        """Per row: the field's latest value set strictly before the cutoff (missing when none), and when it was set
        (ns, NAT when never)."""
        cache = self.__dict__.setdefault("_values", {})
        if field not in cache:
            cache[field] = self._latest(history_changes(self.history, field)) if self.history is not None else None
        if cache[field] is None:
            return pd.Series([None] * self.n, dtype=object), np.full(self.n, NAT)
        return cache[field]

    def _latest(self, changes: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
        queries = pd.DataFrame({KEY: self.spine[KEY].array, "cutoff_ns": self.cutoff_ns, "row": range(self.n)})
        merged = pd.merge_asof(
            queries.sort_values("cutoff_ns", kind="stable"),
            changes,
            left_on="cutoff_ns",
            right_on="changed_ns",
            by=KEY,
            direction="backward",
            allow_exact_matches=False,  # a change at the cutoff itself is not yet known
        ).sort_values("row")
        changed = merged["changed_ns"].to_numpy(dtype="float64")
        when = np.where(np.isnan(changed), NAT, np.nan_to_num(changed)).astype("int64")
        return pd.Series(merged["value"].to_numpy(dtype=object)), when

    def changes_before(self, field: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The field's changes, and per change its spine rows: (changes, row, change position) for every pair of a
        row and a change of its deal strictly before its cutoff."""
        changes = history_changes(self.history, field) if self.history is not None else history_changes_empty()
        pairs = pd.DataFrame({KEY: self.spine[KEY].array, "row": range(self.n)}).merge(
            changes.reset_index(names="change"), on=KEY
        )
        pairs = pairs[pairs["changed_ns"].to_numpy() < self.cutoff_ns[pairs["row"].to_numpy()]]
        return changes, pairs["row"].to_numpy(), pairs["change"].to_numpy()

    def count_changes(self, field: str) -> np.ndarray:
        """Per row: the field's recorded values strictly before the cutoff."""
        changes = history_changes(self.history, field) if self.history is not None else history_changes_empty()
        index = pd.Index(self.spine[KEY].unique())
        counts, _ = count_before(
            index.get_indexer(changes[KEY]),
            changes["changed_ns"].to_numpy(),
            index.get_indexer(self.spine[KEY]),
            self.cutoff_ns,
        )
        return counts.astype("float64")


def history_changes_empty() -> pd.DataFrame:
    return pd.DataFrame({KEY: pd.Series([], dtype="string"), "value": [], "changed_ns": np.array([], "int64")})


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")


def _dates_ns(values: pd.Series) -> np.ndarray:
    return to_ns(pd.to_datetime(values.astype("string"), utc=True, errors="coerce", format="mixed"))


def _days(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    known = (later != NAT) & (earlier != NAT)
    return np.where(known, (later - earlier) / NS_PER_DAY, np.nan)


def deal_age_days(ctx: OpportunityContext) -> pd.Series:
    """Days since the deal was created."""
    return pd.Series(_days(ctx.cutoff_ns, to_ns(ctx.deals["created_at"])), name="deal_age_days")


def deal_stage(ctx: OpportunityContext) -> pd.Series:
    """Sales stage of the deal."""
    values, _ = ctx.value_at("stage")
    stage = values.astype("string").str.strip().str.lower()
    return stage.mask(stage == "").rename("deal_stage")


def deal_days_in_stage(ctx: OpportunityContext) -> pd.Series:
    """Days the deal has been in its current stage."""
    _, since = ctx.value_at("stage")
    return pd.Series(_days(ctx.cutoff_ns, since), name="deal_days_in_stage")


def deal_stage_changes(ctx: OpportunityContext) -> pd.Series:
    """Stage changes since the deal was opened."""
    return pd.Series(np.maximum(ctx.count_changes("stage") - 1, 0), name="deal_stage_changes")


def deal_amount(ctx: OpportunityContext) -> pd.Series:
    """Amount of the deal."""
    values, _ = ctx.value_at("amount")
    return pd.Series(_numbers(values), name="deal_amount")


def deal_amount_change_pct(ctx: OpportunityContext) -> pd.Series:
    """Change in the deal's amount since it was first entered (%)."""
    changes, row, change = ctx.changes_before("amount")
    first = np.full(ctx.n, np.nan)
    order = np.lexsort((change, row))  # each row's earliest change first
    seen = pd.Series(row[order]).duplicated().to_numpy()
    first[row[order][~seen]] = _numbers(changes["value"]).take(change[order][~seen])
    now = deal_amount(ctx).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(first > 0, 100.0 * (now - first) / first, np.nan)
    return pd.Series(pct, name="deal_amount_change_pct")


def deal_amount_changes(ctx: OpportunityContext) -> pd.Series:
    """Times the deal's amount was changed."""
    return pd.Series(np.maximum(ctx.count_changes("amount") - 1, 0), name="deal_amount_changes")


def deal_close_date_slips(ctx: OpportunityContext) -> pd.Series:
    """Times the deal's expected close date was pushed later."""
    changes, row, change = ctx.changes_before("close_date")
    ns = _dates_ns(changes["value"])
    dates = np.where(ns == NAT, np.nan, ns.astype("float64"))  # an unreadable date moves nothing
    previous = pd.Series(dates).groupby(changes[KEY].to_numpy()).shift(1).to_numpy(dtype="float64")
    slipped = dates > previous  # False wherever either is NaN
    return pd.Series(np.bincount(row[slipped[change]], minlength=ctx.n).astype("float64"), name="deal_close_date_slips")


def deal_days_to_close_date(ctx: OpportunityContext) -> pd.Series:
    """Days until the deal's expected close date (negative: overdue)."""
    values, _ = ctx.value_at("close_date")
    return pd.Series(_days(_dates_ns(values), ctx.cutoff_ns), name="deal_days_to_close_date")


def deal_days_since_update(ctx: OpportunityContext) -> pd.Series:
    """Days since the deal's stage, amount or close date last changed."""
    latest = np.full(ctx.n, NAT)
    for field in ("stage", "amount", "close_date"):
        latest = np.maximum(latest, ctx.value_at(field)[1])
    return pd.Series(_days(ctx.cutoff_ns, latest), name="deal_days_since_update")


def _account_events(ctx: OpportunityContext, days: float) -> np.ndarray:
    """Per row: the events of the company's contacts (known before the cutoff) in the last `days` before it."""
    account = ctx.account
    per_contact = account.lead_context.event_counts(days).sum(axis=1).astype("float64")
    return account.total(per_contact)


def deal_account_events_7d(ctx: OpportunityContext) -> pd.Series:
    """Marketing and product events across the company's contacts in the last 7 days."""
    return pd.Series(_account_events(ctx, 7), name="deal_account_events_7d")


def deal_account_events_30d(ctx: OpportunityContext) -> pd.Series:
    """Marketing and product events across the company's contacts in the last 30 days."""
    return pd.Series(_account_events(ctx, 30), name="deal_account_events_30d")


def deal_account_events_90d(ctx: OpportunityContext) -> pd.Series:
    """Marketing and product events across the company's contacts in the last 90 days."""
    return pd.Series(_account_events(ctx, 90), name="deal_account_events_90d")


def lead_last_score(ctx: OpportunityContext) -> pd.Series:
    """The lead's last score (1-99) before the deal was opened."""
    seen_until = np.minimum(to_ns(ctx.deals["created_at"]), ctx.cutoff_ns)  # NAT (the minimum int64) stays unknown
    out = np.full(ctx.n, np.nan)
    scores = ctx.scores
    if scores is None or scores.empty:
        return pd.Series(out, name="lead_last_score")
    history = pd.DataFrame(
        {
            "lead_id": pd.array(scores["lead_id"].astype("string").to_numpy(), dtype="string"),
            "scored_ns": to_ns(scores["as_of"]),
            "score": pd.to_numeric(scores["score"], errors="coerce").to_numpy(dtype="float64"),
        }
    )
    # runs of one time (a rerun with another version) in the score history's own order: by model name and version
    # when given, else as listed; merge_asof reads the last of equal times
    ties = [c for c in ("model_name", "model_version") if c in scores]
    history = history.assign(**{c: scores[c].astype("string").to_numpy() for c in ties})
    history = history[(history["scored_ns"] != NAT) & history["lead_id"].notna()]
    history = history.sort_values(["scored_ns", *ties], kind="stable")
    queries = pd.DataFrame(
        {"lead_id": ctx.deals["lead_id"].astype("string").array, "until_ns": seen_until, "row": range(ctx.n)}
    )
    known = queries[(queries["until_ns"] != NAT) & queries["lead_id"].notna()].sort_values("until_ns", kind="stable")
    merged = pd.merge_asof(
        known,
        history,
        left_on="until_ns",
        right_on="scored_ns",
        by="lead_id",
        direction="backward",
        allow_exact_matches=False,  # a run at the deal's creation scored a lead that was converting: not before
    )
    out[merged["row"].to_numpy()] = merged["score"].to_numpy(dtype="float64")
    return pd.Series(out, name="lead_last_score")


def _spec(
    build, *, group: str = "deal", kind: str = "numeric", unit: str = "", direction: int = 0, concept: str = ""
) -> FeatureSpec:
    description = (build.__doc__ or "").strip().splitlines()[0].rstrip(".")
    return FeatureSpec(build.__name__, group, description, kind, unit, build, direction=direction, concept=concept)


# the deal's lead and company, read at the deal's cutoff: the lead features of the same name (same words in the reasons)
LEAD_FEATURES = (
    "lead_seniority",
    "lead_source",
    "events_count_30d",
    "events_active_days_30d",
    "events_days_since_last",
    "events_pricing_page_view_count_30d",
    "events_demo_request_count_30d",
    "events_trend_7d_vs_21d",
    "engagement_decayed_score",
    "product_active_days_14d",
    "account_industry",
    "account_employee_count_log",
    "history_account_won_deals",
    "history_account_lost_deals",
)

# the company's contacts at the deal's cutoff: the account features of the same name (same words in the reasons)
ACCOUNT_FEATURES = (
    "account_contacts",
    "account_engaged_contacts_30d",
    "account_high_intent_events_30d",
    "account_days_since_last_activity",
)


def _borrowed(spec: FeatureSpec, build) -> FeatureSpec:
    """Another level's feature, built by `build` (a context method) on the deal's lead or company at its cutoff."""
    return replace(spec, build=partial(build, name=spec.name))


def opportunity_feature_specs(*, with_history: bool = True, with_scores: bool = True) -> dict[str, FeatureSpec]:
    """Every opportunity feature, in model order; without a history table only those fixed at the deal's creation
    (its age grows with the cutoff alone) and its lead's and company's; without a score history, no last score."""
    specs = [_spec(deal_age_days, unit="days", concept="deal_age")]
    if with_history:
        specs += [
            _spec(deal_stage, kind="categorical"),
            _spec(deal_days_in_stage, unit="days", concept="deal_age"),
            _spec(deal_stage_changes, unit="changes", concept="deal_progress"),
            _spec(deal_days_since_update, unit="days", concept="deal_progress"),
            _spec(deal_amount, unit="USD", concept="deal_amount"),
            _spec(deal_amount_change_pct, unit="%", concept="deal_amount"),
            _spec(deal_amount_changes, unit="changes", concept="deal_amount"),
            _spec(deal_close_date_slips, unit="times", direction=-1, concept="deal_close_date"),
            _spec(deal_days_to_close_date, unit="days", concept="deal_close_date"),
        ]
    specs += [_borrowed(all_features()[name], OpportunityContext.lead_feature) for name in LEAD_FEATURES]
    specs += [
        _spec(deal_account_events_7d, group="behavioral", unit="events", direction=1, concept="deal_account_activity"),
        _spec(deal_account_events_30d, group="behavioral", unit="events", direction=1, concept="deal_account_activity"),
        _spec(deal_account_events_90d, group="behavioral", unit="events", direction=1, concept="deal_account_activity"),
    ]
    account = account_feature_specs()
    specs += [_borrowed(account[name], OpportunityContext.account_feature) for name in ACCOUNT_FEATURES]
    if with_scores:
        specs.append(_spec(lead_last_score, group="history", unit="points", direction=1, concept="lead_last_score"))
    return {spec.name: spec for spec in specs}


def opportunity_directions(specs: dict[str, FeatureSpec]) -> dict[str, int]:
    """Feature -> declared business direction, for the model factory's monotone constraints."""
    return {name: spec.direction for name, spec in specs.items() if spec.direction}


def build_opportunity_features(context: OpportunityContext, feature_names: list[str]) -> pd.DataFrame:
    """The requested opportunity features, one row per opportunity spine row."""
    specs = opportunity_feature_specs()
    unknown = [n for n in feature_names if n not in specs]
    if unknown:
        raise ValueError(f"unknown opportunity feature(s): {unknown}")
    return pd.DataFrame(
        {n: pd.Series(specs[n].build(context)).reset_index(drop=True) for n in feature_names}, index=range(context.n)
    )


__all__ = [
    "LEAD_FEATURES",
    "OpportunityContext",
    "build_opportunity_features",
    "history_changes",
    "opportunity_directions",
    "opportunity_feature_specs",
]
