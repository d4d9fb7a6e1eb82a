"""A CRM's export conventions, turned into the contract's shape before validation (`[exports]` in config).

Salesforce links a converted lead to its opportunity from the lead side (`Lead.ConvertedOpportunityId`), and a
lead closed without conversion carries a status, not a deal; HubSpot lists a deal's contacts in one association
cell; activity lives in several objects (Task, Event, CampaignMember; calls, emails, meetings). Each convention is
a small function over the raw tables in the export's own column names, so validation then names the user's
columns and rows as usual.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.pipelines.config import Settings, TableSource
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.parsing import parse_time_column
from leadscore.pipelines.intake.sources import SET_ASIDE_COLUMN, read_source
from leadscore.pipelines.intake.vendors import VENDORS, api_name_renames, headers_as_api_names

log = logging.getLogger(__name__)


def _column(source: TableSource, role: str) -> str:
    return source.columns.get(role, role)


def _need(frame: pd.DataFrame, column: str, table: str, key: str) -> None:
    if column not in frame:
        raise DataError(
            f"column '{column}' (exports.{key}) is absent; the table has {list(frame.columns)[:20]}",
            where=f"table '{table}'",
            hint=f"fix exports.{key} or the export",
        )


def link_opportunities_from_leads(leads: pd.DataFrame, opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Each opportunity gets the lead whose `opportunity_id_on_lead` names it (Salesforce's conversion link)."""
    t, column = settings.tables, settings.exports.opportunity_id_on_lead
    _need(leads, column, "leads", "opportunity_id_on_lead")
    lead_id, opp_id = _column(t.leads, "lead_id"), _column(t.opportunities, "opportunity_id")
    links = leads[[column, lead_id]].dropna()
    links = links.assign(**{column: links[column].astype("string").str.strip()})
    links = links.drop_duplicates(column)  # one opportunity converts one lead; a repeat keeps the first lead
    by_opportunity = pd.Series(links[lead_id].to_numpy(), index=links[column].to_numpy())
    keys = opportunities[opp_id].astype("string").str.strip()
    return opportunities.assign(**{_column(t.opportunities, "lead_id"): keys.map(by_opportunity).to_numpy()})


