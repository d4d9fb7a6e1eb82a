"""`leadscore monitor`: the score history against what happened since, from the CRM and from sales' feedback.

Realized conversion by score decile and by cell, the live record of each model that scored (on outcomes that
arrived after its training data ended: truly out of sample) beside its training-time holdout figures, sales
acceptance and SLA compliance, and alerts. `live_record` gives the champion's live figures to other code (e.g. a
promotion gate). The pure tables live in `models/monitoring.py`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.schemas import SALES_TOUCH_EVENTS
from leadscore.models import monitoring as m
from leadscore.models.drift import population_stability
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.validation import CrmData, load_crm
from leadscore.pipelines.outputs.history import read_history

log = logging.getLogger(__name__)

LIVE_METRICS = ("roc_auc", "pr_auc", "brier", "ece")
ALERT_EXIT_CODE = 3


@dataclass
class ModelInfo:
    """What the registry knows of one model version: the end of its training data and its holdout figures."""

    name: str
    version: str
    trained_through: pd.Timestamp | None
    holdout: dict[str, float] = field(default_factory=dict)
    reference_profile: dict = field(default_factory=dict)


@dataclass
class LiveRecord:
    """A model's out-of-sample record: scores made at or after its training data ended, whose horizon passed; one
    outcome per lead (`leads` of them, `conversions` converted), drawn from its `scores` matured scores."""

    model_name: str
    model_version: str
    trained_through: pd.Timestamp | None
    leads: int
    conversions: int
    figures: dict[str, float]
    holdout: dict[str, float]
    scores: int = 0

    def get(self, metric: str) -> float:
        return float(self.figures.get(metric, np.nan))


@dataclass
class Monitoring:
    data_end: pd.Timestamp
    since: pd.Timestamp | None
    champion: str | None
    runs: pd.DataFrame
    outcomes: pd.DataFrame
    by_decile: pd.DataFrame
    by_cell: pd.DataFrame
    live: pd.DataFrame
    live_calibration: pd.DataFrame
    calibration_version: str | None
    acceptance: dict[str, pd.DataFrame]
    reasons: pd.DataFrame
    sla: dict[str, pd.DataFrame]
    alerts: list[dict]
    reroutes: pd.DataFrame = field(default_factory=pd.DataFrame)  # rejected leads sent to sales again, per run
    movers: pd.DataFrame = field(default_factory=pd.DataFrame)  # the latest run's biggest score moves
    notes: list[str] = field(default_factory=list)
    report_path: Path | None = None
    run_id: str | None = None

    @property
    def exit_code(self) -> int:
        """0: no alert fired; 3 (ALERT_EXIT_CODE): at least one did."""
        return ALERT_EXIT_CODE if self.alerts else 0


# -- inputs ------------------------------------------------------------------------------------------------------
def sales_touches(data: CrmData) -> pd.DataFrame:
    """Every known sales touch (lead_id, touched_at): sales-touch events and `leads.first_sales_touch_at`."""
    parts = []
    events = data.tables.get("events")
    if events is not None:
        is_touch = events["event_type"].isin(list(SALES_TOUCH_EVENTS))
        touch = events.loc[is_touch, ["lead_id", "occurred_at"]]
        parts.append(
            pd.DataFrame(
                {"lead_id": touch["lead_id"].astype("string").to_numpy(), "touched_at": touch["occurred_at"].to_numpy()}
            )
        )
    leads = data.tables["leads"]
    if "first_sales_touch_at" in leads:
        first = leads.loc[leads["first_sales_touch_at"].notna(), ["lead_id", "first_sales_touch_at"]]
        parts.append(
            pd.DataFrame(
                {
                    "lead_id": first["lead_id"].astype("string").to_numpy(),
                    "touched_at": first["first_sales_touch_at"].to_numpy(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {"lead_id": pd.Series(dtype="string"), "touched_at": pd.Series(dtype="datetime64[ns, UTC]")}
        )
    touches = pd.concat(parts, ignore_index=True)
    touches["touched_at"] = pd.to_datetime(touches["touched_at"], utc=True)
    return touches


def handed_rows(history: pd.DataFrame) -> pd.DataFrame:
    """Every production history row that sent its lead to sales (a `due_by`), not only each lead's first handover;
    a shadow run's routes reached no one."""
    return history[history["due_by"].notna().to_numpy() & history["production"].to_numpy(dtype=bool)]


