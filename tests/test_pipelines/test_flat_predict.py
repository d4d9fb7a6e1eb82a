"""Flat mode end to end: rows with an empty label are the open leads; predict scores and (when configured) grades
them; one project, one registry; a champion of another feature set is reported, never a KeyError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from leadscore.features.flat import FlatSpec, flat_open_leads, label_is_empty
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings

SMALL_MODEL = "[model]\nn_estimators = 60\nnum_leaves = 7\nmin_child_samples = 10\nearly_stopping_rounds = 10\n"
GRADES = """
[flat.engagement]
cutoffs = { "1" = 60, "2" = 30, "3" = 10 }
categories.visits = { feature = "visits", weight = 100, tiers = [{ min = 0, points = 0 }, { min = 5, points = 40 },
                                                                 { min = 10, points = 100 }] }
[grades.fit]
cutoffs = { A = 70, B = 50, C = 30 }
categories.source = { feature = "source", weight = 100, points = { referral = 100, web = 50, ads = 10 } }
"""


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def flat_export(n: int = 800, *, seed: int = 3, open_share: float = 0.1) -> pd.DataFrame:
    """A signal in visits and source; the last `open_share` of rows have an empty label (still open)."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(5, n)
    source = rng.choice(["web", "ads", "referral"], n)
    logit = -2.0 + 0.35 * visits + np.where(source == "referral", 1.0, 0.0) - np.where(source == "ads", 1.0, 0.0)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no").astype(object)
    y[int(n * (1 - open_share)) :] = ""
    return pd.DataFrame({"id": [f"L{i:04d}" for i in range(n)], "visits": visits, "source": source, "y": y})


def flat_project(folder: Path, name: str = "leadscore", extra: str = "", frame: pd.DataFrame | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (flat_export() if frame is None else frame).to_csv(folder / "export.csv", index=False)
    config = folder / f"{name}.toml"
    config.write_text(
        'mode = "flat"\n[flat]\npath = "export.csv"\nid_column = "id"\nlabel_column = "y"\n'
        'positive_values = ["yes"]\nnegative_values = ["no"]\ncategorical = ["source"]\n'
        'numeric = ["visits"]\n' + extra + SMALL_MODEL
    )
    return config


def test_empty_labels_are_open_leads_and_spaces_count_as_empty():
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "v": ["1", "2", "x", "4"], "y": ["yes", None, "  ", "no"]})
    assert label_is_empty(frame["y"]).tolist() == [False, True, True, False]
    rows = flat_open_leads(frame, FlatSpec(label_column="y", numeric=("v",), id_column="id", missing_values=("x",)))
    assert rows["lead_id"].tolist() == ["b", "c"]
    assert rows["v"].tolist()[0] == 2.0 and np.isnan(rows["v"].tolist()[1])
    assert "converted" not in rows


def test_flat_predict_scores_and_grades_every_open_row(tmp_path):
    config = flat_project(tmp_path / "p", extra=GRADES)
    invoke("train", "--config", config)
    out = tmp_path / "scores.csv"
    text = invoke("predict", "--config", config, "--out", out, "--as-of", "2026-01-05")
    scores = pd.read_csv(out)
    assert len(scores) == 80 and set(scores["lead_id"]) == {f"L{i:04d}" for i in range(720, 800)}
    assert scores["probability"].between(0, 1).all() and scores["score"].between(1, 99).all()
    assert scores["probability"].is_monotonic_decreasing
    assert scores["reasons_positive"].fillna("").str.len().gt(0).any()
    export = flat_export().set_index("id")
    # fit by source alone: referral A, web B (50), ads D; engagement by visits tiers
    expected_fit = export.loc[scores["lead_id"], "source"].map({"referral": "A", "web": "B", "ads": "D"})
    assert scores["fit_grade"].tolist() == expected_fit.tolist()
    visits = export.loc[scores["lead_id"], "visits"].to_numpy()
    expected_eng = np.select([visits >= 10, visits >= 5], ["1", "2"], "4")
    assert scores["engagement_grade"].astype(str).tolist() == expected_eng.tolist()
    a1 = scores["cell"] == "A1"
    assert (scores.loc[a1, "action"] == "sales call").all() and (scores.loc[a1, "sla_hours"] == 24).all()
    assert (scores["as_of"].str.startswith("2026-01-05")).all()
    assert "scored 80 open leads" in text


def test_flat_predict_without_grade_rules_leaves_grades_empty_and_says_so(tmp_path):
    config = flat_project(tmp_path / "p")
    invoke("train", "--config", config)
    text = invoke("predict", "--config", config, "--out", tmp_path / "s.csv")
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == 80 and scores["cell"].isna().all() and scores["probability"].notna().all()
    assert "no grades" in text


def test_flat_predict_with_every_row_labelled_is_a_data_error(tmp_path):
    frame = flat_export(open_share=0.0)
    config = flat_project(tmp_path / "p", frame=frame)
    invoke("train", "--config", config)
    assert "no open lead" in invoke("predict", "--config", config, "--out", tmp_path / "s.csv", code=1)


def test_named_projects_sharing_a_folder_get_their_own_model_and_experiment(tmp_path):
    alpha = flat_project(tmp_path / "shared", name="alpha")
    alpha.write_text('name = "alpha"\n' + alpha.read_text())
    beta = alpha.with_name("beta.toml")
    beta.write_text(alpha.read_text().replace('name = "alpha"', 'name = "beta"'))
    sa, sb = load_settings(alpha), load_settings(beta)
    assert (sa.mlflow.registered_model, sa.mlflow.experiment) == ("alpha-conversion", "alpha")
    assert (sb.mlflow.registered_model, sb.mlflow.experiment) == ("beta-conversion", "beta")
    assert sa.tracking_uri == sb.tracking_uri == f"sqlite:///{alpha.parent.resolve()}/mlflow.db"
    explicit = alpha.with_name("gamma.toml")
    explicit.write_text(alpha.read_text() + '[mlflow]\nregistered_model = "mine"\n')
    assert load_settings(explicit).mlflow.registered_model == "mine"
    # a config variant without a name shares the folder's registry (on purpose: same project)
    unnamed = alpha.with_name("variant.toml")
    unnamed.write_text(alpha.read_text().replace('name = "alpha"\n', ""))
    assert load_settings(unnamed).mlflow.registered_model == "leadscore-conversion"
    invoke("train", "--config", alpha)
    out = invoke("train", "--config", beta)
    assert "registered beta-conversion version 1" in out and "promoted v1: no champion yet" in out


def test_a_champion_of_another_feature_set_is_reported_by_predict_and_explain(tmp_path):
    config = flat_project(tmp_path / "p")
    invoke("train", "--config", config)
    other = config.read_text().replace('categorical = ["source"]\n', 'categorical = ["channel"]\n')
    frame = flat_export().rename(columns={"source": "channel"})
    frame.to_csv(config.parent / "export.csv", index=False)
    config.write_text(other)
    out = invoke("predict", "--config", config, "--out", tmp_path / "s.csv", code=2)
    assert "was trained on another feature set" in out and "source" in out and "KeyError" not in out
    out = invoke("explain", "--config", config, "--out", tmp_path / "r.html", code=2)
    assert "was trained on another feature set" in out and "source" in out
