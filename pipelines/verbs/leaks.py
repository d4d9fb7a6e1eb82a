"""`train`'s leak guards: the checks of models.leakage run on the training set and on the leads `predict` would score,
and the reasons not to promote that they give.

The leads predict would score are the leads open at the training as-of (CRM mode: the reference population `train`
builds anyway) or the export's open rows (flat mode: `flat.open_values`, empty labels). A prebuilt training set has
none at hand, and a flat export without open rows has none at all: the missing-share check is then left out, and
said so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.models.leakage import Suspect, missing_share_gaps, separating_features
from leadscore.pipelines.config import Settings

log = logging.getLogger(__name__)


@dataclass
class LeakReport:
    """What the leak guards found, and whether `features.allow_suspect` keeps each finding from blocking."""

    suspects: list[Suspect]
    allowed: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def blocking(self) -> list[str]:
        """Suspect features not allowed, once each, in the order found."""
        return list(dict.fromkeys(s.feature for s in self.suspects if s.blocks and s.feature not in self.allowed))

    def lines(self) -> list[str]:
        """One line per feature and check, ending with what it means for promotion; then the notes."""
        out = []
        for s in self.suspects:
            if not s.blocks:
                status = "does not block promotion"
            elif s.feature in self.allowed:
                status = "kept: listed in features.allow_suspect"
            else:
                status = "blocks promotion unless listed in features.allow_suspect"
            out.append(f"warning: {s.text} ({status})")
        return out + self.notes

    def refusals(self) -> list[str]:
        """The reasons not to promote (none when every suspect is allowed)."""
        names = self.blocking
        if not names:
            return []
        return [f"suspect feature(s) {', '.join(names)} (list them in features.allow_suspect to keep them)"]

    def as_dict(self) -> list[dict]:
        return [
            {
                "feature": s.feature,
                "check": s.check,
                "text": s.text,
                "blocks": s.blocks and s.feature not in self.allowed,
                "allowed": s.feature in self.allowed,
            }
            for s in self.suspects
        ]


def flat_scoring_rows(settings: Settings) -> pd.DataFrame:
    """Flat mode: the export's open rows, built as predict builds them."""
    from leadscore.features.flat import flat_open_leads
    from leadscore.pipelines.intake.flat_source import load_flat_export

    return flat_open_leads(load_flat_export(settings), settings.flat.spec())


def check_leaks(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str],
    dev: np.ndarray,
    holdout: np.ndarray,
    scored: pd.DataFrame | None,
    scored_name: str = "leads predict would score",
) -> LeakReport:
    """Both checks with the configured thresholds; `scored` holds the rows predict would score (None: unknown),
    `scored_name` says what they are."""
    thresholds = settings.features.leak_thresholds()
    suspects = separating_features(
        frame,
        features=features,
        categorical=categorical,
        dev=dev,
        holdout=holdout,
        thresholds=thresholds,
        weights=frame.get("sample_weight"),  # CRM snapshots: every lead counts once
    )
    notes = []
    if scored is None or scored.empty:
        why = "no open lead to compare with" if scored is not None else "no scoring population at hand"
        notes.append(f"leak guard: missing shares of training rows and scored leads not compared ({why})")
    else:
        suspects += missing_share_gaps(frame, scored, features=features, thresholds=thresholds, scored_name=scored_name)
    allowed = set(settings.features.allow_suspect)
    unknown = sorted(allowed - set(features))
    if unknown:
        log.warning("features.allow_suspect names %s, which this model does not use", unknown)
    return LeakReport(suspects, allowed & set(features), notes)
