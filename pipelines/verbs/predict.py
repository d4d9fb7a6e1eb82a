"""`leadscore predict`: score every open lead (CRM or flat, locally or on Spark), publish the scores with their
rejects, the contributions, the validation rejects and the run's score history as one unit, and log the run to
MLflow. Every target is checked before any work."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.ground import check_model_fits_crm, check_open_leads, load_valid_crm
from leadscore.pipelines.outputs.crm_import import crm_import_frame, crm_import_path
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.history import stage_history
from leadscore.pipelines.outputs.publish import Publication, project_publication, sql_tables_step
from leadscore.pipelines.outputs.targets import Target, check_outputs, check_sql_target
from leadscore.pipelines.outputs.tracking import champion_uri, is_champion, load_model
from leadscore.pipelines.verbs.movement import add_score_movement, with_explained
from leadscore.pipelines.verbs.scoring import RunLabels, Scored, log_scoring_run, rejects_path, score_open_leads
from leadscore.pipelines.verbs.streaming import partitions_for, predict_in_partitions, say_validation_rejects

log = logging.getLogger(__name__)

SHOWN_COLUMNS = ["lead_id", "score", "score_change", "cell", "stage", "action", "due_by", "reasons_positive"]


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
    if out is not None and to_sql is not None:
        raise UsageError("give --out or --to-sql, not both")


def check_targets(settings: Settings, targets: PredictTargets) -> tuple[Path, str | None]:
    """Refuse unusable outputs before any data is read (scores, rejects, contributions, validation rejects, SQL
    tables, the score history); return the scores file and the database URL."""
    check_options(settings, out=targets.out, to_sql=targets.to_sql)
    spark = settings.engine.name == "spark"
    if spark and (targets.to_sql is not None or targets.contributions is not None):  # else silently not written
        raise UsageError("--to-sql and --contributions are written by the local engine only: --engine local")
    target = Path(targets.out or settings.output_dir / ("scores_parquet" if spark else "scores.csv"))
    url = targets.sql_url or settings.output.sql_url
    files = [Target(targets.contributions, "--contributions", (".parquet",))]
    if targets.to_sql is not None:
        if not url:
            raise UsageError("--to-sql needs --sql-url or output.sql_url in the config")
        tables = [targets.to_sql, f"{targets.to_sql}_rejects"]
        check_sql_target(settings, url, targets.to_sql, option="--to-sql", tables=tables)
    elif spark:
        files += [
            Target(target, "--out", (".csv", ".parquet"), folder=True),
            Target(target.with_name(target.name + "_rejects"), "--out (its rejects folder)", folder=True),
        ]
    else:
        files += [
            Target(target, "--out", (".csv", ".parquet")),
            Target(rejects_path(target), "--out (its rejects file)", (".csv",)),
        ]
    if targets.crm_import is not None:
        if spark or settings.mode != "crm":
            raise UsageError("--crm-import writes CRM lead records: CRM mode on the local engine")
        crm_import_frame(pd.DataFrame(columns=["lead_id", "score", "probability"]), targets.crm_import)  # the vendor
        files.append(Target(targets.import_path(settings, target), "--crm-import (its file)", (".csv",)))
    check_outputs(settings, *files, history=True)
    return target, url


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
    publication: Publication,
    echo: Callable[..., None],
):
    """The validated CRM's open leads scored in chunks with a progress bar; also the data they came from."""
    from tqdm import tqdm

    check_model_fits_crm(model, model_uri, custom=tuple(f.name for f in settings.custom_fields()))
    # rejected rows are written with their reasons, as `validate` does, when the scores are
    data = load_valid_crm(settings, as_of=as_of, publication=publication)
    say_validation_rejects(settings, data, echo)
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
    result: Scored, targets: PredictTargets, target: Path, url: str | None, publication: Publication, *, settings
) -> str:
    """The scores, their rejects (and the contributions, the CRM import file) of one run, staged in the run's
    publication."""
    contributions = targets.contributions
    if contributions is not None:
        publication.write(Path(contributions), frame_writer(result.contributions, contributions))
    if targets.crm_import is not None:
        path = targets.import_path(settings, target)
        fields = settings.output.crm_fields.get(targets.crm_import, {})
        publication.write(path, frame_writer(crm_import_frame(result.scores, targets.crm_import, renamed=fields), path))
    if targets.to_sql is not None:
        step = sql_tables_step({targets.to_sql: result.scores, f"{targets.to_sql}_rejects": result.rejects}, url)
        publication.add_sql(step)
        return step.where
    publication.write(target, frame_writer(result.scores, target))
    publication.write(rejects_path(target), frame_writer(result.rejects, rejects_path(target)))
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
    partitions = partitions_for_run(settings, targets)
    with project_publication(settings) as publication:  # every output and the history, or none of them
        production = is_champion(settings, name, version)  # a shadow run's routes reached no one: kept apart
        if partitions > 1:  # a book too large to hold: streamed partition by partition
            check_model_fits_crm(model, model_uri, custom=tuple(f.name for f in settings.custom_fields()))
            labels = RunLabels(name, version, getattr(wrapper, "feature_set", ""))
            result, scored_as_of, where, history, movement = predict_in_partitions(
                settings,
                model,
                wrapper,
                labels,
                as_of=as_of,
                partitions=partitions,
                target=target,
                production=production,
                publication=publication,
                echo=echo,
                top=top,
            )
            capacity = None
        else:  # today's single pass: every table in memory
            result, scored_as_of, capacity = score_for_predict(
                settings,
                targets,
                model,
                wrapper,
                name=name,
                version=version,
                model_uri=model_uri,
                as_of=as_of,
                publication=publication,
                echo=echo,
            )
            where, history, movement = publish_whole(
                settings, result, model, targets, target, url, publication, as_of=scored_as_of, production=production
            )
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
        "outside_training_range": {k: round(float(v), 4) for k, v in result.outside_range.items()},
        **({"capacity": capacity} if capacity is not None else {}),
        **({"movement": movement} if movement is not None else {}),
    }
    say_scored(settings, result, summary, capacity=capacity, top=top, echo=echo)
    return summary


