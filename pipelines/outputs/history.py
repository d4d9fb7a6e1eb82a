"""The score history: every `predict` run's rows, kept so that `leadscore monitor` can check them against outcomes.

Two stores, chosen in `[history]`: a Parquet dataset partitioned by as-of date (`as_of_date=YYYY-MM-DD/`, one file
per scoring run, the default) or a SQL table. A run is identified by (as_of, model name, model version): a rerun of
the same run replaces its own rows, atomically (Parquet: temporary file renamed over the run's file; SQL: a staging
table, then delete and insert in one transaction, under a primary key on (lead_id, as_of, model_name,
model_version)), so the history never holds a run twice. Each row says whether its run was the production one
(`production`: scored with the champion, so its routes reached sales) or a shadow run. `stage_history` adds a run to a
`Publication`, so that `predict` puts its scores and their history in place as one unit.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.outputs.publish import Publication, SqlStep, journal_dir
from leadscore.pipelines.outputs.targets import guard

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "lead_id",
    "as_of",
    "probability",
    "score",
    "cell",
    "stage",
    "action",
    "due_by",
    "model_name",
    "model_version",
]
# what explains a lead's next score change (models.movement): the margin, the top contributions with their values as
# JSON, and the change this run found against the lead's previous one. Rows written before issue 31 (or by the Spark
# engine before issue 32) lack them: their leads still get a score_change, without change_reasons.
MOVEMENT_COLUMNS = ["margin", "top_contributions", "score_change", "change_reasons"]
HISTORY_COLUMNS = [*SCORE_COLUMNS, "production", *MOVEMENT_COLUMNS]
_TEXT = ("lead_id", "cell", "stage", "action", "model_name", "model_version", "top_contributions", "change_reasons")
_TIMES = ("as_of", "due_by")
RUN_KEY = ("as_of", "model_name", "model_version")
# `production`: the run scored with the champion, whose routes sales received; False for a shadow run (another model
# scored beside it: its routes went nowhere). Rows written before the flag existed lack it: read as production runs.
_HEAVY = ("top_contributions",)  # read only where movement needs it (predict), not by monitor's every read


def history_rows(scores: pd.DataFrame, *, production: bool = True) -> pd.DataFrame:
    """The history's columns of a scores table, with one dtype per column whatever the scores' source; a table
    without `production` is one run's, marked `production`."""
    out = scores.reindex(columns=HISTORY_COLUMNS).copy()
    if "production" not in scores:
        out["production"] = production
    for column in _TEXT:
        out[column] = out[column].astype("string")
    for column in _TIMES:
        out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[us, UTC]")
    out["probability"] = out["probability"].astype("float64")
    out["score"] = out["score"].astype("int64")
    out["margin"] = out["margin"].astype("float64")
    out["score_change"] = pd.to_numeric(out["score_change"]).astype("Int64")
    out["production"] = out["production"].astype("boolean").fillna(True).astype(bool)
    return out.reset_index(drop=True)


