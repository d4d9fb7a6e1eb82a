"""`leadscore predict`: score every open lead (CRM or flat, locally or on Spark), publish the scores with their
rejects in one step, append them to the score history and log the run to MLflow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.ground import check_model_fits_crm, check_open_leads, load_valid_crm
from leadscore.pipelines.outputs.crm_import import crm_import_frame, crm_import_path
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.history import append_history
from leadscore.pipelines.outputs.publish import check_sql_output, check_target, publish, write_sql_tables
from leadscore.pipelines.outputs.tracking import champion_uri, is_champion, load_model
from leadscore.pipelines.verbs.scoring import Scored, log_scoring_run, rejects_path, score_open_leads

SHOWN_COLUMNS = ["lead_id", "score", "cell", "stage", "action", "due_by", "reasons_positive"]


@dataclass(frozen=True)
class PredictTargets:
    """Where one scoring run goes: a file (with its rejects file beside it) or a SQL table, and optionally the
    full contribution matrix."""

    out: Path | None = None
    to_sql: str | None = None
    sql_url: str | None = None
    contributions: Path | None = None
    crm_import: str | None = None  # salesforce / hubspot: an import file in the vendor's shape beside the scores

    def import_path(self, settings: Settings, target: Path) -> Path | None:
        """Where the CRM import file goes: beside the scores file, or in the output folder for a SQL table."""
        if self.crm_import is None:
            return None
        beside = settings.output_dir / self.to_sql if self.to_sql is not None else target
        return Path(crm_import_path(str(beside), self.crm_import))


def check_options(settings: Settings, *, out: Path | None, to_sql: str | None) -> None:
    """Refuse what predict cannot do, before anything else is looked at."""
    if settings.mode == "flat" and settings.engine.name == "spark":
        raise UsageError("flat mode scores on this machine: --engine local")
    if out is not None and to_sql is not None:
        raise UsageError("give --out or --to-sql, not both")


def check_targets(settings: Settings, targets: PredictTargets) -> tuple[Path, str | None]:
    """Refuse unusable outputs before any data is read; return the scores file and the database URL."""
    check_options(settings, out=targets.out, to_sql=targets.to_sql)
    spark = settings.engine.name == "spark"
    target = targets.out or settings.output_dir / ("scores_parquet" if spark else "scores.csv")
    url = targets.sql_url or settings.output.sql_url
    if targets.to_sql is not None:
        if not url:
            raise UsageError("--to-sql needs --sql-url or output.sql_url in the config")
        check_sql_output(settings, url, targets.to_sql)
    else:
        check_target(target, "--out", (".csv", ".parquet"), settings, folder=spark)
        if not spark:
            check_target(rejects_path(Path(target)), "--out (its rejects file)", (".csv",), settings)
    check_target(targets.contributions, "--contributions", (".parquet",), settings)
    if targets.crm_import is not None:
        if spark or settings.mode != "crm":
            raise UsageError("--crm-import writes CRM lead records: CRM mode on the local engine")
        crm_import_frame(pd.DataFrame(columns=["lead_id", "score", "probability"]), targets.crm_import)  # the vendor
        check_target(targets.import_path(settings, Path(target)), "--crm-import (its file)", (".csv",), settings)
    return Path(target), url


def score_crm(
    settings: Settings,
    model,
    wrapper,
    *,
    name: str,
    version: str,
    model_uri: str,
    as_of,
    keep_contributions: bool,
    echo: Callable[..., None],
):
    """The validated CRM's open leads scored in chunks with a progress bar; also the data they came from."""
    from tqdm import tqdm

    check_model_fits_crm(model, model_uri, custom=tuple(f.name for f in settings.custom_fields()))
    data = load_valid_crm(settings, as_of=as_of)  # rejected rows are written with their reasons, as `validate` does
    if data.rejects:
        rejected = sum(len(r) for r in data.rejects.values())
        files = [settings.output_dir / "rejects" / f"{name}.csv" for name in data.rejects]
        written = ", ".join(str(path) for path in files if path.exists())
        echo(f"warning: {rejected:,} row(s) rejected by validation, with their reasons in {written}", err=True)
    check_open_leads(data)
    with tqdm(total=len(data.tables["leads"]), unit="lead", desc="predict", disable=None) as bar:
        result = score_open_leads(
            settings,
            data,
            model,
            wrapper,
            model_name=name,
            model_version=version,
            chunk_size=settings.output.chunk_size,
            drop_events=True,
            keep_contributions=keep_contributions,
            progress=bar.update,
        )
    return result, data