def publish_whole(
    settings: Settings,
    result: Scored,
    model,
    targets: PredictTargets,
    target: Path,
    url: str | None,
    publication: Publication,
    *,
    as_of: pd.Timestamp,
    production: bool,
) -> tuple[str, str | None, dict | None]:
    """The single pass's scores (with their movement against the previous run), their outputs and the history
    staged whole; returns where the scores and the history go, and the movement's counts."""
    movement = None
    if settings.mode == "crm" and settings.history.enabled:  # flat exports' row ids need not name one lead
        result.scores, movement = add_score_movement(settings, result.scores, result.explained, model, as_of=as_of)
    where = publish_scores(result, targets, target, url, publication, settings=settings)
    rows = with_explained(result.scores, result.explained)
    history = stage_history(settings, rows, publication, production=production)
    return where, history, movement


def partitions_for_run(settings: Settings, targets: PredictTargets) -> int:
    """The partitions this run streams through (`output.partitions`); 1 (one pass) when the events cannot be read a
    batch at a time or an output needs every score at once (said when partitions were asked for)."""
    from leadscore.pipelines.intake.streamed import event_rows, streamable

    source = settings.tables.events if settings.mode == "crm" and settings.tables is not None else None
    if settings.output.partitions == 1 or not streamable(source, settings) or not _file_exists(source, settings):
        return 1
    partitions = partitions_for(settings, event_rows(source, settings))
    whole = {
        "--contributions": targets.contributions is not None,
        "--crm-import": targets.crm_import is not None,
        "--to-sql": targets.to_sql is not None,
        "grades.capacity": settings.grades.capacity is not None,
        "history.sql_url": settings.history.enabled and bool(settings.history.sql_url),
    }
    needs = [name for name, used in whole.items() if used]
    if partitions > 1 and needs:
        log.warning("predict scores in one pass: %s needs every score at once", ", ".join(needs))
        return 1
    return partitions


def _file_exists(source, settings: Settings) -> bool:
    path = Path(source.path)
    return (path if path.is_absolute() else settings.base_dir / path).exists()


