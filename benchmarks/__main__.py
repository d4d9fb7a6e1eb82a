"""`python -m benchmarks [features] [--leads N]`: run benchmarks and print their tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import print_table, run_worker, sample_data
from leadscore.pipelines.verbs.scoring import STAGES

FEATURE_RUNS = 3  # each engine's best of three fresh processes: one run on a shared machine is mostly noise


def bench_features(leads: int) -> None:
    """Behavioral window counts (8 event types x 7/30/90 days) for one cutoff per lead: ours vs hand-written DuckDB
    SQL and a hand-written polars query, each the best of FEATURE_RUNS runs; the ratio compares ours with the faster
    of the two (goal <= 1.3)."""
    folder = sample_data(leads)
    rows = []
    for engine in ("pandas", "duckdb", "polars"):
        runs = [run_worker("benchmarks.features_worker", engine, str(folder)) for _ in range(FEATURE_RUNS)]
        best = min(runs, key=lambda row: row["seconds"])
        rows.append({**best, "runs_s": " ".join(f"{run['seconds']:.2f}" for run in runs)})
    ours, *engines = rows
    for other in engines:
        if abs(ours["checksum"] - other["checksum"]) > 1e-6:
            raise SystemExit(
                f"engines disagree: checksum {ours['checksum']} ({ours['engine']}) vs "
                f"{other['checksum']} ({other['engine']})"
            )
    fastest = min(engines, key=lambda row: row["seconds"])
    for row in rows:
        row["ratio_vs_fastest"] = row["seconds"] / fastest["seconds"]
    print(f"\nbehavioral features: {ours['rows']:,} leads, {ours['events']:,} events (same counts from every engine)")
    print_table(rows, ["engine", "seconds", "runs_s", "peak_rss_mib", "ratio_vs_fastest"])
    print(
        f"ours (pandas) vs the fastest hand-written engine ({fastest['engine']}): "
        f"ratio {ours['seconds'] / fastest['seconds']:.2f} (goal <= 1.3)"
    )


def bench_real_data(leads: int) -> None:
    """Model quality on the real datasets under ../shared/datasets (skipped when absent)."""
    from benchmarks.real_data import main

    main()


def bench_train(leads: int) -> None:
    """`train` end to end on sample data with the snapshot spine (about 3.2 training rows per sample lead)."""
    row = train_row(leads)
    print(f"scale: train {leads:,} leads: {row['seconds']:.1f} s, {row['peak_rss_mib']:,.0f} MiB")


def train_row(leads: int) -> dict:
    """`train` measured in a fresh process at `leads` sample leads, its table printed; seconds = load + train."""
    row = run_worker("benchmarks.train_worker", str(sample_data(leads)))
    row["seconds"] = row["load_s"] + row["train_total_s"]
    print(f"\ntrain: {row['training_rows']:,} training rows (snapshot spine) from {leads:,} sample leads")
    print(
        "train_total_s = training set + model choice + evaluated fit + calibration + evaluation with baselines + "
        "deployed refit + MLflow logging and registry (training_set_s of it builds the features); "
        "negative_rate < 1: not-converted rows sampled (model.max_training_rows)"
    )
    columns = ["training_rows", "negative_rate", "load_s", "training_set_s", "train_total_s", "peak_rss_mib", "roc_auc"]
    print_table([row], columns)
    return {"leads": leads, **row}


def champion_store() -> Path:
    """An MLflow store whose champion was trained on 115k sample leads (trained once, kept in bench-data/)."""
    from benchmarks.common import BENCH_DATA

    store = BENCH_DATA / "predict_store"
    trained = store / "trained.json"  # written only once a champion is registered: a failed run trains again
    if not trained.exists():
        row = run_worker("benchmarks.predict_worker", "train", str(sample_data(115_000)), str(store))
        trained.write_text(json.dumps(row))
    return store


def bench_predict(leads: int) -> None:
    """`predict` end to end on every open lead of a sample CRM, and raw LightGBM scoring beside ours."""

    data, store = sample_data(leads), champion_store()
    end_to_end = run_worker("benchmarks.predict_worker", "predict", str(data), str(store))
    raw = run_worker("benchmarks.predict_worker", "raw", str(data), str(store), "200000")
    print(f"\npredict: {end_to_end['open_leads']:,} open leads of {leads:,} sample leads (model: {raw['trees']} trees)")
    print_table([end_to_end], ["open_leads", "load_s", "score_s", "total_s", "rows_per_s", "peak_rss_mib"])
    print("\nwhere the time goes (score_s is spine .. drift):")
    print_table(time_split(end_to_end), ["stage", "seconds", "share"])
    print("\nscoring with reasons vs raw LightGBM predict + pred_contrib, same feature matrix (features excluded):")
    print_table([raw], ["rows", "raw_rows_per_s", "ours_rows_per_s", "ratio"])


def bench_reasons(leads: int) -> None:
    """Exact SHAP values of the predict benchmark's champion: LightGBM's pred_contrib vs models.treeshap, the same
    `leads` rows (the open leads of the 115k-lead sample, repeated) on two threads each. Last line: `ratio R`."""
    store = champion_store()
    row = run_worker("benchmarks.reasons_worker", "reasons", str(sample_data(115_000)), str(store), str(leads))
    print(
        f"\nreasons: exact SHAP values of the champion ({row['trees']} trees x up to {row['max_leaves']} leaves, "
        f"mean {row['mean_leaves']:.1f}; {row['features']} features; {row['categorical_splits']} of "
        f"{row['splits']} splits categorical), {row['rows']:,} rows ({row['unique_rows']:,} distinct open leads), "
        f"{row['threads']} threads each"
    )
    print(
        f"first call (numba import, compiled kernel loaded or compiled, tables built): {row['first_call_s']:.2f} s, "
        "not counted below"
    )
    row["engine"] = "LightGBM pred_contrib"
    ours = dict(row, engine="leadscore.models.treeshap")
    row["rows_per_s"], ours["rows_per_s"] = row["pred_contrib_rows_per_s"], row["ours_rows_per_s"]
    row["seconds"], ours["seconds"] = row["pred_contrib_s"], row["ours_s"]
    ours["max_abs_diff"], row["max_abs_diff"] = f"{row['max_abs_diff']:.2e}", "(reference)"
    row["ratio"] = 1.0
    print_table([row, ours], ["engine", "rows", "seconds", "rows_per_s", "ratio", "max_abs_diff"])
    print(f"ratio {ours['ratio']:.2f}")


# the verb's own stages around the scoring stages `Scored.timings` names
PREDICT_STAGES = ["read", "validate", "model_load", *STAGES, "write", "history", "mlflow_log"]


def time_split(figures: dict) -> list[dict]:
    """One row per stage of predict (seconds and share of the total), then the total and the total without SHAP."""
    total = figures["total_s"]
    rows = [
        {"stage": stage, "seconds": figures[f"{stage}_s"], "share": f"{figures[f'{stage}_s'] / total:.1%}"}
        for stage in PREDICT_STAGES
    ]
    other = total - figures["shap_contributions_s"]
    return rows + [
        {"stage": "total", "seconds": total, "share": "100%"},
        {"stage": "total without shap_contributions", "seconds": other, "share": f"{other / total:.1%}"},
    ]


def bench_engines(leads: int) -> None:
    """`predict` on every open lead: the local engine beside Spark local[2], wall time and peak memory."""

    data, store = sample_data(leads), champion_store()
    rows = [run_worker("benchmarks.engine_worker", engine, str(data), str(store)) for engine in ("local", "spark")]
    for row in rows:
        row["open_leads_per_s"] = row["open_leads"] / row["seconds"]
    print(f"\nengines: predict on {leads:,} sample leads (same model, same scores)")
    print_table(rows, ["engine", "open_leads", "seconds", "open_leads_per_s", "peak_tree_rss_mib"])


def bench_postgres(leads: int) -> None:
    """`predict` on every open lead, the CRM read from PostgreSQL (chunked, server-side cursor) vs from Parquet.

    The server is $LEADSCORE_BENCH_POSTGRES_URL, or a throwaway one started here (tests/postgres_server.py).
    """
    import os

    from tests import postgres_server

    data, store = sample_data(leads), champion_store()
    url, folder = os.environ.get("LEADSCORE_BENCH_POSTGRES_URL"), None
    if not url:
        url, folder = postgres_server.start()
    try:
        loaded = run_worker("benchmarks.postgres_worker", "load", str(data), url)
        rows = [
            run_worker("benchmarks.postgres_worker", "predict", source, str(data), str(store), url)
            for source in ("parquet", "postgresql")
        ]
    finally:
        if folder is not None:
            postgres_server.stop(folder)
    if (
        abs(rows[0]["mean_probability"] - rows[1]["mean_probability"]) > 1e-9
        or rows[0]["open_leads"] != rows[1]["open_leads"]
    ):
        raise SystemExit(f"sources disagree: {rows}")
    print(
        f"\npredict from PostgreSQL vs Parquet: {leads:,} sample leads ({loaded['rows']['events']:,} events; "
        f"COPY into PostgreSQL took {loaded['load_s']:.0f} s, not counted)"
    )
    print_table(rows, ["source", "open_leads", "load_s", "score_s", "total_s", "peak_rss_mib"])


def bench_monotone(leads: int) -> None:
    """Holdout ROC AUC with and without the declared monotone constraints: sample data and the real datasets."""
    from benchmarks.monotone import main

    main(leads)


def bench_gate(leads: int) -> None:
    """The gate's cases through `leadscore train` (shuffled deals, older as-of, re-saved files, a refresh)."""
    from benchmarks.gate import main

    main(leads)


