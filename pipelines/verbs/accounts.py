"""`--level account` of `train`, `predict` and `grade`: one score per account with open leads.

Training reuses the lead pipeline's recipe end to end (pipelines/training.py: the same factory and settings, the
same time-ordered holdout with a one-horizon gap, the same refit on all rows, the same gate) on the account spine
and features. The holdout is also scored by the independent roll-up 1 - prod(1 - p_lead) of the accounts' open
leads, with two lead models, each named in the output:
- `rollup_lead_recipe`: the project's lead recipe fitted on the lead spine's rows whose horizon ended before the
  account holdout's first cutoff (so it has seen nothing of the holdout period, like the account model);
- `rollup_lead_champion`: the registered lead champion, when there is one. It was refit on every row, holdout
  period included, so its figures are optimistic.
The account model is registered as `<mlflow.registered_model>-account`, with its own champion and challenger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.account_spine import KEY, account_scoring_spine, build_account_spine
from leadscore.features.accounts import (
    AccountContext,
    account_directions,
    account_feature_specs,
    build_account_features,
)
from leadscore.features.registry import without_known_at
from leadscore.models.account import grade_accounts, leads_by_score, rollup_probability
from leadscore.models.account_defaults import (
    AccountChoice,
    AccountGiven,
    AccountSettingsError,
    Folds,
    choose_account_spine,
)
from leadscore.models.conversion import TooLittleDataError
from leadscore.models.evaluation import calibration_table, evaluate, metrics_table
from leadscore.models.factory import build_model
from leadscore.models.scores import percentile_in_run
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.files import write_frame
from leadscore.pipelines.outputs.publish import project_publication
from leadscore.pipelines.outputs.targets import Target, check_outputs
from leadscore.pipelines.outputs.tracking import lead_champion
from leadscore.pipelines.training_set import TrainingSet, build_training_set, content_fingerprint, input_fingerprint
from leadscore.pipelines.verbs.levels import (
    MODEL_ROW,
    LevelRun,
    explained_scores,
    leak_summary,
    level_scoring,
    level_settings,
    log_level_model,
    publish_level_scores,
)
from leadscore.pipelines.verbs.scoring import _score
from leadscore.pipelines.verbs.train import (
    ReferencePopulation,
    TrainResult,
    fit_model,
    fit_recipe,
    gap_days,
    holdout_split,
    refit_on_all_rows,
)

log = logging.getLogger(__name__)
ACCOUNT_MODEL = MODEL_ROW  # the account model's row in the metrics (the gate reads this name)


def account_settings(settings: Settings, choice: AccountChoice | None = None) -> Settings:
    """The same settings with the account model's registry name: `<registered_model>-account`, and with a `choice`
    its spine and minimums in `spine.*` and `model.min_*`, so that the lead training helpers (holdout gap, model
    factory) read the account's."""
    if choice is None:
        return level_settings(settings, "account")
    p = choice.policy
    spine = {"delay_days": p.delay_days, "every_days": p.every_days, "max_snapshots": p.max_snapshots}
    minimums = {"min_positives": choice.min_positives, "min_negatives": choice.min_negatives}
    return level_settings(settings, "account", spine={**spine, "horizon_days": p.horizon_days}, model=minimums)


def _base_policy(settings: Settings):
    """The lead spine's policy with the account's first-cutoff delay: what the account settings start from."""
    return replace(settings.cutoff_policy(), delay_days=settings.accounts.delay_days)


def choose_spine(settings: Settings, data: CrmData) -> AccountChoice:
    """The account spine in force: `[accounts]` keys as given, the others derived from the book."""
    a, m = settings.accounts, settings.model
    given = AccountGiven(a.horizon_days, a.every_days, a.max_snapshots, a.min_positives, a.min_negatives)
    folds = Folds(m.holdout_fraction, m.validation_fraction, m.min_positives, m.min_negatives)
    t = data.tables
    return choose_account_spine(
        t["leads"], t["opportunities"], as_of=data.as_of, base=_base_policy(settings), given=given, folds=folds
    )


