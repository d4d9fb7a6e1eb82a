"""A CRM's export conventions, turned into the contract's shape before validation (`[exports]` in config).

Salesforce links a converted lead to its opportunity from the lead side (`Lead.ConvertedOpportunityId`), and a
lead closed without conversion carries a status, not a deal; HubSpot lists a deal's contacts in one association
cell; activity lives in several objects (Task, Event, CampaignMember; calls, emails, meetings). Each convention is
a small function over the raw tables in the export's own column names, so validation then names the user's
columns and rows as usual.
"""

from __future__ import annotations

import logging

import pandas as pd

from leadscore.pipelines.config import Settings, TableSource
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.sources import read_source

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
    opportunity per such lead, unless it already has a deal."""
    e, t = settings.exports, settings.tables
    for column, key in ((e.lead_status_column, "lead_status_column"), (e.lost_at_column, "lost_at_column")):
        _need(leads, column, "leads", key)
    lead_id, created = _column(t.leads, "lead_id"), _column(t.leads, "created_at")
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
            _column(o, "created_at"): rows[created].to_numpy(),
            _column(o, "closed_at"): rows[e.lost_at_column].to_numpy(),
            _column(o, "status"): lost_value,
        }
    )
    log.info("%d lead(s) closed without a deal (status %s): counted as lost outcomes", len(rows), e.lost_lead_statuses)
    return pd.concat([opportunities, synthetic.astype(object)], ignore_index=True)


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


def with_more_events(events: pd.DataFrame | None, settings: Settings) -> pd.DataFrame | None:
    """Further activity exports, renamed to the events table's own column names and appended to it."""
    main = settings.tables.events
    parts = [] if events is None else [events]
    for i, source in enumerate(settings.exports.more_events):
        name = f"exports.more_events[{i}]"
        frame = read_source(source, name=name, base_dir=settings.base_dir)
        roles = {source.columns.get(r, r): _column(main, r) for r in ("lead_id", "occurred_at", "event_type", "value")}
        absent = [c for c in list(roles)[:3] if c not in frame]
        if absent:
            raise DataError(
                f"column(s) absent: {absent}; the table has {list(frame.columns)[:20]}",
                where=f"table '{name}'",
                hint=f"fix {name}.columns",
            )
        parts.append(frame[[c for c in roles if c in frame]].rename(columns=roles))
    return pd.concat(parts, ignore_index=True) if parts else None


def apply_export_conventions(raw: dict[str, pd.DataFrame], settings: Settings) -> dict[str, pd.DataFrame]:
    """The raw tables with `[exports]` applied (a new dict; the inputs are not modified)."""
    e, t = settings.exports, settings.tables
    out = dict(raw)
    if e.more_events and t.events is not None:
        out["events"] = with_more_events(out.get("events"), settings)
    if e.event_type_values and "events" in out and out["events"] is not None:
        type_column = _column(t.events, "event_type")
        if type_column in out["events"]:
            out["events"] = map_event_types(out["events"], type_column, e.event_type_values)
    if e.close_date_expected_while_open and "opportunities" in out:
        out["opportunities"] = forecast_close_dates_dropped(out["opportunities"], settings)
    if "leads" in out and "opportunities" in out:
        if e.opportunity_id_on_lead:
            out["opportunities"] = link_opportunities_from_leads(out["leads"], out["opportunities"], settings)
        if e.lead_id_list_separator:
            out["opportunities"] = first_listed_lead(out["opportunities"], settings)
        if e.lost_lead_statuses:
            out["opportunities"] = lost_leads_as_deals(out["leads"], out["opportunities"], settings)
    return out
