"""What a feature builder sees: the spine rows and, aligned to them, only what was known before each cutoff.

The context prepares the point-in-time joins once; builders read from it and never mutate it or its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from leadscore.features.keys import positions
from leadscore.features.pointintime import NAT, epoch_units, known_fields, to_ns
from leadscore.features.schemas import EVENT_TYPES, SALES_TOUCH_EVENTS, event_type_key

NS_PER_DAY = 86_400 * 10**9

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
class FeatureParams:
    half_life_days: float = 14.0
    event_weights: dict[str, float] = field(default_factory=dict)
    high_intent_events: tuple[str, ...] = ("pricing_page_view", "demo_request")
    free_email_domains: tuple[str, ...] = ()
    custom_fields: tuple = ()  # features.custom.CustomField: the CRM's own lead and account columns
    declared_events: tuple[str, ...] = ()  # further event types the config names (the grade rules' categories)
    known_at: tuple[str, ...] = ()  # lead fields with a `<field>_known_at` column: read only once filled in

    @cached_property
    def event_types(self) -> tuple[str, ...]:
        """The event types that feed features: the contract's, then the ones the config declares (weighted,
        high-intent or in a grade category), each with its own code, in name order. Sales touches never feed a
        feature, and any other type is read by none: it is not the lead's activity as far as the config knows."""
        named = {*self.event_weights, *self.high_intent_events, *self.declared_events}
        custom = {event_type_key(t) for t in named} - set(EVENT_TYPES) - set(SALES_TOUCH_EVENTS)
        return (*EVENT_TYPES, *sorted(custom))

    @cached_property
    def weights(self) -> dict[str, float]:
        """Engagement weight per event type: the built-in ones, then the config's (types compared by meaning)."""
        return {**DEFAULT_EVENT_WEIGHTS, **{event_type_key(t): w for t, w in self.event_weights.items()}}


