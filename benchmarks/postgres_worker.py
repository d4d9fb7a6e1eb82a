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

from benchmarks.common import peak_rss_mib
from benchmarks.predict_worker import _config
from pipelines.config import load_settings

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
        with psycopg.connect(conninfo) as db, db.cursor() as cursor, \
                cursor.copy(f'COPY "{name}" FROM STDIN WITH (FORMAT csv)') as copy:  # fmt: skip
            for first in range(0, len(frame), COPY_ROWS):
                buffer = io.StringIO()
                frame.iloc[first : first + COPY_ROWS].to_csv(buffer, index=False, header=False)
                copy.write(buffer.getvalue())
        rows[name] = len(frame)
        del frame
    engine.dispose()
    return {"rows": rows, "load_s": time.perf_counter() - start}


def predict(source: str, data: str, store: str, url: str) -> dict:
    from pipelines import tracking
    from pipelines.io import write_frame
    from pipelines.predict import score_open_leads
    from pipelines.validation import load_crm

    settings = load_settings(_config(Path(store), data))
    if source == "postgresql":
        tables = settings.tables.model_copy(update={
            name: getattr(settings.tables, name).model_copy(update={"path": None, "sql_url": url, "sql_table": name})
            for name in TABLES})  # fmt: skip
        settings = settings.model_copy(update={"tables": tables})
    start = time.perf_counter()
    loaded = load_crm(settings)
    after_load = time.perf_counter()
    tracking.use_store(settings)
    model, wrapper = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    result = score_open_leads(settings, loaded, model, wrapper, model_name="bench", model_version="1")
    write_frame(result.scores, Path(store) / f"scores_{source}.parquet")
    end = time.perf_counter()
    return {"source": source, "open_leads": len(result.scores), "load_s": after_load - start,
            "score_s": end - after_load, "total_s": end - start, "peak_rss_mib": peak_rss_mib(),
            "mean_probability": float(result.scores["probability"].mean())}  # fmt: skip


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    print(json.dumps({"load": load, "predict": predict}[step](*args)))