def new_activity(settings: Settings, data: CrmData) -> pd.DataFrame:
    """The events (lead_id, occurred_at) that bring a lead sales rejected back: `grades.routing.new_activity_events`."""
    events = data.tables.get("events")
    if events is None:
        return pd.DataFrame(
            {"lead_id": pd.Series(dtype="string"), "occurred_at": pd.Series(dtype="datetime64[ns, UTC]")}
        )
    wanted = events["event_type"].isin(settings.grades.routing.new_activity_events).to_numpy(dtype=bool)
    picked = events.loc[wanted, ["lead_id", "occurred_at"]]
    return pd.DataFrame(
        {"lead_id": picked["lead_id"].astype("string").to_numpy(), "occurred_at": picked["occurred_at"].to_numpy()}
    )


def model_info(settings: Settings, name: str, version: str, *, with_profile: bool = False) -> ModelInfo:
    """Training-data end (from the training-set manifest) and holdout metrics of a registered model version."""
    from leadscore.pipelines.outputs import tracking

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small JSON: no progress bar
    mlflow = tracking.mlflow_module()
    tracking.use_store(settings)
    client = mlflow.MlflowClient()
    try:
        run_id = client.get_model_version(name, version).run_id
        run = client.get_run(run_id)
        manifest = mlflow.artifacts.load_dict(f"runs:/{run_id}/training_set/manifest.json")
    except Exception as exc:  # MLflow raises several types for an unknown model, run or artifact
        log.warning("no training record for %s v%s: %s", name, version, exc)
        return ModelInfo(name, version, None)
    trained_through = pd.Timestamp(manifest["as_of"]) if manifest.get("as_of") else None
    holdout = {k: float(run.data.metrics[k]) for k in LIVE_METRICS if k in run.data.metrics}
    profile = {}
    if with_profile:
        try:
            _model, wrapper = tracking.load_conversion_model(f"models:/{name}/{version}")
            profile = getattr(wrapper, "reference_profile", {}) or {}
        except Exception as exc:  # a deleted or unloadable version: no drift figure, not a failure
            log.warning("cannot load %s v%s for its training profile: %s", name, version, exc)
    return ModelInfo(name, version, trained_through, holdout, profile)


def _champion(settings: Settings) -> str | None:
    from leadscore.pipelines.outputs import tracking

    tracking.use_store(settings)
    return tracking.champion_version(settings)


# -- the live record ---------------------------------------------------------------------------------------------
def _live_rows(outcomes: pd.DataFrame, info: ModelInfo) -> pd.DataFrame:
    mine = (outcomes["model_name"] == info.name) & (outcomes["model_version"] == info.version)
    if info.trained_through is None:
        return outcomes.iloc[:0]
    # scored at or after the end of the training data: every outcome in the horizon arrived after training
    return outcomes[mine & (outcomes["as_of"] >= info.trained_through)]


def _record(outcomes: pd.DataFrame, info: ModelInfo) -> LiveRecord:
    figures = m.live_figures(_live_rows(outcomes, info))
    leads, conversions, scores = (int(figures.pop(k)) for k in ("leads", "conversions", "scores"))
    return LiveRecord(info.name, info.version, info.trained_through, leads, conversions, figures, info.holdout, scores)


