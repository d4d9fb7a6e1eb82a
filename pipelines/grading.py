"""Grading by the rules: every open lead graded as of a date, and the rules checked against closed deals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.features.build import feature_columns
from leadscore.features.context import FeatureContext
from leadscore.features.spine import build_spine, scoring_spine
from leadscore.models.grade_analysis import contradictions, conversion_table, propose_cutoffs
from leadscore.models.grade_rules import ENGAGEMENT_GRADES, FIT_GRADES, GradeRules
from leadscore.models.grades import grade_spine
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData

OUTPUT_COLUMNS = [
    "lead_id",
    "account_id",
    "as_of",
    "fit_points",
    "fit_grade",
    "engagement_points",
    "engagement_grade",
    "cell",
    "action",
    "sla_hours",
    "due_by",
    "due_by_local",
    "route_note",
    "stage",
    "stage_rule",
    "dormant",
]


def grade_open_leads(
    settings: Settings, data: CrmData, *, previous: pd.DataFrame | None = None, model=None
) -> pd.DataFrame:
    """Every lead open at the data's as_of, graded; stages never move back behind `previous` output.

    Only when `grades.stages.sql_min_probability` is set does the stage read a model's probability: pass the model
    `predict` uses (the champion) so that both give the same stage and action.
    """
    spine = scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
    previous_stage = None
    if previous is not None:
        previous_stage = spine["lead_id"].map(previous.drop_duplicates("lead_id").set_index("lead_id")["stage"])
    probability, context, features = None, None, None
    if model is not None and settings.grades.stages.sql_min_probability is not None:
        t = data.tables
        context = FeatureContext.of_tables(spine, t, params=settings.feature_params())
        features = feature_columns(context, list(model.feature_names_in_))
        probability = pd.Series(model.predict_proba(features)[:, 1])
    graded = grade_spine(
        spine,
        data.tables,
        settings.grades,
        settings.feature_params(),
        probability=probability,
        previous_stage=previous_stage,
        context=context,
        features=features,
    )
    accounts = data.tables["leads"].set_index("lead_id").get("account_id")
    graded["account_id"] = graded["lead_id"].map(accounts) if accounts is not None else pd.NA
    graded["as_of"] = graded["cutoff_time"]
    return graded[OUTPUT_COLUMNS].sort_values(["cell", "lead_id"], kind="stable").reset_index(drop=True)


_NO_PROPOSAL = "none (it needs both won and lost closed deals)"


@dataclass
class GradeAnalysis:
    by_cell: pd.DataFrame
    by_stage: pd.DataFrame
    contradictions: list[str]
    fit_cutoffs: dict[str, float]
    proposed_fit_cutoffs: dict[str, float]
    engagement_cutoffs: dict[str, float]
    proposed_engagement_cutoffs: dict[str, float]
    closed_leads: int

    def lines(self) -> list[str]:
        out = [f"closed-deal analysis: {self.closed_leads:,} labelled rows (point-in-time, as in training)", ""]
        out += ["conversion by cell (rows: fit A..D, columns: engagement 1..4):", _matrix(self.by_cell), ""]
        out += ["by cell:", self.by_cell.to_string(float_format=lambda v: f"{v:.3f}"), ""]
        out += ["by stage:", self.by_stage.to_string(float_format=lambda v: f"{v:.3f}"), ""]
        out += ["grade-order contradictions:"] + ([f"  {c}" for c in self.contradictions] or ["  none"])
        out += [
            "",
            f"fit cut-offs: current {self.fit_cutoffs}, proposed {self.proposed_fit_cutoffs or _NO_PROPOSAL}",
            f"engagement cut-offs: current {self.engagement_cutoffs}, proposed "
            f"{self.proposed_engagement_cutoffs or _NO_PROPOSAL}",
            "(proposals are shown only; change [grades] in the config to apply them)",
        ]
        return out


def _matrix(by_cell: pd.DataFrame) -> str:
    rates = by_cell["conversion_rate"].to_numpy().reshape(len(FIT_GRADES), len(ENGAGEMENT_GRADES))
    frame = pd.DataFrame(rates, index=list(FIT_GRADES), columns=list(ENGAGEMENT_GRADES))
    return frame.to_string(float_format=lambda v: f"{v:.1%}", na_rep="-")


def analyze_closed_deals(
    settings: Settings, data: CrmData, *, probability_of=None, graded: pd.DataFrame | None = None
) -> tuple[GradeAnalysis, pd.DataFrame]:
    """Grade the labelled training rows and compare grades with what actually converted. `graded`: those rows
    already graded (`train` grades them for its rules baseline; grading a 3M-row spine twice cost minutes)."""
    if graded is None:
        spine, _ = build_spine(
            data.tables["leads"], data.tables["opportunities"], settings.cutoff_policy(), as_of=data.as_of
        )
        probability = probability_of(spine) if probability_of is not None else None
        graded = grade_spine(spine, data.tables, settings.grades, settings.feature_params())
        if probability is not None:
            graded["probability"] = probability.to_numpy()
    rules = settings.grades
    by_cell = conversion_table(graded, by="cell")
    analysis = GradeAnalysis(
        by_cell=by_cell,
        by_stage=conversion_table(graded, by="stage"),
        contradictions=contradictions(by_cell),
        fit_cutoffs=rules.fit.cutoffs,
        proposed_fit_cutoffs=propose_cutoffs(graded["fit_points"], graded["converted"], FIT_GRADES),
        engagement_cutoffs=rules.engagement.cutoffs,
        proposed_engagement_cutoffs=propose_cutoffs(
            graded["engagement_points"], graded["converted"], ENGAGEMENT_GRADES
        ),
        closed_leads=len(graded),
    )
    return analysis, graded


def read_previous(path: Path | None) -> pd.DataFrame | None:
    if path is None or not Path(path).exists():
        return None
    from leadscore.pipelines.errors import DataError
    from leadscore.pipelines.intake.parsing import normalise_ids
    from leadscore.pipelines.intake.sources import read_file

    previous = read_file(Path(path), name="previous grades")
    absent = [c for c in ("lead_id", "stage") if c not in previous.columns]
    if absent:
        raise DataError(
            f"not an earlier grade output: column(s) {absent} absent",
            where=str(path),
            hint="pass --previous an earlier `leadscore grade` output, or another --out",
        )
    return previous.assign(lead_id=normalise_ids(previous["lead_id"]))


# The contract columns each built-in fit feature reads (any one of them will do); account features also need the
# lead's account_id. A custom field reads its own column.
FIT_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "lead_seniority": (("leads", "job_title"), ("leads", "seniority")),
    "lead_department": (("leads", "job_title"), ("leads", "department")),
    "lead_country": (("leads", "country"),),
    "lead_source": (("leads", "source"),),
    "lead_email_is_business": (("leads", "email"), ("leads", "email_domain_type")),
    "account_industry": (("accounts", "industry"),),
    "account_employee_count": (("accounts", "employee_count"),),
    "account_employee_count_log": (("accounts", "employee_count"),),
    "account_revenue_band": (("accounts", "annual_revenue"),),
    "account_country": (("accounts", "country"),),
}


def dark_fit_features(rules: GradeRules, has: Callable[[str, str], bool], *, custom: dict[str, str]) -> list[str]:
    """The fit rules' features that can only be missing: `has(table, column)` says whether a table has values in a
    contract column (or custom field); `custom` maps custom field names to their table."""
    dark = []
    for category in rules.fit.categories.values():
        name = category.feature
        if name in FIT_INPUTS:
            lit = any(has(t, c) for t, c in FIT_INPUTS[name])
            lit = lit and (not name.startswith("account_") or has("leads", "account_id"))
        elif name in custom:
            table = custom[name]
            lit = has(table, name) and (table == "leads" or has("leads", "account_id"))
        else:
            continue  # a rule on inputs this check does not know (BANT answers, ...): assumed present
        if not lit:
            dark.append(name)
    return dark


def fit_reach_warning(rules: GradeRules, dark: list[str]) -> str | None:
    """A warning when the fit points can never reach grade B (or A) with `dark` features always missing."""
    best = 0.0
    for category in rules.fit.categories.values():
        top = max([*category.points.values(), *(t.points for t in category.tiers), category.default])
        best += category.weight / 100 * (category.default if category.feature in dark else top)
    cutoffs = rules.fit.cutoffs
    grade = "B" if best < cutoffs["B"] else "A" if best < cutoffs["A"] else None
    if grade is None:
        return None
    return (
        f"grades.fit: with the columns present the fit points reach at most {best:.0f}, below grade {grade}'s "
        f"cut-off {cutoffs[grade]:g}: no lead can be graded {grade}{' or A' if grade == 'B' else ''}; always "
        f"missing: {', '.join(dark) or 'none'} (map their columns, or change [grades.fit])"
    )
