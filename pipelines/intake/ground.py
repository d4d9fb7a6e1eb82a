"""Refusing to score on broken ground.

`predict` scores leads whatever a handful of bad rows say, but not when validation took out a large share of a
required table (the scores would describe a different CRM), and never a lead as open when one of its deals was
rejected (the deal may well have been won).
"""

from __future__ import annotations

import logging

import pandas as pd

from leadscore.features.schemas import TABLE_ROLES
from leadscore.features.spine import scoring_spine
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError, UsageError
from leadscore.pipelines.intake.validation import CrmData, load_crm

log = logging.getLogger(__name__)

REQUIRED_TABLES = ("leads", "opportunities")


_FIX = "fix the table or the config (`leadscore validate` lists every problem)"


def ground_problems(data: CrmData, settings: Settings) -> list[DataError]:
    """Why the verbs would refuse these tables: a required table unusable, a problem with a whole table (a mapped
    column absent, no rows), or a table with a larger share of broken rows than `validation.max_rejected_share`
    allows (rows set aside as out of scope do not count)."""
    refusals = []
    for name in REQUIRED_TABLES:
        if name not in data.tables:
            first = next((p for p in data.errors if p.table == name), None)
            refusals.append(
                DataError(
                    first.message if first else "the table could not be loaded",
                    where=f"table '{name}'",
                    hint="fix the table (`leadscore validate` lists every problem)",
                )
            )
    held = {*data.tables, *(["events"] if data.events is not None else [])}
    unusable = {p.table: p for p in data.errors if p.table not in held and p.table not in REQUIRED_TABLES}
    for name, problem in unusable.items():  # configured, yet unusable as a whole: never silently left out
        refusals.append(DataError(problem.message, where=f"table '{name}'", hint=_FIX))
    for name in [n for n in TABLE_ROLES if n in held]:  # the order of the tables as read
        broken, limit = data.broken_rows(name), settings.validation.limit(name)
        total = data.rows(name) + len(data.rejects.get(name, ()))
        if total and broken / total > limit:
            first = next((p for p in data.errors if p.table == name), None)
            example = f"; first: {first.message}" if first else ""
            refusals.append(
                DataError(
                    f"validation rejected {broken:,} of {total:,} rows as broken ({broken / total:.1%}), more than "
                    f"validation.max_rejected_share = {limit:.1%}: results would rest on broken ground{example}",
                    where=f"table '{name}'",
                    hint=f"fix the rows (`leadscore validate` writes them with reasons to output/rejects/), leave "
                    f"rows out of scope with tables.{name}.where, or raise validation.max_rejected_share",
                )
            )
    return refusals


def check_ground(data: CrmData, settings: Settings) -> None:
    """Stop on the first reason `ground_problems` gives."""
    refusals = ground_problems(data, settings)
    if refusals:
        raise refusals[0]


def load_valid_crm(
    settings: Settings, *, as_of: pd.Timestamp | None = None, publication=None, partitions: int = 1, spill=None
) -> CrmData:
    """The validated CRM tables every verb works on: stops when `check_ground` does; otherwise the rejected rows are
    left out (written, with their reasons, where `validate` writes them: into the verb's `publication` when given,
    so that they are put in place with its other outputs) and leads with a rejected deal withheld. `partitions`,
    `spill`: the events held in partition files (`load_crm`)."""
    from leadscore.pipelines.outputs.rejects import write_rejects

    events = None
    if partitions > 1:
        from leadscore.pipelines.intake.exports import without_missing_files
        from leadscore.pipelines.intake.streamed import spill_source

        source = without_missing_files(settings)[0].tables.events
        events = spill_source(source, settings, partitions=partitions, folder=spill) if source else None
    data = load_crm(settings, as_of=as_of, events=events)
    for problem in data.warnings:
        if problem.rule == "file not found":  # every verb says what an absent optional file costs
            log.warning(problem.message)
    check_ground(data, settings)
    written = write_rejects(data, settings, publication)  # also on a clean run: the last run's rejects go
    if data.rejects:
        rejected = sum(len(r) for r in data.rejects.values())
        aside = sum(data.set_aside.values())
        log.warning(
            "%s row(s) left out by validation (%s set aside as out of scope, %s broken), with their reasons in %s",
            f"{rejected:,}",
            f"{aside:,}",
            f"{rejected - aside:,}",
            ", ".join(written.values()),
        )
    return withhold_leads_with_rejected_deals(data)


