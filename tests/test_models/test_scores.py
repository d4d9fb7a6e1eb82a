"""The 1-99 score: the rank of a lead's margin within a stored reference distribution."""

import numpy as np
import pytest

from leadscore.models.scores import rank_in, score_1_99, score_reference


def test_rank_counts_ties_as_half():
    reference = np.array([1.0, 2.0, 2.0, 3.0])
    assert rank_in(np.array([0.0, 1.0, 2.0, 3.0, 9.0]), reference).tolist() == [0.0, 0.125, 0.5, 0.875, 1.0]


def test_score_runs_from_1_to_99_and_marks_missing_margins():
    reference = score_reference(np.arange(1000.0), population="test")
    assert reference["size"] == 1000 and len(reference["quantiles"]) == 1000
    assert score_1_99(np.array([-5.0, 0.0, 499.5, 998.9, 5000.0, np.nan]), reference).tolist() == [1, 1, 50, 99, 99, -1]


def test_a_reference_population_scores_itself_evenly_and_is_summarised_by_quantiles():
    rng = np.random.default_rng(0)
    raw = rng.normal(-4, 1.5, 50_000)
    reference = score_reference(raw, population="50k")
    assert len(reference["quantiles"]) == 2001
    shares = np.bincount(score_1_99(raw, reference), minlength=100)[1:] / len(raw)
    assert shares.max() < 0.0125 and shares.min() > 0.0075  # each of 99 values holds about 1 %
    # the same margin gets the same score whatever else is in the run
    assert score_1_99(raw[:1], reference)[0] == score_1_99(raw, reference)[0]


def test_an_empty_reference_is_refused():
    with pytest.raises(ValueError, match="at least one finite score"):
        score_reference(np.array([np.nan]), population="none")
