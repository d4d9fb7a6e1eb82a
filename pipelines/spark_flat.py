"""Flat predict on Spark: the export's rows bucketed by their row number, each bucket's open rows scored by the local
flat scoring (`verbs.flat_predict.score_flat_rows`) with `groupBy(...).applyInPandas`: no second implementation.

A flat row reads nothing but itself, so any split of the rows scores them alike. What the local engine takes from the
whole file is taken here before bucketing: the row number that is a row's lead id without an id column (numbered in
the file's order), and the as-of (the latest time of the open rows, or the one given, checked against it).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError

ROW = "_row_number"  # 1 = the first data row, as the local engine numbers rows


def flat_frame(spark, settings: Settings):
    """The flat file read by Spark, every cell as text (as the local reader keeps it), with its row number."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from leadscore.pipelines.spark_engine import spark_name

    f = settings.flat
    if f.path is None:
        raise UsageError("flat mode on Spark reads a CSV or Parquet file (flat.path), not a SQL table: --engine local")
    path = str(settings.resolve(f.path))
    if path.lower().endswith(".csv"):  # quoted cells may span lines: one file is then one partition, in order
        reader = spark.read.option("header", True).option("multiLine", True).option("escape", '"')
        frame = reader.option("sep", f.separator).option("encoding", f.encoding or "UTF-8").csv(path)
    else:
        frame = spark.read.parquet(path)
        names = frame.columns  # by position: a dot in a header is part of its name, not a path into a struct
        frame = frame.toDF(*[f"_{i}" for i in range(len(names))])
        frame = frame.select(*[F.col(f"_{i}").cast("string").alias(name) for i, name in enumerate(names)])
    frame = frame.toDF(*[spark_name(c.strip().lstrip("\ufeff")) for c in frame.columns])
    # a file's partitions are read in its order, and the id grows within each: numbered once over all rows
    order = Window.orderBy(F.monotonically_increasing_id())
    return frame.withColumn(ROW, F.row_number().over(order).cast("long"))


def with_row_ids(settings: Settings) -> Settings:
    """Without an id column, the row number numbered before bucketing is the id (a bucket's own count is not)."""
    if settings.flat.id_column:
        return settings
    return settings.model_copy(update={"flat": settings.flat.model_copy(update={"id_column": ROW})})


def open_rows(settings: Settings, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A bucket of the export, with its derived columns and checked as locally, and its open rows."""
    from leadscore.features.flat import flat_open_leads
    from leadscore.pipelines.intake.flat_checks import check_flat_table
    from leadscore.pipelines.intake.flat_source import flat_location, with_derived_columns
    from leadscore.pipelines.spark_engine import pandas_names
    from leadscore.pipelines.training_set import flat_spec

    where = flat_location(settings)
    frame = pandas_names(frame.sort_values(ROW).reset_index(drop=True))
    export = with_derived_columns(frame, settings, where=where)
    check_flat_table(export, settings.flat, where=where, training=False)
    return export, flat_open_leads(export, flat_spec(settings))


def flat_as_of_on_spark(spark, settings: Settings, frame, as_of: pd.Timestamp | None) -> pd.Timestamp:
    """The as-of the local engine takes (`flat_as_of`), from the latest time of the open rows of every bucket."""
    from pyspark.sql import functions as F

    from leadscore.pipelines.verbs.flat_predict import flat_as_of

    settings = with_row_ids(settings)

    def latest(batches):
        for batch in batches:
            times = open_rows(settings, batch)[1]["cutoff_time"]
            yield pd.DataFrame({"latest": pd.Series([times.max()], dtype="datetime64[us, UTC]")})

    value = frame.mapInPandas(latest, "latest timestamp").agg(F.max("latest")).first()[0]
    times = pd.Series([value], dtype="object")
    return flat_as_of(settings, pd.DataFrame({"cutoff_time": pd.to_datetime(times, utc=True)}), as_of)


def flat_work(model, wrapper, *, model_name: str, model_version: str, as_of: pd.Timestamp) -> Callable:
    """What each bucket runs: its open rows scored by the local flat scoring."""
    from leadscore.pipelines.verbs.flat_predict import score_flat_rows

    def work(settings: Settings, frame: pd.DataFrame):
        export, rows = open_rows(settings, frame)
        if rows.empty:  # nothing to score in this bucket
            return None
        return score_flat_rows(
            settings, export, rows, model, wrapper, model_name=model_name, model_version=model_version, as_of=as_of
        )

    return work


def check_flat_predict(settings: Settings, model, model_uri: str) -> None:
    """What the local flat predict refuses before scoring: a model without the export's columns, identifying columns
    named like outputs, a label joined from another table with no as-of to label by (each bucket would take its own
    latest time)."""
    from leadscore.pipelines.intake.ground import check_model_features
    from leadscore.pipelines.verbs.flat_predict import check_identify_columns

    f = settings.flat
    check_model_features(model, [*f.categorical, *f.numeric], model_uri)
    check_identify_columns(f.identify_columns)
    if f.label_from is not None and settings.as_of is None:
        raise UsageError(
            "flat.label_from on Spark needs `as_of` in the config: the label's horizon is read against one as-of",
            hint="set as_of, or score with --engine local",
        )


def flat_scored_rows(spark, settings: Settings, model, wrapper, labels: dict, *, as_of: pd.Timestamp | None):
    """Flat mode's scored rows, rejects and counts (every bucket of the export's rows), their as-of, and the scores'
    first columns (the lead id and the identifying columns)."""
    from pyspark.sql import functions as F

    from leadscore.pipelines.spark_engine import BUCKET, PREDICT_TYPES, arrow_friendly, bucket_rows, schema_of

    frame = flat_frame(spark, settings).cache()
    as_of = flat_as_of_on_spark(spark, settings, frame, as_of)
    first = ["lead_id", *settings.flat.identify_columns]
    types = {"lead_id": "string", **dict.fromkeys(settings.flat.identify_columns, "string"), **PREDICT_TYPES}
    work, bucket_settings = flat_work(model, wrapper, as_of=as_of, **labels), with_row_ids(settings)

    def task(rows: pd.DataFrame) -> pd.DataFrame:
        result = work(bucket_settings, rows.drop(columns=[BUCKET]))
        if result is None:  # no open row in this bucket
            return pd.DataFrame(columns=list(types))
        return arrow_friendly(bucket_rows(bucket_settings, result, model, types, as_of=as_of))

    bucketed = frame.withColumn(BUCKET, F.pmod(F.xxhash64(ROW), F.lit(settings.engine.partitions)))
    rows = bucketed.groupBy(BUCKET).applyInPandas(task, schema=schema_of(types)).cache()
    frame.unpersist()
    return rows, as_of, first
