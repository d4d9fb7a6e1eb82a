"""The follow-up action: one routing table keyed by stage x cell x the model's priority band (hot, warm, cold), and
sales' own decisions on top of it. Pure functions over graded rows.

* **Band**: the calibrated probability against cut-offs relative to the base rate of new leads (`BandRules`); no
  model (`grade`), no band: the table's band-free entries, i.e. stage x cell alone.
* **Sales' acceptance stands**: a lead sales accepted stays with sales whatever its band (a hot one gets the hot
  route's SLA).
* **Sales' rejection stands**: a lead sales rejected (before the as-of, not accepted since) is kept out of every sales
  route until it shows new activity after the rejection: an event of `new_activity_events` (a demo request, a
  form, the pricing page, ...; never sales' own touches).
* **The row says why**: `route_note` explains every action that differs from what stage x cell alone would give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.context import FeatureContext
from leadscore.features.pointintime import NAT, to_ns
from leadscore.models.grade_rules import BANDS, CELLS, STAGES, BandCutoffs, RoutingRules

NO_BAND = ""  # a lead without a model probability: routed by stage x cell only


def priority_band(probability: pd.Series, cutoffs: BandCutoffs) -> pd.Series:
    """hot (probability >= cutoffs.hot), cold (< cutoffs.cold) or warm; missing where the probability is."""
    p = probability.to_numpy(dtype="float64")
    band = np.select([p >= cutoffs.hot, p < cutoffs.cold], ["hot", "cold"], "warm").astype(object)
    band[np.isnan(p)] = None
    return pd.Series(band, index=probability.index, name="band").astype("string")


def assign_actions(
    cells: pd.Series,
    as_of: pd.Series,
    rules: RoutingRules,
    *,
    stages: pd.Series,
    dormant: pd.Series | None = None,
    bands: pd.Series | None = None,
    accepted: pd.Series | None = None,
    cutoffs: BandCutoffs | None = None,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Action, SLA and route_note per lead from the routing table (stage x cell x band, dormant leads apart; a lead
    sales `accepted` keeps its sales route whatever its band); due_by = as_of + SLA hours of elapsed time (UTC),
    also shown in `timezone`. `cutoffs` only words the notes."""
    n = len(cells)
    asleep = np.zeros(n, dtype=bool) if dormant is None else dormant.to_numpy(dtype=bool)
    band = np.full(n, NO_BAND, dtype=object) if bands is None else bands.astype(object).fillna(NO_BAND).to_numpy()
    kept = np.zeros(n, dtype=bool) if accepted is None else accepted.to_numpy(dtype=bool)
    # routed once per distinct (stage, cell, dormant, band, accepted): there are at most a few hundred
    keys = pd.MultiIndex.from_arrays(
        [np.asarray(stages, dtype=object), np.asarray(cells, dtype=object), asleep, band, kept]
    )
    codes, distinct = keys.factorize()
    routes, notes = [], []
    for stage, cell, asleep_, band_, kept_ in distinct:
        plain = rules.route(stage, cell, dormant=bool(asleep_))
        banded = rules.route(stage, cell, dormant=bool(asleep_), band=band_ or None)
        # the model never takes a lead that sales accepted away from sales: its decision stands
        stays = bool(kept_) and plain.sla_hours is not None and banded.sla_hours is None
        routes.append(plain if stays else banded)
        notes.append(_band_note(band_, banded, plain, where=f"{stage} {cell}", stays=stays, cutoffs=cutoffs))
    hours = pd.Series(np.array([a.sla_hours for a in routes], dtype="float64")[codes], index=cells.index)
    names = np.array([a.action for a in routes], dtype=object)[codes] if routes else np.array([], dtype=object)
    note = np.array(notes, dtype=object)[codes] if routes else np.array([], dtype=object)
    due = pd.to_datetime(as_of, utc=True) + pd.to_timedelta(hours, unit="h")
    return pd.DataFrame(
        {
            "action": pd.Series(names, index=cells.index, dtype=object).astype("string"),
            "sla_hours": hours,
            "due_by": due,
            "due_by_local": local_text(due, timezone),
            "route_note": pd.Series(note, index=cells.index, dtype=object).astype("string"),
        },
        index=cells.index,
    )


