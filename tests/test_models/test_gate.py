"""The gate's decision on hand-made figures: who is promoted, and the exact line that says why."""

import pytest

from leadscore.models.gate import Comparison, GateEvidence, GateRules, decide

RULES = GateRules(metric="roc_auc", min_improvement=0.0, calibration_tolerance=0.01, baseline_margin=0.02)


def figures(roc_auc: float, ece: float = 0.02) -> dict[str, float]:
    return {"roc_auc": roc_auc, "ece": ece}


def evidence(challenger: float, champion: float | None, **kwargs) -> GateEvidence:
    comparison = None
    if champion is not None:
        comparison = Comparison(figures(challenger), figures(champion), "the champion as served, on 900 rows")
    return GateEvidence(
        ("2", "1" if champion is not None else None),
        holdout=figures(0.90),
        baselines=kwargs.pop("baselines", {"logistic_regression": figures(0.89), "rules_grade": figures(0.75)}),
        comparison=comparison,
        **kwargs,
    )


def test_a_better_new_recipe_is_promoted_and_the_line_shows_both_figures_and_the_baselines():
    verdict = decide(evidence(0.93, 0.92), RULES)
    assert verdict.promoted and verdict.refusals == ()
    assert verdict.text == (
        "gate: roc_auc challenger v2 0.9300 vs champion v1 0.9200 (the champion as served, on 900 rows), ECE 0.0200 "
        "vs 0.0200; on its holdout 0.9000 vs logistic_regression 0.8900, rules_grade 0.7500: promoted v2 "
        "(improvement > 0)"
    )
    assert verdict.figures == {
        "champion_roc_auc": 0.92,
        "champion_ece": 0.02,
        "challenger_roc_auc": 0.93,
        "challenger_ece": 0.02,
        "logistic_regression_roc_auc": 0.89,
        "rules_grade_roc_auc": 0.75,
    }


@pytest.mark.parametrize(
    ("challenger", "champion", "refresh", "reason"),
    [
        (0.92, 0.92, "", "tie"),
        (0.9205, 0.92, "", None),
        (0.91, 0.92, "", "improvement not > 0"),
        # a refresh (the champion's recipe on newer data) need only not be worse
        (0.92, 0.92, "newer data", None),
        (0.9151, 0.92, "newer data", None),
        (0.9149, 0.92, "newer data", "worse than the champion by 0.0051 (refresh tolerance 0.005)"),
    ],
)
def test_a_new_recipe_must_beat_the_champion_and_a_refresh_must_not_be_worse(challenger, champion, refresh, reason):
    verdict = decide(evidence(challenger, champion, refresh=refresh), RULES)
    assert verdict.promoted == (reason is None)
    assert verdict.refusals == (() if reason is None else (reason,))
    if reason is not None:
        assert verdict.text.endswith(f": champion v1 kept ({reason})")
    elif refresh:
        assert verdict.text.endswith(": promoted v2 (refresh: newer data)")


def test_min_improvement_is_the_bar_for_a_new_recipe_and_refresh_tolerance_the_slack_for_a_refresh():
    rules = GateRules(min_improvement=0.005, refresh_tolerance=0.0)
    assert not decide(evidence(0.924, 0.92), rules).promoted
    assert decide(evidence(0.926, 0.92), rules).promoted
    assert decide(evidence(0.92, 0.92, refresh="newer data"), rules).promoted
    assert not decide(evidence(0.9199, 0.92, refresh="newer data"), rules).promoted


def test_losing_to_a_baseline_on_its_own_holdout_refuses_a_challenger_and_warns_a_first_model():
    lost = {"logistic_regression": figures(0.95)}
    verdict = decide(evidence(0.93, 0.92, baselines=lost), RULES)
    assert not verdict.promoted
    assert verdict.text.endswith(
        "on its holdout 0.9000 vs logistic_regression 0.9500: champion v1 kept (worse than logistic_regression on "
        "its holdout by 0.0500 (margin 0.02))"
    )
    first = decide(evidence(0.93, None, baselines=lost), RULES)
    assert first.promoted
    assert first.text == (
        "gate: promoted v2: no champion yet (warning: worse than logistic_regression on its holdout by 0.0500 "
        "(margin 0.02))"
    )
    within = evidence(0.93, None, baselines={"logistic_regression": figures(0.915)})
    assert decide(within, RULES).text == "gate: promoted v2: no champion yet"


def test_older_data_and_worse_calibration_are_refused_whatever_the_ranking():
    verdict = decide(evidence(0.95, 0.92, older_data="older data than the champion's"), RULES)
    assert verdict.refusals == ("older data than the champion's",)
    worse_ece = Comparison(figures(0.95, ece=0.05), figures(0.92, ece=0.02), "rows")
    verdict = decide(_with(worse_ece), RULES)
    assert verdict.refusals == ("ECE worse by more than 0.01",)


def _with(comparison: Comparison) -> GateEvidence:
    return GateEvidence(("2", "1"), holdout=figures(0.9), comparison=comparison)


def test_another_check_adds_its_reason_and_promote_overrides_naming_every_reason():
    verdict = decide(evidence(0.93, 0.92), RULES).refuse("feature lead_status alone separates the labels")
    assert not verdict.promoted
    assert verdict.text.endswith(": champion v1 kept (feature lead_status alone separates the labels)")
    forced = decide(evidence(0.92, 0.92), RULES, override=True).refuse("leak")
    assert forced.promoted
    assert forced.text.endswith(": promoted v2: --promote given, overriding: tie; leak")
    assert forced.refusals == ("tie", "leak")


def test_a_champion_that_cannot_be_scored_is_kept_with_the_reason():
    unscored = GateEvidence(("2", "1"), holdout=figures(0.9), unscored="its recipe cannot be refit here (x)")
    verdict = decide(unscored, RULES)
    assert not verdict.promoted and verdict.text.endswith("champion v1 kept (its recipe cannot be refit here (x))")


def test_a_lower_is_better_gate_metric_reads_the_right_way():
    rules = GateRules(metric="log_loss")
    comparison = Comparison({"log_loss": 0.20, "ece": 0.02}, {"log_loss": 0.21, "ece": 0.02}, "rows")
    better = GateEvidence(("2", "1"), holdout={"log_loss": 0.2, "ece": 0.02}, comparison=comparison)
    assert decide(better, rules).promoted
    swapped = Comparison(comparison.champion, comparison.challenger, "rows")
    worse = GateEvidence(("2", "1"), holdout={"log_loss": 0.2, "ece": 0.02}, comparison=swapped)
    assert not decide(worse, rules).promoted
