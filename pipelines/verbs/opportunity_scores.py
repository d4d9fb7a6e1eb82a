"""`predict --level opportunity`: every deal open at the as-of scored by the opportunity model, with the CRM's own
stage probability beside it, its reasons, its move since its previous run, and the run kept in the level's own score
history (`<history>/opportunity`, or the table `<history.sql_table>_opportunity`), as the lead level keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.opportunities import build_opportunity_features, opportunity_feature_specs
from leadscore.features.opportunity_spine import KEY, opportunity_scoring_spine
from leadscore.models.scores import percentile_in_run
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.history import stage_history
from leadscore.pipelines.outputs.publish import project_publication
from leadscore.pipelines.outputs.tracking import is_champion
from leadscore.pipelines.verbs.levels import explained_scores, level_scoring, publish_level_scores
from leadscore.pipelines.verbs.movement import add_score_movement, with_explained
from leadscore.pipelines.verbs.opportunities import (
    LEVEL,
    history_line,
    opportunity_context,
    opportunity_settings,
    probability_share,
    stage_probability,
    with_lead_scores,
)
from leadscore.pipelines.verbs.predict import movement_line

OPPORTUNITY_COLUMNS = [
    "opportunity_id",
    "lead_id",
    "as_of",
    "probability",
    "score",
    "percentile",
    "crm_probability",
    "stage",
    "amount",
    "deal_age_days",
    "reasons_positive",
    "reasons_negative",
    "model_name",
    "model_version",
]


def _rejects(data: CrmData, failed: pd.Series) -> pd.DataFrame:
    """Deals whose score could not be computed, and the deals validation rejected."""
    parts = [pd.DataFrame({KEY: failed.astype("string"), "reason": "scoring: no finite probability"})]
    if "opportunities" in data.rejects:
        deals = data.rejects["opportunities"]
        reason = "validation: " + deals["reject_reason"].astype("string")
        parts.append(pd.DataFrame({KEY: deals[KEY].astype("string"), "reason": reason}))
    return pd.concat(parts, ignore_index=True).astype({KEY: "string"})


def score_open_opportunities(
    settings: Settings, data: CrmData, model, wrapper, *, model_name: str, model_version: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every deal open at `data.as_of`: probability, 1-99 score, percentile, the CRM's own stage probability, its
    stage and amount then, and the top reasons; and the rejects. With the score history on, also each deal's
    `margin` and `top_contributions` (what the history keeps to explain the next run's moves)."""
    spine = opportunity_scoring_spine(data.tables["opportunities"], as_of=data.as_of)
    context = opportunity_context(settings, data, spine)
    X = build_opportunity_features(context, list(model.feature_names_in_))
    kept_top = settings.history.contributions_kept if settings.history.enabled else 0
    probability, score, reasons = explained_scores(
        model, wrapper, X, opportunity_feature_specs(), subject="deal", kept_top=kept_top
    )
    shown = build_opportunity_features(context, ["deal_stage", "deal_amount", "deal_age_days"])
    crm = stage_probability(context)
    if np.isnan(crm).all() and "probability" in context.deals:  # no history: the table's value is today's
        crm = probability_share(context.deals["probability"])
    scores = pd.DataFrame(
        {
            KEY: spine[KEY].to_numpy(),
            "lead_id": context.deals["lead_id"].to_numpy(),
            "as_of": spine["cutoff_time"].to_numpy(),
            "probability": probability,
            "score": score,
            "percentile": percentile_in_run(probability),
            "crm_probability": crm,
            "stage": shown["deal_stage"].to_numpy(),
            "amount": shown["deal_amount"].to_numpy(),
            "deal_age_days": shown["deal_age_days"].round(1).to_numpy(),
            "reasons_positive": reasons["reasons_positive"].to_numpy(),
            "reasons_negative": reasons["reasons_negative"].to_numpy(),
            "model_name": model_name,
            "model_version": model_version,
            **{c: reasons[c].to_numpy() for c in EXPLAINED if c in reasons},
        }
    )
    valid = np.isfinite(probability)
    rejects = _rejects(data, scores.loc[~valid, KEY])
    scores = scores.loc[valid].sort_values(["probability", KEY], ascending=[False, True], kind="stable")
    columns = OPPORTUNITY_COLUMNS + [c for c in EXPLAINED if c in scores]
    return scores[columns].reset_index(drop=True), rejects.reset_index(drop=True)


