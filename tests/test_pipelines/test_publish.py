"""Outputs as one unit: a run killed while writing or between renames never leaves files of two runs side by side;
files honour the umask; carriage returns cannot split rows; leftovers of killed runs are cleaned."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from leadscore.pipelines.outputs.files import frame_writer, write_frame
from leadscore.pipelines.outputs.publish import Publication, publish, recover

REPO = Path(__file__).resolve().parents[2]

# A child process publishing scores + rejects + one score-history file tagged with a run name, its journal in
# `journal` (the project's output folder). "between" kills itself right after the scores' rename (rejects and history
# still to do), "history" right after the rejects' (only the history to do), "sql" after every rename, just before the
# score history's SQL step; "slow" writes a big scores file so that the parent can kill it mid-write.
CHILD = r"""
import importlib, os, signal, sys
from pathlib import Path
import pandas as pd
p = importlib.import_module("leadscore.pipelines.outputs.publish")
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.history import history_sql_step

folder, journal, run, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = 1_500_000 if mode == "slow" else 10
targets = {
    folder / "scores.csv": pd.DataFrame({"lead_id": range(rows), "run": run}),
    folder / "scores.rejects.csv": pd.DataFrame({"lead_id": ["R1", "R2"], "run": run}),
    folder / "history" / "as_of_date=2025-01-01" / "m__v1.parquet": pd.DataFrame({"lead_id": [1], "run": run}),
}
last = {"between": "scores.csv", "history": "scores.rejects.csv"}.get(mode)
real_replace = os.replace

def replace(source, target):
    real_replace(source, target)
    if Path(target).name == last:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
if mode == "sql":
    p._apply_sql = lambda step: os.kill(os.getpid(), signal.SIGKILL)
with p.Publication(journal) as publication:
    for path, frame in targets.items():
        publication.write(path, frame_writer(frame, path))
    if mode == "sql":
        stamp = pd.Timestamp("2025-01-01", tz="UTC")
        history = pd.DataFrame({"lead_id": ["L1"], "as_of": [stamp], "probability": [0.5], "score": [50],
            "cell": ["A1"], "stage": ["MQL"], "action": [run], "due_by": [stamp], "model_name": ["m"],
            "model_version": ["1"]})
        publication.add_sql(history_sql_step(history, f"sqlite:///{folder / 'history.db'}", "score_history"))
"""


def child(folder: Path, run: str, mode: str, journal: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    args = [sys.executable, "-c", CHILD, str(folder), str(journal or folder), run, mode]
    return subprocess.Popen(args, env=env, cwd=REPO)


HISTORY = Path("history") / "as_of_date=2025-01-01" / "m__v1.parquet"


def runs(folder: Path, *, history: bool = False) -> set[str]:
    """The run names found in the published pair (and the history file)."""
    found = set()
    for name in ("scores.csv", "scores.rejects.csv"):
        found |= set(pd.read_csv(folder / name, usecols=["run"], dtype=str)["run"].unique())
    if history:
        found |= set(pd.read_parquet(folder / HISTORY)["run"].unique()) if (folder / HISTORY).exists() else {None}
    return found


def leftovers(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.rglob(".*"))


@pytest.fixture
def published(tmp_path) -> Path:
    """Run A published completely (in this process: a child costs seconds of imports)."""
    files = {
        tmp_path / "scores.csv": pd.DataFrame({"lead_id": range(10), "run": "A"}),
        tmp_path / "scores.rejects.csv": pd.DataFrame({"lead_id": ["R1"], "run": "A"}),
        tmp_path / HISTORY: pd.DataFrame({"lead_id": [1], "run": "A"}),
    }
    publish({path: frame_writer(frame, path) for path, frame in files.items()})
    assert runs(tmp_path, history=True) == {"A"} and leftovers(tmp_path) == []
    return tmp_path


def test_sigkill_mid_write_leaves_the_previous_run_whole(published):
    process = child(published, "B", "slow")
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".tmp") for p in published.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert runs(published, history=True) == {"A"}  # every file still from the last complete run
    assert leftovers(published)  # the killed run's journal and temporary files ...
    # killed while writing its first file: the journal lists the steps staged so far
    assert recover([published]) == [f"rolled back an interrupted publication of {published / 'scores.csv'}"]
    assert leftovers(published) == [] and runs(published, history=True) == {"A"}  # ... are cleaned by the next run


def test_sigkill_between_the_renames_is_completed_by_the_next_run(published):
    process = child(published, "B", "between")
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert runs(published) == {"A", "B"}  # new scores beside old rejects, for now
    assert any(name.startswith(".leadscore-publish-") for name in leftovers(published))  # the journal
    other = published / "other.csv"  # the next publication, anywhere in that folder, completes it first
    publish({other: frame_writer(pd.DataFrame({"x": [1]}), other)})
    assert runs(published, history=True) == {"B"} and leftovers(published) == []


def test_a_kill_between_renames_is_completed_by_a_later_publication_elsewhere(published, tmp_path_factory):
    """The journal is in the project's output folder, not beside the files: a later run writing elsewhere finds it."""
    output = tmp_path_factory.mktemp("output")
    process = child(published, "B", "between", journal=output)
    assert process.wait(timeout=60) == -signal.SIGKILL
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "report.csv"
    publish({elsewhere: frame_writer(pd.DataFrame({"x": [1]}), elsewhere)}, journal_folder=output)
    assert runs(published, history=True) == {"B"} and leftovers(published, output) == []


