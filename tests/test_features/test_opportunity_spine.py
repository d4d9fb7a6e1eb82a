"""The opportunity spine: cutoffs over each deal's open life, won / lost labels within the horizon, censoring that
treats won and lost alike, and weights that make every deal count the same."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.opportunity_spine import build_opportunity_spine, opportunity_scoring_spine
from leadscore.features.spine import CutoffPolicy

UTC = "UTC"
POLICY = CutoffPolicy(delay_days=1, every_days=7, max_snapshots=6, horizon_days=30)
AS_OF = pd.Timestamp("2025-03-31", tz=UTC)


def deals(rows: list[tuple[str, str, str | None, str]]) -> pd.DataFrame:
    ids, created, closed, status = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "opportunity_id": list(ids),
            "lead_id": [f"L{i[1:]}" for i in ids],
            "created_at": pd.to_datetime(list(created), utc=True),
            "closed_at": pd.to_datetime(list(closed), utc=True),
            "status": list(status),
        }
    )


BOOK = deals(
    [
        ("O1", "2025-01-01", "2025-01-20", "won"),  # cutoffs Jan 2, 9, 16: each sees the win within 30 days
        ("O2", "2025-03-10", None, "open"),  # every horizon runs past as_of: censored
        ("O3", "2025-01-01", "2025-01-10", "lost"),  # cutoffs Jan 2, 9: lost
        ("O4", "2025-02-20", "2025-03-30", "won"),  # Feb 21: not within 30 days; Feb 28: won; Mar 7: censored
    ]
)


def test_rows_labels_and_weights_of_a_small_book():
    spine, stats = build_opportunity_spine(BOOK, POLICY, as_of=AS_OF)
    expected = pd.DataFrame(
        {
            "opportunity_id": ["O1", "O3", "O1", "O3", "O1", "O4", "O4"],
            "cutoff_time": pd.to_datetime(
                ["2025-01-02", "2025-01-02", "2025-01-09", "2025-01-09", "2025-01-16", "2025-02-21", "2025-02-28"],
                utc=True,
            ),
            "converted": [1, 0, 1, 0, 1, 0, 1],
            "sample_weight": [1 / 3, 1 / 2, 1 / 3, 1 / 2, 1 / 3, 1 / 2, 1 / 2],
        }
    ).astype({"converted": "int8"})
    pd.testing.assert_frame_equal(spine[expected.columns], expected, check_dtype=False)
    assert spine["converted"].dtype == "int8"
    # O2: Mar 11, 18, 25 and O4: Mar 7, 14, 21, 28 run past as_of
    assert (stats.censored, stats.rows, stats.positives, stats.leads) == (7, 7, 4, 3)


def test_scoring_spine_is_the_deals_open_at_as_of():
    spine = opportunity_scoring_spine(BOOK, as_of=pd.Timestamp("2025-03-15", tz=UTC))
    assert list(spine["opportunity_id"]) == ["O2", "O4"]
    assert (spine["cutoff_time"] == pd.Timestamp("2025-03-15", tz=UTC)).all()


def test_a_deal_closing_at_the_cutoff_is_no_longer_open():
    book = deals([("O1", "2025-01-01", "2025-01-09", "won")])
    spine = opportunity_scoring_spine(book, as_of=pd.Timestamp("2025-01-09", tz=UTC))
    assert spine.empty


day = st.integers(min_value=0, max_value=120)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(day, st.integers(min_value=0, max_value=80), st.booleans()), min_size=1, max_size=8))
def test_censoring_and_rows_do_not_depend_on_the_outcome(book):
    """Winning or losing a deal (at the same time) changes labels only: which rows are kept, censored or weighed how
    is the same, so no row is kept or dropped for its outcome."""
    start = pd.Timestamp("2025-01-01", tz=UTC)
    as_of = start + pd.Timedelta(days=150)

    def frame(outcome: str) -> pd.DataFrame:
        rows = [
            (f"O{i}", start + pd.Timedelta(days=c), start + pd.Timedelta(days=c + life) if closes else None)
            for i, (c, life, closes) in enumerate(book)
        ]
        return deals([(i, str(c), None if z is None else str(z), outcome if z else "open") for i, c, z in rows])

    won, won_stats = build_opportunity_spine(frame("won"), POLICY, as_of=as_of)
    lost, lost_stats = build_opportunity_spine(frame("lost"), POLICY, as_of=as_of)
    keys = ["opportunity_id", "cutoff_time", "sample_weight"]
    pd.testing.assert_frame_equal(won[keys], lost[keys])
    assert won_stats.censored == lost_stats.censored and won_stats.rows == lost_stats.rows
    assert lost["converted"].sum() == 0
    # a win counts only inside (cutoff, cutoff + horizon]
    closed = frame("won").set_index("opportunity_id")["closed_at"]
    inside = (closed.reindex(won["opportunity_id"]).to_numpy() <= won["cutoff_time"] + POLICY.horizon).astype(int)
    assert (won["converted"].to_numpy() == inside).all()
