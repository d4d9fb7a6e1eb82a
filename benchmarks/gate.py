"""The gate's cases through `leadscore train` on the sample data: each case in its own project folder (its own MLflow
store, copied from the champion it is judged against), the decision line of each printed.

Cases: a champion at the default as-of (`base`) and one at 2025-06-30 (`base_old`); against `base`: the deals' lead ids
shuffled, the same files at an older as-of, the events re-saved with gzip, the events re-ordered; against `base_old`:
the same files at the default as-of (a refresh) and the shuffled deals at the default as-of.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import BENCH_DATA, REPO, sample_data

CLI = "from leadscore.pipelines.cli import app; app(prog_name='leadscore')"
OLD_AS_OF = "2025-06-30"


def leadscore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, check=False, cwd=REPO)


def train(folder: Path, *args: str) -> dict:
    done = leadscore("train", "--config", str(folder / "leadscore.toml"), "--json", *args)
    if done.returncode:
        raise SystemExit(f"train in {folder} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    return {"version": summary["version"], "decision": summary["decision"], **summary["holdout"]["lightgbm_calibrated"]}


def project(root: Path, data: Path, name: str, *, changes: dict | None = None, store_from: str | None = None) -> Path:
    """A project over `data` (the `changes` tables written anew), with a copy of another case's MLflow store."""
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    done = leadscore("init", str(folder))
    if done.returncode:
        raise SystemExit(done.stderr)
    own = folder / "data"
    own.mkdir()
    for table in data.iterdir():
        if table.name in (changes or {}):
            changes[table.name](pd.read_parquet(table)).to_parquet(own / table.name, compression="gzip", index=False)
        else:
            (own / table.name).symlink_to(table)
    if store_from is not None:
        shutil.copy(root / store_from / "mlflow.db", folder / "mlflow.db")
    return folder


def shuffled_deals(deals: pd.DataFrame) -> pd.DataFrame:
    return deals.assign(lead_id=np.random.default_rng(0).permutation(deals["lead_id"].to_numpy()))


def main(leads: int) -> None:
    data, root = sample_data(leads), BENCH_DATA / f"gate_{leads}"
    cases = [
        ("base", {}, None, ()),
        ("base_old", {}, None, ("--as-of", OLD_AS_OF)),
        ("shuffled", {"opportunities.parquet": shuffled_deals}, "base", ()),
        ("older", {}, "base", ("--as-of", OLD_AS_OF)),
        ("gzip", {"events.parquet": lambda e: e}, "base", ()),
        ("reordered", {"events.parquet": lambda e: e.sample(frac=1.0, random_state=1)}, "base", ()),
        ("refresh", {}, "base_old", ()),
        ("shuffled_refresh", {"opportunities.parquet": shuffled_deals}, "base_old", ()),
    ]
    for name, changes, store_from, args in cases:
        row = train(project(root, data, name, changes=changes, store_from=store_from), *args)
        against = f"against {store_from}" if store_from else "first model"
        print(
            f"\n{name} ({against}{', ' + ' '.join(args) if args else ''}): v{row['version']}, holdout ROC AUC "
            f"{row['roc_auc']:.4f}, ECE {row['ece']:.4f}, mean predicted / observed {row['predicted_to_observed']:.3f}"
        )
        print(f"  {row['decision']}", flush=True)
