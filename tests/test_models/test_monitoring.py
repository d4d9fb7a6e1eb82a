"""Closing-the-loop tables on hand-made histories, leads and touches with known answers."""

import numpy as np
import pandas as pd
import pytest

from leadscore.models import monitoring as m
from leadscore.pipelines.intake.validation import parse_timestamps

H = pd.Timedelta(days=90)
END = pd.Timestamp("2025-12-31 23:59:59", tz="UTC")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC") if pd.Timestamp(text).tz else pd.Timestamp(text, tz="UTC")


def history(rows) -> pd.DataFrame:
    """rows: (lead, as_of, probability, cell, sla_hours or None)."""
    frame = pd.DataFrame(rows, columns=["lead_id", "as_of", "probability", "cell", "sla"])
    frame["as_of"] = frame["as_of"].map(ts)
    frame["due_by"] = frame["as_of"] + pd.to_timedelta(frame.pop("sla").astype("float64"), unit="h")
    return frame.assign(
        score=(frame["probability"] * 100).round().astype("int64"),
        stage="MQL",
        action=np.where(frame["due_by"].notna(), "sales call", "nurture"),
        model_name="m",
        model_version="1",
    )


def opportunities(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["lead_id", "created_at", "closed_at", "status"])
    for column in ("created_at", "closed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def test_realized_outcomes_label_matured_runs_like_training_rows():
    hist = history(
        [
            ("L1", "2025-06-01", 0.9, "A1", 24),
            ("L2", "2025-06-01", 0.5, "B2", 48),
            ("L3", "2025-06-01", 0.1, "D4", None),
            ("L4", "2025-06-01", 0.3, "C3", None),
            ("L1", "2025-11-01", 0.8, "A1", 24),  # horizon not over by END
        ]
    )
    opps = opportunities(
        [
            ("L1", "2025-06-20", "2025-07-15", "won"),  # won inside the horizon
            ("L2", "2025-06-20", "2025-09-15", "won"),  # won after 90 days: not a conversion of this score
            ("L3", "2025-06-10", "2025-07-01", "lost"),
        ]
    )
    out = m.realized_outcomes(hist, opps, horizon=H, data_end=END).set_index("lead_id")
    assert list(out.index) == ["L1", "L2", "L3", "L4"]
    assert out["converted"].to_dict() == {"L1": 1, "L2": 0, "L3": 0, "L4": 0}
    # deciles within the run of 4 rows: ranks 4, 3, 1, 2 -> ceil(pct * 10)
    assert out["decile"].to_dict() == {"L1": 10, "L2": 8, "L3": 3, "L4": 5}
    by_cell = m.conversion_by(out.reset_index(), "cell").set_index("cell")
    assert by_cell.loc["A1", ["leads", "conversions", "conversion_rate"]].tolist() == [1, 1, 1.0]


def test_deciles_are_taken_within_each_run():
    hist = history(
        [(f"L{i}", "2025-01-01", i / 100, "A1", None) for i in range(20)]
        + [(f"K{i}", "2025-02-01", 0.5 + i / 100, "A1", None) for i in range(10)]
    )
    deciles = m.score_deciles(hist)
    assert deciles[:20].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10]
    assert deciles[20:].tolist() == list(range(1, 11))