def live_record(
    settings: Settings, *, model_version: str | None = None, data: CrmData | None = None
) -> LiveRecord | None:
    """The live out-of-sample record of a registered model version (default: the champion), or None without one.

    Live rows are the model's own scores in the history made at or after the end of its training data and whose
    horizon has passed by the end of the CRM data; each is labelled like a training row, and one per lead counts (a
    lead scored by 70 runs is one outcome). `leads` says how many there are: a caller such as a promotion gate should
    use the figures only above its own minimum (the monitor's alert uses `monitor.min_live_leads`). Figures are NaN
    when the outcomes hold one class only.
    """
    name = settings.mlflow.registered_model
    version = model_version or _champion(settings)
    if version is None:
        return None
    data = data if data is not None else load_crm(settings)
    horizon = pd.Timedelta(days=settings.spine.horizon_days)
    history = read_history(settings)
    history = history[(history["model_name"] == name) & (history["model_version"] == version)]
    outcomes = m.realized_outcomes(history, data.tables["opportunities"], horizon=horizon, data_end=data.as_of)
    return _record(outcomes, model_info(settings, name, version))


# -- the whole monitor -------------------------------------------------------------------------------------------
def _runs_table(history: pd.DataFrame, outcomes: pd.DataFrame, profiles: dict) -> pd.DataFrame:
    keys = ["as_of", "model_name", "model_version"]
    runs = history.groupby(keys, observed=True).agg(
        production=("production", "all"),
        leads=("lead_id", "size"),
        mean_probability=("probability", "mean"),
        routed=("due_by", "count"),
    )
    matured = outcomes.groupby(keys, observed=True).agg(
        outcomes=("converted", "size"), conversion_rate=("converted", "mean")
    )
    runs = runs.join(matured, how="left").reset_index()
    runs["outcomes"] = runs["outcomes"].fillna(0).astype("int64")
    psi = []
    for run in runs.itertuples():
        reference = profiles.get((run.model_name, run.model_version), {}).get("probability")
        rows = history[
            (history["as_of"] == run.as_of)
            & (history["model_name"] == run.model_name)
            & (history["model_version"] == run.model_version)
        ]
        psi.append(
            float(population_stability({"probability": reference}, rows[["probability"]]).iloc[0])
            if reference
            else np.nan
        )
    runs["score_psi"] = psi
    return runs


