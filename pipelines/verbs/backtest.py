"""`leadscore backtest`: walk-forward retraining. At each step the model is trained on the training set `train` would
have built on the step's date (CRM mode: its rows, labels, thinning and weights as of that day) and scores the rows
whose cutoff falls in the next period; baselines are scored beside it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.special import expit

from leadscore.models.baselines import CellRateBaseline, logistic_regression
from leadscore.models.conversion import TooLittleDataError
from leadscore.models.evaluation import evaluate, metrics_table
from leadscore.models.margin_model import MarginModel
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError, UsageError
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.parsing import parse_as_of
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.targets import check_outputs
from leadscore.pipelines.training_set import TrainingSet, spine_as_of, with_rows
from leadscore.pipelines.verbs.train import fit_model

log = logging.getLogger(__name__)
# the uncalibrated booster (sigmoid of its margin) is scored beside the calibrated model: calibration must keep its
# ranking, so a period where the calibrated ROC AUC falls below the raw one shows a calibration fault
SCORERS = (
    "lightgbm_calibrated",
    "lightgbm_uncalibrated",
    "logistic_regression",
    "rules_grade",
    "crm_stage_probability",
)


@dataclass(frozen=True)
class Step:
    label: str
    train: np.ndarray
    test: np.ndarray
    weights: np.ndarray | None = None  # the train rows' weights as of the step; None: the training set's own
    labels: np.ndarray | None = None  # the train rows' labels as of the step; None: the training set's own


def time_steps(times: pd.Series, *, start: pd.Timestamp, every: pd.Timedelta, horizon: pd.Timedelta) -> list[Step]:
    """Steps from `start` every `every` until the last cutoff: train on rows whose label window ended strictly
    before the step (cutoff + horizon < step), test on rows with step <= cutoff < step + every. No row is on both
    sides, even with a zero horizon (flat data) and rows sharing the step's timestamp."""
    times = pd.to_datetime(times, utc=True).reset_index(drop=True)
    steps, at = [], start
    while at <= times.max():
        train = np.flatnonzero((times + horizon < at).to_numpy())
        test = np.flatnonzero(((times >= at) & (times < at + every)).to_numpy())
        if len(test):
            steps.append(Step(at.date().isoformat(), train, test))
        at += every
    return steps


def row_steps(n: int, *, start: int, every: int) -> list[Step]:
    """Row-ordered data: train on every row before the step, test on the next `every` rows."""
    return [
        Step(f"rows {s}-{min(s + every, n) - 1}", np.arange(s), np.arange(s, min(s + every, n)))
        for s in range(start, n, every)
    ]


@dataclass(frozen=True)
class LevelSteps:
    """What a walk-forward over CRM tables needs of a level: its settings, the spine `train` would build on a date,
    the training set grown by the rows of a spine it lacks (and their positions), the recipe's fit, and the level's
    own per-row baselines of a training set (name -> probability, NaN where unknown)."""

    settings: Settings
    spine_at: Callable[[pd.Timestamp], pd.DataFrame]
    grow: Callable[[TrainingSet, pd.DataFrame], tuple[TrainingSet, np.ndarray]]
    fit: Callable[[Settings, TrainingSet, np.ndarray], MarginModel] = fit_model
    baselines: Callable[[TrainingSet], dict[str, np.ndarray]] | None = None


def lead_steps(settings: Settings, data: CrmData) -> LevelSteps:
    return LevelSteps(settings, partial(spine_as_of, settings, data), partial(with_rows, settings, data))


def opportunity_steps(settings: Settings, data: CrmData) -> tuple[LevelSteps, TrainingSet]:
    """The opportunity level's steps (its spine and recipe, the CRM's stage probability beside the model) and its
    training set."""
    from leadscore.pipelines.verbs import opportunities as deals

    opp = deals.opportunity_settings(settings)
    data = deals.with_lead_scores(settings, data)
    steps = LevelSteps(
        opp,
        partial(deals.opportunity_spine_as_of, opp, data),
        partial(deals.with_deal_rows, opp, data),
        deals.fit_opportunity_model,
        partial(deals.stage_probability_rows, opp, data),
    )
    return steps, deals.opportunity_training_set(opp, data)


