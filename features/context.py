"""What a feature builder sees: the spine rows and, aligned to them, only what was known before each cutoff.

The context prepares the point-in-time joins once; builders read from it and never mutate it or its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.pointintime import NAT, expand_before, to_ns
from features.schemas import EVENT_TYPES, SALES_TOUCH_EVENTS

NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class FeatureParams:
    half_life_days: float = 14.0
    event_weights: dict[str, float] = field(default_factory=dict)
    high_intent_events: tuple[str, ...] = ("pricing_page_view", "demo_request")
    free_email_domains: tuple[str, ...] = ()
    custom_fields: tuple = ()  # features.custom.CustomField: the CRM's own lead and account columns


DEFAULT_EVENT_WEIGHTS = {
    "page_view": 1.0,
    "pricing_page_view": 5.0,
    "email_open": 0.5,
    "email_click": 2.0,
    "form_submit": 4.0,
    "content_download": 3.0,
    "webinar_attended": 5.0,
    "demo_request": 10.0,
    "trial_signup": 8.0,
    "product_login": 2.0,
    "feature_used": 2.0,
    "upgrade_page_view": 6.0,
    "support_ticket": 1.0,
}


@dataclass(frozen=True)
class EventWindow:
    """Events paired with the spine rows that may see them (time strictly before the cutoff)."""

    row: np.ndarray  # spine row position
    age_days: np.ndarray  # cutoff minus event time, in days (> 0)
    type_code: np.ndarray  # index into `types`
    day: np.ndarray  # UTC calendar day number of the event
    value: np.ndarray  # event value (float, NaN when absent)
    types: tuple[str, ...]

    def code(self, event_type: str) -> int:
        return self.types.index(event_type) if event_type in self.types else -1


class FeatureContext:
    def __init__(
        self,
        spine: pd.DataFrame,
        *,
        leads: pd.DataFrame,
        accounts: pd.DataFrame | None = None,
        events: pd.DataFrame | None = None,
        opportunities: pd.DataFrame | None = None,
        params: FeatureParams | None = None,
    ) -> None:
        self.spine = spine[["lead_id", "cutoff_time"]].reset_index(drop=True)
        self.leads = leads
        self.accounts = accounts
        self.events = events
        self.opportunities = opportunities
        self.params = params or FeatureParams()
        self.n = len(self.spine)
        self.cutoff_ns = to_ns(self.spine["cutoff_time"])

    @cached_property
    def lead_rows(self) -> pd.DataFrame:
        """The lead's own attributes, one row per spine row (attributes are taken as known at creation)."""
        position = pd.Index(self.leads["lead_id"]).get_indexer(self.spine["lead_id"])
        if (position < 0).any():
            missing = self.spine.loc[position < 0, "lead_id"].iloc[0]
            raise KeyError(f"spine lead {missing!r} is not in the leads table")
        return self.leads.iloc[position].reset_index(drop=True)

    @cached_property
    def account_rows(self) -> pd.DataFrame:
        """The lead's account attributes, one row per spine row (empty where there is no known account)."""
        columns = ["account_id", "industry", "employee_count", "annual_revenue", "country"]
        if self.accounts is None or "account_id" not in self.leads:
            return pd.DataFrame(index=range(self.n), columns=columns)
        position = pd.Index(self.accounts["account_id"]).get_indexer(self.lead_rows["account_id"])
        frame = self.accounts.reindex(columns=columns).iloc[np.where(position < 0, 0, position)]
        frame = frame.reset_index(drop=True)
        frame.loc[position < 0, :] = None
        return frame

    @cached_property
    def account_codes(self) -> tuple[np.ndarray, pd.Index]:
        """Integer codes of each spine row's account (-1: none), and the account index they refer to."""
        if "account_id" not in self.leads:
            return np.full(self.n, -1), pd.Index([])
        index = pd.Index(self.leads["account_id"].dropna().unique())
        return index.get_indexer(self.lead_rows["account_id"]), index

    @cached_property
    def event_window(self) -> EventWindow:
        types = tuple(EVENT_TYPES)
        events = self.events
        if events is None or events.empty:
            empty = np.array([], dtype="int64")
            return EventWindow(empty, empty.astype(float), empty, empty, empty.astype(float), types)
        spine_index = pd.Index(self.spine["lead_id"].unique())
        query_keys = spine_index.get_indexer(self.spine["lead_id"])
        row_keys = _codes(events["lead_id"], spine_index)
        # sales' own touches pair with no spine row: they would leak sales' reaction to a lead into its features
        row_keys = np.where(_codes(events["event_type"], pd.Index(list(SALES_TOUCH_EVENTS))) >= 0, -1, row_keys)
        event_ns = to_ns(events["occurred_at"])
        query, row = expand_before(query_keys, self.cutoff_ns, row_keys, event_ns)
        type_index = pd.Index(types)
        type_code = _codes(events["event_type"], type_index)[row]
        value = events["value"].to_numpy(dtype="float64", na_value=np.nan)[row] if "value" in events else None
        return EventWindow(
            row=query,
            age_days=(self.cutoff_ns[query] - event_ns[row]) / NS_PER_DAY,
            type_code=type_code,
            day=event_ns[row] // NS_PER_DAY,
            value=value if value is not None else np.full(len(row), np.nan),
            types=types,
        )

    def event_counts(self, window_days: float) -> np.ndarray:
        """Matrix (spine rows x event types) of event counts in the last `window_days` before the cutoff."""
        cache = self.__dict__.setdefault("_count_cache", {})
        if window_days not in cache:
            w = self.event_window
            inside = w.age_days <= window_days
            n_types = len(w.types)
            known = inside & (w.type_code >= 0)
            flat = w.row[known] * n_types + w.type_code[known]
            cache[window_days] = np.bincount(flat, minlength=self.n * n_types).reshape(self.n, n_types)
        return cache[window_days]

    def distinct_days(self, window_days: float, types: tuple[str, ...] | None = None) -> np.ndarray:
        """Distinct UTC days with at least one event (of `types`) in the last `window_days`."""
        w = self.event_window
        mask = w.age_days <= window_days
        if types is not None:
            mask &= np.isin(w.type_code, [w.code(t) for t in types])
        return distinct_per_row(w.row[mask], w.day[mask], self.n)

    def last_event_age(self, types: tuple[str, ...] | None = None) -> np.ndarray:
        """Days from the last event (of `types`) to the cutoff; NaN when there was none."""
        w = self.event_window
        mask = np.ones(len(w.row), bool) if types is None else np.isin(w.type_code, [w.code(t) for t in types])
        youngest = np.full(self.n, np.inf)
        np.minimum.at(youngest, w.row[mask], w.age_days[mask])
        return np.where(np.isinf(youngest), np.nan, youngest)


def _codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Positions of `values` in `index` (-1 when absent); fast for categorical columns."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        category_codes = index.get_indexer(values.cat.categories.astype(str))
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, category_codes[codes], -1)
    return index.get_indexer(values)


def distinct_per_row(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """How many distinct `values` each row has."""
    if len(rows) == 0:
        return np.zeros(n, dtype="int64")
    pairs = pd.DataFrame({"row": rows, "value": values}).drop_duplicates()
    return np.bincount(pairs["row"].to_numpy(), minlength=n)


__all__ = ["NAT", "FeatureContext", "FeatureParams", "EventWindow", "DEFAULT_EVENT_WEIGHTS"]
