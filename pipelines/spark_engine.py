"""The Spark engine: the same pandas feature builders, grade rules and model, run per partition of leads.

Leads are bucketed by a hash of their account (or, without one, their own id), so that everything a lead's
features read - its events and deals, and its account's other leads and deals - lands in the same partition.
Each bucket's tables are handed to the local pipeline functions with `groupBy(...).cogroup(...).applyInPandas`:
no second implementation of any feature or rule. Accounts are small and broadcast to every task.

Exports are read as the local engine reads them: UI labels as API names, further activity files appended to the
events, and the `[exports]` conventions that move a deal to its lead (the lead a Salesforce lead names as its
conversion, the first contact of a HubSpot list) applied before bucketing; the others run per bucket with the local
functions. A report footer is set aside wherever it lands, since a bucket's rows have lost the file's order.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings

log = logging.getLogger(__name__)
BUCKET = "_bucket"
# pyspark's pandas functions take a dot in a column's name for a path into a struct (HubSpot's API writes
# `engagement.timestamp`): such names travel through Spark with this in place of the dot, and are restored in pandas
DOT = "\u2024"
KIND = "_table"
NO_EVENTS = "_no_events"


def spark_session(settings: Settings):
    """A SparkSession from [engine] (master, configuration), with UTC as its time zone."""
    from pyspark.sql import SparkSession

    if settings.engine.spark_master.startswith("local"):
        # in local mode the Python workers are this interpreter, where leadscore is installed
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("leadscore").master(settings.engine.spark_master)
    for key, value in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(settings.engine.partitions),
        "spark.ui.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        **settings.engine.spark_conf,
    }.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _read(spark, settings: Settings, name: str):
    """A table as the local engine reads it: its columns under their API names, the events with the further
    activity exports appended, a deal under the lead it belongs to."""
    if name == "events":
        return _events(spark, settings)
    frame = _read_source(spark, settings, getattr(settings.tables, name))
    if name == "opportunities" and frame is not None:
        return _deals_with_their_leads(spark, settings, frame)
    return frame


def _read_source(spark, settings: Settings, source):
    if source is None:
        return None
    if source.path is None:
        frame = spark.read.table(source.sql_table) if source.sql_url == "spark" else None
    else:
        path = str(settings.resolve(source.path))
        if path.endswith(".csv"):  # text columns, parsed by the shared validation; quoted cells may span lines
            reader = spark.read.option("header", True).option("multiLine", True).option("escape", '"')
            frame = reader.option("encoding", source.encoding or "UTF-8").csv(path)
        else:
            frame = spark.read.parquet(path)
    if frame is None:
        return None
    from leadscore.pipelines.intake.exports import header_renames

    names = {c: c.lstrip("\ufeff") for c in frame.columns if c.startswith("\ufeff")}  # a byte-order mark
    renames = header_renames([names.get(c, c) for c in frame.columns], source, settings)
    for old in frame.columns:
        new = spark_name(renames.get(names.get(old, old), names.get(old, old)))
        frame = frame.withColumnRenamed(old, new) if new != old else frame
    return frame


def spark_name(name: str) -> str:
    """A column's name as it travels through Spark (see DOT)."""
    return name.replace(".", DOT)