SCALE_LEADS = (1_000_000, 10_000_000)  # predict on the local engine
SCALE_TRAIN_LEADS = (1_000_000,)
SCALE_SPARK_LEADS = (1_000_000,)  # Spark local[2] peaked at 11.7 GiB at 1M leads: 10M would not fit 24 GiB


def bench_scale(leads: int) -> None:
    """`leadscore predict` (local engine, streaming: output.partitions = auto) at 1M and 10M sample leads, `train` at
    1M, and `predict --engine spark` (local[2]) at 1M; or each only at `--leads N`: wall time and peak memory. Ends
    with one line per figure: `scale: predict N leads: S s, M MiB` (likewise `train N`,
    `predict on Spark local[2] N`)."""
    store = champion_store()
    local = [scale_predict(size, store) for size in ((leads,) if leads else SCALE_LEADS)]
    trained = [train_row(size) for size in ((leads,) if leads else SCALE_TRAIN_LEADS)]
    spark = scale_on_spark((leads,) if leads else SCALE_SPARK_LEADS, store)
    print()
    for row in local:
        print(f"scale: predict {row['leads']:,} leads: {row['seconds']:.1f} s, {row['peak_rss_mib']:,.0f} MiB")
    for row in trained:
        print(f"scale: train {row['leads']:,} leads: {row['seconds']:.1f} s, {row['peak_rss_mib']:,.0f} MiB")
    for row in spark:
        print(
            f"scale: predict on Spark local[2] {row['leads']:,} leads: {row['seconds']:.1f} s, "
            f"{row['peak_tree_rss_mib']:,.0f} MiB"
        )