def _band_note(band: str, banded, plain, *, where: str, stays: bool, cutoffs: BandCutoffs | None) -> str | None:
    """Why the model's band changed the route (or would have, for a lead sales accepted); None when it did not."""
    if banded == plain:
        return None
    hot = f" (p >= {cutoffs.hot:.1%})" if cutoffs else ""
    cold = f" (p < {cutoffs.cold:.2%})" if cutoffs else ""
    if stays:
        return f"accepted by sales: stays with sales though the model says unlikely{cold}"
    if band == "hot":
        return f"model says hot{hot}: the rules alone say {plain.text()}"
    if band == "cold":
        return f"rules say {where}: {plain.text()}, model says unlikely{cold}"
    return f"model says {band}: the rules alone say {plain.text()}"


def local_text(due: pd.Series, timezone: str) -> pd.Series:
    """Due-by times as local text ("2025-01-10 17:00 CET"), formatted once per distinct time (all leads of a run
    share the as-of, so there are as many as SLAs); missing where `due` is."""
    codes, distinct = pd.factorize(due, use_na_sentinel=True)
    text = pd.Series(distinct).dt.tz_convert(timezone).dt.strftime("%Y-%m-%d %H:%M %Z")
    return text.reindex(codes).set_axis(due.index).where(due.notna())


# -- sales' rejections -------------------------------------------------------------------------------------------
def last_activity(context: FeatureContext, event_types: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per spine row, the time (ns; NAT when none) and type of the lead's last event of `event_types` before the
    cutoff. Sales' own touches never count: the event window does not pair them."""
    w = context.event_window
    wanted = [code for code in (w.code(t) for t in event_types) if code >= 0]
    pick = np.flatnonzero(np.isin(w.type_code, wanted))
    latest = np.full(context.n, NAT, dtype="int64")
    kind = np.full(context.n, None, dtype=object)
    if len(pick):
        times = w.event_times[w.event_row[pick]].astype("int64") * w.ns_per_unit
        order = np.lexsort((times, w.row[pick]))  # by row, then time: each row's last pair is its latest event
        rows, times, codes = w.row[pick][order], times[order], w.type_code[pick][order]
        last = np.r_[rows[1:] != rows[:-1], True]
        latest[rows[last]] = times[last]
        kind[rows[last]] = np.asarray(w.types, dtype=object)[codes[last]]
    return latest, kind


def sales_rejections(context: FeatureContext, *, new_activity_events: list[str]) -> pd.DataFrame:
    """Per spine row: when sales rejected the lead (before the cutoff and not accepted since; NaT otherwise), the
    reason given, and the lead's last event of `new_activity_events` after the rejection (its type; missing when
    there was none)."""
    rows = context.lead_rows
    cutoff = context.cutoff_ns
    rejected = _times(rows, "sales_rejected_at", context.n)
    accepted = _times(rows, "sales_accepted_at", context.n)
    stands = (rejected != NAT) & (rejected < cutoff)
    stands &= ~((accepted != NAT) & (accepted > rejected) & (accepted < cutoff))  # sales changed its mind
    latest, kind = last_activity(context, new_activity_events)
    active = stands & (latest > rejected)
    reason = rows["rejection_reason"] if "rejection_reason" in rows else pd.Series(pd.NA, index=rows.index)
    return pd.DataFrame(
        {
            "rejected_at": _utc(np.where(stands, rejected, NAT)),
            "rejection_reason": reason.astype("string").where(stands).to_numpy(),
            "new_activity": pd.array(np.where(active, kind, None), dtype="string"),
            "new_activity_at": _utc(np.where(active, latest, NAT)),
        }
    )


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ns.astype("int64").view("datetime64[ns]")).tz_localize("UTC")


def _times(rows: pd.DataFrame, column: str, n: int) -> np.ndarray:
    return to_ns(rows[column]) if column in rows else np.full(n, NAT, dtype="int64")


