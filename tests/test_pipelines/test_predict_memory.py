"""The memory-saving steps of reading, validating and scoring give exactly what the plain pandas steps gave."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.pipelines.intake.parsing import normalise_id_text, parse_time_column, recode_categories
from leadscore.pipelines.intake.sources import read_file
from leadscore.pipelines.verbs.scoring import _events_by_chunk, _sorted_by_score


def _scores(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    reasons = pd.Series(rng.choice(["visited pricing | demo", "é-mail opens: 3", "", "Seniority: vp"], n), dtype="str")
    reasons[rng.random(n) < 0.2] = np.nan
    return pd.DataFrame(
        {
            # ties in probability: the lead id decides, by code point ("L10" < "L9", "Z" < "a" < "é")
            "lead_id": pd.Series([f"{rng.choice(['L', 'a', 'Z', 'é'])}{i}" for i in range(n)], dtype="str"),
            "probability": rng.choice([0.1, 0.25, 0.5, 0.9], n),
            "stage": pd.Series(rng.choice(["mql", "sql", None], n), dtype="string"),
            "reasons_positive": reasons,
            "score": rng.integers(1, 100, n),
        }
    )


def test_sorted_by_score_is_sort_values_order_and_takes_the_columns_out():
    scores = _scores(500, seed=1)
    scores.index = scores.index + 1000  # labels as left by the filter of invalid probabilities
    expected = scores.sort_values(["probability", "lead_id"], ascending=[False, True], kind="stable")
    taken = scores.copy()
    pd.testing.assert_frame_equal(_sorted_by_score(taken), expected)
    assert list(taken.columns) == []  # each column left the unsorted frame once taken


def test_events_by_chunk_gives_each_chunk_its_events_and_no_event_twice():
    chunks = [pd.DataFrame({"lead_id": ["a", "b"]}), pd.DataFrame({"lead_id": ["c"]})]
    lead = pd.Categorical(["c", "a", None, "x", "b", "c", "a"], categories=["a", "b", "c", "x"])
    events = pd.DataFrame({"lead_id": lead, "n": range(7)})
    first, second = _events_by_chunk(events, chunks)
    assert first["n"].tolist() == [1, 4, 6]
    assert second["n"].tolist() == [0, 5]  # the missing lead and the unknown lead 'x' go to no chunk
    plain = events.assign(lead_id=events["lead_id"].astype("str"))
    assert [c["n"].tolist() for c in _events_by_chunk(plain, chunks)] == [[1, 4, 6], [0, 5]]


def test_parquet_timestamps_are_read_as_ns_unless_beyond_the_ns_range(tmp_path):
    stamps = pd.Series(pd.to_datetime(["2024-01-01 10:00:00.123", None, "2023-05-06 00:00:00.000"], utc=True)).astype(
        "datetime64[ms, UTC]"
    )
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"lead_id": ["a", "b", "a"], "occurred_at": pa.array(stamps)}), path)
    read = read_file(path, name="events", dictionary_columns=("lead_id",))
    assert str(read["occurred_at"].dtype) == "datetime64[ns, UTC]"
    assert read["occurred_at"].equals(stamps.astype("datetime64[ns, UTC]"))

    far = pa.array([1_700_000_000_000, 16_725_225_600_000], type=pa.timestamp("ms", tz="UTC"))  # 2023 and 2500
    pq.write_table(pa.table({"lead_id": ["a", "b"], "occurred_at": far}), path)
    read = read_file(path, name="events", dictionary_columns=("lead_id",))
    assert str(read["occurred_at"].dtype) == "datetime64[ms, UTC]"  # no overflow: validation rejects the row
    parsed = parse_time_column(read["occurred_at"])
    assert parsed.values.isna().tolist() == [False, True]
    assert parsed.reasons.tolist()[1] == "year out of range (1900-2199)"


def test_stored_timestamps_get_reasons_only_where_they_fail():
    naive = pd.Series(pd.to_datetime(["2024-11-03 01:30", "2024-06-01 12:00", None]))  # 01:30 occurs twice
    parsed = parse_time_column(naive, timezone="America/New_York")
    assert parsed.reasons.isna().tolist() == [False, True, True]
    assert parsed.reasons.iloc[0] == "ambiguous local time in America/New_York (daylight-saving change)"
    assert parsed.reasons.dropna().unique().tolist() == [parsed.reasons.iloc[0]]
    assert parsed.values.iloc[1] == pd.Timestamp("2024-06-01 16:00", tz="UTC")


@pytest.mark.parametrize("clean", [True, False])
def test_recoded_categories_keep_values_and_share_clean_codes(clean):
    levels = ["L1", "L2", "L3"] if clean else [" L2", "L1 ", "L1"]
    values = pd.Series(pd.Categorical.from_codes(np.array([2, 0, -1, 1, 2], dtype="int32"), categories=levels))
    recoded = recode_categories(values, normalise_id_text)
    expected = normalise_id_text(values.astype("string"))
    assert recoded.astype("string").tolist() == expected.tolist()
    assert recoded.cat.categories.is_monotonic_increasing
    assert np.shares_memory(recoded.array.codes, values.array.codes) == clean  # clean codes are not copied
