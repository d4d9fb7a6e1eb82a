"""Derived columns without a preprocessing script: a weekday from the contact date and the label joined from a
second export (won deals by qualified-lead id), through validate -> train -> predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.flat_source import load_flat_export

CONFIG = """mode = "flat"
[flat]
path = "mql.csv"
id_column = "mql_id"
label_column = "won"
time_column = "first_contact_date"
categorical = ["origin", "contact_weekday"]
numeric = ["pages", "days_to_demo"]

[flat.derived.contact_weekday]
date_part = "weekday"
of = "first_contact_date"

[flat.derived.days_to_demo]
days_between = ["first_contact_date", "demo_date"]

[flat.label_from]
path = "deals.csv"
key = "mql_id"
outcome_time = "won_date"
horizon_days = 60

[model]
n_estimators = 60
num_leaves = 7
min_child_samples = 10
early_stopping_rounds = 10
"""


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def exports(folder, n: int = 900, seed: int = 5) -> None:
    """Qualified leads contacted over a year (a demo within 30 days either side); referrals and engaged leads close
    more often, 10-50 days after the contact."""
    rng = np.random.default_rng(seed)
    contact = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 365, n)), unit="D")
    origin = rng.choice(["referral", "paid", "organic"], n)
    pages = rng.poisson(4, n)
    demo = contact + pd.to_timedelta(rng.uniform(-30, 30, n), unit="D")
    p = 1 / (1 + np.exp(-(-2.2 + 0.3 * pages + np.where(origin == "referral", 1.2, 0.0))))
    won = rng.random(n) < p
    won_date = contact + pd.to_timedelta(rng.uniform(10, 50, n), unit="D")
    ids = [f"m{i:04d}" for i in range(n)]
    pd.DataFrame(
        {
            "mql_id": ids,
            "first_contact_date": contact.strftime("%Y-%m-%d %H:%M"),
            "origin": origin,
            "pages": pages,
            "demo_date": demo.strftime("%Y-%m-%d %H:%M"),
        }
    ).to_csv(folder / "mql.csv", index=False)
    deals = pd.DataFrame({"mql_id": np.array(ids)[won], "won_date": won_date[won].strftime("%Y-%m-%d")})
    deals.to_csv(folder / "deals.csv", index=False)


def test_weekday_days_between_and_joined_label_without_preprocessing(tmp_path):
    exports(tmp_path)
    config = tmp_path / "leadscore.toml"
    config.write_text(CONFIG)
    frame = load_flat_export(load_settings(config))
    mql = pd.read_csv(tmp_path / "mql.csv")
    contact = pd.to_datetime(mql["first_contact_date"], utc=True)
    assert frame["contact_weekday"].tolist() == contact.dt.day_name().tolist()
    demo = pd.to_datetime(mql["demo_date"], utc=True)
    # a demo after the contact was not known at the row's time: missing, never a feature (point in time)
    later = demo > contact
    assert 0 < later.sum() < len(mql) and frame.loc[later, "days_to_demo"].isna().all()
    expected = (demo - contact).dt.total_seconds() / 86_400
    assert np.allclose(frame.loc[~later, "days_to_demo"], expected[~later])
    deals = pd.read_csv(tmp_path / "deals.csv")
    won = mql["mql_id"].isin(deals["mql_id"])
    as_of = pd.to_datetime(deals["won_date"], utc=True).max()
    matured = contact + pd.Timedelta(days=60) <= as_of
    assert (frame.loc[won, "won"] == "1").all()
    assert (frame.loc[~won & matured, "won"] == "0").all() and frame.loc[~won & ~matured, "won"].isna().all()

    out = invoke("validate", "--config", config)
    open_rows = int((~won & ~matured).sum())
    assert f"{open_rows:,} open" in out and "0 error(s)" in out
    invoke("train", "--config", config)
    invoke("predict", "--config", config, "--out", tmp_path / "scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert set(scores["lead_id"]) == set(mql.loc[~won & ~matured, "mql_id"])
    assert scores["reasons_positive"].fillna("").str.len().gt(0).any()
