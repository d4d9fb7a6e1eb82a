"""Score movement for `leadscore predict`: each scored lead against its previous production run in the score history.

The pure work (parts, wording, rounding) is `models.movement`; here the previous runs are read, the current model
lends its calibration (how many points a unit of log-odds is worth between two margins), and the two columns are put
beside the score and the reasons.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.features.build import feature_specs
from leadscore.models.movement import score_movement
from leadscore.models.scores import score_points
from leadscore.pipelines.config import Settings
from leadscore.pipelines.outputs.history import previous_runs

log = logging.getLogger(__name__)

MOVEMENT_OUTPUTS = ("score_change", "change_reasons")


def with_explained(scores: pd.DataFrame, explained: pd.DataFrame | None) -> pd.DataFrame:
    """The scores with each lead's margin and top contributions beside them (what the history keeps)."""
    if explained is None:
        return scores
    return scores.merge(explained, on="lead_id", how="left", validate="one_to_one")


def add_score_movement(
    settings: Settings,
    scores: pd.DataFrame,
    explained: pd.DataFrame | None,
    model,
    *,
    as_of: pd.Timestamp,
    specs: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """`scores` with `score_change` (after `score`) and `change_reasons` (after the reasons) against each lead's
    latest production run before `as_of`; also the counts for the run's summary. `specs`: the features' words
    (default the lead features'; a level's own for its rows, keyed by `lead_id` all the same)."""
    previous = previous_runs(settings, as_of, scores["lead_id"].astype("string"))
    tally = MovementTally()
    out = with_movement(settings, scores, explained, model, previous=previous, tally=tally, specs=specs)
    tally.note_unexplained()
    return out, tally.summary()


def with_movement(
    settings: Settings,
    scores: pd.DataFrame,
    explained: pd.DataFrame | None,
    model,
    *,
    previous: pd.DataFrame,
    tally: MovementTally,
    specs: dict | None = None,
) -> pd.DataFrame:
    """`scores` (all of a run's, or a block of them) with their movement against `previous` (`previous_runs` of
    their leads, or more); the counts added to `tally`. `specs`: the features' words (default the lead features')."""
    current = with_explained(scores[["lead_id", "score", "model_name", "model_version"]], explained)
    if explained is None:  # this run kept no contributions: changes without reasons
        current = current.assign(margin=np.nan, top_contributions=None)
    current["lead_id"] = current["lead_id"].astype("string")

    def points_of_margin(margin: np.ndarray) -> np.ndarray:
        # differences of the score do not depend on the base rate: any rate gives the same points between margins
        return score_points(model.probability_of_margin(margin), 0.5)

    specs = feature_specs(settings.feature_params()) if specs is None else specs
    moved = score_movement(current, previous, specs, points_of_margin=points_of_margin)
    tally.add(current, previous, moved)
    out = scores.copy()
    out.insert(out.columns.get_loc("score") + 1, "score_change", moved["score_change"].array)
    after = out.columns.get_loc("reasons_negative") + 1 if "reasons_negative" in out else len(out.columns)
    out.insert(after, "change_reasons", moved["change_reasons"].array)
    return out


@dataclass
class MovementTally:
    """A run's movement counts, gathered over its blocks of scores."""

    compared: int = 0
    moved: int = 0
    first_scored: int = 0
    unexplained: int = 0  # moves without reasons: their previous run (or this one) kept no contributions
    previous_as_of: set[str] = field(default_factory=set)

    def add(self, current: pd.DataFrame, previous: pd.DataFrame, moved: pd.DataFrame) -> None:
        change = moved["score_change"]
        self.compared += int(change.notna().sum())
        self.moved += int((change.fillna(0) != 0).sum())
        self.first_scored += int(change.isna().sum())
        self.previous_as_of |= {t.isoformat() for t in previous["as_of"].drop_duplicates()}
        stored = previous.set_index("lead_id")["top_contributions"].reindex(current["lead_id"].to_numpy())
        lacking = stored.isna().to_numpy() | current["top_contributions"].isna().to_numpy()
        self.unexplained += int(((change.fillna(0) != 0).to_numpy() & lacking).sum())

    def note_unexplained(self) -> None:
        """Say once how many moves have no reasons because a run kept no contributions (an older history, the
        Spark engine before issue 32, or `history.contributions_kept = 0`)."""
        if self.unexplained:
            log.info(
                "score movement: %d lead(s) moved without change_reasons: their previous run (or this one) kept no "
                "contributions (a history written before score movement or by an older Spark run, or "
                "history.contributions_kept = 0); their score_change is exact",
                self.unexplained,
            )

    def summary(self) -> dict:
        return {
            "compared": self.compared,
            "moved": self.moved,
            "first_scored": self.first_scored,
            "previous_as_of": sorted(self.previous_as_of)[-3:],
        }