def horizon_warning(settings: Settings, choice: AccountChoice) -> str | None:
    """What a horizon other than the lead model's means for comparing the two, or None when they agree."""
    account, lead = choice.policy.horizon_days, settings.spine.horizon_days
    if account == lead:
        return None
    return (
        f"warning: the account model's horizon ({account:g} days) differs from the lead model's "
        f"spine.horizon_days ({lead:g} days): an account probability is the chance of a win within {account:g} "
        f"days, a lead probability (and the roll-ups 1 - prod(1 - p_lead)) within {lead:g} days. Compare their "
        "rankings (ROC AUC, PR AUC, lift), not their probabilities: the roll-ups' log loss, Brier and ECE are "
        f"measured against the {account:g}-day account label. Set accounts.horizon_days = {lead:g} to align them."
    )


def account_context(settings: Settings, data: CrmData, spine: pd.DataFrame) -> AccountContext:
    t = data.tables
    return AccountContext(
        spine,
        leads=t["leads"],
        accounts=t.get("accounts"),
        events=t.get("events"),
        opportunities=t["opportunities"],
        params=settings.feature_params(),
    )


def account_training_set(settings: Settings, data: CrmData, choice: AccountChoice) -> TrainingSet:
    """Account spine (the one `choice` built) -> account features, as a TrainingSet the lead training code accepts."""
    spine, stats, policy = choice.spine, choice.stats, choice.policy
    specs = account_feature_specs()
    late = without_known_at(specs, settings.known_at_fields())  # as the lead level's built-in sets: left out
    names = [n for n in specs if n not in late]
    if late:
        log.warning("account features left out (late-filled lead fields without known_at): %s", ", ".join(late))
    log.info(
        "account spine: %d rows (%d positives, %d censored) over %d accounts",
        stats.rows,
        stats.positives,
        stats.censored,
        stats.leads,
    )
    features = build_account_features(account_context(settings, data, spine), names)
    frame = pd.concat([spine.reset_index(drop=True), features], axis=1)
    manifest = {
        "mode": "crm",
        "level": "account",
        "as_of": data.as_of.isoformat(),
        "spine": {**asdict(stats), "accounts": stats.leads},
        "cutoff_policy": asdict(policy),
        "account_settings": dict(choice.how),
        "rows": len(frame),
        "positives": int(frame["converted"].sum()),
        "features": names,
        "feature_set": "account",
        "input_sha256": input_fingerprint(settings),
        "content_sha256": content_fingerprint(data.tables),
        "sample_weight": "1 / (rows kept for the account); the model scales the weights to average 1",
        **({"filled_late": {"kept": False, "features": late}} if late else {}),
    }
    return TrainingSet(frame, names, manifest, [n for n in names if specs[n].kind == "categorical"])


def fit_account_model(settings: Settings, training: TrainingSet, rows: np.ndarray):
    model = build_model(
        settings.model,
        categorical_features=training.categorical,
        gap_days=gap_days(settings),
        directions=account_directions(),
    )
    return fit_recipe(model, training, rows, training.feature_names)


def lead_rollup(context: AccountContext, lead_model) -> np.ndarray:
    """1 - prod(1 - p_lead) over each account row's open leads, p_lead from `lead_model`."""
    pairs = context.pairs
    open_rows = np.flatnonzero(pairs["open"].to_numpy())
    X = context.lead_features(list(lead_model.feature_names_in_)).iloc[open_rows]
    probability = lead_model.predict_proba(X)[:, 1] if len(X) else np.zeros(0)
    return rollup_probability(probability, pairs["row"].to_numpy()[open_rows], context.n)


def lead_recipe_before(settings: Settings, data: CrmData, first_holdout_cutoff: pd.Timestamp):
    """The project's lead recipe fitted on the lead rows whose horizon ended by `first_holdout_cutoff`: a lead
    model that knows nothing of the account holdout's outcomes. None (with the reason) when too few rows."""
    from leadscore.models.conversion import TooLittleDataError

    lead_training = build_training_set(settings, data=data)
    horizon = pd.Timedelta(days=settings.spine.horizon_days)
    rows = np.flatnonzero((lead_training.frame["cutoff_time"] + horizon <= first_holdout_cutoff).to_numpy())
    try:
        return fit_model(settings, lead_training, rows), f"{len(rows):,} lead rows observed before the holdout"
    except TooLittleDataError as exc:
        return None, str(exc)