def publish_scores(
    result: Scored, targets: PredictTargets, target: Path, url: str | None, *, settings: Settings
) -> str:
    """The scores, their rejects (and the contributions, the CRM import file) of one run, published together or not
    at all."""
    contributions = targets.contributions
    extra = {}
    if contributions is not None:
        extra[Path(contributions)] = frame_writer(result.contributions, contributions)
    if targets.crm_import is not None:
        path = targets.import_path(settings, target)
        fields = settings.output.crm_fields.get(targets.crm_import, {})
        extra[path] = frame_writer(crm_import_frame(result.scores, targets.crm_import, renamed=fields), path)
    if targets.to_sql is not None:
        where = write_sql_tables({targets.to_sql: result.scores, f"{targets.to_sql}_rejects": result.rejects}, url)
        if extra:
            publish(extra)
        return where
    files = {
        target: frame_writer(result.scores, target),
        rejects_path(target): frame_writer(result.rejects, rejects_path(target)),
        **extra,
    }
    publish(files)
    return str(target)


def run_predict(
    settings: Settings,
    targets: PredictTargets,
    *,
    as_of: pd.Timestamp | None = None,
    model_uri: str | None = None,
    top: int = 10,
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore predict` at the lead level; returns its summary."""
    target, url = check_targets(settings, targets)
    if settings.engine.name == "spark":
        if settings.grades.capacity is not None:
            echo("warning: grades.capacity is applied by the local engine only; Spark scores are not limited", err=True)
        return predict_on_spark(settings, model_uri, targets.out, as_of, echo=echo)
    model, wrapper, name, version = load_model(settings, model_uri)
    uri = model_uri or champion_uri(settings)
    flat = settings.mode == "flat"
    data = None
    if flat:
        from leadscore.pipelines.verbs.flat_predict import score_flat_open_leads

        result = score_flat_open_leads(
            settings,
            model,
            wrapper,
            model_name=name,
            model_version=version,
            model_uri=uri,
            as_of=as_of,
            keep_contributions=targets.contributions is not None,
        )
        scored_as_of = result.scores["as_of"].iloc[0]
    else:
        result, data = score_crm(
            settings,
            model,
            wrapper,
            name=name,
            version=version,
            model_uri=uri,
            as_of=as_of,
            keep_contributions=targets.contributions is not None,
            echo=echo,
        )
        scored_as_of = data.as_of
    capacity = None
    if settings.grades.capacity is not None:
        if flat:
            echo("warning: grades.capacity is applied in CRM mode only; flat scores are not limited", err=True)
        else:
            from leadscore.pipelines.verbs.capacity import apply_capacity

            result.scores, capacity = apply_capacity(settings, data, result.scores)
    where = publish_scores(result, targets, target, url, settings=settings)
    # a shadow run (another model scored beside the champion) is kept apart: its routes reached no one
    production = is_champion(settings, name, version)
    history = append_history(settings, result.scores, production=production)
    run_id = log_scoring_run(settings, result, model_name=name, model_version=version, as_of=scored_as_of)
    drifted = result.drift[result.drift > settings.output.drift_threshold]
    summary = {
        "verb": "predict",
        **result.summary,
        "as_of": scored_as_of.isoformat(),
        "model_name": name,
        "model_version": version,
        "output": str(where),
        "history": history,
        "production": production,
        "run_id": run_id,
        "drift_warnings": {k: round(float(v), 4) for k, v in drifted.items()},
        **({"capacity": capacity} if capacity is not None else {}),
    }
    say_scored(settings, result, summary, capacity=capacity, top=top, echo=echo)
    return summary


def say_scored(
    settings: Settings, result: Scored, summary: dict, *, capacity: dict | None, top: int, echo: Callable[..., None]
) -> None:
    """What `predict` prints after a local run: counts, history, capacity, drift and the best leads."""
    s = result.summary
    echo(
        f"scored {s['scored']:,} open leads as of {summary['as_of']} with {summary['model_name']} "
        f"v{summary['model_version'] or '?'} -> {summary['output']}"
    )
    echo(f"rejected: {s['rejected']:,}; mean probability {s['mean_probability']}")
    if "row_id" in s:  # flat mode: how a scored row is found in the export
        echo(
            f"open rows in the export: {s['open_rows']:,}; lead_id: {s['row_id']}; identifying columns: "
            f"{s['identify_columns'] or 'none (flat.identify_columns)'}"
        )
    if summary["history"]:
        shadow = "" if summary["production"] else " (a shadow run: not the champion, so monitor counts no hand-over)"
        echo(f"score history: this run's {s['scored']:,} rows -> {summary['history']}{shadow}")
    if s["leads_per_cell"]:
        echo("leads per cell: " + ", ".join(f"{k} {v:,}" for k, v in s["leads_per_cell"].items()))
        echo("leads per stage: " + ", ".join(f"{k} {v:,}" for k, v in s["leads_per_stage"].items()))
        echo(routing_line(s))
    elif settings.mode == "flat":
        echo("no grades: set [grades.fit] on the export's columns and [flat.engagement] to grade and route")
    if capacity is not None:
        from leadscore.pipelines.verbs.capacity import capture_lines

        echo("\n".join(capture_lines(capacity)))
    echo(f"drift (PSI per feature and score) and the summary logged to MLflow run {summary['run_id']}")
    if summary["drift_warnings"]:
        drifted = list(summary["drift_warnings"].items())[:8]
        echo(
            f"warning: drift against the training population (PSI > {settings.output.drift_threshold}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in drifted),
            err=True,
        )
    echo(f"\ntop {top} leads:")
    columns = ["lead_id", *s.get("identify_columns", []), *SHOWN_COLUMNS[1:]]
    if capacity is not None:
        columns.insert(5, "handoff")
    echo(result.scores.head(top)[columns].to_string(index=False, max_colwidth=110))


def routing_line(summary: dict) -> str:
    """Leads per band (with the cut-offs) and per action."""
    actions = ", ".join(f"{k} {v:,}" for k, v in summary["leads_per_action"].items())
    cut = summary.get("bands")
    if not cut:
        return f"leads per action (stage x cell; this model has no priority bands): {actions}"
    bands = ", ".join(f"{b} {summary['leads_per_band'].get(b, 0):,}" for b in ("hot", "warm", "cold"))
    return (
        f"leads per band (hot: p >= {cut['hot']:.1%}, cold: p < {cut['cold']:.2%}; base rate of new leads "
        f"{cut['base_rate']:.1%}): {bands}\nleads per action: {actions}"
    )


def predict_on_spark(
    settings: Settings, model_uri: str | None, out: Path | None, as_of, *, echo: Callable[..., None]
) -> dict:
    """`leadscore predict --engine spark`: the same scores written as a Parquet folder, then the score history."""
    from leadscore.pipelines.outputs.history import SCORE_COLUMNS
    from leadscore.pipelines.spark_engine import predict_spark

    model, wrapper, name, version = load_model(settings, model_uri)
    target = out or settings.output_dir / "scores_parquet"
    summary = predict_spark(settings, model, wrapper, model_name=name, model_version=version, as_of=as_of, out=target)
    echo(
        f"scored {summary['scored']:,} open leads as of {summary['as_of']} on Spark "
        f"({settings.engine.spark_master}) -> {target} (rejected: {summary['rejected']:,})"
    )
    history = append_history(
        settings, pd.read_parquet(target, columns=SCORE_COLUMNS), production=is_champion(settings, name, version)
    )
    if history:
        echo(f"score history: this run's rows -> {history}")
    return {
        "verb": "predict",
        "engine": "spark",
        **summary,
        "model_name": name,
        "model_version": version,
        "output": str(target),
        "history": history,
    }
