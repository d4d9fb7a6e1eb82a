"""Outputs as one unit: a run killed while writing or between renames never leaves files of two runs side by side;
files honour the umask; carriage returns cannot split rows; leftovers of killed runs are cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from leadscore.pipelines.outputs.files import frame_writer, write_frame
from leadscore.pipelines.outputs.publish import publish, recover

REPO = Path(__file__).resolve().parents[2]

# A child process publishing scores + rejects tagged with a run name; "between" kills itself right after the
# first rename, "slow" writes a big scores file so that the parent can kill it mid-write.
CHILD = r"""
import os, signal, sys
from pathlib import Path
import pandas as pd
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.publish import publish

folder, run, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = 1_500_000 if mode == "slow" else 10
scores = pd.DataFrame({"lead_id": range(rows), "run": run})
rejects = pd.DataFrame({"lead_id": ["R1", "R2"], "run": run})
targets = {folder / "scores.csv": scores, folder / "scores.rejects.csv": rejects}
if mode == "between":
    real_replace = os.replace

    def replace(source, target):
        real_replace(source, target)
        if Path(target) == folder / "scores.csv":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
publish({path: frame_writer(frame, path) for path, frame in targets.items()})
"""


def child(folder: Path, run: str, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), run, mode], env=env, cwd=REPO)


def runs(folder: Path) -> set[str]:
    """The run names found in the published pair."""
    found = set()
    for name in ("scores.csv", "scores.rejects.csv"):
        found |= set(pd.read_csv(folder / name, usecols=["run"], dtype=str)["run"].unique())
    return found


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def published(tmp_path) -> Path:
    """Run A published completely (in this process: a child costs seconds of imports)."""
    for name, frame in {
        "scores.csv": pd.DataFrame({"lead_id": range(10), "run": "A"}),
        "scores.rejects.csv": pd.DataFrame({"lead_id": ["R1"], "run": "A"}),
    }.items():
        write_frame(frame, tmp_path / name)
    assert runs(tmp_path) == {"A"} and leftovers(tmp_path) == []
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
    assert runs(published) == {"A"}  # both files still from the last complete run
    assert leftovers(published)  # the killed run's temporary file ...
    recover([published])
    assert leftovers(published) == [] and runs(published) == {"A"}  # ... is cleaned by the next run


def test_sigkill_between_the_renames_is_completed_by_the_next_run(published):
    process = child(published, "B", "between")
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert any(name.startswith(".leadscore-publish-") for name in leftovers(published))  # the journal
    other = published / "other.csv"  # the next publication, anywhere in that folder, completes it first
    publish({other: frame_writer(pd.DataFrame({"x": [1]}), other)})
    assert runs(published) == {"B"} and leftovers(published) == []


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


def test_leftover_temporaries_of_dead_runs_are_cleaned_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".scores.csv.leadscore-{dead.pid}-abc.tmp"
    live = tmp_path / f".scores.csv.leadscore-{os.getppid()}-def.tmp"  # our parent is alive
    stale.write_text("half")
    live.write_text("in progress")
    write_frame(pd.DataFrame({"a": [1]}), tmp_path / "scores.csv")
    assert not stale.exists() and live.exists()
