"""`predict` on one engine in its own process, with the peak memory of the whole process tree (Spark's JVM and
Python workers included), sampled every 0.2 s."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import psutil

from benchmarks.predict_worker import _config
from leadscore.pipelines.config import load_settings


class TreeMemory:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _settings(engine: str, data: str, store: str):
    settings = load_settings(_config(Path(store), data))
    return settings.model_copy(
        update={
            "engine": settings.engine.model_copy(
                update={"name": engine, "partitions": 16, "spark_conf": {"spark.driver.memory": "8g"}}
            )
        }
    )


def main(engine: str, data: str, store: str) -> None:
    from leadscore.pipelines.outputs import tracking

    settings = _settings(engine, data, store)
    tracking.use_store(settings)
    model, wrapper = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    out = Path(store) / f"engine_{engine}"
    with TreeMemory() as memory:
        start = time.perf_counter()
        if engine == "spark":
            from leadscore.pipelines.spark_engine import predict_spark

            run = predict_spark(settings, model, wrapper, model_name="bench", model_version="1", as_of=None, out=out)
            scored = run.summary["scored"]
        else:
            from leadscore.pipelines.intake.validation import load_crm
            from leadscore.pipelines.outputs.files import write_frame
            from leadscore.pipelines.verbs.scoring import score_open_leads

            result = score_open_leads(
                settings, load_crm(settings), model, wrapper, model_name="bench", model_version="1"
            )
            write_frame(result.scores, out.with_suffix(".parquet"))
            scored = len(result.scores)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"engine": engine, "open_leads": scored, "seconds": seconds, "peak_tree_rss_mib": memory.peak / 2**20}
        )
    )


def verb(data: str, store: str) -> None:
    """`leadscore predict --engine spark` end to end through the CLI's own code path (`run_predict`: the scores and
    rejects folders with their score movement, the score history, published as one unit), in an output folder of its
    own; wall time and the peak of the process tree's summed RSS (this process, the JVM and its Python workers)."""
    from leadscore.pipelines.verbs.predict import PredictTargets, run_predict

    settings = _settings("spark", data, store)
    output = settings.output.model_copy(update={"dir": str(Path(store) / f"output_spark_{Path(data).name}")})
    settings = settings.model_copy(update={"output": output})
    out = Path(store) / f"scores_spark_{Path(data).name}"
    with TreeMemory() as memory:
        start = time.perf_counter()
        summary = run_predict(settings, PredictTargets(out=out), echo=lambda *a, **k: None)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "open_leads": summary["scored"],
                "seconds": seconds,
                "peak_tree_rss_mib": memory.peak / 2**20,
                "scores": str(out),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "verb":
        verb(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
