"""Predict benchmark steps, each in its own process: train a model, score every open lead, time raw scoring."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import peak_rss_mib
from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.config import load_settings

TABLES = tuple(TABLE_ROLES)


def _config(store: Path, data: str) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    config = store / f"leadscore_{Path(data).name}.toml"
    tables = "".join(
        f'[tables.{n}]\npath = "{data}/{n}.parquet"\n' for n in ("leads", "accounts", "events", "opportunities")
    )
    config.write_text(
        f'[mlflow]\ntracking_uri = "sqlite:///{store}/mlflow.db"\n' + tables + '[spine]\npolicy = "fixed_delay"\n'
    )
    return config


def train(data: str, store: str) -> dict:
    from leadscore.pipelines.verbs.train import train as run

    result = run(load_settings(_config(Path(store), data)))
    return {"version": result.version, "trees": result.model.best_iteration_}


def _load_timed(settings) -> tuple[object, float, float]:
    """`load_crm` in its two halves, timed apart: reading the files, then normalising and validating them."""
    from leadscore.pipelines.intake.exports import apply_export_conventions
    from leadscore.pipelines.intake.sources import read_source
    from leadscore.pipelines.intake.validation import _repeated, validate_frames  # the same steps as load_crm
    from leadscore.pipelines.memory import release_unused_memory

    start = time.perf_counter()
    sources = {n: getattr(settings.tables, n) for n in TABLES if getattr(settings.tables, n)}
    raw = {
        n: read_source(s, name=n, base_dir=settings.base_dir, dictionary_columns=_repeated(s, n))
        for n, s in sources.items()
    }
    read = time.perf_counter()
    loaded = validate_frames(apply_export_conventions(raw, settings), settings)
    del raw
    release_unused_memory()
    return loaded, read - start, time.perf_counter() - read


def timed_predict(settings, out: Path) -> tuple[object, dict]:
    """`leadscore predict`'s work end to end, each part timed: load and validate the CRM, score every open lead with
    the champion (the stages inside from `Scored.timings`), publish the scores and their rejects, append the score
    history and log the MLflow run."""
    from leadscore.pipelines.outputs import tracking
    from leadscore.pipelines.outputs.files import frame_writer
    from leadscore.pipelines.outputs.history import append_history
    from leadscore.pipelines.outputs.publish import publish
    from leadscore.pipelines.verbs.scoring import log_scoring_run, rejects_path, score_open_leads

    start = time.perf_counter()
    loaded, read_s, validate_s = _load_timed(settings)
    after_load = time.perf_counter()
    load_peak = peak_rss_mib()
    tracking.use_store(settings)
    model, wrapper = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    after_model = time.perf_counter()
    result = score_open_leads(
        settings,
        loaded,
        model,
        wrapper,
        model_name="bench",
        model_version="1",
        chunk_size=settings.output.chunk_size,
        drop_events=True,
    )  # as `leadscore predict`
    after_score = time.perf_counter()
    publish({out: frame_writer(result.scores, out), rejects_path(out): frame_writer(result.rejects, rejects_path(out))})
    after_write = time.perf_counter()
    append_history(settings, result.scores)
    after_history = time.perf_counter()
    log_scoring_run(settings, result, model_name="bench", model_version="1", as_of=loaded.as_of)
    end = time.perf_counter()
    return result, {
        "open_leads": len(result.scores),
        "load_s": after_load - start,
        "read_s": read_s,
        "validate_s": validate_s,
        "model_load_s": after_model - after_load,
        **{f"{stage}_s": seconds for stage, seconds in result.timings.items()},
        "score_s": after_score - after_model,
        "write_s": after_write - after_score,
        "history_s": after_history - after_write,
        "mlflow_log_s": end - after_history,
        "total_s": end - start,
        "rows_per_s": len(result.scores) / (end - start),
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_after_load_mib": load_peak,
    }


def predict(data: str, store: str) -> dict:
    _, figures = timed_predict(load_settings(_config(Path(store), data)), Path(store) / "scores.parquet")
    return figures


def streaming(data: str, store: str, partitions: str = "auto") -> dict:
    """`leadscore predict` end to end through the CLI's own code path (`run_predict`): with `partitions` = 1 the
    single pass, else the leads streamed partition by partition; wall time and peak memory of this process."""
    from leadscore.pipelines.verbs.predict import PredictTargets, run_predict

    config = _config(Path(store), data)
    text = config.read_text()
    config = config.with_name(f"{config.stem}_p{partitions}.toml")
    value = partitions if partitions == "auto" else int(partitions)
    config.write_text(
        text + f'[output]\ndir = "{store}/output_p{partitions}"\npartitions = {value!r}\n'.replace("'", '"')
    )
    settings = load_settings(config)
    start = time.perf_counter()
    summary = run_predict(
        settings, PredictTargets(out=Path(store) / f"scores_p{partitions}.csv"), echo=lambda *a, **k: None
    )
    seconds = time.perf_counter() - start
    from leadscore.pipelines.intake.streamed import event_rows
    from leadscore.pipelines.verbs.predict import partitions_for_run

    return {
        "partitions": partitions_for_run(settings, PredictTargets()),
        "events": event_rows(settings.tables.events, settings),
        "open_leads": summary["scored"],
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "scores": str(Path(store) / f"scores_p{partitions}.csv"),
    }


def raw(data: str, store: str, n: str) -> dict:
    """Raw LightGBM predict + pred_contrib vs our scoring with reasons, on the same feature matrix."""
    from leadscore.features.registry import all_features
    from leadscore.models.reasons import top_reasons
    from leadscore.pipelines.verbs.scoring import champion_open_matrix

    model, X = champion_open_matrix(load_settings(_config(Path(store), data)), limit=int(n))
    prepared = model._prepare(X)
    start = time.perf_counter()
    model.booster_.predict(prepared, num_iteration=model.best_iteration_)
    model.booster_.predict(prepared, pred_contrib=True, num_iteration=model.best_iteration_)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    contributions = model.contributions(X)
    model.probability_of_margin(contributions.sum(axis=1).to_numpy())  # as predict scores
    top_reasons(contributions, X, all_features())
    ours_s = time.perf_counter() - start
    return {
        "rows": len(X),
        "raw_rows_per_s": len(X) / raw_s,
        "ours_rows_per_s": len(X) / ours_s,
        "ratio": raw_s / ours_s,
        "trees": model.best_iteration_,
    }


if __name__ == "__main__":
    step, *args = sys.argv[1:]
    print(json.dumps({"train": train, "predict": predict, "raw": raw, "streaming": streaming}[step](*args)))