def as_of_steps(
    settings: Settings,
    data: CrmData,
    training: TrainingSet,
    *,
    start: pd.Timestamp,
    every: pd.Timedelta,
    level: LevelSteps | None = None,
) -> tuple[TrainingSet, list[Step]]:
    """CRM mode: each step trains on the spine as of its date (`spine_as_of`; a level's `spine_at`), tested on the
    final training set's rows whose cutoff falls in its period. The training set comes back grown by the step rows
    it lacked (appended after its own rows, whose positions stay)."""
    level = level or lead_steps(settings, data)
    cutoffs = pd.to_datetime(training.frame["cutoff_time"], utc=True)
    steps, at = [], start
    while len(cutoffs) and at <= cutoffs.max():
        test = np.flatnonzero(((cutoffs >= at) & (cutoffs < at + every)).to_numpy())
        if len(test):
            spine = level.spine_at(at)
            training, train = level.grow(training, spine)
            weights, labels = spine["sample_weight"].to_numpy(), spine["converted"].to_numpy()
            steps.append(Step(at.date().isoformat(), train, test, weights, labels))
        at += every
    return training, steps


def step_rows(training: TrainingSet, step: Step) -> TrainingSet:
    """The step's training rows, in time order, with the step's own weights and labels (a row labelled by then has
    the same label later: its horizon ended by the step; taken from the step all the same)."""
    frame = training.frame.iloc[step.train].reset_index(drop=True)
    if step.weights is not None:
        frame["sample_weight"] = step.weights
    if step.labels is not None:
        frame["converted"] = step.labels.astype(frame["converted"].dtype)
    return TrainingSet(frame, training.feature_names, training.manifest, training.categorical)


def score_step(
    settings: Settings,
    training: TrainingSet,
    step: Step,
    cells: pd.Series | None,
    *,
    fit: Callable[[Settings, TrainingSet, np.ndarray], MarginModel] = fit_model,
    fixed: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray] | None:
    """Probabilities of each scorer on the step's test rows, or None when the history cannot train a model. `fixed`:
    scorers that are not fitted (the CRM's stage probability), one value per training row; a missing value reads as
    the step's training rows' rate."""
    frame, names = training.frame, training.feature_names
    fitted = step_rows(training, step)
    train, test = fitted.frame, frame.iloc[step.test]
    try:  # the recipe train would choose at this step, on the step's own rows
        model = fit(settings, fitted, np.arange(len(train)))
    except TooLittleDataError as exc:
        log.warning("step %s skipped: %s", step.label, exc)
        return None
    numeric = [c for c in names if c not in training.categorical]
    lr = logistic_regression(training.categorical, numeric, random_state=settings.model.random_state)
    lr.fit(train[names], train["converted"])
    scores = {
        "lightgbm_calibrated": model.predict_proba(test[names])[:, 1],
        "lightgbm_uncalibrated": expit(model.raw_score(test[names])),
        "logistic_regression": lr.predict_proba(test[names])[:, 1],
    }
    if cells is not None:
        rules = CellRateBaseline().fit(
            cells.iloc[step.train].reset_index(drop=True).to_frame("cell"), train["converted"]
        )
        scores["rules_grade"] = rules.predict_proba(cells.iloc[step.test].to_frame("cell"))[:, 1]
    if fixed:
        rate = float(np.average(train["converted"], weights=train.get("sample_weight")))
    for name, values in (fixed or {}).items():
        scores[name] = np.where(np.isnan(values[step.test]), rate, values[step.test])
    return scores


@dataclass
class BacktestResult:
    per_period: pd.DataFrame  # one row per (period, scorer)
    pooled: pd.DataFrame  # one row per scorer
    predictions: pd.DataFrame