EXPLAINED = ["margin", "top_contributions"]


def _history_keyed(scores: pd.DataFrame) -> pd.DataFrame:
    """The deal in the score history's key column (`lead_id`), as the spine helpers run on deals; its lead set aside.
    The opportunity history is the level's own (`level_settings`): deal and lead ids never meet in one store."""
    return scores.drop(columns="lead_id").rename(columns={KEY: "lead_id"})


def move_and_keep(
    settings: Settings, scores: pd.DataFrame, model, publication, *, as_of: pd.Timestamp, production: bool
) -> tuple[pd.DataFrame, dict | None, str | None]:
    """The lead level's score movement and history for deals (`settings` are the level's): `score_change` and
    `change_reasons` against each deal's previous production run, then this run staged in the opportunity history.
    Returns the scores (without the kept contributions), the movement summary and where the history went."""
    shown = scores.drop(columns=EXPLAINED, errors="ignore")
    if not settings.history.enabled:
        return shown, None, None
    keyed = _history_keyed(scores)
    explained = keyed[["lead_id", *EXPLAINED]] if "margin" in keyed else None
    moved, movement = add_score_movement(
        settings,
        keyed.drop(columns=EXPLAINED, errors="ignore"),
        explained,
        model,
        as_of=as_of,
        specs=opportunity_feature_specs(),
    )
    out = moved.rename(columns={"lead_id": KEY})
    out.insert(1, "lead_id", shown["lead_id"].to_numpy())
    history = stage_history(settings, with_explained(moved, explained), publication, production=production)
    return out, movement, history


def run_predict_opportunities(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    model_uri: str | None = None,
    out: Path | None = None,
    top: int = 10,
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore predict --level opportunity`: one row per open deal, and its rejects."""
    target, (model, wrapper, name, version) = level_scoring(
        settings, opportunity_settings(settings), out, "opportunity_scores.csv", model_uri
    )
    with project_publication(settings) as publication:  # the scores, their rejects and validation's, as one unit
        data = with_lead_scores(settings, load_valid_crm(settings, as_of=as_of, publication=publication))
        echo(history_line(data))
        opp = opportunity_settings(settings)
        scores, rejects = score_open_opportunities(opp, data, model, wrapper, model_name=name, model_version=version)
        production = is_champion(opp, name, version)  # a shadow run is kept apart: its scores reached no one
        scores, movement, history = move_and_keep(
            opp, scores, model, publication, as_of=data.as_of, production=production
        )
        publish_level_scores(publication, target, scores, rejects)
    echo(f"scored {len(scores):,} deals open as of {data.as_of.isoformat()} with {name} v{version or '?'} -> {target}")
    if movement is not None:
        echo(movement_line(movement, subject="deal"))
    if history:
        echo(f"score history: this run's {len(scores):,} rows -> {history}")
    mean = round(float(scores["probability"].mean()), 4) if len(scores) else None
    echo(f"rejected: {len(rejects):,}; mean probability {mean}")
    echo(f"\ntop {top} deals:")
    shown = scores.head(top)[[KEY, "score", "crm_probability", "stage", "reasons_positive"]]
    echo(shown.to_string(index=False, max_colwidth=80))
    return {
        "verb": "predict",
        "level": LEVEL,
        "scored": len(scores),
        "rejected": len(rejects),
        "mean_probability": mean,
        "as_of": data.as_of.isoformat(),
        "model_name": name,
        "model_version": version,
        "output": str(target),
        "history": history,
        "production": production,
        **({"movement": movement} if movement is not None else {}),
    }


__all__ = ["OPPORTUNITY_COLUMNS", "move_and_keep", "run_predict_opportunities", "score_open_opportunities"]