@dataclass
class AccountTrainResult:
    result: TrainResult
    choice: AccountChoice
    rollups: dict[str, str] = field(default_factory=dict)  # roll-up scorer -> which lead model it used
    version: str | None = None
    decision: str = ""
    run_id: str | None = None
    accounts_open: int = 0


def train_and_evaluate_accounts(settings: Settings, data: CrmData, *, lead_champion=None) -> AccountTrainResult:
    """Fit on the earlier account rows, score the holdout with the account model and the lead roll-ups. The account
    spine's settings are chosen first (derived where `[accounts]` leaves them unset); the lead roll-ups keep the
    lead settings."""
    choice = choose_spine(settings, data)
    acc = account_settings(settings, choice)
    training = account_training_set(acc, data, choice)
    split = holdout_split(acc, training)
    model = fit_account_model(acc, training, split.dev)
    holdout = training.frame.iloc[split.holdout].reset_index(drop=True)
    probability = model.predict_proba(holdout[training.feature_names])[:, 1]
    scores = {ACCOUNT_MODEL: probability}
    rollups: dict[str, str] = {}
    context = account_context(settings, data, holdout[[KEY, "cutoff_time"]])
    lead_model, note = lead_recipe_before(settings, data, holdout["cutoff_time"].min())
    if lead_model is not None:
        scores["rollup_lead_recipe"] = lead_rollup(context, lead_model)
        rollups["rollup_lead_recipe"] = f"lead recipe fitted on {note}"
    else:
        rollups["rollup_lead_recipe"] = f"not computed: {note}"
    if lead_champion is not None:
        model_, version = lead_champion
        scores["rollup_lead_champion"] = lead_rollup(context, model_)
        rollups["rollup_lead_champion"] = (
            f"{settings.mlflow.registered_model} v{version} (champion; refit on all "
            "rows, holdout period included: optimistic)"
        )
    else:
        rollups["rollup_lead_champion"] = f"not computed: no champion of {settings.mlflow.registered_model}"
    metrics = metrics_table({name: evaluate(holdout["converted"], p) for name, p in scores.items()})
    result = TrainResult(
        model, training, split, metrics, calibration_table(holdout["converted"], probability), probability
    )
    return AccountTrainResult(result, choice, rollups)


def account_reference_population(settings: Settings, data: CrmData, feature_names: list[str]) -> ReferencePopulation:
    """Every account open at the training as-of: what the 1-99 score ranks against and drift is measured against."""
    spine = account_scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
    X = build_account_features(account_context(settings, data, spine), list(feature_names))
    return ReferencePopulation(X, f"{len(X):,} accounts open at {data.as_of.isoformat()}")


def train_accounts(settings: Settings, data: CrmData, *, promote_anyway: bool = False) -> AccountTrainResult:
    """The whole `leadscore train --level account`: fit and evaluate, then log, register and gate in MLflow."""
    from leadscore.pipelines.outputs import tracking

    tracking.use_store(settings)
    lead_champion = None
    lead_version = tracking.champion_version(settings)
    if lead_version is not None:
        model, _ = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
        lead_champion = (model, lead_version)
    out = train_and_evaluate_accounts(settings, data, lead_champion=lead_champion)
    result = out.result
    acc = account_settings(settings, out.choice)
    result.deployed = refit_on_all_rows(result.training, result.model)
    population = account_reference_population(settings, data, result.training.feature_names)
    out.accounts_open = len(population.features)
    params = {
        "horizon_days": gap_days(acc),
        "every_days": acc.spine.every_days,
        "max_snapshots": acc.spine.max_snapshots,
        **{f"rollup.{k}": v for k, v in out.rollups.items()},
        **{f"accounts.{k}": v for k, v in out.choice.how.items()},
    }
    run = LevelRun("account", account_feature_specs(), params, population)
    out.version, out.decision, out.run_id = log_level_model(acc, data, result, run, promote_anyway=promote_anyway)
    return out