def run_backtest(
    settings: Settings,
    training: TrainingSet,
    steps: list[Step],
    *,
    cells: pd.Series | None = None,
    level: LevelSteps | None = None,
    progress=None,
) -> BacktestResult:
    """Every step's scorers on its test rows, per period and pooled; `level` (default the lead level's) gives the
    recipe's fit and the level's own baselines."""
    rows, predictions = [], []
    y = training.frame["converted"].to_numpy()
    fit = fit_model if level is None else level.fit
    fixed = level.baselines(training) if level is not None and level.baselines is not None else None
    for step in steps:
        scores = score_step(settings, training, step, cells, fit=fit, fixed=fixed)
        if progress is not None:
            progress(1)
        if scores is None:
            continue
        truth = y[step.test]
        for scorer, p in scores.items():
            rows.append(
                {
                    "period": step.label,
                    "scorer": scorer,
                    "rows": len(step.test),
                    "train_rows": len(step.train),
                    "positives": int(truth.sum()),
                    **evaluate(truth, p),
                }
            )
        predictions.append(pd.DataFrame({"period": step.label, "row": step.test, "converted": truth, **scores}))
    if not predictions:
        raise TooLittleDataError("no backtest step had enough history to train: start later or add history")
    pooled_frame = pd.concat(predictions, ignore_index=True)
    scorers = [s for s in SCORERS if s in pooled_frame]
    pooled = metrics_table({s: evaluate(pooled_frame["converted"], pooled_frame[s]) for s in scorers})
    return BacktestResult(pd.DataFrame(rows), pooled, pooled_frame)


def roc_auc_per_period(per_period: pd.DataFrame) -> pd.DataFrame:
    """ROC AUC per period and scorer, the rows of each period first and, last, what calibration did to the
    ranking (`calibrated_minus_raw`: near 0 when the calibrator keeps the booster's order)."""
    table = per_period.pivot(index="period", columns="scorer", values="roc_auc")
    table = table.reindex(per_period["period"].drop_duplicates())
    table.insert(0, "rows", per_period.groupby("period", sort=False)["rows"].first())
    if {"lightgbm_calibrated", "lightgbm_uncalibrated"} <= set(table.columns):
        table["calibrated_minus_raw"] = table["lightgbm_calibrated"] - table["lightgbm_uncalibrated"]
    return table