def withhold_leads_with_rejected_deals(data: CrmData) -> CrmData:
    """Leads with a rejected opportunity move to the lead rejects: without that deal they would look open."""
    deals = data.rejects.get("opportunities")
    leads = data.tables.get("leads")
    if deals is None or leads is None or deals.empty:
        return data
    if "reject_kind" in deals:  # a deal set aside is out of scope (no lead of ours, or left out by `where`)
        deals = deals[deals["reject_kind"] != "set aside"]
        if deals.empty:
            return data
    reasons = (
        deals.dropna(subset=["lead_id"])
        .astype({"lead_id": "string"})
        .groupby("lead_id")["reject_reason"]
        .agg(lambda r: "; ".join(sorted(set(map(str, r)))))
    )
    affected = leads["lead_id"].astype("string").isin(reasons.index)
    if not affected.any():
        return data
    withheld = leads.loc[affected].copy()
    withheld["reject_reason"] = (
        "opportunity rejected ("
        + withheld["lead_id"].astype("string").map(reasons).astype("string")
        + "): the lead cannot be scored as open"
    )
    rejects = dict(data.rejects)
    rejects["leads"] = (
        pd.concat([rejects.get("leads"), withheld], ignore_index=True)
        if "leads" in rejects
        else withheld.reset_index(drop=True)
    )
    tables = {**data.tables, "leads": leads.loc[~affected].reset_index(drop=True)}
    return CrmData(
        tables=tables,
        as_of=data.as_of,
        problems=data.problems,
        rejects=rejects,
        after_as_of=data.after_as_of,
        set_aside=data.set_aside,
        events=data.events,
    )


def check_open_leads(data: CrmData) -> int:
    """The number of leads open at the as-of; none is an error naming the date and the counts."""
    leads, opportunities = data.tables["leads"], data.tables["opportunities"]
    n_open = len(scoring_spine(leads, opportunities, as_of=data.as_of))
    if n_open == 0:
        raise DataError(
            f"no lead is open at as_of {data.as_of.isoformat()}: of {len(leads):,} valid leads, every one was "
            "created later or has a closed deal",
            where="table 'leads'",
            hint="check --as-of (or the config's as_of) and the deals' status and closed_at",
        )
    return n_open


def check_model_fits_crm(model, model_uri: str, *, custom: tuple[str, ...] = ()) -> None:
    """A model trained in flat mode knows columns of one export, not the CRM features: refuse it by name. Custom
    fields (`custom`) are CRM features of this project."""
    from leadscore.features.registry import all_features

    names = list(getattr(model, "feature_names_in_", []))
    unknown = [n for n in names if n not in all_features() and n not in custom]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise UsageError(
            f"was not trained on CRM features (it expects {shown}): a flat-mode model cannot score CRM tables",
            where=f"model {model_uri}",
            hint="train a model on this project (`leadscore train`) or pass --model",
        )


def check_model_features(model, available, model_uri: str, *, feature_set: str | None = None) -> None:
    """A champion trained on another feature set (another export, another project sharing the store) is reported
    by name, never met with a KeyError deep inside scoring."""
    names = list(getattr(model, "feature_names_in_", []))
    have = set(available)
    missing = [n for n in names if n not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        of_set = f" (feature set {feature_set!r})" if feature_set else ""
        raise UsageError(
            f"was trained on another feature set{of_set}: it needs {shown}, which this project does not build",
            where=f"model {model_uri}",
            hint="train a model on this project (`leadscore train --promote`), give the project its own `name` "
            "(its own registered model), or pass --model",
        )