# -- scoring ------------------------------------------------------------------------------------------------------
ACCOUNT_COLUMNS = [
    "account_id",
    "as_of",
    "probability",
    "score",
    "percentile",
    "fit_points",
    "fit_grade",
    "engagement_points",
    "engagement_grade",
    "cell",
    "open_lead_count",
    "open_leads",
    "lead_rollup_probability",
    "reasons_positive",
    "reasons_negative",
    "model_name",
    "model_version",
    "lead_model",
]
GRADE_COLUMNS = [
    "account_id",
    "as_of",
    "fit_points",
    "fit_grade",
    "engagement_points",
    "engagement_grade",
    "cell",
    "open_lead_count",
    "open_leads",
]


@dataclass
class ScoredAccounts:
    scores: pd.DataFrame
    rejects: pd.DataFrame
    summary: dict = field(default_factory=dict)


def _open_leads(context: AccountContext, lead_scores: pd.Series | None) -> tuple[pd.Series, pd.Series]:
    """Per account row: how many open leads, and the list "lead_id (score)" best first."""
    pairs = context.pairs[context.pairs["open"]]
    listed = leads_by_score(pairs["lead_id"], pairs["row"], lead_scores)
    count = np.bincount(pairs["row"].to_numpy(), minlength=context.n)
    return pd.Series(count), listed.reindex(range(context.n)).fillna("")


def _lead_scores(context: AccountContext, lead_model) -> tuple[pd.Series, np.ndarray]:
    """The lead model's 1-99 score of every open lead (pairs order) and its probabilities per open pair."""
    model, wrapper = lead_model
    pairs = context.pairs[context.pairs["open"]]
    X = context.lead_features(list(model.feature_names_in_)).iloc[pairs.index.to_numpy()]
    probability = model.predict_proba(X)[:, 1]
    return pd.Series(_score(model, wrapper, probability), index=pairs.index), probability


def grade_open_accounts(settings: Settings, data: CrmData, *, lead_model=None) -> pd.DataFrame:
    """Every account with an open lead at as_of: its rules-only grade and its open leads (by the lead model's
    score when one is given, else by lead id)."""
    spine = account_scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
    context = account_context(settings, data, spine)
    graded = grade_accounts(context, settings.grades)
    scores = None if lead_model is None else _lead_scores(context, lead_model)[0]
    count, listed = _open_leads(context, scores)
    out = graded.assign(
        account_id=spine[KEY].to_numpy(),
        as_of=spine["cutoff_time"].to_numpy(),
        open_lead_count=count.to_numpy(),
        open_leads=listed.to_numpy(),
    )
    return out[GRADE_COLUMNS].sort_values(["cell", "account_id"], kind="stable").reset_index(drop=True)