def scale_predict(size: int, store: Path) -> dict:
    """`leadscore predict` on the local engine (streaming, output.partitions = auto) in a fresh process."""
    row = run_worker("benchmarks.predict_worker", "streaming", str(sample_data(size)), str(store), "auto")
    Path(row.pop("scores")).unlink(missing_ok=True)  # hundreds of MB of scores: the figures are what we keep
    print(f"\nscale: predict {size:,} leads end to end (read, validate, score, write scores and history, MLflow)")
    print_table([row], ["events", "partitions", "open_leads", "seconds", "peak_rss_mib"])
    return {"leads": size, **row}


def scale_on_spark(sizes: tuple[int, ...], store: Path) -> list[dict]:
    """`leadscore predict --engine spark` (local[2], 16 buckets) end to end at each size: wall time and peak memory
    of the whole process tree (the JVM and its Python workers included: their RSS summed, sampled every 0.2 s)."""
    import shutil

    rows = []
    for size in sizes:
        row = run_worker("benchmarks.engine_worker", "verb", str(sample_data(size)), str(store))
        scores = row.pop("scores")
        for folder in (scores, f"{scores}_rejects"):  # the figures are what we keep
            shutil.rmtree(folder, ignore_errors=True)
        rows.append({"leads": size, **row})
    print("\nscale: predict on Spark local[2] end to end (scores, rejects, score history; peak = process tree RSS)")
    print_table(rows, ["leads", "open_leads", "seconds", "peak_tree_rss_mib"])
    return rows


BENCHMARKS = {
    "features": bench_features,
    "train": bench_train,
    "real-data": bench_real_data,
    "predict": bench_predict,
    "engines": bench_engines,
    "monotone": bench_monotone,
    "postgres": bench_postgres,
    "reasons": bench_reasons,
    "gate": bench_gate,
    "scale": bench_scale,
}
# reasons: --leads is the number of rows scored
DEFAULT_LEADS = {
    "features": 1_000_000,
    "train": 115_000,
    "real-data": 0,
    "predict": 1_000_000,
    "engines": 1_000_000,
    "monotone": 20_000,
    "postgres": 100_000,
    "reasons": 200_000,
    "gate": 20_000,
    "scale": 0,  # 0: both sizes of SCALE_LEADS
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    everyday = [n for n in BENCHMARKS if n != "scale"]  # scale generates 10M sample leads: asked for by name only
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=everyday)
    parser.add_argument("--leads", type=int, default=None, help="sample leads (about 50 events each)")
    args = parser.parse_args()
    for name in args.names or everyday:
        BENCHMARKS[name](args.leads or DEFAULT_LEADS[name])  # scale: 0 = every size


if __name__ == "__main__":
    main()
