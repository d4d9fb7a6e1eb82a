"""`leadscore explain`: the analysts' HTML report on the champion (or a given model), also logged to its MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError, LeadscoreError
from leadscore.pipelines.outputs.publish import project_publication
from leadscore.pipelines.outputs.targets import Target, check_outputs


def run_explain(
    settings: Settings,
    *,
    model_uri: str | None = None,
    out: Path | None = None,
    level: str = "lead",
    echo: Callable[..., None],
) -> dict:
    """Build the report for `model_uri` (default: the level's champion), write it to `out` and log its parts to
    MLflow. `level`: lead (report.html) or opportunity (opportunity_report.html)."""
    import matplotlib

    matplotlib.use("Agg")  # the report is rendered to files, never to a screen
    from leadscore.pipelines.reports.analyst import build_report, load_review, log_to_run
    from leadscore.pipelines.verbs.opportunities import opportunity_review

    default = "report.html" if level == "lead" else f"{level}_report.html"
    target = Path(out or settings.output_dir / default)
    check_outputs(settings, Target(target, "--out", (".html", ".htm")))
    load = load_review if level == "lead" else opportunity_review
    try:
        review = load(settings, model_uri=model_uri)
    except LeadscoreError:
        raise  # bad input data: its own message, not "cannot load the model"
    except Exception as exc:  # a missing model surfaces as one of several MLflow errors
        from leadscore.pipelines.outputs.tracking import why_not_loaded
        from leadscore.pipelines.verbs.levels import level_settings

        named = settings if level == "lead" else level_settings(settings, level)  # the level's registered name
        cause, hint = why_not_loaded(exc, named)
        raise DataError(f"cannot load the model: {cause}", hint=hint) from None
    page, images, tables = build_report(review)
    with project_publication(settings) as publication:
        publication.write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    run_id = log_to_run(review, images, tables)
    echo(f"report: {target.resolve()}")
    if run_id:
        echo(f"images and tables logged to MLflow run {run_id}")
    return {"verb": "explain", "level": level, "report": str(target.resolve()), "run_id": run_id}
