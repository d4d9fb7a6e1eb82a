"""`leadscore grade`: the rules only, no model needed (the cold-start path), plus the closed-deal analysis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.grading import analyze_closed_deals, grade_open_leads, read_previous
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.outputs.files import write_frame
from leadscore.pipelines.outputs.publish import project_publication
from leadscore.pipelines.outputs.targets import Target, check_outputs
from leadscore.pipelines.outputs.tracking import load_model


def run_grade(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    out: Path | None = None,
    previous: Path | None = None,
    analyze: bool = False,
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore grade` (lead level): every open lead graded by the rules, written to `out`, with the
    closed-deal analysis on request."""
    if settings.mode != "crm":
        raise UsageError("grading needs the CRM tables (mode = 'crm')")
    spark = settings.engine.name == "spark"
    target = Path(out or settings.output_dir / ("grades_parquet" if spark else "grades.csv"))
    check_outputs(settings, Target(target, "--out", (".csv", ".parquet"), folder=spark))
    if spark:
        from leadscore.pipelines.spark_engine import grade_spark

        summary = grade_spark(settings, as_of=as_of, out=target)
        echo(f"graded {summary['graded']:,} open leads as of {summary['as_of']} on Spark -> {target}")
        return summary
    with project_publication(settings) as publication:  # the grades and the validation rejects, as one unit
        data = load_valid_crm(settings, as_of=as_of, publication=publication)
        model = None
        if settings.grades.stages.sql_min_probability is not None:  # stages then read the champion's probability
            model = load_model(settings)[0]
        graded = grade_open_leads(settings, data, previous=read_previous(previous or out), model=model)
        path = write_frame(graded, target, publication)
    echo(f"graded {len(graded):,} open leads as of {data.as_of.isoformat()} -> {path}")
    echo(graded["cell"].value_counts().sort_index().to_frame("leads").T.to_string())
    echo(graded["stage"].value_counts().to_frame("leads").T.to_string())
    if analyze:
        analysis, _ = analyze_closed_deals(settings, data)
        echo("")
        for line in analysis.lines():
            echo(line)
    return {"verb": "grade", "graded": len(graded), "output": str(path)}
