"""The installed distribution: one import name (`leadscore`), a console script that works from any folder, and
models registered before the code moved under that name still load."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg", "PYTHONPATH": ""}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        cwd=out,
    )
    (found,) = out.glob("leadscore-*.whl")
    return found


def test_the_wheel_installs_only_leadscore(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"leadscore"}
    assert "leadscore/pipelines/cli.py" in names
    assert "leadscore/pipelines/templates/leadscore.toml" in names
    assert "leadscore/pipelines/reports/templates/report.html.j2" in names
    assert not any(name.startswith(("leadscore/tests/", "leadscore/notebooks/")) for name in names)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; its dependencies come from this environment (no download)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this environment's packages, but not its editable leadscore (a plain path entry runs no .pth hooks)
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [venv / "bin" / "leadscore", *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_installed_wheel_trains_and_predicts_outside_the_repository(installed, tmp_path):
    where = subprocess.run(
        [installed / "bin" / "python", "-c", "import leadscore.pipelines.cli as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        check=True,
    ).stdout
    assert where.startswith(str(installed)), where  # the installed copy, not the repository's folders
    old_name = subprocess.run([installed / "bin" / "python", "-c", "import models"], cwd=tmp_path, env=ENV)
    assert old_name.returncode != 0  # no generic top-level package lands in site-packages

    assert _run(installed, "--version", cwd=tmp_path).startswith("leadscore ")
    _run(installed, "init", "project", cwd=tmp_path)
    _run(installed, "sample-data", "--out", "project/data", "--leads", "2000", "--seed", "3", cwd=tmp_path)
    config = "project/leadscore.toml"
    assert "registered" in _run(installed, "train", "--config", config, cwd=tmp_path)
    _run(installed, "predict", "--config", config, "--out", "project/scores.csv", cwd=tmp_path)
    scores = (tmp_path / "project" / "scores.csv").read_text().splitlines()
    assert scores[0].startswith("lead_id,") and len(scores) > 100


def _with_old_module_names(model_dir: Path) -> None:
    """Rewrite a logged model's pickle as the code before the move wrote it: classes named `models.conversion...`."""
    import cloudpickle

    pickle_path = model_dir / "python_model.pkl"
    with open(pickle_path, "rb") as handle:
        python_model = cloudpickle.load(handle)
    renamed, aliases = [], []
    for name, module in list(sys.modules.items()):
        if not name.startswith(("leadscore.features", "leadscore.models", "leadscore.pipelines")):
            continue
        old = name.removeprefix("leadscore.")
        if old not in sys.modules:
            sys.modules[old] = module
            aliases.append(old)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == name:
                value.__module__ = old
                renamed.append((value, name))
    try:
        with open(pickle_path, "wb") as handle:
            cloudpickle.dump(python_model, handle)
    finally:
        for cls, name in renamed:
            cls.__module__ = name
        for old in aliases:
            del sys.modules[old]
    assert b"models.conversion" in pickle_path.read_bytes() and b"leadscore.models" not in pickle_path.read_bytes()


def test_a_model_registered_before_the_move_still_loads(trained_project, tmp_path):
    import shutil

    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs import tracking

    settings = load_settings(trained_project)
    tracking.use_store(settings)
    mlflow = tracking.mlflow_module()
    source = mlflow.artifacts.download_artifacts(f"models:/{settings.mlflow.registered_model}@champion")
    model_dir = tmp_path / "old_model"
    shutil.copytree(source, model_dir)
    _with_old_module_names(model_dir)

    load = (
        "import sys, mlflow\n"
        "from leadscore.pipelines.outputs.tracking import load_conversion_model\n"
        "try:\n"
        "    mlflow.pyfunc.load_model(sys.argv[1])\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('plain load fails:', exc.name)\n"
        "model, wrapper = load_conversion_model(sys.argv[1])\n"
        "print(type(model).__module__, model.n_features_in_)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", load, str(model_dir)], capture_output=True, text=True, cwd=tmp_path, env=ENV
    )
    assert result.returncode == 0, result.stderr
    assert "plain load fails: models" in result.stdout  # the pickle really names the old modules
    assert "leadscore.models.conversion" in result.stdout  # ... and loads as the one installed module