def log_backtest(
    settings: Settings,
    result: BacktestResult,
    *,
    params: dict,
    capture: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> str:
    """One MLflow parent run (pooled metrics, and the captured conversions at capacity when given: per-week rows and
    the policy table) with a child run per period."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    experiment = tracking.use_store(settings)
    level = params.get("level", "lead")
    name = "backtest" if level == "lead" else f"backtest {level}"
    with mlflow.start_run(experiment_id=experiment, run_name=name) as parent:
        mlflow.log_params(params)
        for scorer, row in result.pooled.iterrows():
            mlflow.log_metrics({f"pooled.{scorer}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
        tracking.log_frame(result.per_period.set_index(["period", "scorer"]), "backtest/per_period.csv")
        tracking.log_frame(result.pooled, "backtest/pooled.csv")
        if capture is not None:
            tracking.log_frame(capture[0], "backtest/capture_per_week.csv")
            tracking.log_frame(capture[1], "backtest/capture_at_capacity.csv")
            mlflow.log_metrics(
                {
                    f"capture.{policy.replace(' ', '_')}.{k}": float(v)
                    for policy, row in capture[1].iterrows()
                    for k, v in row.items()
                    if pd.notna(v)
                }
            )
        for period, rows in result.per_period.groupby("period", sort=False):
            with mlflow.start_run(experiment_id=experiment, run_name=f"period {period}", nested=True):
                mlflow.log_param("period", period)
                for _, row in rows.iterrows():
                    mlflow.log_metrics(
                        {
                            f"{row['scorer']}.{k}": float(row[k])
                            for k in ("roc_auc", "pr_auc", "brier", "ece", "log_loss")
                            if pd.notna(row[k])
                        }
                    )
        return parent.info.run_id


def check_steps(start: str, every: str) -> None:
    """--start and --every are readable (a date and days, or rows) before any data is loaded."""
    try:
        if every.endswith("d"):
            if float(every[:-1]) <= 0:
                raise ValueError
            pd.Timestamp(start)
        elif int(every) <= 0 or float(start) < 0:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"--start {start!r} / --every {every!r}: use a date and days (e.g. 2025-01-01, 30d) or a "
            "row share / number and a number of rows (e.g. 0.8, 1000)"
        ) from None


def steps_for(
    settings: Settings,
    training: TrainingSet,
    *,
    start: str,
    every: str,
    data: CrmData | None = None,
    level: LevelSteps | None = None,
) -> tuple[TrainingSet, list[Step]]:
    """The walk-forward steps --start and --every describe: by date (CRM: each step's training set as of its date;
    timed flat rows) or by row number; with the training set they index (CRM: grown by the steps' rows)."""
    n = len(training.frame)
    if not every.endswith("d"):
        first = float(start)
        return training, row_steps(n, start=int(first * n) if first < 1 else int(first), every=int(every))
    if training.frame["cutoff_time"].isna().all():
        raise UsageError("--every in days needs cutoff times; this data is row-ordered: give a number of rows")
    at, period = parse_as_of(start, option="--start"), pd.Timedelta(days=float(every[:-1]))
    if data is not None:
        return as_of_steps(settings, data, training, start=at, every=period, level=level)
    return training, time_steps(training.frame["cutoff_time"], start=at, every=period, horizon=pd.Timedelta(0))


def lead_walk(
    settings: Settings, data: CrmData | None, *, start: str, every: str
) -> tuple[TrainingSet, list[Step], pd.Series | None]:
    """The lead level's training set, its steps and (CRM mode) each row's rules-only cell."""
    from leadscore.models.grades import grade_spine
    from leadscore.pipelines.training_set import build_training_set

    training = build_training_set(settings, data=data)
    training, steps = steps_for(settings, training, start=start, every=every, data=data)
    if data is None:
        return training, steps, None
    spine = training.frame[["lead_id", "cutoff_time", "converted"]]
    return training, steps, grade_spine(spine, data.tables, settings.grades, settings.feature_params())["cell"]


def run_walk_forward(
    settings: Settings,
    *,
    start: str,
    every: str,
    as_of: pd.Timestamp | None = None,
    capacity: int | None = None,
    level: str = "lead",
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore backtest`: walk-forward retraining, its tables printed and logged to MLflow. `level`:
    lead, or opportunity (the deal model beside the CRM's stage probability; no capture table)."""
    from tqdm import tqdm

    from leadscore.pipelines.verbs.capacity import backtest_capture, capture_text

    check_steps(start, every)
    if settings.mode == "crm":
        check_outputs(settings)  # backtest writes the validation rejects
    data = load_valid_crm(settings, as_of=as_of) if settings.mode == "crm" else None
    steps_of, cells = None, None
    if level == "opportunity":
        steps_of, training = opportunity_steps(settings, data)
        training, steps = steps_for(steps_of.settings, training, start=start, every=every, data=data, level=steps_of)
    else:
        training, steps, cells = lead_walk(settings, data, start=start, every=every)
    run_settings = settings if steps_of is None else steps_of.settings
    try:
        with tqdm(total=len(steps), unit="step", desc="backtest", disable=None) as bar:
            result = run_backtest(run_settings, training, steps, cells=cells, level=steps_of, progress=bar.update)
    except TooLittleDataError as exc:
        raise DataError(str(exc)) from None
    echo("ROC AUC per period:")
    echo(roc_auc_per_period(result.per_period).to_string(float_format=lambda v: f"{v:.4f}"))
    echo("\npooled over all periods:")
    echo(result.pooled.to_string(float_format=lambda v: f"{v:.4f}"))
    capture = None
    if level == "lead":
        capture = backtest_capture(settings, data, training.frame, result.predictions, capacity=capacity)
        echo(
            "\n" + capture_text(capture[1], capture[0])
            if capture is not None
            else "\nno capture table: set [grades.capacity] or give --capacity N (leads per week)"
        )
    run_id = log_backtest(
        run_settings,
        result,
        params={"start": start, "every": every, "steps": len(steps), "level": level},
        capture=None if capture is None else capture[:2],
    )
    echo(f"MLflow run {run_id} (one child run per period) in {settings.tracking_uri}")
    pooled = {k: round(float(v), 4) for k, v in result.pooled["roc_auc"].items()}
    return {"verb": "backtest", "level": level, "steps": len(steps), "run_id": run_id, "pooled_roc_auc": pooled}
