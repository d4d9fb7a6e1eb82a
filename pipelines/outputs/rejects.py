"""The rejected rows of one validation, one CSV per table with each row's reasons, and every problem."""

from __future__ import annotations

import pandas as pd

from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.publish import publish

__all__ = ["write_rejects"]


def write_rejects(data: CrmData, settings: Settings) -> dict[str, str]:
    """Write one CSV of rejected rows (with reasons) per table, and all problems; return the paths."""
    folder = settings.output_dir / "rejects"
    files = {folder / f"{n}.csv": frame_writer(frame, folder / f"{n}.csv") for n, frame in data.rejects.items()}
    if data.problems:
        problems = pd.DataFrame([p.__dict__ for p in data.problems]).astype({"value": "string"})
        files[folder / "problems.csv"] = frame_writer(problems, folder / "problems.csv")
    # one run's rejects replace the last run's as a unit: a table without rejects now loses its old file
    stale = [folder / f"{name}.csv" for name in (*TABLE_ROLES, "problems")]
    stale = [path for path in stale if path not in files and path.exists()]
    if files:
        publish(files, delete=stale)
    for path in stale if not files else ():
        path.unlink()
    return {path.stem: str(path) for path in files}
