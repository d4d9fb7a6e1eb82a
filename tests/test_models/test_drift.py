"""Drift: the population stability index against the training profile, whole or gathered chunk by chunk."""

import numpy as np
import pandas as pd
import pytest

from leadscore.models.drift import population_stability, profile, psi


def test_psi_is_zero_on_the_same_population_and_large_on_a_shift():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], 5000)})
    reference = profile(frame, categorical=["c"])
    same = population_stability(reference, frame)
    assert same.max() < 1e-9
    shifted = population_stability(reference, frame.assign(x=frame["x"] + 2, c="z"))
    assert shifted["x"] > 1 and shifted["c"] > 1
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0


def test_stability_counts_by_hand_and_chunks_add_up_to_the_whole():
    from leadscore.models.drift import add_counts, stability_counts, stability_of_counts

    reference = {
        "x": {"kind": "numeric", "edges": [1.0, 2.0], "shares": [0.25, 0.25, 0.25, 0.25]},
        "c": {"kind": "categorical", "shares": {"a": 0.5, "(missing)": 0.5}},
    }
    frame = pd.DataFrame({"x": [0.5, 1.0, 1.5, 2.5, np.nan, 3.0], "c": ["a", None, "b", "a", "z", None]})
    counts = stability_counts(reference, frame)
    assert counts["x"].tolist() == [1, 2, 2, 1]  # below 1, [1, 2), 2 and above, missing
    assert counts["c"].tolist() == [2, 2, 2]  # a, (missing), others (b and z)
    chunked = add_counts(stability_counts(reference, frame.iloc[:4]), stability_counts(reference, frame.iloc[4:]))
    assert {k: v.tolist() for k, v in chunked.items()} == {k: v.tolist() for k, v in counts.items()}
    psi_values = stability_of_counts(reference, counts)
    assert psi_values["x"] == pytest.approx(psi([0.25] * 4, [1 / 6, 2 / 6, 2 / 6, 1 / 6]))
    assert psi_values["c"] == pytest.approx(psi([0.5, 0.5, 0.0], [2 / 6, 2 / 6, 2 / 6]))