def pandas_names(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame from Spark with its columns' own names back (see DOT)."""
    return frame.rename(columns=lambda c: c.replace(DOT, ".")) if any(DOT in c for c in frame.columns) else frame


def _spark_names(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=spark_name)


def _events(spark, settings: Settings):
    """The events table with each further activity export (`exports.more_events`) appended under its columns."""
    from leadscore.pipelines.intake.exports import more_events_roles

    main = settings.tables.events
    if main is None:  # as locally: further activity files extend an events table, there is none to extend
        return None
    parts = [_read_source(spark, settings, main)]
    for i, source in enumerate(settings.exports.more_events):
        frame = _read_source(spark, settings, source)
        names = [c.replace(DOT, ".") for c in frame.columns]
        roles = more_events_roles(names, source, main, name=f"exports.more_events[{i}]")
        parts.append(
            frame.select(*[column(spark_name(c)).cast("string").alias(spark_name(r)) for c, r in roles.items()])
        )
    events = parts[0]
    for part in parts[1:]:
        events = events.unionByName(part, allowMissingColumns=True)
    return events


def _deals_with_their_leads(spark, settings: Settings, deals):
    """Deals as the local engine reads them, before bucketing: the one-row conventions (the outcome from the won /
    closed flags, forecast close dates dropped - the default as-of reads them - and the first id of a list cell) and
    the lead whose `exports.opportunity_id_on_lead` names the deal (with two such leads, the smallest id: the order of
    a file is not kept here)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    from leadscore.pipelines.intake.exports import _need, deal_row_conventions

    e = settings.exports
    if e.won_column or e.close_date_expected_while_open or e.lead_id_list_separator:
        status = _column(settings, "opportunities", "status")
        schema = deals.schema
        if e.won_column and status not in deals.columns:
            schema = schema.add(status, StringType())
        deals = deals.mapInPandas(
            lambda batches: (
                arrow_friendly(_spark_names(deal_row_conventions(pandas_names(b), settings))) for b in batches
            ),
            schema,
        )
    if not e.opportunity_id_on_lead:
        return deals
    leads = _read_source(spark, settings, settings.tables.leads)
    _need(
        pandas_names(pd.DataFrame(columns=leads.columns)), e.opportunity_id_on_lead, "leads", "opportunity_id_on_lead"
    )
    lead_id, deal_lead = _column(settings, "leads", "lead_id"), _column(settings, "opportunities", "lead_id")
    links = (
        leads.select(
            F.trim(column(spark_name(e.opportunity_id_on_lead))).alias("_link"), column(lead_id).alias("_linked")
        )
        .dropna()
        .groupBy("_link")
        .agg(F.min("_linked").alias("_linked"))
    )
    keyed = deals.withColumn("_link", F.trim(column(_column(settings, "opportunities", "opportunity_id"))))
    linked = keyed.join(links, "_link", "left").drop("_link")
    return (
        linked.drop(deal_lead).withColumnRenamed("_linked", deal_lead)
        if deal_lead in deals.columns
        else (linked.withColumnRenamed("_linked", deal_lead))
    )


def column(name: str):
    """A column by its name as written: a dot in a CRM's header (HubSpot's `engagement.timestamp`) is part of the name,
    not a path into a struct."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _column(settings: Settings, table: str, role: str) -> str:
    """The Spark column of a table's role (its name in the file, see DOT)."""
    return spark_name(getattr(settings.tables, table).columns.get(role, role))


def bucketed_tables(spark, settings: Settings):
    """(leads+deals keyed by bucket, events keyed by bucket, accounts as pandas)."""
    from pyspark.sql import functions as F

    leads = _read(spark, settings, "leads")
    lead_id, account_id = _column(settings, "leads", "lead_id"), _column(settings, "leads", "account_id")
    key = F.coalesce(column(account_id), column(lead_id)) if account_id in leads.columns else column(lead_id)
    leads = leads.withColumn(BUCKET, F.pmod(F.xxhash64(key), F.lit(settings.engine.partitions)))
    buckets = leads.select(column(lead_id).alias("_lead_key"), BUCKET).dropDuplicates(["_lead_key"])

    def attach(table: str):
        frame = _read(spark, settings, table)
        if frame is None:
            return None
        joined = frame.join(buckets, column(_column(settings, table, "lead_id")) == buckets["_lead_key"], "left")
        # a row whose lead is unknown still travels (to bucket 0), so that validation reports it as in local mode
        return joined.drop("_lead_key").withColumn(BUCKET, F.coalesce(F.col(BUCKET), F.lit(0)))

    opportunities, events = attach("opportunities"), attach("events")
    if events is None:  # no activity file: an empty side for the cogroup, and no events table in any bucket
        events = spark.createDataFrame([], f"{NO_EVENTS} string, {BUCKET} int")
    # leads and deals travel together in one cogroup side, told apart by KIND
    tagged = [leads.withColumn(KIND, F.lit("leads")), opportunities.withColumn(KIND, F.lit("opportunities"))]
    for i, frame in enumerate(tagged):  # distinct column names per table, so the union keeps both schemas
        tagged[i] = frame.select(
            *[column(c).alias(f"{c}::{i}") if c not in (BUCKET, KIND) else F.col(c) for c in frame.columns]
        )
    entities = tagged[0].unionByName(tagged[1], allowMissingColumns=True)
    accounts = _read(spark, settings, "accounts")
    return entities, events, pandas_names(accounts.toPandas()) if accounts is not None else None


