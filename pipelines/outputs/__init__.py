"""Outputs: files written atomically and published together, the score history, and MLflow tracking."""

from leadscore.pipelines.outputs.files import frame_writer, write_atomically, write_frame, write_json
from leadscore.pipelines.outputs.history import append_history, read_history
from leadscore.pipelines.outputs.publish import check_target, publish

__all__ = [
    "append_history",
    "check_target",
    "frame_writer",
    "publish",
    "read_history",
    "write_atomically",
    "write_frame",
    "write_json",
]
