"""Time `leadscore train` (fit, calibration, evaluation, MLflow logging and registry) on sample data."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import peak_rss_mib
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm
from leadscore.pipelines.training_set import build_training_set
from leadscore.pipelines.verbs.train import train


def main(data_dir: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "leadscore.toml"
        tables = "".join(
            f'[tables.{n}]\npath = "{data_dir}/{n}.parquet"\n' for n in ("leads", "accounts", "events", "opportunities")
        )
        config.write_text(tables + '[spine]\npolicy = "fixed_delay"\n')
        settings = load_settings(config)
        start = time.perf_counter()
        data = load_crm(settings)
        loaded = time.perf_counter()
        rows = len(build_training_set(settings, data=data).frame)
        built = time.perf_counter()
        result = train(settings, data=data)
        done = time.perf_counter()
    print(
        json.dumps(
            {
                "closed_leads": rows,
                "load_s": loaded - start,
                "training_set_s": built - loaded,
                "train_total_s": done - built,
                "peak_rss_mib": peak_rss_mib(),
                "roc_auc": float(result.metrics.loc["lightgbm_calibrated", "roc_auc"]),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