def _runs(rows: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return list(rows.groupby(list(RUN_KEY), sort=True, dropna=False))


def stage_history(
    settings: Settings, scores: pd.DataFrame, publication: Publication, *, production: bool = True
) -> str | None:
    """Add one scoring run's rows to `publication` (replacing an earlier copy of the same run when it commits);
    return where they go. `production`: the run scored with the champion (False: a shadow run, whose routes no one
    received)."""
    if not settings.history.enabled or scores.empty:
        return None
    rows = history_rows(scores, production=production)
    if settings.history.sql_url:
        step = history_sql_step(rows, settings.history.sql_url, settings.history.sql_table)
        publication.add_sql(step)
        return step.where
    return _stage_parquet(rows, settings.history_dir, publication)


def append_history(settings: Settings, scores: pd.DataFrame, *, production: bool = True) -> str | None:
    """Add one scoring run's rows to the history on their own (replacing an earlier copy of the run); return where."""
    with Publication(journal_dir(settings), guard=guard(settings)) as publication:
        return stage_history(settings, scores, publication, production=production)


def read_history(
    settings: Settings, *, since: pd.Timestamp | None = None, with_contributions: bool = False
) -> pd.DataFrame:
    """Every stored row (as_of on or after `since` when given), in the history's dtypes; empty when none.
    `top_contributions` is read only `with_contributions` (it is most of the history's bytes)."""
    columns = [c for c in HISTORY_COLUMNS if with_contributions or c not in _HEAVY]
    if settings.history.sql_url:
        rows = _read_sql(settings.history.sql_url, settings.history.sql_table, columns)
    else:
        rows = _read_parquet(settings.history_dir, columns)
    rows = history_rows(rows) if len(rows) else history_rows(pd.DataFrame(columns=HISTORY_COLUMNS))
    if since is not None:
        rows = rows[rows["as_of"] >= since].reset_index(drop=True)
    return rows


def previous_runs(settings: Settings, as_of: pd.Timestamp, lead_ids: pd.Series) -> pd.DataFrame:
    """Each of `lead_ids`' latest production row before `as_of` (the scores sales saw), with its contributions; a
    lead never scored before has none. Only the runs that hold such a row are read in full, and of a Parquet history
    only the rows of `lead_ids` (a partition's leads need not hold every run's rows)."""
    keys = ["lead_id", *RUN_KEY]
    if settings.history.sql_url:
        index = _read_sql(settings.history.sql_url, settings.history.sql_table, [*keys, "production"])
    else:
        index = _read_parquet(settings.history_dir, [*keys, "production"], lead_ids=lead_ids)
    index = _typed_keys(index)
    production = index["production"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    wanted = index[(index["as_of"] < as_of).to_numpy(dtype=bool) & production & index["lead_id"].isin(lead_ids)]
    latest = wanted.sort_values(keys[1:], kind="stable").drop_duplicates("lead_id", keep="last")[keys]
    runs = [run for run, _ in _runs(latest)]
    if not runs:
        return history_rows(pd.DataFrame(columns=HISTORY_COLUMNS))
    if settings.history.sql_url:
        rows = _read_sql(settings.history.sql_url, settings.history.sql_table, HISTORY_COLUMNS, runs=runs)
    else:
        root, wanted_ids = settings.history_dir, latest["lead_id"]
        rows = pd.concat([_read_run(run_file(root, *run), HISTORY_COLUMNS, lead_ids=wanted_ids) for run in runs])
    return history_rows(rows).merge(latest, on=keys, how="inner")


def _typed_keys(rows: pd.DataFrame) -> pd.DataFrame:
    """The key columns of stored rows in the history's dtypes (what `history_rows` gives them)."""
    out = rows.copy()
    for column in ("lead_id", "model_name", "model_version"):
        out[column] = out[column].astype("string")
    out["as_of"] = pd.to_datetime(out["as_of"], utc=True).astype("datetime64[us, UTC]")
    return out


# -- Parquet dataset ---------------------------------------------------------------------------------------------
def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def run_file(root: Path, as_of: pd.Timestamp, model_name: str, model_version: str) -> Path:
    """The one file that holds a scoring run: its name is the run's identity, so a rerun lands on it."""
    partition = root / f"as_of_date={as_of:%Y-%m-%d}"
    return partition / f"{_safe(model_name)}__v{_safe(model_version or 'none')}__{as_of:%Y%m%dT%H%M%S}.parquet"


def _stage_parquet(rows: pd.DataFrame, root: Path, publication: Publication) -> str:
    for (as_of, name, version), run in _runs(rows):
        target = run_file(root, as_of, str(name), str(version))
        publication.write(target, lambda tmp, run=run: run.to_parquet(tmp, index=False))
        log.info("score history: %d rows -> %s", len(run), target)
    return str(root)


def _read_parquet(root: Path, columns: list[str], *, lead_ids: pd.Series | None = None) -> pd.DataFrame:
    files = sorted(root.glob("as_of_date=*/*.parquet")) if root.exists() else []
    if not files:
        return pd.DataFrame(columns=columns)
    # file by file: one run's all-missing due_by must not decide the dataset's type for the others
    return pd.concat([_read_run(f, columns, lead_ids=lead_ids) for f in files], ignore_index=True)


def _read_run(path: Path, columns: list[str], *, lead_ids: pd.Series | None = None) -> pd.DataFrame:
    """One run's file (only the rows of `lead_ids` when given); a damaged one is an error naming it (never a crash
    deep inside Arrow); one written before `production` existed is read as a production run."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from leadscore.pipelines.errors import DataError

    only = None if lead_ids is None else pc.field("lead_id").isin(pa.array(lead_ids.astype("string"), pa.string()))
    try:
        stored = set(pq.read_schema(path).names)
        frame = pd.read_parquet(path, columns=[c for c in columns if c in stored], filters=only)
    except (OSError, ValueError, KeyError) as exc:  # Arrow's ArrowInvalid is a ValueError
        raise DataError(
            f"a damaged score-history file: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            where=str(path),
            hint="move the file aside (the scoring run it held is then missing from monitor) or restore it",
        ) from None
    return frame if "production" in frame else frame.assign(production=True)


# -- SQL table ---------------------------------------------------------------------------------------------------
def _run_key(as_of: pd.Timestamp, name: str, version: str) -> str:
    return f"{name}|{version}|{as_of.isoformat()}"


def history_table(metadata, table: str):
    """The SQL history table: one row per lead and run, so (lead_id, as_of, model_name, model_version) is its key.

    The run is part of the key because two models may score the same instant (a champion and a challenger in
    shadow): each keeps its own live record for `leadscore monitor`.
    """
    import sqlalchemy as sa

    return sa.Table(
        table,
        metadata,
        sa.Column("lead_id", sa.String, primary_key=True),
        sa.Column("as_of", sa.DateTime, primary_key=True),  # naive UTC: portable across databases' timestamp types
        sa.Column("probability", sa.Float),
        sa.Column("score", sa.BigInteger),
        sa.Column("cell", sa.String),
        sa.Column("stage", sa.String),
        sa.Column("action", sa.String),
        sa.Column("due_by", sa.DateTime),
        sa.Column("model_name", sa.String, primary_key=True),
        sa.Column("model_version", sa.String, primary_key=True),
        sa.Column("run_key", sa.String, index=True),
        sa.Column("production", sa.Boolean),
        sa.Column("margin", sa.Float),
        sa.Column("top_contributions", sa.Text),
        sa.Column("score_change", sa.BigInteger),
        sa.Column("change_reasons", sa.Text),
    )


def _with_new_columns(connection, table: str) -> None:
    """A history table created by an older version gets the columns added since (`production`: NULL read as a
    production run; the movement columns: NULL, no change reasons against those rows)."""
    import sqlalchemy as sa

    have = {c["name"] for c in sa.inspect(connection).get_columns(table)}
    quote = connection.dialect.identifier_preparer.quote
    for column in history_table(sa.MetaData(), table).columns:
        if column.name not in have:
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {kind}"))


def history_sql_step(rows: pd.DataFrame, url: str, table: str) -> SqlStep:
    """The runs loaded into a staging table; at commit, in one transaction, their earlier copies deleted, the rows
    inserted and the staging table dropped.

    A rerun replaces its own run's rows (all of them, also leads no longer scored); readers see the history before
    or after the run, never half of it.
    """
    import sqlalchemy as sa
    from sqlalchemy.schema import CreateIndex, CreateTable

    if "production" not in rows:  # rows of one run not marked otherwise are the production run's
        rows = rows.assign(production=True)
    staging = f"{table}__leadscore_{uuid.uuid4().hex[:12]}"  # a name no other run can reuse
    engine = sa.create_engine(url)
    try:
        dialect = engine.dialect
        target = history_table(sa.MetaData(), table)
        create = [str(CreateTable(target, if_not_exists=True).compile(dialect=dialect))]
        create += [str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)) for index in target.indexes]
        quote = dialect.identifier_preparer.quote
        shown = engine.url.render_as_string(hide_password=True)
    finally:
        engine.dispose()
    stored = pd.concat(
        [run.assign(run_key=_run_key(as_of, str(name), str(version))) for (as_of, name, version), run in _runs(rows)],
        ignore_index=True,
    )
    for column in _TIMES:
        stored[column] = stored[column].dt.tz_convert("UTC").dt.tz_localize(None)
    stored = stored.drop_duplicates(["lead_id", "run_key"], keep="last")
    # every column of the table (rows from a caller that has no movement columns: NULL), so the INSERT finds them
    stored = stored.reindex(columns=[c.name for c in target.columns])
    t, s = quote(table), quote(staging)
    columns = ", ".join(quote(c.name) for c in target.columns)

    def load(connection) -> None:
        if sa.inspect(connection).has_table(table):  # a table of an older version gains the column first
            _with_new_columns(connection, table)
        stored.to_sql(staging, connection, if_exists="replace", index=False, chunksize=50_000)
        log.info("score history: %d rows -> table %s", len(stored), table)

    return SqlStep(
        url=url,
        where=f"{shown} table {table}",
        staging=[staging],
        load=load,
        apply=[
            *create,
            f"DELETE FROM {t} WHERE run_key IN (SELECT DISTINCT run_key FROM {s})",
            f"INSERT INTO {t} ({columns}) SELECT {columns} FROM {s}",
            f"DROP TABLE {s}",
        ],
        discard=[f"DROP TABLE IF EXISTS {s}"],
    )


def _read_sql(url: str, table: str, columns: list[str], *, runs: list[tuple] | None = None) -> pd.DataFrame:
    """`columns` of the table (those it has), of the given `runs` only when given."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(table):
                return pd.DataFrame(columns=columns)
            stored = {c["name"] for c in inspector.get_columns(table)}
            kept = [c for c in columns if c in stored]
            if runs is None:
                rows = pd.read_sql_table(table, connection, columns=kept)
            else:
                target = sa.Table(table, sa.MetaData(), autoload_with=connection)
                # by the run's own columns (naive UTC as stored), not `run_key`: whatever wrote the rows
                wanted = [
                    sa.and_(
                        target.c.as_of == as_of.tz_convert("UTC").tz_localize(None).to_pydatetime(),
                        target.c.model_name == str(name),
                        target.c.model_version == str(version),
                    )
                    for as_of, name, version in runs
                ]
                query = sa.select(*(target.c[c] for c in kept)).where(sa.or_(*wanted))
                rows = pd.read_sql_query(query, connection)
    finally:
        engine.dispose()
    for column in _TIMES:
        if column in rows:
            rows[column] = pd.to_datetime(rows[column]).dt.tz_localize("UTC")
    return rows
