"""Helpers shared by the benchmarks: cached sample data, isolated worker processes, tables."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_DATA = REPO / "bench-data"


def sample_data(n_leads: int, seed: int = 42) -> Path:
    """Generate (once) and return the folder of a sample CRM with `n_leads` leads."""
    from leadscore.pipelines.sample_data import SampleSpec, generate

    folder = BENCH_DATA / f"crm_{n_leads}_{seed}"
    if not (folder / "opportunities.parquet").exists():
        start = time.perf_counter()
        counts = generate(folder, SampleSpec(n_leads=n_leads, seed=seed))
        print(f"generated {counts} in {time.perf_counter() - start:.1f} s -> {folder}", file=sys.stderr)
    return folder


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(module: str, *args: str) -> dict:
    """Run `python -m module args` in a fresh process (so peak memory is its own) and parse its JSON line."""
    # passive OpenMP waits, as the CLI sets them (spinning LightGBM threads cost 14x on a busy 2-core machine)
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False, cwd=REPO, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
