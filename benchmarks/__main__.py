"""`python -m benchmarks [features] [--leads N]`: run benchmarks and print their tables."""

from __future__ import annotations

import argparse

from benchmarks.common import print_table, run_worker, sample_data


def bench_features(leads: int) -> None:
    """Behavioral window counts (8 event types x 7/30/90 days) for one cutoff per lead: ours vs DuckDB SQL."""
    folder = sample_data(leads)
    rows = [run_worker("benchmarks.features_worker", engine, str(folder)) for engine in ("pandas", "duckdb")]
    ours, duck = rows
    if abs(ours["checksum"] - duck["checksum"]) > 1e-6:
        raise SystemExit(f"engines disagree: checksum {ours['checksum']} vs {duck['checksum']}")
    for row in rows:
        row["ratio_vs_duckdb"] = row["seconds"] / duck["seconds"]
    print(f"\nbehavioral features: {ours['rows']:,} leads, {ours['events']:,} events (same counts from both engines)")
    print_table(rows, ["engine", "seconds", "peak_rss_mib", "ratio_vs_duckdb"])


BENCHMARKS = {"features": bench_features}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    parser.add_argument("--leads", type=int, default=1_000_000, help="sample leads (about 50 events each)")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        BENCHMARKS[name](args.leads)


if __name__ == "__main__":
    main()
