"""One engine's run of the behavioral-features benchmark, in its own process; prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from benchmarks.common import peak_rss_mib
from leadscore.features.behavioral import WINDOWS_DAYS
from leadscore.features.schemas import MARKETING_EVENTS

DELAY_DAYS = 30
COUNT_FEATURES = [f"events_{t}_count_{w}d" for t in MARKETING_EVENTS for w in WINDOWS_DAYS]


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    events = pq.read_table(
        folder / "events.parquet",
        columns=["lead_id", "occurred_at", "event_type"],
        read_dictionary=["lead_id", "event_type"],
    ).to_pandas()
    leads = pd.read_parquet(folder / "leads.parquet", columns=["lead_id", "created_at"])
    spine = pd.DataFrame(
        {"lead_id": leads["lead_id"], "cutoff_time": leads["created_at"] + pd.Timedelta(days=DELAY_DAYS)}
    )
    return spine, events, leads


def run_pandas(spine, events, leads) -> pd.DataFrame:
    from leadscore.features.build import build_features

    return build_features(spine, leads=leads, events=events, feature_names=COUNT_FEATURES)[COUNT_FEATURES]


def run_duckdb(spine, events, leads) -> pd.DataFrame:
    """The same counts in SQL. Ages are compared as integer microseconds: `cutoff - INTERVAL n DAY` on a TIMESTAMPTZ
    goes through calendar arithmetic per row and made this query ten times slower."""
    import duckdb

    counts = ",\n".join(
        f"count(*) FILTER (WHERE event_type = '{t}' AND age_us <= {w * 86_400_000_000}) AS events_{t}_count_{w}d"
        for t in MARKETING_EVENTS
        for w in WINDOWS_DAYS
    )
    query = f"""
        SELECT row_id, {counts}
        FROM (
            SELECT s.row_id, e.event_type, epoch_us(s.cutoff_time) - epoch_us(e.occurred_at) AS age_us
            FROM spine s JOIN events e ON e.lead_id = s.lead_id
        )
        WHERE age_us > 0
        GROUP BY row_id
    """
    con = duckdb.connect()
    con.register("spine", spine.assign(row_id=np.arange(len(spine))))
    con.register("events", events)
    result = con.execute(query).df().set_index("row_id").reindex(range(len(spine)), fill_value=0)
    return result[COUNT_FEATURES]


def run_polars(spine, events, leads) -> pd.DataFrame:
    """The same counts as one lazy polars query: join each cutoff to its lead's events, filter, count by type."""
    import polars as pl

    cutoff, occurred, event_type = pl.col("cutoff_time"), pl.col("occurred_at"), pl.col("event_type")
    counts = [
        ((event_type == t) & (occurred >= cutoff - pl.duration(days=w))).sum().alias(f"events_{t}_count_{w}d")
        for t in MARKETING_EVENTS
        for w in WINDOWS_DAYS
    ]
    result = (
        spine.lazy()
        .join(events.lazy(), on="lead_id", how="inner")
        .filter(occurred < cutoff)
        .group_by("row_id")
        .agg(counts)
        .collect()
    )
    # spine rows without any earlier event count 0, as in the other engines
    full = pl.DataFrame({"row_id": np.arange(len(spine), dtype="int64")}).join(result, on="row_id", how="left")
    return full.sort("row_id").fill_null(0).to_pandas()[COUNT_FEATURES]


def main(engine: str, folder: str) -> None:
    spine, events, leads = load(Path(folder))
    if engine == "duckdb":  # plain strings for DuckDB, prepared outside the timed part
        events = events.astype({"lead_id": str, "event_type": str})
    if engine == "polars":  # polars frames of plain strings, prepared outside the timed part
        import polars as pl

        events = pl.from_pandas(events.astype({"lead_id": str, "event_type": str}))
        spine = pl.from_pandas(spine.assign(row_id=np.arange(len(spine), dtype="int64")))
    start = time.perf_counter()
    result = {"pandas": run_pandas, "duckdb": run_duckdb, "polars": run_polars}[engine](spine, events, leads)
    seconds = time.perf_counter() - start
    checksum = float(result.to_numpy(dtype="float64").sum())
    print(
        json.dumps(
            {
                "engine": engine,
                "seconds": seconds,
                "peak_rss_mib": peak_rss_mib(),
                "rows": len(spine),
                "events": len(events),
                "checksum": checksum,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