def test_a_kill_between_the_scores_and_the_history_is_completed_at_the_next_start(published, tmp_path_factory):
    from leadscore.pipelines.config import Settings
    from leadscore.pipelines.outputs.publish import recover_project

    output = tmp_path_factory.mktemp("output")
    process = child(published, "B", "history", journal=output)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert runs(published) == {"B"} and pd.read_parquet(published / HISTORY)["run"].tolist() == ["A"]
    settings = Settings.model_validate(
        {"tables": {"leads": {"path": "l.csv"}, "opportunities": {"path": "o.csv"}}, "output": {"dir": str(output)}}
    )
    assert recover_project(settings)  # what every verb does first
    assert runs(published, history=True) == {"B"} and leftovers(published, output) == []


def test_a_kill_before_the_sql_history_step_is_completed_at_the_next_start(published, tmp_path_factory):
    import sqlalchemy as sa

    output = tmp_path_factory.mktemp("output")
    process = child(published, "B", "sql", journal=output)
    assert process.wait(timeout=60) == -signal.SIGKILL
    engine = sa.create_engine(f"sqlite:///{published / 'history.db'}")
    tables = sa.inspect(engine).get_table_names()
    assert "score_history" not in tables and any("__leadscore_" in t for t in tables)  # staged, not applied
    recover([output])
    history = pd.read_sql_table("score_history", engine)
    staging = [t for t in sa.inspect(engine).get_table_names() if "__leadscore_" in t]
    engine.dispose()
    assert history["action"].tolist() == ["B"] and staging == []
    assert runs(published, history=True) == {"B"} and leftovers(published, output) == []


def test_a_failed_writer_publishes_nothing_and_leaves_no_temporary(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    one = pd.DataFrame({"v": [1]})
    publish({first: frame_writer(one, first), second: frame_writer(one, second)})

    def broken(tmp):
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        publish({first: frame_writer(pd.DataFrame({"v": [2]}), first), second: broken})
    assert pd.read_csv(first)["v"].tolist() == [1] and pd.read_csv(second)["v"].tolist() == [1]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_frame(pd.DataFrame({"a": [1]}), tmp_path / "scores.csv")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_carriage_returns_cannot_split_rows(tmp_path):
    frame = pd.DataFrame({"lead_id": ["L1", "L2", "L3"], "note": ["a\rb", "c\r\nd", "plain"]})
    path = write_frame(frame, tmp_path / "out.csv")
    back = pd.read_csv(path, dtype=str)
    assert back["lead_id"].tolist() == ["L1", "L2", "L3"]
    assert back["note"].tolist() == ["a\nb", "c\nd", "plain"]


def test_a_dead_runs_journal_is_rolled_back_whatever_its_pid_and_a_live_one_is_left_alone(tmp_path):
    """Liveness is the journal's lock, not a PID: in a container every run is PID 1, and a PID is reused."""
    target = tmp_path / "scores.csv"
    write_frame(pd.DataFrame({"a": [1]}), target)
    before = target.read_bytes()
    live = Publication(tmp_path)
    temp = live.write(target, frame_writer(pd.DataFrame({"a": [2]}), target))
    assert recover([tmp_path]) == [] and temp.exists()  # locked: a run publishing right now
    live.journal.handle.close()  # the run dies (its lock goes with it); it had this very process's PID
    assert recover([tmp_path]) == [f"rolled back an interrupted publication of {target}"]
    assert not temp.exists() and leftovers(tmp_path) == [] and target.read_bytes() == before


def test_temporary_names_never_repeat_within_one_process(tmp_path):
    target = tmp_path / "scores.csv"
    names = set()
    for _ in range(3):
        with Publication(tmp_path) as publication:
            names.add(publication.write(target, frame_writer(pd.DataFrame({"a": [1]}), target)).name)
    assert len(names) == 3 and all(str(os.getpid()) not in name for name in names)


def test_every_file_and_folder_is_fsynced_before_the_commit(tmp_path, monkeypatch):
    p = importlib.import_module("leadscore.pipelines.outputs.publish")
    synced = []
    real = os.fsync
    monkeypatch.setattr(p.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    target = tmp_path / "out" / "scores.csv"
    publish({target: frame_writer(pd.DataFrame({"a": [1]}), target)})
    temp = next(s for s in synced if s.endswith(".tmp"))
    assert synced.index(temp) < max(i for i, s in enumerate(synced) if s == str(target.parent))  # file, then folder
    assert any("leadscore-publish" in s for s in synced)  # the journal too