def _live_table(records: list[LiveRecord], champion: str | None) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {
            "model_version": r.model_version,
            "champion": r.model_version == champion,
            "trained_through": r.trained_through,
            "leads": r.leads,
            "conversions": r.conversions,
            "scores": r.scores,
        }
        for metric in LIVE_METRICS:
            row[f"live_{metric}"] = r.get(metric)
            row[f"holdout_{metric}"] = r.holdout.get(metric, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _alert(name: str, value: float, threshold: float, message: str) -> dict:
    return {"alert": name, "value": float(value), "threshold": float(threshold), "message": message}


def _alerts(settings: Settings, result: Monitoring, champion: LiveRecord | None) -> list[dict]:
    """Alerts whose thresholds (in [monitor]) were crossed: acceptance drop, live ROC AUC, SLA, score drift."""
    cfg, alerts = settings.monitor, []
    weekly = result.acceptance.get("week")
    drop = m.acceptance_drop(weekly) if weekly is not None and len(weekly) else None
    if drop is not None and drop > cfg.acceptance_drop_points:
        alerts.append(
            _alert(
                "acceptance_drop",
                drop,
                cfg.acceptance_drop_points,
                f"sales acceptance in the latest week is {drop:.1f} points below the earlier weeks "
                f"(threshold {cfg.acceptance_drop_points:g})",
            )
        )
    if champion is not None and champion.leads >= cfg.min_live_leads:
        auc = champion.get("roc_auc")
        if np.isfinite(auc) and auc < cfg.live_roc_auc_floor:
            alerts.append(
                _alert(
                    "live_roc_auc",
                    auc,
                    cfg.live_roc_auc_floor,
                    f"champion v{champion.model_version} live ROC AUC {auc:.3f} below the floor "
                    f"{cfg.live_roc_auc_floor:g} ({champion.leads:,} leads' outcomes)",
                )
            )
    sla_weeks = result.sla.get("week")
    if sla_weeks is not None and len(sla_weeks):
        latest = sla_weeks.sort_values("week").iloc[-1]
        share = latest["sla_compliance"]
        if share < cfg.sla_compliance_target:
            alerts.append(
                _alert(
                    "sla_compliance",
                    share,
                    cfg.sla_compliance_target,
                    f"SLA compliance {share:.1%} in the week of {latest['week']:%Y-%m-%d} below the "
                    f"target {cfg.sla_compliance_target:.0%}",
                )
            )
    drifts = result.runs.dropna(subset=["score_psi"]).sort_values("as_of") if len(result.runs) else result.runs
    if len(drifts) and drifts["score_psi"].iloc[-1] > cfg.score_drift_psi:
        latest = drifts.iloc[-1]
        alerts.append(
            _alert(
                "score_drift",
                latest["score_psi"],
                cfg.score_drift_psi,
                f"scores of the run at {latest['as_of']:%Y-%m-%d} drifted from the training population: "
                f"PSI {latest['score_psi']:.2f} > {cfg.score_drift_psi:g}",
            )
        )
    return alerts


def build_monitoring(
    settings: Settings, *, since: pd.Timestamp | None = None, data: CrmData | None = None, score_drift: bool = True
) -> Monitoring:
    """Every monitor table and the alerts, from the history, the CRM tables and the registry (no files written).

    `score_drift=False` skips loading each model for its training profile (no PSI per run, no drift alert).
    """
    data = data if data is not None else load_crm(settings)
    history = read_history(settings, since=since)
    horizon = pd.Timedelta(days=settings.spine.horizon_days)
    outcomes = m.realized_outcomes(history, data.tables["opportunities"], horizon=horizon, data_end=data.as_of)
    champion = _champion(settings)
    versions = history[["model_name", "model_version"]].drop_duplicates().itertuples(index=False)
    infos = {(n, v): model_info(settings, n, v, with_profile=score_drift) for n, v in versions}
    records = [_record(outcomes, info) for info in infos.values()]
    champion_record = next(
        (r for r in records if (r.model_name, r.model_version) == (settings.mlflow.registered_model, champion)), None
    )
    runs = _runs_table(history, outcomes, {k: i.reference_profile for k, i in infos.items()})

    handed = m.handovers(history)
    leads = data.tables["leads"].assign(lead_id=lambda f: f["lead_id"].astype("string"))
    acceptance, reasons, sla, notes = {}, pd.DataFrame(columns=["rejection_reason", "rejections"]), {}, []
    if "sales_accepted_at" in leads or "sales_rejected_at" in leads:
        window = pd.Timedelta(days=settings.monitor.acceptance_window_days)
        decisions = m.sales_decisions(handed, leads, window=window, data_end=data.as_of)
        acceptance = {by: m.acceptance_by(decisions, by) for by in ("cell", "stage", "week")}
        reasons = m.rejection_reasons(decisions)
    else:
        notes.append("no sales_accepted_at / sales_rejected_at in the leads table: acceptance not measured")
    reroutes = (
        m.reroutes_after_rejection(handed_rows(history), leads, new_activity(settings, data))
        if "sales_rejected_at" in leads
        else pd.DataFrame()
    )
    touches = sales_touches(data)
    if len(touches):
        touched = m.first_touches(handed, touches, data_end=data.as_of)
        sla = {by: m.sla_by(touched, by) for by in ("cell", "week")}
    else:
        notes.append(
            "no sales touches (sales_call / sales_email / meeting events, first_sales_touch_at): SLA "
            "compliance not measured"
        )
    # calibration of the champion; of the model with the most live outcomes while the champion has none yet
    focus = (
        champion_record
        if champion_record and champion_record.leads
        else max(records, key=lambda r: r.leads, default=None)
    )
    focus_rows = (
        m.one_per_lead(_live_rows(outcomes, infos[(focus.model_name, focus.model_version)]))
        if focus
        else outcomes.iloc[:0]
    )
    # what sales saw: the production runs' scores, one outcome per lead
    routed = m.one_per_lead(outcomes[outcomes["production"].to_numpy(dtype=bool)])
    result = Monitoring(
        data_end=data.as_of,
        since=since,
        champion=champion,
        runs=runs,
        outcomes=outcomes,
        by_decile=m.conversion_by(routed, "decile"),
        by_cell=m.conversion_by(routed, "cell"),
        live=_live_table(records, champion),
        live_calibration=m.live_calibration(focus_rows),
        calibration_version=focus.model_version if focus else None,
        acceptance=acceptance,
        reasons=reasons,
        sla=sla,
        alerts=[],
        notes=notes,
        reroutes=reroutes,
        movers=m.biggest_movers(history, n=settings.monitor.movers),
    )
    if history.empty and since is not None and len(everything := read_history(settings)):
        latest = everything["as_of"].max()
        result.notes.append(
            f"no scoring run since {since.date()}: the history holds {everything['as_of'].nunique():,} run(s), the "
            f"latest as of {latest.isoformat()} (choose an earlier --since)"
        )
    elif history.empty:
        result.notes.append("the score history is empty: run `leadscore predict` first")
    elif outcomes.empty:
        result.notes.append(f"no scoring run is older than the horizon ({settings.spine.horizon_days:g} days) yet")
    if champion is not None and len(records) and (champion_record is None or not champion_record.leads):
        result.notes.append(
            f"champion v{champion} has no matured live outcome yet; the table shows the live "
            "record of the models that scored earlier"
        )
    result.alerts = _alerts(settings, result, champion_record)
    return result


def run_monitor(settings: Settings, *, since: pd.Timestamp | None = None, out: Path | None = None) -> Monitoring:
    """The whole `leadscore monitor`: tables and alerts, the HTML report, and one MLflow run with both."""
    from leadscore.pipelines.outputs.targets import Target, check_outputs
    from leadscore.pipelines.reports.monitor import log_monitoring, write_report

    target = Path(out or settings.output_dir / "monitor.html")
    check_outputs(settings, Target(target, "--out", (".html", ".htm")))
    result = build_monitoring(settings, since=since)
    result.report_path, figures = write_report(result, target, settings)
    result.run_id = log_monitoring(settings, result, figures)
    return result


def live_section(settings: Settings, data) -> tuple[str, dict[str, object], dict[str, pd.DataFrame]]:
    """The live-record section of `leadscore explain`: realized conversion by decile, the live record, acceptance
    and SLA by cell, from the score history."""
    from leadscore.pipelines.reports.monitor import live_section_parts

    return live_section_parts(build_monitoring(settings, data=data, score_drift=False))


def _records(frame: pd.DataFrame) -> list[dict]:
    """A table as JSON-ready rows: times as ISO text, numbers as plain numbers, missing as None."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: v.isoformat() if isinstance(v, pd.Timestamp) else v for k, v in row.items()} for row in rows]


def run_monitor_verb(
    settings: Settings, *, since: pd.Timestamp | None = None, out: Path | None = None, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore monitor` as the command line runs it: the tables, alerts and report, then its summary
    (exit code 3 when an alert fired)."""
    import matplotlib

    matplotlib.use("Agg")  # the report is rendered to files, never to a screen
    from leadscore.pipelines.reports.monitor import summary_lines

    if settings.mode != "crm":
        raise DataError("monitor reads the outcomes of scored leads from a CRM (mode = 'crm')")
    result = run_monitor(settings, since=since, out=out)
    for line in summary_lines(result):
        echo(line)
    echo(f"\nreport: {result.report_path.resolve()}")
    echo(f"tables, plots and the report logged to MLflow run {result.run_id}")
    return {
        "verb": "monitor",
        "exit_code": result.exit_code,
        "alerts": result.alerts,
        "notes": result.notes,
        "champion": result.champion,
        "matured_outcomes": len(result.outcomes),
        "matured_leads": int(result.outcomes["lead_id"].nunique()),
        "rejected_rerouted": {
            k: int(result.reroutes[k].sum()) for k in ("rerouted", "after_new_activity", "without_new_activity")
        }
        if len(result.reroutes.columns)
        else None,
        "movers": _records(result.movers),
        "data_end": result.data_end.isoformat(),
        "report": str(result.report_path.resolve()),
        "run_id": result.run_id,
    }
