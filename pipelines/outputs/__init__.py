"""Outputs: files written atomically and published together, the score history, and MLflow tracking."""

from leadscore.pipelines.outputs.files import frame_writer, write_atomically, write_frame, write_json
from leadscore.pipelines.outputs.history import append_history, read_history, stage_history
from leadscore.pipelines.outputs.publish import Publication, project_publication, publish, recover_project
from leadscore.pipelines.outputs.targets import Target, check_outputs, check_target, owned_paths

__all__ = [
    "Publication",
    "Target",
    "append_history",
    "check_outputs",
    "check_target",
    "frame_writer",
    "owned_paths",
    "project_publication",
    "publish",
    "read_history",
    "recover_project",
    "stage_history",
    "write_atomically",
    "write_frame",
    "write_json",
]