def _rejects(data: CrmData, failed: pd.Series) -> pd.DataFrame:
    """Accounts whose score could not be computed, and the leads validation rejected (their accounts are scored
    without them), as in the lead-level rejects."""
    parts = [pd.DataFrame({KEY: failed.astype("string"), "lead_id": pd.NA, "reason": "scoring: no finite probability"})]
    if "leads" in data.rejects:
        leads = data.rejects["leads"]
        parts.append(
            pd.DataFrame(
                {
                    KEY: pd.NA,
                    "lead_id": leads["lead_id"].astype("string"),
                    "reason": "validation: " + leads["reject_reason"].astype("string"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True).astype({KEY: "string", "lead_id": "string"})


def score_open_accounts(
    settings: Settings,
    data: CrmData,
    model,
    wrapper,
    *,
    model_name: str,
    model_version: str,
    lead_model=None,
    lead_model_name: str = "",
) -> ScoredAccounts:
    """Score every account with at least one lead open at `data.as_of`."""
    t = data.tables
    spine = account_scoring_spine(t["leads"], t["opportunities"], as_of=data.as_of)
    context = account_context(settings, data, spine)
    X = build_account_features(context, list(model.feature_names_in_))
    probability, score, reasons = explained_scores(model, wrapper, X, account_feature_specs(), subject="account")
    graded = grade_accounts(context, settings.grades)
    lead_scores, rollup = None, np.full(len(spine), np.nan)
    if lead_model is not None:
        lead_scores, p_open = _lead_scores(context, lead_model)
        rollup = rollup_probability(p_open, context.pairs.loc[lead_scores.index, "row"].to_numpy(), context.n)
    count, listed = _open_leads(context, lead_scores)
    scores = graded.assign(
        account_id=spine[KEY].to_numpy(),
        as_of=spine["cutoff_time"].to_numpy(),
        probability=probability,
        score=score,
        open_lead_count=count.to_numpy(),
        open_leads=listed.to_numpy(),
        lead_rollup_probability=rollup,
        reasons_positive=reasons["reasons_positive"].to_numpy(),
        reasons_negative=reasons["reasons_negative"].to_numpy(),
        model_name=model_name,
        model_version=model_version,
        lead_model=lead_model_name,
    )
    scores["percentile"] = percentile_in_run(scores["probability"].to_numpy())
    valid = np.isfinite(scores["probability"].to_numpy())
    rejects = _rejects(data, scores.loc[~valid, KEY])
    scores = scores.loc[valid].sort_values(["probability", KEY], ascending=[False, True], kind="stable")
    open_leads = int(t["leads"]["lead_id"].isin(context.pairs.loc[context.pairs["open"], "lead_id"]).sum())
    result = ScoredAccounts(scores[ACCOUNT_COLUMNS].reset_index(drop=True), rejects.reset_index(drop=True))
    result.summary = {
        "level": "account",
        "scored": len(result.scores),
        "rejected": len(rejects),
        "accounts_with_open_leads": len(spine),
        "open_leads_in_accounts": open_leads,
        "mean_probability": round(float(result.scores["probability"].mean()), 4) if len(result.scores) else None,
        "accounts_per_cell": result.scores["cell"].value_counts().sort_index().to_dict(),
    }
    return result


def account_spine_for_grades(settings: Settings, data: CrmData) -> pd.DataFrame:
    """The account spine training uses; when no setting leaves a trainable one, the lead spine's settings with the
    given `[accounts]` ones (a grade table needs labelled rows, not both classes in every fold)."""
    try:
        return choose_spine(settings, data).spine
    except AccountSettingsError as exc:
        log.info("account grades on the lead spine's settings: %s", exc)
    a, t = settings.accounts, data.tables
    given = {"horizon_days": a.horizon_days, "every_days": a.every_days, "max_snapshots": a.max_snapshots}
    policy = replace(_base_policy(settings), **{k: v for k, v in given.items() if v is not None})
    return build_account_spine(t["leads"], t["opportunities"], policy, as_of=data.as_of)[0]


def account_grade_conversion(settings: Settings, data: CrmData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How the account grades convert: the account spine's labelled rows (point-in-time, as in training) graded by
    the account rules; per cell the accounts, conversions and rate, and the 4 x 4 matrix as "rate (n)" text."""
    from leadscore.models.grade_analysis import conversion_table
    from leadscore.models.grade_rules import ENGAGEMENT_GRADES, FIT_GRADES

    spine = account_spine_for_grades(settings, data)
    graded = grade_accounts(account_context(settings, data, spine), settings.grades)
    graded["converted"] = spine["converted"].to_numpy()
    by_cell = conversion_table(graded, by="cell").rename(columns={"leads": "accounts"})
    text = [f"{r.conversion_rate:.1%} ({r.accounts:,})" if r.accounts else "-" for r in by_cell.itertuples()]
    matrix = pd.DataFrame(
        np.reshape(text, (len(FIT_GRADES), len(ENGAGEMENT_GRADES))),
        index=list(FIT_GRADES),
        columns=list(ENGAGEMENT_GRADES),
    )
    return by_cell, matrix


__all__ = [
    "account_grade_conversion",
    "account_settings",
    "account_training_set",
    "grade_open_accounts",
    "score_open_accounts",
    "train_accounts",
    "train_and_evaluate_accounts",
]


def run_train_accounts(
    settings: Settings, *, as_of: pd.Timestamp | None = None, promote: bool = False, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore train --level account`, with its figures and the gate's decision printed."""
    from leadscore.pipelines.verbs.train import holdout_figures

    check_outputs(settings)  # the validation rejects
    data = load_valid_crm(settings, as_of=as_of)
    try:
        out = train_accounts(settings, data, promote_anyway=promote)
    except TooLittleDataError as exc:
        raise DataError(f"too little data to train: {exc}") from None
    result = out.result
    split, name = result.split, account_settings(settings).mlflow.registered_model
    warning = _echo_account_spine(settings, out.choice, echo)
    echo(
        f"account model evaluated: fit on {len(split.dev):,} account rows, scored on the latest "
        f"{len(split.holdout):,} (fully observed) rows ({result.model.describe()})"
    )
    echo(
        f"holdout metrics ({ACCOUNT_MODEL}: the account model; rollup_*: 1 - prod(1 - p_lead) over the "
        "account's open leads):"
    )
    echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    for scorer, note in out.rollups.items():
        echo(f"  {scorer}: {note}")
    suspects = leak_summary(result, echo)
    echo(f"registered {name} version {out.version} (alias challenger)")
    echo(out.decision)
    echo(f"MLflow run {out.run_id} in {settings.tracking_uri}")
    return {
        "verb": "train",
        "level": "account",
        "registered_model": name,
        "version": out.version,
        "decision": out.decision,
        "run_id": out.run_id,
        "dev_rows": len(split.dev),
        "holdout_rows": len(split.holdout),
        "rollups": out.rollups,
        "holdout": holdout_figures(result.metrics),
        "account_spine": {**asdict(out.choice.policy), "how": out.choice.how},
        "warnings": [warning] if warning else [],
        "suspect_features": suspects,
    }


def _echo_account_spine(settings: Settings, choice: AccountChoice, echo: Callable[..., None]) -> str | None:
    """Say the account spine settings in force and how each was set; warn when the horizon is not the lead's."""
    echo(choice.summary())
    warning = horizon_warning(settings, choice)
    if warning:
        echo(warning, err=True)
    return warning


def run_predict_accounts(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    model_uri: str | None = None,
    out: Path | None = None,
    top: int = 10,
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore predict --level account`: one row per account with an open lead, and its rejects."""
    target, (model, wrapper, name, version) = level_scoring(
        settings, account_settings(settings), out, "account_scores.csv", model_uri
    )
    with project_publication(settings) as publication:  # the scores, their rejects and validation's, as one unit
        data = load_valid_crm(settings, as_of=as_of, publication=publication)
        lead_model, lead_name = lead_champion(settings)
        if lead_model is None:
            echo("warning: no lead champion: open leads are listed by id, without their score", err=True)
        result = score_open_accounts(
            settings,
            data,
            model,
            wrapper,
            model_name=name,
            model_version=version,
            lead_model=lead_model,
            lead_model_name=lead_name,
        )
        rejects = result.rejects
        publish_level_scores(publication, target, result.scores, rejects)
    s = result.summary
    echo(
        f"scored {s['scored']:,} of {s['accounts_with_open_leads']:,} accounts with open leads as of "
        f"{data.as_of.isoformat()} with {name} v{version or '?'} -> {target}"
    )
    echo(f"rejected: {len(rejects):,}; mean probability {s['mean_probability']}")
    if s["accounts_per_cell"]:
        echo("accounts per cell: " + ", ".join(f"{k} {v:,}" for k, v in s["accounts_per_cell"].items()))
    echo(f"\ntop {top} accounts:")
    shown = result.scores.head(top)[["account_id", "score", "cell", "open_leads", "reasons_positive"]]
    echo(shown.to_string(index=False, max_colwidth=80))
    return {
        "verb": "predict",
        **s,
        "rejected": len(rejects),
        "as_of": data.as_of.isoformat(),
        "model_name": name,
        "model_version": version,
        "lead_model": lead_name,
        "output": str(target),
    }


def run_grade_accounts(
    settings: Settings, *, as_of: pd.Timestamp | None = None, out: Path | None = None, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore grade --level account`: every account with an open lead, graded by the rules."""
    target = Path(out or settings.output_dir / "account_grades.csv")
    check_outputs(settings, Target(target, "--out", (".csv", ".parquet")))
    with project_publication(settings) as publication:
        data = load_valid_crm(settings, as_of=as_of, publication=publication)
        lead_model, _ = lead_champion(settings)
        graded = grade_open_accounts(settings, data, lead_model=lead_model)
        path = write_frame(graded, target, publication)
    echo(f"graded {len(graded):,} accounts with open leads as of {data.as_of.isoformat()} -> {path}")
    echo(graded["cell"].value_counts().sort_index().to_frame("accounts").T.to_string())
    return {"verb": "grade", "level": "account", "graded": len(graded), "output": str(path)}
