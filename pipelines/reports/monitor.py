"""The monitor's outputs: plots, the HTML report (a Jinja2 template), text for the terminal, one MLflow run."""

from __future__ import annotations

import base64
import io
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.outputs.publish import project_publication

if TYPE_CHECKING:
    from leadscore.pipelines.verbs.monitor import Monitoring


# -- plots -------------------------------------------------------------------------------------------------------
def conversion_by_decile_figure(result: Monitoring):
    """Realized conversion rate by score decile, beside the mean predicted probability."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    table = result.by_decile
    ax.bar(table["decile"].astype(int), table["conversion_rate"], color="#4C72B0", label="realized conversion")
    ax.plot(table["decile"].astype(int), table["mean_probability"], "o-", color="#DD8452", label="mean predicted")
    ax.set(
        xlabel="score decile within its run (10 = highest)",
        ylabel="share converted within the horizon",
        title="Realized conversion by score decile",
        xticks=range(1, 11),
    )
    ax.legend()
    fig.tight_layout()
    return fig


def weekly_figure(table: pd.DataFrame, column: str, *, title: str, ylabel: str, target: float | None = None):
    """A weekly rate over time (acceptance or SLA compliance), with its target when there is one."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(table["week"].dt.tz_localize(None), table[column], "o-", color="#4C72B0")
    if target is not None:
        ax.axhline(target, color="#C44E52", linestyle="--", label=f"target {target:.0%}")
        ax.legend()
    ax.set(title=title, ylabel=ylabel, ylim=(0, 1))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def calibration_figure(table: pd.DataFrame, version: str | None):
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.plot(table["mean_predicted"], table["observed_rate"], "o-", color="#4C72B0")
    top = float(max(table["mean_predicted"].max(), table["observed_rate"].max(), 0.05)) * 1.1
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="mean predicted",
        ylabel="realized rate",
        title=f"Live calibration of v{version} (deciles)",
    )
    fig.tight_layout()
    return fig


def figures(result: Monitoring, settings: Settings) -> dict[str, object]:
    out = {}
    if len(result.by_decile):
        out["conversion_by_decile.png"] = conversion_by_decile_figure(result)
    if len(result.live_calibration):
        out["live_calibration.png"] = calibration_figure(result.live_calibration, result.calibration_version)
    weekly = result.acceptance.get("week")
    if weekly is not None and len(weekly):
        out["acceptance_by_week.png"] = weekly_figure(
            weekly, "acceptance_rate", title="Sales acceptance by week", ylabel="accepted / handed over"
        )
    sla = result.sla.get("week")
    if sla is not None and len(sla):
        out["sla_compliance_by_week.png"] = weekly_figure(
            sla,
            "sla_compliance",
            title="SLA compliance by week",
            ylabel="touched within SLA",
            target=settings.monitor.sla_compliance_target,
        )
    return out


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- tables ------------------------------------------------------------------------------------------------------
def tables(result: Monitoring) -> dict[str, pd.DataFrame]:
    """Every table of the report by name (the same names are used for the MLflow artifacts)."""
    out = {
        "runs": result.runs,
        "conversion_by_decile": result.by_decile,
        "conversion_by_cell": result.by_cell,
        "live_record": result.live,
        "live_calibration": result.live_calibration,
    }
    out.update({f"acceptance_by_{by}": t for by, t in result.acceptance.items()})
    out["rejection_reasons"] = result.reasons
    if len(result.reroutes.columns):
        out["rejected_rerouted"] = result.reroutes
    if len(result.movers):
        out["biggest_movers"] = result.movers
    out.update({f"sla_by_{by}": t for by, t in result.sla.items()})
    return out


def _html_table(frame: pd.DataFrame) -> str:
    text = _dates_as_text(frame)
    return text.to_html(index=False, border=0, classes="t", na_rep="-", float_format=lambda v: f"{v:.3f}")


def render(result: Monitoring, images: dict[str, str]) -> str:
    import jinja2

    source = (
        resources.files("leadscore.pipelines.reports").joinpath("templates/monitor.html.j2").read_text(encoding="utf-8")
    )
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(source)
    return template.render(
        result=result,
        images=images,
        tables={k: _html_table(v) for k, v in tables(result).items()},
        data_end=f"{result.data_end:%Y-%m-%d %H:%M} UTC",
        since=f"{result.since:%Y-%m-%d}" if result.since else None,
    )


