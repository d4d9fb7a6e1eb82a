"""The promotion gate's decision: the figures in, a verdict and its reasons out. Pure: no MLflow, no data.

Each check returns the reason it refuses the challenger, or nothing; the challenger is promoted when no check refuses
it. The first model (no champion yet) is not refused for losing to a baseline, only warned in the line. Another check
(e.g. a leak guard) adds its own reason with `GateDecision.refuse` or `decide(extra_refusals=...)`. `--promote`
(override) promotes whatever the checks say and keeps their reasons in the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from leadscore.models.evaluation import HIGHER_IS_BETTER

BASELINES = ("logistic_regression", "rules_grade", "crm_stage_probability")  # the last: opportunity level


@dataclass(frozen=True)
class GateRules:
    """What the challenger must do: `gate_*` settings of [model]."""

    metric: str = "roc_auc"
    min_improvement: float = 0.0
    calibration_tolerance: float = 0.01
    baseline_margin: float = 0.02
    # a refresh is judged by its evaluated fit, trained on development rows that may end before the champion's as-of,
    # against the champion as served: the comparison leans towards the champion, hence a little slack
    refresh_tolerance: float = 0.005


@dataclass(frozen=True)
class Comparison:
    """The champion and the challenger scored on the same rows (`basis` says which rows and which champion)."""

    challenger: dict[str, float]
    champion: dict[str, float]
    basis: str


@dataclass(frozen=True)
class GateEvidence:
    """Everything the decision reads. `comparison` is None when there is no champion, or when it could not be scored
    (`unscored` says why); `baselines` are the baselines' figures on the challenger's own holdout, beside
    `holdout`, the challenger's own figures there."""

    versions: tuple[str, str | None]  # (challenger, champion or None)
    holdout: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    comparison: Comparison | None = None
    unscored: str = ""
    refresh: str = ""  # why this is a refresh (the champion's recipe on newer data), or "" when it is not
    older_data: str = ""  # why the challenger's data is older than the champion's, or ""


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    text: str
    figures: dict
    refusals: tuple[str, ...] = ()
    # what the decision was made from, so that another check can add its reason
    evidence: GateEvidence | None = field(default=None, repr=False, compare=False)
    rules: GateRules = field(default_factory=GateRules, repr=False, compare=False)
    override: bool = field(default=False, repr=False, compare=False)
    extra_refusals: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def refuse(self, reason: str) -> GateDecision:
        """The same decision with one more reason to keep the champion (an override still promotes, naming it)."""
        assert self.evidence is not None, "a decision made by decide() can take more reasons"
        extra = (*self.extra_refusals, reason)
        return decide(self.evidence, self.rules, extra_refusals=extra, override=self.override)


def worse_by(value: float, reference: float, metric: str) -> float:
    """How much worse `value` is than `reference` on `metric` (negative when better)."""
    return (reference - value) if HIGHER_IS_BETTER[metric] else (value - reference)


def against_champion(evidence: GateEvidence, rules: GateRules) -> str | None:
    """A new recipe must beat the champion by more than min_improvement; a refresh must not be worse by more than
    refresh_tolerance."""
    c = evidence.comparison
    if c is None:
        return None if evidence.versions[1] is None else evidence.unscored
    metric = rules.metric
    if np.isnan(c.champion[metric]):
        return None
    loss = worse_by(c.challenger[metric], c.champion[metric], metric)
    if evidence.refresh:
        if loss <= rules.refresh_tolerance:
            return None
        return f"worse than the champion by {loss:.4f} (refresh tolerance {rules.refresh_tolerance:g})"
    if loss == 0:
        return "tie"
    if -loss <= rules.min_improvement:
        return f"improvement not > {rules.min_improvement:g}"
    return None


def against_calibration(evidence: GateEvidence, rules: GateRules) -> str | None:
    c = evidence.comparison
    if c is None or c.challenger["ece"] <= c.champion["ece"] + rules.calibration_tolerance:
        return None
    return f"ECE worse by more than {rules.calibration_tolerance:g}"


