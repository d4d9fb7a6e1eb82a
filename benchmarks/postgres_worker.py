"""`predict` reading the CRM from PostgreSQL or from Parquet, each in its own process (peak memory its own).

    python -m benchmarks.postgres_worker load DATA URL            # copy DATA/*.parquet into PostgreSQL (COPY)
    python -m benchmarks.postgres_worker predict SOURCE DATA STORE URL

The model is the predict benchmark's champion; the PostgreSQL server's own memory is not counted.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

from benchmarks.predict_worker import _config, timed_predict
from leadscore.pipelines.config import load_settings

TABLES = ("leads", "accounts", "events", "opportunities")
COPY_ROWS = 500_000


def load(data: str, url: str) -> dict:
    """Create the four tables from the Parquet files and fill them with COPY (to_sql's INSERTs take far longer)."""
    import pandas as pd
    import psycopg
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    rows = {}
    start = time.perf_counter()
    for name in TABLES:
        frame = pd.read_parquet(Path(data) / f"{name}.parquet")
        frame.head(0).to_sql(name, engine, if_exists="replace", index=False)
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with (
            psycopg.connect(conninfo) as db,
            db.cursor() as cursor,
            cursor.copy(f'COPY "{name}" FROM STDIN WITH (FORMAT csv)') as copy,
        ):
            for first in range(0, len(frame), COPY_ROWS):
                buffer = io.StringIO()
                frame.iloc[first : first + COPY_ROWS].to_csv(buffer, index=False, header=False)
                copy.write(buffer.getvalue())
        rows[name] = len(frame)
        del frame
    engine.dispose()
    return {"rows": rows, "load_s": time.perf_counter() - start}


def predict(source: str, data: str, store: str, url: str) -> dict:
    settings = load_settings(_config(Path(store), data))
    if source == "postgresql":
        tables = settings.tables.model_copy(
            update={
                name: getattr(settings.tables, name).model_copy(
                    update={"path": None, "sql_url": url, "sql_table": name}
                )
                for name in TABLES
            }
        )
        settings = settings.model_copy(update={"tables": tables})
    result, figures = timed_predict(settings, Path(store) / f"scores_{source}.parquet")
    return {"source": source, **figures, "mean_probability": float(result.scores["probability"].mean())}


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    print(json.dumps({"load": load, "predict": predict}[step](*args)))
