"""Custom fields: a CRM's own lead and account columns (lead origin, landing page, any picklist) as features.

Declared in config with a type and a one-line description, they join the contract's features: the description is
their business definition, shown in reports and reused as the reason text. Like the other lead and account
attributes they are taken as known when the lead was created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from leadscore.features.derived import date_part, days_between
from leadscore.features.spec import FeatureSpec

TABLE_GROUPS = {"leads": "demographic", "accounts": "firmographic"}


@dataclass(frozen=True)
class CustomField:
    name: str  # the feature's name and the column's name in the loaded table
    table: Literal["leads", "accounts"]
    kind: Literal["categorical", "numeric"]
    description: str
    derive: tuple[str, ...] = ()  # ("date_part", part, time role) or ("days_between", start role, end role)


def derived_lead_values(context, field: CustomField) -> pd.Series:
    """A date part of, or the days between, the lead's timestamps; a timestamp at or after the cutoff is not yet
    known (strictly before, as for every feature), so the value is missing."""
    rows = context.lead_rows
    known_before = pd.Series(context.spine["cutoff_time"]) - pd.Timedelta(1, "ns")

    def times(role: str) -> pd.Series:
        return (
            pd.to_datetime(rows[role], utc=True)
            if role in rows
            else pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
        )

    kind, *args = field.derive
    if kind == "date_part":
        part, role = args
        values = date_part(times(role), part, cutoff=known_before)
    else:
        values = days_between(times(args[0]), times(args[1]), cutoff=known_before)
    return values.reset_index(drop=True).rename(field.name)


def custom_field_values(context, field: CustomField) -> pd.Series:
    """One value per spine row: the lead's own field, or its account's (missing without a known account)."""
    if field.derive:
        return derived_lead_values(context, field)
    if field.table == "leads":
        rows = context.lead_rows
        values = rows[field.name] if field.name in rows else pd.Series(pd.NA, index=rows.index)
    elif context.accounts is None or "account_id" not in context.leads or field.name not in context.accounts:
        values = pd.Series(pd.NA, index=range(context.n))
    else:
        position = pd.Index(context.accounts["account_id"]).get_indexer(context.lead_rows["account_id"])
        taken = context.accounts[field.name].iloc[np.where(position < 0, 0, position)].reset_index(drop=True)
        values = taken.mask(pd.Series(position < 0))
    values = values.reset_index(drop=True)
    if field.kind == "numeric":
        return pd.to_numeric(values, errors="coerce").astype("float64").rename(field.name)
    text = values.astype("string").str.strip()
    return text.mask(text == "").rename(field.name)


def custom_spec(field: CustomField) -> FeatureSpec:
    """The field's registry entry: its group by table, its description as the reason text."""
    return FeatureSpec(
        field.name,
        TABLE_GROUPS[field.table],
        field.description.rstrip("."),
        field.kind,
        "",
        lambda context, field=field: custom_field_values(context, field),
    )


def custom_specs(fields) -> dict[str, FeatureSpec]:
    return {field.name: custom_spec(field) for field in fields}