def against_baselines(evidence: GateEvidence, rules: GateRules) -> list[str]:
    """The challenger must not lose to logistic regression or the rules on its own holdout by more than the margin."""
    metric, reasons = rules.metric, []
    for name, figures in evidence.baselines.items():
        loss = worse_by(evidence.holdout[metric], figures[metric], metric)
        if loss > rules.baseline_margin:
            reasons.append(f"worse than {name} on its holdout by {loss:.4f} (margin {rules.baseline_margin:g})")
    return reasons


def against_older_data(evidence: GateEvidence, rules: GateRules) -> str | None:
    return evidence.older_data or None


def refusals_of(evidence: GateEvidence, rules: GateRules) -> list[str]:
    """Every reason to keep the champion, in the order they are told. With no champion yet the baselines only warn
    (`warnings_of`): there is nothing better to keep serving, and without a model `predict` cannot run at all."""
    reasons = [against_older_data(evidence, rules), against_champion(evidence, rules)]
    reasons += [against_calibration(evidence, rules)]
    if evidence.versions[1] is not None:
        reasons += against_baselines(evidence, rules)
    return [r for r in reasons if r]


def warnings_of(evidence: GateEvidence, rules: GateRules) -> list[str]:
    """What a first model is told instead of refused: losing to a baseline on its own holdout."""
    return against_baselines(evidence, rules) if evidence.versions[1] is None else []


def decide(
    evidence: GateEvidence, rules: GateRules, *, extra_refusals: Sequence[str] = (), override: bool = False
) -> GateDecision:
    """Promote when nothing refuses (or when overridden), with one line that shows the figures and the reasons."""
    refusals = (*refusals_of(evidence, rules), *extra_refusals)
    challenger, champion = evidence.versions
    promoted = override or not refusals
    if not promoted:
        verdict = _kept(refusals, champion)
    elif override:
        verdict = f"promoted v{challenger}: --promote given" + (
            f", overriding: {'; '.join(refusals)}" if refusals else ""
        )
    elif champion is None:
        warnings = warnings_of(evidence, rules)
        verdict = f"promoted v{challenger}: no champion yet" + (
            f" (warning: {'; '.join(warnings)})" if warnings else ""
        )
    elif evidence.refresh:
        verdict = f"promoted v{challenger} (refresh: {evidence.refresh})"
    else:
        verdict = f"promoted v{challenger} (improvement > {rules.min_improvement:g})"
    # a first model's figures are the holdout table train prints: its line is the verdict alone
    text = f"gate: {verdict}" if champion is None else f"gate: {figures_text(evidence, rules)}: {verdict}"
    return GateDecision(
        promoted, text, figures_of(evidence, rules), refusals, evidence, rules, override, tuple(extra_refusals)
    )


def _kept(refusals: Sequence[str], champion: str | None = None) -> str:
    who = f"champion v{champion} kept" if champion is not None else "not promoted"
    return f"{who} ({'; '.join(refusals)})"


def figures_text(evidence: GateEvidence, rules: GateRules) -> str:
    """Both real figures on the same rows, how they were obtained, and the baselines on the challenger's holdout."""
    metric = rules.metric
    challenger, champion = evidence.versions
    c = evidence.comparison
    if c is not None:
        head = (
            f"{metric} challenger v{challenger} {c.challenger[metric]:.4f} vs champion v{champion} "
            f"{c.champion[metric]:.4f} ({c.basis}), ECE {c.challenger['ece']:.4f} vs {c.champion['ece']:.4f}"
        )
    else:
        head = f"{metric} challenger v{challenger} {evidence.holdout[metric]:.4f} on its holdout"
    if evidence.baselines:
        shown = ", ".join(f"{name} {f[metric]:.4f}" for name, f in evidence.baselines.items())
        head += f"; on its holdout {evidence.holdout[metric]:.4f} vs {shown}"
    return head


def figures_of(evidence: GateEvidence, rules: GateRules) -> dict[str, float]:
    """The numbers behind the line, for MLflow metrics (`gate.<name>`)."""
    metric, figures = rules.metric, {}
    c = evidence.comparison
    if c is not None:
        figures |= {f"champion_{metric}": c.champion[metric], "champion_ece": c.champion["ece"]}
        figures |= {f"challenger_{metric}": c.challenger[metric], "challenger_ece": c.challenger["ece"]}
    figures |= {f"{name}_{metric}": f[metric] for name, f in evidence.baselines.items()}
    return {k: float(v) for k, v in figures.items()}
