"""Id lookups through Arrow give what pandas' isin / get_indexer give, missing values included."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.keys import is_in, positions


def test_positions_of_text_ids_with_missing_and_unknown_values():
    index = pd.Index(["L3", "L1", "L2"], dtype="string")
    values = pd.Series(["L1", None, "L9", "L3", "L1"], dtype="str")
    assert positions(values, index).tolist() == [1, -1, -1, 0, 1]
    assert positions(values, index).dtype == np.int64


def test_positions_of_non_text_ids_fall_back_to_get_indexer():
    assert positions(pd.Series([3, 1, 7]), pd.Index([1, 2, 3])).tolist() == [2, 0, -1]


def test_is_in_keeps_the_index_and_never_finds_missing_values():
    values = pd.Series(["a", None, "c", "b"], index=[10, 11, 12, 13], dtype="str")
    got = is_in(values, ["b", "a", None])
    assert got.index.tolist() == [10, 11, 12, 13]
    assert got.tolist() == [True, False, False, True]
    assert got.tolist() == values.isin(["a", "b"]).tolist()


def test_is_in_does_not_match_numbers_to_their_text():
    assert is_in(pd.Series([1, 2], dtype="object"), pd.Index(["1"])).tolist() == [False, False]


def test_positions_of_a_few_ids_in_a_large_index_hash_the_few():
    index = pd.Index([f"L{i}" for i in range(100)], dtype="str")
    values = pd.Series(["L42", None, "nope", "L0", "L42"], dtype="str")
    assert positions(values, index).tolist() == [42, -1, -1, 0, 42]
    assert positions(values.astype("string"), index).tolist() == [42, -1, -1, 0, 42]


def test_a_repeated_id_reads_its_first_position_whichever_side_is_hashed():
    index = pd.Index(["L1", "L2", "L1"] + [f"X{i}" for i in range(20)], dtype="str")
    few, many = pd.Series(["L1"], dtype="str"), pd.Series(["L1"] * 10, dtype="str")
    assert positions(few, index).tolist() == [0]  # the index hashed from the few
    assert positions(many, index).tolist() == [0] * 10  # the index hashed whole
