"""The rejected rows of one validation, one CSV per table with each row's reasons, and every problem."""

from __future__ import annotations

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.publish import Publication, project_publication
from leadscore.pipelines.outputs.targets import REJECT_NAMES

__all__ = ["write_rejects"]


def write_rejects(data: CrmData, settings: Settings, publication: Publication | None = None) -> dict[str, str]:
    """Write one CSV of rejected rows (with reasons) per table, and all problems; return the paths.

    One run's rejects replace the last run's as a unit: a table without rejects now loses its old file, and a clean
    run leaves none. With a `publication` they are put in place with the verb's other outputs.
    """
    if publication is None:
        with project_publication(settings) as own:
            return write_rejects(data, settings, own)
    folder = settings.output_dir / "rejects"
    files = {folder / f"{n}.csv": frame_writer(frame, folder / f"{n}.csv") for n, frame in data.rejects.items()}
    if data.problems:
        problems = pd.DataFrame([p.__dict__ for p in data.problems]).astype({"value": "string"})
        files[folder / "problems.csv"] = frame_writer(problems, folder / "problems.csv")
    for path, writer in files.items():
        publication.write(path, writer)
    for name in REJECT_NAMES:
        if folder / f"{name}.csv" not in files:
            publication.delete(folder / f"{name}.csv")
    return {path.stem: str(path) for path in files}