def _split_entities(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    for i, name in enumerate(("leads", "opportunities")):
        part = frame[frame[KIND] == name]
        columns = [c for c in frame.columns if c.endswith(f"::{i}")]
        out[name] = pandas_names(part[columns].rename(columns=lambda c: c.rsplit("::", 1)[0]).reset_index(drop=True))
    return out


def run_per_bucket(spark, settings: Settings, work: Callable, schema, *, as_of: pd.Timestamp):
    """Apply `work(settings, data)` (pandas in, pandas out) to every bucket's validated tables."""
    from leadscore.pipelines.intake.ground import withhold_leads_with_rejected_deals
    from leadscore.pipelines.intake.validation import validate_frames

    entities, events, accounts = bucketed_tables(spark, settings)

    def task(_key, entity_rows: pd.DataFrame, event_rows: pd.DataFrame) -> pd.DataFrame:
        raw = _split_entities(entity_rows)
        if raw["leads"].empty:
            return pd.DataFrame(columns=schema.fieldNames())
        if NO_EVENTS not in event_rows:
            raw["events"] = pandas_names(event_rows.drop(columns=[BUCKET]))
        if accounts is not None:
            raw["accounts"] = accounts
        # as `load_valid_crm` does: a lead whose deal was rejected would look open without it
        data = validate_frames(as_read_locally(raw, settings), settings, as_of=as_of)
        data = withhold_leads_with_rejected_deals(data)
        return arrow_friendly(work(settings, data))

    grouped_events = events.groupBy(BUCKET)
    return entities.groupBy(BUCKET).cogroup(grouped_events).applyInPandas(task, schema=schema)


def as_read_locally(raw: dict[str, pd.DataFrame], settings: Settings) -> dict[str, pd.DataFrame]:
    """A bucket's tables with what the local engine applies as it reads: placeholders read as missing, report footers
    set aside, the `[exports]` conventions (the further activity files are in the events already)."""
    from leadscore.pipelines.intake.exports import apply_export_conventions, report_footer, with_missing

    out = {}
    for name, frame in raw.items():
        source = getattr(settings.tables, name)
        if source is not None and source.missing_values:
            frame = with_missing(frame, source.missing_values)
        out[name] = report_footer(frame, trailing_only=False) if settings.exports.vendor else frame
    return apply_export_conventions(out, settings, read_more_events=False)


def arrow_friendly(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas 3 text columns as plain objects and nullable integers as floats: what pyspark's Arrow path takes."""
    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
        elif pd.api.types.is_extension_array_dtype(dtype) and pd.api.types.is_numeric_dtype(dtype):
            out[column] = out[column].astype("float64")
    return out


def global_as_of(spark, settings: Settings, as_of: pd.Timestamp | None) -> pd.Timestamp:
    """The explicit as-of (refused after the end of the data), else the latest timestamp in any table (as the local
    engine takes it)."""
    from leadscore.pipelines.intake.validation import check_as_of_within_data

    given = as_of
    if given is None and settings.as_of is not None:
        stamp = pd.Timestamp(settings.as_of)
        given = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    latest = _latest_per_column(spark, settings)
    if given is None:
        return _not_after_the_wall_clock(latest)
    now = pd.Timestamp.now(tz="UTC")
    known = [stamp for stamp, _table, _column in latest if pd.notna(stamp) and stamp <= now]
    if known:
        check_as_of_within_data(given, max(known), option="--as-of" if as_of is not None else "as_of (config)")
    return given


def _latest_per_column(spark, settings: Settings) -> list:
    """(latest timestamp, table, column) of every time column of every table."""
    from pyspark.sql import functions as F

    from leadscore.features.schemas import TIME_COLUMNS
    from leadscore.pipelines.intake.validation import parse_timestamps

    latest = []
    for table, columns in TIME_COLUMNS.items():
        frame = _read(spark, settings, table) if getattr(settings.tables, table) is not None else None
        if frame is None:
            continue
        present = [_column(settings, table, c) for c in columns if _column(settings, table, c) in frame.columns]
        fmt = getattr(settings.tables, table).timestamp_format
        for name in present:
            if dict(frame.dtypes)[name] == "string":  # text as written (02/23/26 08:55 PM): read, then compare

                def batch_latest(batches, fmt=fmt):
                    for batch in batches:
                        times = parse_timestamps(batch["_time"], timezone=settings.timezone, fmt=fmt)
                        yield pd.DataFrame({"latest": [times.max()]})

                value = frame.select(column(name).alias("_time")).mapInPandas(batch_latest, "latest timestamp")
                value = value.agg(F.max("latest"))
                value = value.first()[0]
            else:
                value = frame.agg(F.max(column(name))).first()[0]
            if value is not None:
                stamp = parse_timestamps(pd.Series([value]), timezone="UTC").iloc[0]
                latest.append((stamp, table, name.replace(DOT, ".")))
    return latest


def _not_after_the_wall_clock(latest: list) -> pd.Timestamp:
    """The latest timestamp, unless it lies in the future: the local engine rejects such rows and takes the latest
    remaining one; here that would take another pass over every table, so stop and say so."""
    from leadscore.pipelines.errors import DataError

    known = [entry for entry in latest if pd.notna(entry[0])]
    if not known:
        raise DataError("no readable timestamp in any table: cannot take the latest as the as-of", hint="pass --as-of")
    stamp, table, column = max(known, key=lambda entry: entry[0])
    now = pd.Timestamp.now(tz="UTC")
    if stamp > now:
        raise DataError(
            f"the latest timestamp {stamp.isoformat()} is after the wall clock: one mistyped row would move the "
            "default as-of",
            where=f"table '{table}'",
            column=column,
            hint="pass --as-of, or find the row with `leadscore validate` (it rejects such rows with the reason)",
        )
    return stamp


def write_parquet_dir(frame, out: Path, publication=None) -> Path:
    """Write a Spark DataFrame as a Parquet folder under a temporary name beside `out`; it replaces `out` when
    `publication` commits (its own publication when none is given: whole or nothing either way)."""
    from leadscore.pipelines.outputs.publish import Publication, sync_path

    out = Path(out)
    if publication is None:
        with Publication(out.parent) as own:
            return write_parquet_dir(frame, out, own)
    staging = publication.staged_folder(out)
    frame.write.mode("overwrite").parquet(str(staging))
    sync_path(staging)
    return out


def _present(settings: Settings) -> Settings:
    """The settings without the optional files that are absent, each named in a warning (as the local engine does)."""
    from leadscore.pipelines.intake.exports import without_missing_files

    settings, notes = without_missing_files(settings)
    for note in notes:
        log.warning("%s", note)
    return settings


# -- the verbs -------------------------------------------------------------------------------------------------
def schema_of(columns: dict[str, str]):
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType, TimestampType

    types = {
        "string": StringType(),
        "double": DoubleType(),
        "long": LongType(),
        "timestamp": TimestampType(),
        "boolean": BooleanType(),
    }
    return StructType([StructField(name, types[kind], True) for name, kind in columns.items()])


PREDICT_TYPES = {
    "lead_id": "string",
    "account_id": "string",
    "as_of": "timestamp",
    "probability": "double",
    "score": "double",
    "percentile": "double",
    "fit_grade": "string",
    "engagement_grade": "string",
    "cell": "string",
    "stage": "string",
    "stage_rule": "string",
    "dormant": "boolean",
    "band": "string",
    "action": "string",
    "sla_hours": "double",
    "due_by": "timestamp",
    "route_note": "string",
    "reasons_positive": "string",
    "reasons_negative": "string",
    "model_name": "string",
    "model_version": "string",
    "feature_set": "string",
    "reject_reason": "string",
    # beside the scores: what the history keeps to explain the next run's moves, and each bucket's counts (STAT rows:
    # the movement's tally, the rows outside each feature's training range) that add up to the run's
    "score_change": "double",
    "change_reasons": "string",
    "margin": "double",
    "top_contributions": "string",
    "_stat": "string",
    "_count": "double",
}


STAT = "_stat"


@dataclass
class SparkScored:
    """A Spark predict's summary, and its rows for the score history (None without one)."""

    summary: dict
    history: pd.DataFrame | None = None


def predict_spark(
    settings: Settings,
    model,
    wrapper,
    *,
    model_name: str,
    model_version: str,
    as_of: pd.Timestamp | None,
    out: Path,
    publication=None,
    scored_rows: Callable | None = None,
) -> SparkScored:
    """Score every open lead on Spark, each with its movement against its previous production run in the score history
    (as the local engine does); write scores and rejects as Parquet folders (into `publication` when given); return a
    summary and the rows for the history. `scored_rows`: how the buckets are scored when not the CRM's way
    (`spark_flat.flat_scored_rows`: (spark, settings, model, wrapper, labels, as_of=) -> (rows, as_of, first
    columns))."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from leadscore.models.scores import percent_of_share
    from leadscore.pipelines.verbs.scoring import OUTPUT_COLUMNS

    settings = _present(settings)
    spark = spark_session(settings)
    labels = {"model_name": model_name, "model_version": model_version}
    if scored_rows is None:
        as_of, first = global_as_of(spark, settings, as_of), ["lead_id"]
        work = _scoring_work(model, wrapper, **labels)
        rows = run_per_bucket(spark, settings, work, schema_of(PREDICT_TYPES), as_of=as_of).cache()
    else:
        rows, as_of, first = scored_rows(spark, settings, model, wrapper, labels, as_of=as_of)
    scored = rows.filter(F.col(STAT).isNull() & F.col("reject_reason").isNull())
    # the percentile is among all scored leads: recomputed over the whole population (ties take the highest rank)
    percent = F.pandas_udf(percent_of_share, "double")
    scored = scored.withColumn("percentile", percent(F.cume_dist().over(Window.orderBy("probability"))))
    # cached: the scores, the history's rows and the count read it, the window's one-partition sort runs once
    scored = scored.withColumn("score", F.col("score").cast("long")).cache()
    moved = _moves(settings)
    columns = [*first, *OUTPUT_COLUMNS[1:]]  # flat mode: the identifying columns beside the lead id
    columns = _with_movement_columns(columns) if moved else columns
    scores = scored.withColumn("score_change", F.col("score_change").cast("long")).select(*map(column, columns))
    write_parquet_dir(scores, out, publication)
    rejects = rows.filter(F.col(STAT).isNull() & F.col("reject_reason").isNotNull())
    write_parquet_dir(rejects.select("lead_id", "reject_reason"), out.with_name(out.name + "_rejects"), publication)
    history = _history_rows(scored, out) if settings.history.enabled else None
    stats = {
        row[0]: row[1] for row in rows.filter(F.col(STAT).isNotNull()).groupBy(STAT).agg(F.sum("_count")).collect()
    }
    summary = {"scored": scores.count(), "rejected": rejects.count(), "as_of": as_of.isoformat()}
    if settings.mode == "flat" and not summary["scored"] + summary["rejected"]:
        from leadscore.pipelines.verbs.flat_predict import no_open_lead

        raise no_open_lead(settings, rows=None)
    scored.unpersist()
    rows.unpersist()
    summary["outside_training_range"] = _outside_range(stats)
    if moved:
        summary["movement"] = _tally_of(stats).summary()
    return SparkScored(summary, history)


def _moves(settings: Settings) -> bool:
    """Whether scores carry their movement: as locally, in CRM mode with a score history."""
    return settings.mode == "crm" and settings.history.enabled


def _with_movement_columns(columns: list[str]) -> list[str]:
    """The scores' columns with score_change after the score and change_reasons after the reasons (as locally)."""
    out = list(columns)
    out.insert(out.index("score") + 1, "score_change")
    out.insert(out.index("reasons_negative") + 1, "change_reasons")
    return out


def _scoring_work(model, wrapper, *, model_name: str, model_version: str) -> Callable:
    """What each bucket runs: the local scoring, then the local movement against the bucket's previous runs."""

    def work(settings: Settings, data) -> pd.DataFrame:
        from leadscore.pipelines.verbs.scoring import score_open_leads

        result = score_open_leads(
            settings,
            data,
            model,
            wrapper,
            model_name=model_name,
            model_version=model_version,
            chunk_size=settings.output.chunk_size,
        )
        return bucket_rows(settings, result, model, PREDICT_TYPES, as_of=data.as_of)

    return work


def bucket_rows(settings: Settings, result, model, types: dict[str, str], *, as_of: pd.Timestamp) -> pd.DataFrame:
    """A bucket's scores (with their movement in CRM mode), rejects and counts, as one frame of `types`' columns."""
    from leadscore.pipelines.outputs.history import previous_runs
    from leadscore.pipelines.verbs.movement import MovementTally, with_explained, with_movement

    scores, stats = result.scores, _outside_stats(result)
    if _moves(settings):
        tally = MovementTally()
        previous = previous_runs(settings, as_of, scores["lead_id"].astype("string"))
        scores = with_movement(settings, scores, result.explained, model, previous=previous, tally=tally)
        stats += _tally_stats(tally)
    rejects = result.rejects.rename(columns={"reason": "reject_reason"})
    counts = pd.DataFrame(stats, columns=[STAT, "_count"])
    frame = pd.concat([with_explained(scores, result.explained), rejects, counts], ignore_index=True)
    text = [c for c, kind in types.items() if kind == "string"]  # all-missing columns would read as numbers
    return frame.reindex(columns=list(types)).astype(dict.fromkeys(text, "string"))


def _outside_stats(result) -> list[tuple[str, float]]:
    """The bucket's rows outside each feature's training range, as counts (the result holds them as shares of the
    rows it built features for: the scored leads and those without a finite probability)."""
    built = len(result.scores) + int(result.rejects["reason"].astype("string").str.startswith("scoring:").sum())
    return [("rows", float(built))] + [
        (f"outside:{k}", float(round(v * built))) for k, v in result.outside_range.items()
    ]


def _outside_range(stats: dict) -> dict[str, float]:
    """Shares of the scored rows outside each feature's training range over every bucket, as the local summary
    gives them (`scoring.outside_shares`, rounded)."""
    from leadscore.pipelines.verbs.scoring import outside_shares

    counts = {k.split(":", 1)[1]: int(v) for k, v in stats.items() if k.startswith("outside:")}
    shares = outside_shares(counts, int(stats.get("rows", 0)))
    return {k: round(float(v), 4) for k, v in shares.items()}


_TALLY = ("compared", "moved", "first_scored", "unexplained")


def _tally_stats(tally) -> list[tuple[str, float]]:
    return [(f"tally:{k}", float(getattr(tally, k))) for k in _TALLY] + [
        (f"previous_as_of:{stamp}", 1.0) for stamp in tally.previous_as_of
    ]


def _tally_of(stats: dict):
    """The movement counts of every bucket added up, said as the local run says them."""
    from leadscore.pipelines.verbs.movement import MovementTally

    tally = MovementTally(**{k: int(stats.get(f"tally:{k}", 0)) for k in _TALLY})
    tally.previous_as_of = {k.split(":", 1)[1] for k in stats if k.startswith("previous_as_of:")}
    tally.note_unexplained()
    return tally


def _history_rows(scored, out: Path) -> pd.DataFrame:
    """The scored rows with the history's columns, written by Spark to a folder beside `out` and read back (the driver
    never collects them through the JVM), then the folder removed."""
    import shutil
    import tempfile

    from leadscore.pipelines.outputs.history import HISTORY_COLUMNS

    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.history-", dir=out.parent))
    try:
        kept = [c for c in HISTORY_COLUMNS if c in scored.columns]
        scored.select(*kept).write.mode("overwrite").parquet(str(folder / "rows"))
        return pd.read_parquet(folder / "rows")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


GRADE_TYPES = {
    "lead_id": "string",
    "account_id": "string",
    "as_of": "timestamp",
    "fit_points": "double",
    "fit_grade": "string",
    "engagement_points": "double",
    "engagement_grade": "string",
    "cell": "string",
    "action": "string",
    "sla_hours": "double",
    "due_by": "timestamp",
    "due_by_local": "string",
    "route_note": "string",
    "stage": "string",
    "stage_rule": "string",
    "dormant": "boolean",
}


def grade_spark(settings: Settings, *, as_of: pd.Timestamp | None, out: Path) -> dict:
    """The rules for every open lead on Spark, written as a Parquet folder."""
    from leadscore.pipelines.grading import grade_open_leads

    settings = _present(settings)
    spark = spark_session(settings)
    as_of = global_as_of(spark, settings, as_of)
    graded = run_per_bucket(
        spark, settings, lambda s, data: grade_open_leads(s, data), schema_of(GRADE_TYPES), as_of=as_of
    )
    write_parquet_dir(graded, out)
    return {"graded": spark.read.parquet(str(out)).count(), "as_of": as_of.isoformat()}


def training_set_spark(settings: Settings, *, as_of: pd.Timestamp | None, out: Path) -> dict:
    """The point-in-time training set built per bucket on Spark; returns its manifest figures."""
    from pyspark.sql import functions as F

    from leadscore.features.build import feature_specs
    from leadscore.pipelines.training_set import ORDER_COLUMN, crm_training_set

    settings = _present(settings)
    spark = spark_session(settings)
    as_of = global_as_of(spark, settings, as_of)
    specs, names = feature_specs(settings.feature_params()), settings.selected_features()
    types = {"lead_id": "string", "cutoff_time": "timestamp", "converted": "double", "sample_weight": "double"}
    types |= {n: "string" if specs[n].kind == "categorical" else "double" for n in names}
    types |= {"_censored": "double"}

    def work(settings: Settings, data) -> pd.DataFrame:
        training = crm_training_set(settings, data)
        stats = pd.DataFrame({"_censored": [float(training.manifest["spine"]["censored"])]})
        # the order column counts rows within one bucket only: the folder is ordered by cutoff time and lead id
        frame = training.frame.drop(columns=ORDER_COLUMN)
        return pd.concat([frame, stats], ignore_index=True)  # one stats row per bucket, lead_id empty

    rows = run_per_bucket(spark, settings, work, schema_of(types), as_of=as_of).cache()
    censored = int(rows.agg(F.sum("_censored")).first()[0] or 0)
    frame = (
        rows.filter(F.col("lead_id").isNotNull())
        .drop("_censored")
        .withColumn("converted", F.col("converted").cast("tinyint"))
    )
    write_parquet_dir(frame, out)
    written = spark.read.parquet(str(out))
    summary = written.agg(F.count("*"), F.sum("converted"), F.min("cutoff_time"), F.max("cutoff_time")).first()
    rows.unpersist()
    return {
        "rows": summary[0],
        "positives": int(summary[1] or 0),
        "censored": censored,
        "as_of": as_of.isoformat(),
        "cutoff_range": [
            summary[2].isoformat() if summary[2] else None,
            summary[3].isoformat() if summary[3] else None,
        ],
        "features": names,
    }