@dataclass(frozen=True)
class EventWindow:
    """Events paired with the spine rows that may see them (time strictly before the cutoff).

    `day` and `value` are read from the events only when a builder asks: most features need neither.
    """

    row: np.ndarray  # spine row position
    age_days: np.ndarray  # cutoff minus event time, in days (> 0)
    type_code: np.ndarray  # index into `types`
    types: tuple[str, ...]
    event_row: np.ndarray  # position of the event in the events table
    event_times: np.ndarray  # the events table's times (int64, in units of `ns_per_unit` ns)
    ns_per_unit: int = 1
    events: pd.DataFrame | None = None

    @cached_property
    def day(self) -> np.ndarray:
        """UTC calendar day number of the event."""
        return self.event_times[self.event_row] * self.ns_per_unit // NS_PER_DAY

    @cached_property
    def value(self) -> np.ndarray:
        """Event value (float, NaN when absent)."""
        if self.events is None or "value" not in self.events:
            return np.full(len(self.row), np.nan)
        # taken before made dense: a sparse column (mostly missing values) is never expanded to every event
        picked = self.events["value"].array.take(self.event_row)
        return pd.Series(picked, copy=False).to_numpy(dtype="float64", na_value=np.nan)

    def code(self, event_type: str) -> int:
        """The type's code; -1 (which no paired event carries) for a type outside the vocabulary."""
        key = event_type_key(event_type)
        return self.types.index(key) if key in self.types else -1


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

    @classmethod
    def of_tables(
        cls, spine: pd.DataFrame, tables: dict[str, pd.DataFrame], *, params: FeatureParams | None = None
    ) -> FeatureContext:
        """The context over the canonical tables by name: `leads`, `opportunities`; `accounts`, `events` optional."""
        return cls(
            spine,
            leads=tables["leads"],
            accounts=tables.get("accounts"),
            events=tables.get("events"),
            opportunities=tables["opportunities"],
            params=params,
        )

    @cached_property
    def lead_rows(self) -> pd.DataFrame:
        """The lead's own attributes, one row per spine row: taken as known at creation, except the fields with a
        known_at time (`params.known_at`), missing until strictly before the cutoff they were filled in."""
        position = positions(self.spine["lead_id"], pd.Index(self.leads["lead_id"]))
        if (position < 0).any():
            missing = self.spine.loc[position < 0, "lead_id"].iloc[0]
            raise KeyError(f"spine lead {missing!r} is not in the leads table")
        rows = self.leads.iloc[position].reset_index(drop=True)
        return known_fields(rows, self.params.known_at, self.cutoff_ns)

    @cached_property
    def account_rows(self) -> pd.DataFrame:
        """The lead's account attributes, one row per spine row (empty where there is no known account)."""
        columns = ["account_id", "industry", "employee_count", "annual_revenue", "country"]
        if self.accounts is None or "account_id" not in self.leads:
            return pd.DataFrame(index=range(self.n), columns=columns)
        position = positions(self.lead_rows["account_id"], pd.Index(self.accounts["account_id"]))
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
        return positions(self.lead_rows["account_id"], index), index

    @cached_property
    def deal_account_codes(self) -> np.ndarray:
        """Each deal's account, as a code of `account_codes`' index (-1: no account, or a lead not in the table)."""
        _, index = self.account_codes
        if self.opportunities is None or len(index) == 0:
            return np.full(0 if self.opportunities is None else len(self.opportunities), -1)
        account_of_lead = np.append(positions(self.leads["account_id"], index), -1)  # position -1 reads the last
        return account_of_lead[positions(self.opportunities["lead_id"], pd.Index(self.leads["lead_id"]))]

    @cached_property
    def event_window(self) -> EventWindow:
        from leadscore.features.kernels import (  # numba compiles on first use, not on import
            pairs_before,
            window_columns,
        )

        types = self.params.event_types
        events = self.events
        if events is None or events.empty:
            empty = np.array([], dtype="int64")
            return EventWindow(empty, empty.astype(float), empty, types, empty, empty)
        # the join runs on the events' own lead codes: a categorical column's codes serve as they are, and only the
        # spine's leads are looked up (among its categories), so no event-sized lookup is made
        lead = events["lead_id"]
        if isinstance(lead.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(lead.cat.categories):
            row_keys = lead.array.codes  # a read-only view, not a copy
            query_keys = positions(self.spine["lead_id"], lead.cat.categories)
        else:
            spine_index = pd.Index(self.spine["lead_id"].unique())
            row_keys = _codes(lead, spine_index)
            query_keys = spine_index.get_indexer(self.spine["lead_id"])
        # sales touches are coded after the vocabulary: one lookup gives the type and the touches, which pair with
        # no spine row (they would leak sales' reaction to a lead into its features); nor does a type outside the
        # vocabulary (code -1): a CRM's notes and tasks are sales' records, and no builder could tell them apart
        type_codes = _codes(events["event_type"], pd.Index([*types, *SALES_TOUCH_EVENTS]), small=True)
        with_events = np.flatnonzero(query_keys >= 0)  # a lead without events pairs with nothing
        event_times, per_ns = epoch_units(events["occurred_at"])
        # in the events' own unit: a whole unit t is before the cutoff c (ns) exactly when t < ceil(c / per_ns)
        cutoffs = self.cutoff_ns[with_events]
        if per_ns > 1:
            cutoffs = np.where(cutoffs == NAT, NAT, -(-cutoffs // per_ns))
        query, row = pairs_before(
            query_keys[with_events],
            cutoffs,
            row_keys,
            event_times,
            row_skip=(type_codes < 0) | (type_codes >= len(types)),
        )
        query = with_events[query]
        type_code, age_days = window_columns(
            query, row, row_types=type_codes, row_times=event_times, query_ns=self.cutoff_ns, per_ns=per_ns
        )
        return EventWindow(
            row=query,
            age_days=age_days,
            type_code=type_code,
            types=types,
            event_row=row,
            event_times=event_times,
            ns_per_unit=per_ns,
            events=events,
        )

    def event_counts(self, window_days: float) -> np.ndarray:
        """Matrix (spine rows x event types) of event counts in the last `window_days` before the cutoff."""
        cache = self.__dict__.setdefault("_count_cache", {})
        if window_days not in cache:
            from leadscore.features.kernels import window_counts

            w = self.event_window
            cache[window_days] = window_counts(
                w.row, w.type_code, w.age_days, window_days=window_days, n_rows=self.n, n_types=len(w.types)
            )
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


def _codes(values: pd.Series, index: pd.Index, *, small: bool = False) -> np.ndarray:
    """Positions of `values` in `index` (-1 when absent); fast for categorical columns. `small`: in the smallest
    integer type that holds them (an event-sized array of types in int8)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # one gather through a per-category table; code -1 (missing) reads the appended -1
        per_category = np.append(index.get_indexer(values.cat.categories.astype(str)), -1)
        if small:
            per_category = per_category.astype(np.min_scalar_type(-len(index)))
        return per_category[values.array.codes]
    codes = index.get_indexer(values)
    return codes.astype(np.min_scalar_type(-len(index))) if small else codes


def distinct_per_row(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """How many distinct `values` each row has."""
    if len(rows) == 0:
        return np.zeros(n, dtype="int64")
    pairs = pd.DataFrame({"row": rows, "value": values}).drop_duplicates()
    return np.bincount(pairs["row"].to_numpy(), minlength=n)


__all__ = ["NAT", "FeatureContext", "FeatureParams", "EventWindow", "DEFAULT_EVENT_WEIGHTS"]