def write_report(result: Monitoring, path: Path, settings: Settings) -> tuple[Path, dict]:
    """Write the self-contained HTML report atomically; return its path and the figures (for MLflow)."""
    figs = figures(result, settings)
    images = {name: _png(fig) for name, fig in figs.items()}
    page = render(result, images)
    with project_publication(settings) as publication:
        publication.write(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return Path(path), figs


def log_monitoring(settings: Settings, result: Monitoring, figs: dict) -> str:
    """One MLflow run "monitor": the champion's live figures, acceptance and SLA, alerts, tables, plots, report."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    experiment = tracking.use_store(settings)
    name = tracking.run_name("monitor", result.data_end, f"champion v{result.champion}" if result.champion else None)
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        mlflow.set_tags(
            {
                "champion_version": str(result.champion),
                "data_end": result.data_end.isoformat(),
                "alerts": ",".join(a["alert"] for a in result.alerts) or "none",
            }
        )
        metrics = {"alerts": float(len(result.alerts)), "matured_outcomes": float(len(result.outcomes))}
        champion = result.live[result.live["champion"]] if len(result.live) else result.live
        if len(champion):
            row = champion.iloc[0]
            metrics.update({k: float(row[k]) for k in row.index if k.startswith("live_") and pd.notna(row[k])})
            metrics["live_leads"] = float(row["leads"])
        overall = overall_rates(result)
        metrics.update({k: v for k, v in overall.items() if v is not None})
        if len(result.reroutes.columns):
            metrics["rejected_rerouted"] = float(result.reroutes["rerouted"].sum())
            metrics["rejected_rerouted_without_new_activity"] = float(result.reroutes["without_new_activity"].sum())
        mlflow.log_metrics(metrics)
        for name, table in tables(result).items():
            tracking.log_frame(table, f"monitor/{name}.csv")
        for name, fig in figs.items():
            tracking.log_figure(fig, f"monitor/{name}")
            plt.close(fig)
        if result.report_path is not None:
            mlflow.log_artifact(str(result.report_path), "monitor")
        return run.info.run_id


def overall_rates(result: Monitoring) -> dict[str, float | None]:
    """Acceptance rate and SLA compliance over every matured handover."""
    out: dict[str, float | None] = {"acceptance_rate": None, "sla_compliance": None}
    cells = result.acceptance.get("cell")
    if cells is not None and cells["handed_over"].sum():
        out["acceptance_rate"] = float(cells["accepted"].sum() / cells["handed_over"].sum())
    sla = result.sla.get("cell")
    if sla is not None and sla["handed_over"].sum():
        out["sla_compliance"] = float(sla["within_sla"].sum() / sla["handed_over"].sum())
    return out


# -- terminal ----------------------------------------------------------------------------------------------------
def _text(frame: pd.DataFrame) -> str:
    return _dates_as_text(frame).to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _dates_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for column in shown.columns:
        if isinstance(shown[column].dtype, pd.DatetimeTZDtype):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d")
    return shown


def summary_lines(result: Monitoring) -> list[str]:
    lines = [
        f"data up to {result.data_end:%Y-%m-%d %H:%M} UTC; {len(result.runs)} scoring run(s) in the history, "
        f"{len(result.outcomes):,} scores with a matured outcome ({result.outcomes['lead_id'].nunique():,} leads); "
        f"champion v{result.champion or '?'}"
    ]
    lines += [f"note: {n}" for n in result.notes]
    if len(result.runs):
        lines += ["", "scoring runs:", _text(result.runs)]
    if len(result.by_decile):
        lines += ["", "realized conversion by score decile (10 = highest):", _text(result.by_decile)]
        lines += ["", "realized conversion by cell:", _text(result.by_cell)]
    if len(result.live):
        lines += [
            "",
            "live record (scores made after the model's training data ended) beside the training holdout:",
            _text(result.live),
        ]
    for by in ("cell", "stage"):
        if by in result.acceptance:
            lines += ["", f"sales acceptance by {by}:", _text(result.acceptance[by])]
    if len(result.reasons):
        lines += ["", "rejection reasons:", _text(result.reasons)]
    lines += reroute_lines(result.reroutes)
    if len(result.movers):
        lines += ["", f"biggest score moves in the latest run (as of {result.movers['as_of'].iloc[0]:%Y-%m-%d}):"]
        lines += [_text(result.movers.drop(columns=["as_of"]))]
    if "cell" in result.sla:
        lines += ["", "time to first touch and SLA compliance by cell:", _text(result.sla["cell"])]
    overall = overall_rates(result)
    lines.append("")
    lines.append(
        "overall: acceptance "
        + (f"{overall['acceptance_rate']:.1%}" if overall["acceptance_rate"] is not None else "n/a")
        + ", SLA compliance "
        + (f"{overall['sla_compliance']:.1%}" if overall["sla_compliance"] is not None else "n/a")
    )
    lines += [f"ALERT {a['alert']}: {a['message']}" for a in result.alerts] or ["no alert fired"]
    return lines


def reroute_lines(reroutes: pd.DataFrame) -> list[str]:
    """Leads sales rejected that runs sent to sales again, with and without new activity since the rejection."""
    if not len(reroutes.columns):
        return []
    total, active = int(reroutes["rerouted"].sum()), int(reroutes["after_new_activity"].sum())
    head = (
        f"rejected by sales, then sent to sales again: {total:,} lead-run(s) ({active:,} after new activity, "
        f"{total - active:,} without)"
    )
    return ["", head, _text(reroutes)] if total else ["", head]


# -- the section in `leadscore explain` --------------------------------------------------------------------------
def live_section_parts(result: Monitoring) -> tuple[str, dict[str, object], dict[str, pd.DataFrame]]:
    """For the analysts' report: realized conversion by decile, the live record, acceptance and SLA by cell."""
    figs = {}
    parts = ["<h2 id='live'>The live record (from the score history; details: <code>leadscore monitor</code>)</h2>"]
    parts += [f"<p>{n}</p>" for n in result.notes]
    named = {
        "live_conversion_by_decile": result.by_decile,
        "live_record": result.live,
        "live_acceptance_by_cell": result.acceptance.get("cell"),
        "live_sla_by_cell": result.sla.get("cell"),
    }
    titles = {
        "live_conversion_by_decile": "Realized conversion by score decile",
        "live_record": "Live record beside the training holdout",
        "live_acceptance_by_cell": "Sales acceptance by cell",
        "live_sla_by_cell": "SLA compliance by cell",
    }
    shown = {name: table for name, table in named.items() if table is not None and len(table)}
    if len(result.by_decile):
        figs["live_conversion_by_decile"] = conversion_by_decile_figure(result)
    for name, table in shown.items():
        parts.append(f"<h3>{titles[name]}</h3>" + _html_table(table))
    return "".join(parts), figs, shown