def test_live_figures_on_a_known_ranking():
    outcomes = pd.DataFrame({"converted": [1, 0, 1, 0], "probability": [0.9, 0.8, 0.7, 0.1]}).assign(
        lead_id=["L1", "L2", "L3", "L4"], as_of=ts("2025-01-01"), model_name="m", model_version="1"
    )
    figures = m.live_figures(outcomes)
    assert figures["leads"] == figures["scores"] == 4 and figures["conversions"] == 2
    assert figures["roc_auc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs in order


def test_handover_is_the_first_run_that_routed_the_lead_to_sales():
    hist = history(
        [
            ("L1", "2025-06-01", 0.2, "B4", None),
            ("L1", "2025-06-08", 0.6, "A2", 48),
            ("L1", "2025-06-15", 0.7, "A1", 24),
            ("L2", "2025-06-08", 0.1, "D4", None),
        ]
    )
    handed = m.handovers(hist)
    assert handed["lead_id"].tolist() == ["L1"]
    row = handed.iloc[0]
    assert (row["handed_at"], row["cell"], row["sla_hours"]) == (ts("2025-06-08"), "A2", 48.0)
    assert row["week"] == ts("2025-06-02")  # the Monday of that week


def leads_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["lead_id", "sales_accepted_at", "sales_rejected_at", "rejection_reason"])
    for column in ("sales_accepted_at", "sales_rejected_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def test_sales_decisions_count_only_within_the_window_after_the_handover():
    hist = history(
        [(f"L{i}", "2025-06-02", 0.5, "A1" if i < 3 else "B2", 24) for i in range(6)]
        + [("L9", "2025-12-20", 0.5, "A1", 24)]
    )
    leads = leads_frame(
        [
            ("L0", "2025-06-05", None, None),  # accepted within 30 days
            ("L1", "2025-08-01", None, None),  # accepted, but after the window: undecided in it
            ("L2", None, "2025-06-10", "no budget"),  # rejected with a reason
            ("L3", None, "2025-06-03", None),  # rejected, no reason given
            ("L4", "2025-05-01", None, None),  # accepted before the handover: nothing handed over
            ("L5", None, None, None),  # no decision
            ("L9", "2025-12-21", None, None),  # window not over by the end of the data: not counted yet
        ]
    )
    decisions = m.sales_decisions(m.handovers(hist), leads, window=pd.Timedelta(days=30), data_end=END)
    assert sorted(decisions["lead_id"]) == ["L0", "L1", "L2", "L3", "L5"]
    by_cell = m.acceptance_by(decisions, "cell").set_index("cell")
    assert by_cell.loc["A1"].tolist() == [3, 1, 1, 1, pytest.approx(1 / 3)]
    assert by_cell.loc["B2"].tolist() == [2, 0, 1, 1, 0.0]
    reasons = m.rejection_reasons(decisions).set_index("rejection_reason")["rejections"].to_dict()
    assert reasons == {"no budget": 1, "(none given)": 1}


def test_sla_is_elapsed_time_across_daylight_saving_changes():
    """New York: clocks go forward on 9 March 2025 and back on 2 November 2025."""
    hist = history(
        [
            ("S1", "2025-03-08T12:00:00-05:00", 0.9, "A1", 24),  # due 2025-03-09 13:00 EDT
            ("S2", "2025-03-08T12:00:00-05:00", 0.9, "A1", 24),
            ("F1", "2025-11-01T12:00:00-04:00", 0.9, "A1", 24),  # due 2025-11-02 11:00 EST
            ("F2", "2025-11-01T12:00:00-04:00", 0.9, "A1", 24),
            ("N1", "2025-11-01T12:00:00-04:00", 0.9, "B2", 48),  # never touched
        ]
    )
    # touches as a CRM export writes them: local wall-clock time without an offset, parsed in the project's zone
    local = pd.Series(
        [
            "2025-03-09 12:30:00",  # 23.5 h later (the wall clock says 24.5 h): within
            "2025-03-09 13:30:00",  # 24.5 h: late
            "2025-11-02 10:30:00",  # 23.5 h (wall clock 22.5 h): within
            "2025-11-02 11:30:00",  # 24.5 h (wall clock 23.5 h): late
            "2025-10-01 09:00:00",
        ]
    )  # before N1's handover: does not count
    touches = pd.DataFrame(
        {"lead_id": ["S1", "S2", "F1", "F2", "N1"], "touched_at": parse_timestamps(local, timezone="America/New_York")}
    )
    touched = m.first_touches(m.handovers(hist), touches, data_end=END).set_index("lead_id")
    assert touched["hours_to_first_touch"].round(6).to_dict() == pytest.approx(
        {"S1": 23.5, "S2": 24.5, "F1": 23.5, "F2": 24.5, "N1": np.nan}, nan_ok=True
    )
    assert touched["within_sla"].to_dict() == {"S1": True, "S2": False, "F1": True, "F2": False, "N1": False}
    by_cell = m.sla_by(touched.reset_index(), "cell").set_index("cell")
    assert by_cell.loc[
        "A1", ["handed_over", "within_sla", "sla_compliance", "median_hours_to_first_touch"]
    ].tolist() == [4, 2, 0.5, 24.0]
    assert by_cell.loc["B2", "never_touched"] == 1


def test_sla_waits_for_the_deadline_to_pass():
    hist = history([("L1", "2025-12-31T12:00:00", 0.9, "A1", 24)])
    touched = m.first_touches(m.handovers(hist), pd.DataFrame({"lead_id": [], "touched_at": []}), data_end=END)
    assert touched.empty


def test_acceptance_drop_compares_the_latest_week_with_all_earlier_ones():
    weekly = pd.DataFrame(
        {
            "week": pd.to_datetime(["2025-06-02", "2025-06-09", "2025-06-16"], utc=True),
            "handed_over": [10, 30, 20],
            "accepted": [5, 15, 6],
        }
    )
    weekly["acceptance_rate"] = weekly["accepted"] / weekly["handed_over"]
    assert m.acceptance_drop(weekly) == pytest.approx(20.0)  # 50 % before, 30 % in the latest week
    assert m.acceptance_drop(weekly.iloc[:1]) is None


def test_a_shadow_models_routes_are_no_handovers():
    """Champion v1 routes L1 and L2 (both accepted); shadow v2 scored beside it and routed all four. Before: four
    handovers, two accepted, 50 %; sales only ever received L1 and L2: 100 %."""
    champion = history(
        [("L1", "2025-06-02", 0.9, "A1", 24), ("L2", "2025-06-02", 0.8, "A1", 24)]
        + [("L3", "2025-06-02", 0.1, "D4", None), ("L4", "2025-06-02", 0.1, "D4", None)]
    ).assign(production=True)
    shadow = history([(f"L{i}", "2025-06-02", 0.7, "A1", 24) for i in range(1, 5)]).assign(
        model_version="2", production=False
    )
    hist = pd.concat([shadow, champion], ignore_index=True)  # the shadow's rows first: order must not matter
    handed = m.handovers(hist)
    assert sorted(handed["lead_id"]) == ["L1", "L2"]
    from leadscore.pipelines.verbs.monitor import handed_rows  # every route sent (re-routes after rejection)

    assert set(handed_rows(hist)["model_version"]) == {"1"}
    leads = leads_frame([(f"L{i}", "2025-06-03" if i < 3 else None, None, None) for i in range(1, 5)])
    decisions = m.sales_decisions(handed, leads, window=pd.Timedelta(days=30), data_end=END)
    table = m.acceptance_by(decisions, "cell").set_index("cell")
    assert table.loc["A1", ["handed_over", "accepted", "acceptance_rate"]].tolist() == [2, 2, 1.0]


def test_a_lead_scored_by_many_runs_is_one_outcome():
    """3 leads scored by 70 weekly runs: 210 matured scores, 3 outcomes (before: 210, past a minimum of 200)."""
    runs = pd.date_range("2024-01-01", periods=70, freq="7D", tz="UTC")
    hist = history(
        [(lead, str(run.date()), p, "A1", None) for run in runs for lead, p in (("L1", 0.9), ("L2", 0.5), ("L3", 0.1))]
    )
    opps = opportunities([("L1", "2024-01-10", "2025-12-01", "won")])
    outcomes = m.realized_outcomes(hist, opps, horizon=H, data_end=END)
    figures = m.live_figures(outcomes)
    assert (figures["scores"], figures["leads"]) == (210, 3)
    picked = m.one_per_lead(outcomes)
    assert sorted(picked["lead_id"]) == ["L1", "L2", "L3"]
    # the draw is the spine's (seeded hash of lead and as_of): the same scores every time, whatever the row order
    shuffled = m.one_per_lead(outcomes.sample(frac=1, random_state=3))
    pd.testing.assert_frame_equal(
        picked.sort_values("lead_id").reset_index(drop=True), shuffled.sort_values("lead_id").reset_index(drop=True)
    )
    by_cell = m.conversion_by(picked, "cell")
    assert by_cell[["leads", "conversions"]].values.tolist() == [[3, int(picked["converted"].sum())]]


def test_one_outcome_per_lead_and_model():
    hist = pd.concat(
        [
            history([("L1", "2025-01-01", 0.9, "A1", None), ("L1", "2025-02-01", 0.8, "A1", None)]),
            history([("L1", "2025-01-01", 0.4, "A1", None)]).assign(model_version="2"),
        ],
        ignore_index=True,
    )
    outcomes = m.realized_outcomes(hist, opportunities([]), horizon=H, data_end=END)
    assert sorted(m.one_per_lead(outcomes)["model_version"]) == ["1", "2"]


@pytest.mark.parametrize(("minimum", "fires"), [(200, False), (3, True)])
def test_the_live_auc_alert_waits_for_enough_leads_not_scores(minimum, fires):
    """3 leads scored by 70 runs, ranked backwards: 210 scores, but 3 leads, short of a minimum of 200 leads."""
    from leadscore.pipelines.config import Settings
    from leadscore.pipelines.verbs.monitor import ModelInfo, Monitoring, _alerts, _record

    runs = pd.date_range("2024-01-01", periods=70, freq="7D", tz="UTC")
    hist = history(
        [(lead, str(run.date()), p, "A1", None) for run in runs for lead, p in (("L1", 0.1), ("L2", 0.5), ("L3", 0.9))]
    )
    # L1 wins a deal every month: each of its scores converts, whichever is drawn; L2 and L3 never do
    opps = opportunities(
        [("L1", "2024-01-01", str(day.date()), "won") for day in pd.date_range("2024-01-15", "2025-08-15", freq="30D")]
    )
    outcomes = m.realized_outcomes(hist, opps, horizon=H, data_end=END)
    record = _record(outcomes, ModelInfo("m", "1", ts("2023-12-31")))
    assert (record.scores, record.leads, record.conversions) == (210, 3, 1)
    settings = Settings.model_validate(
        {
            "tables": {"leads": {"path": "l.csv"}, "opportunities": {"path": "o.csv"}},
            "monitor": {"min_live_leads": minimum},
        }
    )
    empty = pd.DataFrame()
    result = Monitoring(END, None, "1", empty, outcomes, empty, empty, empty, empty, None, {}, empty, {}, [])
    assert ("live_roc_auc" in [a["alert"] for a in _alerts(settings, result, record)]) is fires


def test_rejected_leads_sent_to_sales_again_are_counted_per_run_with_and_without_new_activity():
    hist = history(
        [
            ("quiet", "2025-12-01", 0.6, "A1", 24),  # rejected before the run, nothing since: should not happen
            ("back", "2025-12-01", 0.6, "A1", 24),  # rejected, then a demo request before the run
            ("late", "2025-12-01", 0.6, "A1", 48),  # its new activity came after the run: not seen by it
            ("accepted", "2025-12-01", 0.6, "A1", 24),  # rejected, then accepted: sales' own way back
            ("nurtured", "2025-12-01", 0.6, "C4", None),  # rejected and kept out of sales: not a re-route
            ("quiet", "2025-12-08", 0.6, "A1", 24),
            ("fresh", "2025-12-08", 0.6, "A1", 24),  # never rejected
        ]
    ).astype({"lead_id": "string"})
    leads = pd.DataFrame(
        {
            "lead_id": pd.Series(["quiet", "back", "late", "accepted", "nurtured", "fresh"], dtype="string"),
            "sales_rejected_at": pd.to_datetime(["2025-11-20"] * 5 + [None], utc=True),
            "sales_accepted_at": pd.to_datetime([None, None, None, "2025-11-25", None, None], utc=True),
        }
    )
    activity = pd.DataFrame(
        {
            "lead_id": ["back", "late", "quiet"],
            "occurred_at": pd.to_datetime(["2025-11-28", "2025-12-03", "2025-11-19"], utc=True),
        }
    )
    table = m.reroutes_after_rejection(hist, leads, activity)
    assert table["as_of"].tolist() == [ts("2025-12-01"), ts("2025-12-08")]
    assert table[["rerouted", "after_new_activity", "without_new_activity"]].values.tolist() == [[3, 1, 2], [1, 0, 1]]
