"""Shared fixtures: a small sample CRM generated once per session, and the real datasets when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def dataset(relative: str) -> Path:
    """Path of a real dataset under ../shared/datasets, or skip the test with the reason."""
    path = DATASETS / relative
    if not path.exists():
        pytest.skip(f"real dataset not available: {path}")
    return path


@pytest.fixture(scope="session")
def sample_project(tmp_path_factory) -> Path:
    """A project folder with the default config and 3,000 generated leads; returns the config path."""
    from typer.testing import CliRunner

    from leadscore.pipelines.cli import app

    folder = tmp_path_factory.mktemp("project")
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["sample-data", "--out", str(folder / "data"), "--leads", "3000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    return folder / "leadscore.toml"


@pytest.fixture(scope="session")
def trained_project(sample_project, tmp_path_factory) -> Path:
    """A config over the sample data with its own MLflow store holding a trained champion."""
    from typer.testing import CliRunner

    from leadscore.pipelines.cli import app

    folder = tmp_path_factory.mktemp("trained")
    config = folder / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server: the one `.ci/run` started ($LEADSCORE_TEST_POSTGRES_URL), else one of our own.

    Skips only where no PostgreSQL binaries are installed; under CI ($CI set) that is a failure instead.
    """
    from tests import postgres_server

    url = os.environ.get("LEADSCORE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if postgres_server.bindir() is None:
        reason = "no PostgreSQL binaries found (pg_config --bindir / initdb on PATH): install postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    url, folder = postgres_server.start()
    try:
        yield url
    finally:
        postgres_server.stop(folder)