def keep_rejections(actions: pd.DataFrame, rejections: pd.DataFrame, *, rejected_action: str) -> pd.DataFrame:
    """`actions` with sales' rejections standing: a rejected lead without new activity since leaves any sales route
    (an SLA) for `rejected_action` ("...; kept from sales until new activity"); every rejected lead's note starts
    with "rejected by sales on D: reason"."""
    out = actions.copy()
    when = pd.Series(rejections["rejected_at"].to_numpy(), index=out.index)
    rejected = when.notna().to_numpy()
    activity = pd.Series(rejections["new_activity"].to_numpy(), index=out.index, dtype="string")
    active = activity.notna().to_numpy()
    held = rejected & ~active & out["sla_hours"].notna().to_numpy()
    out.loc[held, "action"] = rejected_action
    out.loc[held, "sla_hours"] = np.nan
    out.loc[held, "due_by"] = pd.NaT
    out.loc[held, "due_by_local"] = pd.NA
    reason = pd.Series(rejections["rejection_reason"].to_numpy(), index=out.index, dtype="string")
    text = "rejected by sales on " + when.dt.strftime("%Y-%m-%d") + ": " + reason.fillna("no reason given")
    since = pd.Series(rejections["new_activity_at"].to_numpy(), index=out.index).dt.strftime("%Y-%m-%d")
    text = text.where(~active, text + "; new activity since: " + activity + " on " + since)
    text = text.where(~held, text + "; kept from sales until new activity")
    out["route_note"] = join_notes(text.where(rejected), out["route_note"])
    return out


def join_notes(first: pd.Series, second: pd.Series) -> pd.Series:
    """Two note columns as one ("first; second"), missing where both are."""
    first, second = first.astype("string"), second.astype("string")
    both = first + "; " + second
    return both.fillna(first).fillna(second).astype("string")


# -- the table as documentation ----------------------------------------------------------------------------------
def routing_markdown(rules: RoutingRules) -> str:
    """The whole table, compact: one row per band(s) and group of cells that route alike in every stage; dormant
    leads in rows of their own, only where dormancy changes a route ("as if active" where it does not)."""
    lines = ["| band | cells | " + " | ".join(STAGES) + " |", "|---|---|" + "---|" * len(STAGES)]
    for dormant in (False, True):
        by_band = {band: _routes_by_cell(rules, band, dormant=dormant) for band in (*BANDS, None)}
        for bands in _alike(by_band):
            groups = _alike({cell: by_band[bands[0]][cell] for cell in CELLS})
            for cells in groups:
                routes = by_band[bands[0]][cells[0]]
                if dormant and all(r == AS_IF_ACTIVE for r in routes):
                    continue
                label = ", ".join(b or "none (grade)" for b in bands)
                where = "any" if len(cells) == len(CELLS) else _cell_runs(cells)
                lines.append(f"| {'dormant, ' if dormant else ''}{label} | {where} | " + " | ".join(routes) + " |")
    return "\n".join(lines)


AS_IF_ACTIVE = "as if active"


def _routes_by_cell(rules: RoutingRules, band: str | None, *, dormant: bool) -> dict[str, tuple[str, ...]]:
    """cell -> the route text in each stage (for dormant leads "as if active" where dormancy changes nothing)."""
    out = {}
    for cell in CELLS:
        texts = []
        for stage in STAGES:
            route = rules.route(stage, cell, dormant=dormant, band=band)
            same = dormant and route == rules.route(stage, cell, band=band)
            texts.append(AS_IF_ACTIVE if same else route.text())
        out[cell] = tuple(texts)
    return out


def _alike(values: dict) -> list[list]:
    """The keys of `values` grouped by equal value, groups in the order of their first key."""
    groups: dict = {}
    for key, value in values.items():
        groups.setdefault(value if not isinstance(value, dict) else tuple(value.items()), []).append(key)
    return list(groups.values())


def _cell_runs(cells: list[str]) -> str:
    """Cells as text, runs of three or more within one fit grade written "A1..A3"."""
    runs = []
    for fit in dict.fromkeys(c[0] for c in cells):
        mine = [c for c in cells if c[0] == fit]
        levels = [int(c[1]) for c in mine]
        whole = len(mine) >= 3 and levels == list(range(levels[0], levels[0] + len(mine)))
        runs += [f"{mine[0]}..{mine[-1]}"] if whole else mine
    return ", ".join(runs)