def first_listed_lead(opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The first id of a list cell (`123;456` -> `123`): a HubSpot deal associated with several contacts."""
    column = _column(settings.tables.opportunities, "lead_id")
    _need(opportunities, column, "opportunities", "lead_id_list_separator")
    first = opportunities[column].astype("string").str.split(settings.exports.lead_id_list_separator).str[0]
    return opportunities.assign(**{column: first.str.strip().to_numpy()})


def lost_leads_as_deals(leads: pd.DataFrame, opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """A lead closed without a deal (its status says so) is a lost outcome, dated by `lost_at_column`: one lost
    opportunity per such lead, unless it already has a deal. Its times are read as the lead table writes them
    (timezone and `timestamp_format`) and written in ISO 8601, whatever the opportunities' own format."""
    e, t = settings.exports, settings.tables
    for column, key in ((e.lead_status_column, "lead_status_column"), (e.lost_at_column, "lost_at_column")):
        _need(leads, column, "leads", key)
    lead_id, created = _column(t.leads, "lead_id"), _column(t.leads, "created_at")
    if lead_id not in leads or created not in leads:
        return opportunities  # validation names the absent column of the leads table
    o = t.opportunities
    statuses = {v.strip().lower() for v in e.lost_lead_statuses}
    lost = leads[e.lead_status_column].astype("string").str.strip().str.lower().isin(statuses).fillna(False)
    has_deal = leads[lead_id].isin(opportunities[_column(o, "lead_id")].dropna())
    rows = leads.loc[lost & ~has_deal]
    if rows.empty:
        return opportunities
    lost_value = (o.status_values or {}).get("lost", ["lost"])[0]
    synthetic = pd.DataFrame(
        {
            _column(o, "opportunity_id"): "lead-closed:" + rows[lead_id].astype("string"),
            _column(o, "lead_id"): rows[lead_id].to_numpy(),
            _column(o, "created_at"): _iso_times(rows[created], settings),
            _column(o, "closed_at"): _iso_times(rows[e.lost_at_column], settings),
            _column(o, "status"): lost_value,
        }
    )
    log.info("%d lead(s) closed without a deal (status %s): counted as lost outcomes", len(rows), e.lost_lead_statuses)
    return pd.concat([opportunities, synthetic.astype(object)], ignore_index=True)


def _iso_times(values: pd.Series, settings: Settings) -> np.ndarray:
    """Lead times as ISO 8601 text in UTC (missing where unreadable: the lead's own validation names them)."""
    parsed = parse_time_column(values, timezone=settings.timezone, fmt=settings.tables.leads.timestamp_format).values
    return parsed.map(lambda t: t.isoformat() if pd.notna(t) else None).to_numpy(dtype=object)


_TRUE, _FALSE = {"true", "1", "yes", "y", "x", "checked"}, {"false", "0", "no", "n", ""}


def flag_values(values: pd.Series) -> pd.Series:
    """A checkbox column as True / False / missing (unreadable): exports write true, 1, Yes or an empty cell."""
    text = values.astype("string").str.strip().str.lower().fillna("")
    return text.map(lambda v: True if v in _TRUE else False if v in _FALSE else None).astype("boolean")


def outcome_from_flags(opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The deal's status from the won / closed checkboxes every org has (Salesforce IsWon / IsClosed, HubSpot
    hs_is_closed_won / hs_is_closed), before its stage name, which each org names its own way. A row whose flags
    cannot be read keeps its stage."""
    e, o = settings.exports, settings.tables.opportunities
    won_column, closed_column = e.won_column, e.closed_column
    if won_column not in opportunities:
        return opportunities
    status = _column(o, "status")
    values = o.status_values or {}
    names = {kind: values.get(kind, [kind])[0] for kind in ("won", "lost", "open")}
    won = flag_values(opportunities[won_column])
    closed = flag_values(opportunities[closed_column]) if closed_column in opportunities else won.where(won, pd.NA)
    outcome = pd.Series(pd.NA, index=opportunities.index, dtype="string")
    outcome = outcome.mask(won.fillna(False), names["won"])
    outcome = outcome.mask(~won.fillna(True) & closed.fillna(False), names["lost"])
    outcome = outcome.mask(~won.fillna(True) & ~closed.fillna(True), names["open"])
    current = opportunities[status].astype("string") if status in opportunities else outcome
    return opportunities.assign(**{status: outcome.fillna(current).to_numpy(dtype=object)})


def converted_without_deal(leads: pd.DataFrame, opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """A lead the CRM converted, whose deal is not in the export (converted without one, or the deal was left out),
    is no longer an open lead and its outcome is unknown: set aside with the reason, never scored or trained."""
    column, t = settings.exports.converted_column, settings.tables
    lead_id = _column(t.leads, "lead_id")
    if column not in leads or lead_id not in leads:
        return leads
    has_deal = leads[lead_id].isin(opportunities[_column(t.opportunities, "lead_id")].dropna())
    converted = flag_values(leads[column]).fillna(False) & ~has_deal
    if not converted.any():
        return leads
    reason = f"converted ({column}) without a deal in the opportunities export: not open, outcome unknown"
    return _set_aside(leads, converted, reason)


_FOOTER = re.compile(r"^(copyright|confidential|generated by|grand totals?|total|salesforce\.com)\b", re.IGNORECASE)


def deal_row_conventions(opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The conventions that read one deal row at a time: the outcome from the won / closed flags, open deals' forecast
    close dates dropped, the first lead of a list."""
    e = settings.exports
    if e.won_column:
        opportunities = outcome_from_flags(opportunities, settings)
    if e.close_date_expected_while_open:
        opportunities = forecast_close_dates_dropped(opportunities, settings)
    if e.lead_id_list_separator:
        opportunities = first_listed_lead(opportunities, settings)
    return opportunities


def report_footer(frame: pd.DataFrame, *, trailing_only: bool = True) -> pd.DataFrame:
    """A report export's closing lines (`Grand Totals (17 records)`, `Copyright (c) 2000-2026 salesforce.com, inc.`,
    `Confidential Information - Do Not Distribute`) are not records: the trailing rows holding only such a first
    cell are set aside (`trailing_only=False`: wherever they stand, for a partition of the file, whose rows have lost
    their order)."""
    if frame.empty or len(frame.columns) < 2:
        return frame
    first = frame.iloc[:, 0].astype("string").str.strip()
    rest_empty = frame.iloc[:, 1:].isna().all(axis=1)
    footer = (first.str.match(_FOOTER).fillna(False) | first.isna()) & rest_empty
    if trailing_only:
        footer = footer[::-1].cumprod()[::-1].astype(bool)  # only the unbroken run of such rows at the end
    return _set_aside(frame, footer, "a report's footer line, not a record") if footer.any() else frame


def _set_aside(frame: pd.DataFrame, mask: pd.Series, reason: str) -> pd.DataFrame:
    earlier = frame[SET_ASIDE_COLUMN] if SET_ASIDE_COLUMN in frame else pd.Series(pd.NA, index=frame.index)
    marked = earlier.astype("string").where(~mask.to_numpy(), reason)
    return frame.assign(**{SET_ASIDE_COLUMN: marked.to_numpy(dtype=object)})


def forecast_close_dates_dropped(opportunities: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """An open deal's close date is the forecast, not an outcome: blank it, so that it neither moves the data's
    end (the default as-of) nor reads as a date the deal closed."""
    o = settings.tables.opportunities
    status, closed = _column(o, "status"), _column(o, "closed_at")
    if status not in opportunities or closed not in opportunities:
        return opportunities
    values = o.status_values or {}
    final = {v.strip().lower() for kind in ("won", "lost") for v in values.get(kind, [kind])}
    is_final = opportunities[status].astype("string").str.strip().str.lower().isin(final).fillna(False)
    return opportunities.assign(**{closed: opportunities[closed].where(is_final.to_numpy())})


def map_event_types(events: pd.DataFrame, type_column: str, values: dict[str, list[str]]) -> pd.DataFrame:
    """The export's activity types as the contract's event types (case and spaces do not matter); others kept."""
    lookup = {v.strip().lower(): kind for kind, listed in values.items() for v in listed}
    types = events[type_column].astype("string").str.strip()
    mapped = types.str.lower().map(lookup)
    return events.assign(**{type_column: mapped.fillna(types).to_numpy()})


OPTIONAL_TABLES = {
    "accounts": "the account_* and history features stay empty",
    "events": "no behavioral or product-usage feature (every count is 0)",
    "opportunity_history": "opportunity features read only what is fixed at a deal's creation",
}


def without_missing_files(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings without the optional tables whose file is absent (accounts, events, further activity exports),
    and one warning for each: an export often lacks them (no Task or Event file), which costs features, not the run.
    Leads and opportunities stay: their absence is an error where they are read."""
    tables, e = settings.tables, settings.exports
    if tables is None:
        return settings, []
    notes, update = [], {}
    for name, cost in OPTIONAL_TABLES.items():
        source = getattr(tables, name)
        if source is not None and _file_missing(source, settings):
            notes.append(f"table '{name}': file {_shown(source, settings)} not found: left out ({cost})")
            update[name] = None
    kept = []
    for i, source in enumerate(e.more_events):
        if not _file_missing(source, settings):
            kept.append(source)
            continue
        what = f"its {source.object} activities are not counted" if source.object else "its activities go uncounted"
        notes.append(f"table 'exports.more_events[{i}]': file {_shown(source, settings)} not found: left out ({what})")
    if not notes:
        return settings, []
    changed = {"tables": tables.model_copy(update=update), "exports": e.model_copy(update={"more_events": kept})}
    return settings.model_copy(update=changed), notes


def _shown(source: TableSource, settings: Settings) -> Path:
    return settings.resolve(source.path).resolve()


def _file_missing(source: TableSource, settings: Settings) -> bool:
    return source.path is not None and not settings.resolve(source.path).exists()


def read_export_table(
    source: TableSource, *, name: str, settings: Settings, dictionary_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """One table as stored, with a vendor's UI labels read as its API names and a report's footer set aside."""
    frame = read_source(source, name=name, base_dir=settings.base_dir, dictionary_columns=dictionary_columns)
    if source.missing_values:
        frame = with_missing(frame, source.missing_values)
    vendor = VENDORS.get(settings.exports.vendor or "")
    if vendor is None:
        return frame
    if source.object:
        frame = headers_as_api_names(frame, vendor.object(source.object))
    return report_footer(frame)


def header_renames(columns: list[str], source: TableSource, settings: Settings) -> dict[str, str]:
    """{header: API name} that `read_export_table` applies to a table read elsewhere (a distributed engine)."""
    vendor = VENDORS.get(settings.exports.vendor or "")
    if vendor is None or not source.object:
        return {}
    return api_name_renames(columns, vendor.object(source.object))


def with_missing(frame: pd.DataFrame, placeholders: list[str]) -> pd.DataFrame:
    """The table with the user's placeholders (`missing_values`) read as missing in its text columns."""
    values = set(placeholders)
    changed = {}
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
            text = frame[column].astype("string").str.strip()
            hit = text.isin(values).fillna(False)
            if hit.any():
                changed[column] = frame[column].mask(hit)
    return frame.assign(**changed) if changed else frame


def with_more_events(events: pd.DataFrame | None, settings: Settings) -> pd.DataFrame | None:
    """Further activity exports, renamed to the events table's own column names and appended to it."""
    main = settings.tables.events
    parts = [] if events is None else [events]
    for i, source in enumerate(settings.exports.more_events):
        name = f"exports.more_events[{i}]"
        frame = read_export_table(source, name=name, settings=settings)
        roles = more_events_roles(list(frame.columns), source, main, name=name)
        parts.append(frame[list(roles)].rename(columns=roles))
    return pd.concat(parts, ignore_index=True) if parts else None


def more_events_roles(columns: list[str], source: TableSource, main: TableSource, *, name: str) -> dict[str, str]:
    """{column of a further activity export: the events table's column} for the columns it has (lead, time and type
    required)."""
    roles = {source.columns.get(r, r): _column(main, r) for r in ("lead_id", "occurred_at", "event_type", "value")}
    absent = [c for c in list(roles)[:3] if c not in columns]
    if absent:
        raise DataError(
            f"column(s) absent: {absent}; the table has {list(columns)[:20]}",
            where=f"table '{name}'",
            hint=f"fix {name}.columns",
        )
    kept = {c: role for c, role in roles.items() if c in columns}
    return kept | ({SET_ASIDE_COLUMN: SET_ASIDE_COLUMN} if SET_ASIDE_COLUMN in columns else {})


def apply_export_conventions(
    raw: dict[str, pd.DataFrame], settings: Settings, *, read_more_events: bool = True
) -> dict[str, pd.DataFrame]:
    """The raw tables with `[exports]` applied (a new dict; the inputs are not modified). `read_more_events=False`:
    the further activity exports are already in the events (a distributed engine appends them before partitioning).
    Every step gives the same result applied twice, so an engine may apply some before partitioning."""
    e, t = settings.exports, settings.tables
    out = dict(raw)
    if e.more_events and t.events is not None and read_more_events:
        out["events"] = with_more_events(out.get("events"), settings)
    if e.event_type_values and "events" in out and out["events"] is not None:
        type_column = _column(t.events, "event_type")
        if type_column in out["events"]:
            out["events"] = map_event_types(out["events"], type_column, e.event_type_values)
    if "opportunities" in out:
        out["opportunities"] = deal_row_conventions(out["opportunities"], settings)
    if "leads" in out and "opportunities" in out:
        if e.opportunity_id_on_lead:
            out["opportunities"] = link_opportunities_from_leads(out["leads"], out["opportunities"], settings)
        if e.lost_lead_statuses:
            out["opportunities"] = lost_leads_as_deals(out["leads"], out["opportunities"], settings)
        if e.converted_column:
            out["leads"] = converted_without_deal(out["leads"], out["opportunities"], settings)
    return out