def score_for_predict(
    settings: Settings,
    targets: PredictTargets,
    model,
    wrapper,
    *,
    name: str,
    version: str,
    model_uri: str | None,
    as_of,
    publication: Publication,
    echo: Callable[..., None],
) -> tuple[Scored, pd.Timestamp, dict | None]:
    """The open leads scored (CRM or flat), limited by grades.capacity where set; also their as-of and capacity."""
    uri = model_uri or champion_uri(settings)
    keep = targets.contributions is not None
    if settings.mode == "flat":
        from leadscore.pipelines.verbs.flat_predict import score_flat_open_leads

        result = score_flat_open_leads(
            settings,
            model,
            wrapper,
            model_name=name,
            model_version=version,
            model_uri=uri,
            as_of=as_of,
            keep_contributions=keep,
        )
        if settings.grades.capacity is not None:
            echo("warning: grades.capacity is applied in CRM mode only; flat scores are not limited", err=True)
        return result, result.scores["as_of"].iloc[0], None
    result, data = score_crm(
        settings,
        model,
        wrapper,
        name=name,
        version=version,
        model_uri=uri,
        as_of=as_of,
        keep_contributions=keep,
        publication=publication,
        echo=echo,
    )
    capacity = None
    if settings.grades.capacity is not None:
        from leadscore.pipelines.verbs.capacity import apply_capacity

        result.scores, capacity = apply_capacity(settings, data, result.scores)
    return result, data.as_of, capacity


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
    if "movement" in summary:
        echo(movement_line(summary["movement"]))
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
    if summary["outside_training_range"]:
        echo(outside_range_line(summary["outside_training_range"]), err=True)
    echo(f"\ntop {top} leads:")
    columns = ["lead_id", *s.get("identify_columns", []), *(c for c in SHOWN_COLUMNS[1:] if c in result.scores)]
    if capacity is not None:
        columns.insert(5, "handoff")
    echo(result.scores.head(top)[columns].to_string(index=False, max_colwidth=110))


def outside_range_line(outside: dict[str, float]) -> str:
    """The warning for feature values outside the model's training range (share of leads per feature)."""
    shown = list(outside.items())[:8]
    return "warning: values outside the range the model was trained on (trees score them as the edge they saw): " + (
        ", ".join(f"{k} ({v:.0%} of leads)" for k, v in shown)
    )


def movement_line(movement: dict, *, subject: str = "lead") -> str:
    """How many leads (deals: `subject`) were compared with their previous run, and how many moved."""
    if not movement["compared"]:
        return f"score movement: no {subject} was scored by an earlier production run: score_change left empty"
    return (
        f"score movement: {movement['compared']:,} {subject}s compared with their previous run "
        f"({', '.join(t[:10] for t in movement['previous_as_of'])}), {movement['moved']:,} moved; "
        f"{movement['first_scored']:,} scored for the first time"
    )


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
    """`leadscore predict --engine spark`: the same scores (with their movement) written as a Parquet folder, then the
    score history, as the local engine writes it."""
    from leadscore.pipelines.spark_engine import predict_spark

    model, wrapper, name, version = load_model(settings, model_uri)
    scored_rows = None  # CRM mode: the engine's own
    if settings.mode == "flat":
        from leadscore.pipelines.spark_flat import check_flat_predict, flat_scored_rows

        check_flat_predict(settings, model, model_uri or champion_uri(settings))
        scored_rows = flat_scored_rows
    target = out or settings.output_dir / "scores_parquet"
    production = is_champion(settings, name, version)
    with project_publication(settings) as publication:  # the scores folders and the history, as one unit
        run = predict_spark(
            settings,
            model,
            wrapper,
            model_name=name,
            model_version=version,
            as_of=as_of,
            out=target,
            publication=publication,
            scored_rows=scored_rows,
        )
        history = (
            stage_history(settings, run.history, publication, production=production)
            if run.history is not None
            else None
        )
    summary = run.summary
    echo(
        f"scored {summary['scored']:,} open leads as of {summary['as_of']} on Spark "
        f"({settings.engine.spark_master}) -> {target} (rejected: {summary['rejected']:,})"
    )
    if "movement" in summary:
        echo(movement_line(summary["movement"]))
    if history:
        echo(f"score history: this run's rows -> {history}")
    if summary["outside_training_range"]:
        echo(outside_range_line(summary["outside_training_range"]), err=True)
    return {
        "verb": "predict",
        "engine": "spark",
        **summary,
        "model_name": name,
        "model_version": version,
        "output": str(target),
        "history": history,
        "production": production,
    }
