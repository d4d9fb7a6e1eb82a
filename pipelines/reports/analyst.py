"""`leadscore explain`: what drives conversion, how the grades convert, and how the model compares with the rules.

The functions here return tables and matplotlib figures, used by the HTML report and by the analyst notebook alike.
Plots and tables speak the words of the reasons in the scores file: each feature's plain-language description,
numbers in natural units (employees, not log10), missing values labelled "not known".
"""

from __future__ import annotations

import base64
import io
import logging
import re
from dataclasses import dataclass, field
from importlib import resources

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score

from leadscore.features.registry import all_features
from leadscore.models.drift import population_stability, profile
from leadscore.models.evaluation import evaluate, metrics_table
from leadscore.models.leakage import LeakThresholds, separating_features
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData, load_crm
from leadscore.pipelines.training_set import TrainingSet, build_training_set
from leadscore.pipelines.verbs.train import Split, baseline_scores, holdout_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewLevel:
    """What a report reviews: the level's name, the id column of one row and the word for it in the text, its feature
    specs (None: the lead registry) and its own baselines scored on the holdout (name -> probability)."""

    name: str = "lead"
    key: str = "lead_id"
    subject: str = "lead"
    specs: dict | None = None
    baselines: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def feature_specs(self) -> dict:
        return all_features() if self.specs is None else self.specs


@dataclass
class Review:
    settings: Settings
    model: object
    wrapper: object
    model_name: str
    model_version: str
    training: TrainingSet
    split: Split
    data: CrmData | None
    graded: pd.DataFrame | None
    # the recipe's evaluated fit (development rows only): the registered model was refit on the holdout too
    holdout_model: object | None = None
    level: ReviewLevel = field(default_factory=ReviewLevel)

    @property
    def holdout(self) -> pd.DataFrame:
        return self.training.frame.iloc[self.split.holdout]

    @property
    def X_holdout(self) -> pd.DataFrame:
        return self.holdout[list(self.model.feature_names_in_)]

    @property
    def probability(self) -> np.ndarray:
        if not hasattr(self, "_probability"):
            model = self.holdout_model if self.holdout_model is not None else self.model
            self._probability = model.predict_proba(self.X_holdout)[:, 1]
        return self._probability


def load_review(settings: Settings, *, model_uri: str | None = None) -> Review:
    """The model from the registry and the training set it was evaluated on, split the same way as in training."""
    loaded = registered_model(settings, model_uri)
    data = load_crm(settings) if settings.mode == "crm" else None
    training = build_training_set(settings, data=data)
    graded = None
    if data is not None:
        from leadscore.models.grades import grade_spine

        graded = grade_spine(
            training.frame[["lead_id", "cutoff_time", "converted"]],
            data.tables,
            settings.grades,
            settings.feature_params(),
        )
    return review_of(settings, loaded, training, data, graded=graded)


def registered_model(settings: Settings, model_uri: str | None = None) -> tuple:
    """(model, wrapper, registered name, version, uri) of `model_uri`, default the champion of `settings`' name."""
    from leadscore.pipelines.outputs import tracking

    tracking.use_store(settings)
    uri = model_uri or f"models:/{settings.mlflow.registered_model}@champion"
    model, wrapper = tracking.load_conversion_model(uri)
    name, version = tracking.resolve_version(uri)
    return model, wrapper, name, version, uri


def review_of(
    settings: Settings,
    loaded: tuple,
    training: TrainingSet,
    data: CrmData | None,
    *,
    graded: pd.DataFrame | None = None,
    level: ReviewLevel | None = None,
    split: Split | None = None,
) -> Review:
    """The review of a `registered_model` on the training set it was evaluated on (split as in training unless
    `split` is given), checked to hold the model's features."""
    from leadscore.pipelines.intake.ground import check_model_features

    model, wrapper, name, version, uri = loaded
    check_model_features(model, training.frame.columns, uri, feature_set=getattr(wrapper, "feature_set", None))
    return Review(
        settings,
        model,
        wrapper,
        name or uri,
        version,
        training,
        split if split is not None else holdout_split(settings, training),
        data,
        graded,
        _evaluated_fit(name, version),
        level or ReviewLevel(),
    )


def _evaluated_fit(name: str, version: str):
    """The evaluated fit logged beside a registered version (None for models trained before it was logged)."""
    from leadscore.pipelines.outputs import tracking

    if not name or not version:
        return None
    client = tracking.mlflow_module().MlflowClient()
    try:
        run_id = client.get_model_version(name, version).run_id
        return tracking.load_conversion_model(f"runs:/{run_id}/evaluated_model")[0]
    except Exception:  # an older run without it: the holdout figures fall back to the registered model
        log.info("no evaluated fit logged for %s v%s: holdout figures use the registered model", name, version)
        return None


# -- model summary -----------------------------------------------------------------------------------------------
def summary_table(review: Review) -> pd.DataFrame:
    frame, split = review.training.frame, review.split
    times = frame["cutoff_time"].dropna()
    rows = {
        "model": f"{review.model_name} v{review.model_version}",
        "data window (cutoffs)": f"{times.min():%Y-%m-%d} .. {times.max():%Y-%m-%d}" if len(times) else "row order",
        "training rows (before the holdout)": f"{len(split.dev):,}",
        "holdout rows (latest)": f"{len(split.holdout):,}",
        "positives (all rows)": f"{int(frame['converted'].sum()):,} ({frame['converted'].mean():.1%})",
        "fitted model": review.model.describe(),
        "calibration": review.model.calibration_method_,
        "base rate (score 50)": _base_rate_text(review),
        "mean predicted / observed (holdout)": mean_predicted_text(review),
    }
    return pd.DataFrame({"value": rows})


def base_rate(review: Review) -> float:
    """The rate the 1-99 score reads probabilities against: the model's own, else (an older model) the training
    rate quoted with its reasons, else the holdout's mean probability."""
    from leadscore.models.scores import base_rate_of

    rate, _ = base_rate_of(review.model, getattr(review.wrapper, "reason_reference", None))
    return rate if rate is not None else float(np.clip(review.probability.mean(), 1e-6, 1 - 1e-6))


def _base_rate_text(review: Review) -> str:
    from leadscore.models.scores import base_rate_of

    rate, source = base_rate_of(review.model, getattr(review.wrapper, "reason_reference", None))
    if rate is None:
        return f"{base_rate(review):.2%} (the holdout's mean probability: this model stores none)"
    return f"{rate:.2%} ({source})"


def metrics_vs_baselines(review: Review) -> pd.DataFrame:
    """The model's holdout metrics beside logistic regression, (CRM mode, leads) the rules-only grade and the level's
    own baselines (opportunities: the CRM's stage probability)."""
    cells = None if review.graded is None else review.graded["cell"]
    scores = {"lightgbm_calibrated": review.probability}
    scores |= baseline_scores(review.settings, review.training, review.split, cells)
    scores |= review.level.baselines
    return metrics_table({k: evaluate(review.holdout["converted"], p) for k, p in scores.items()})


def mean_predicted_text(review: Review) -> str:
    """Mean predicted probability against the observed rate on the holdout: right on average at 1.00x."""
    p, y = review.probability, review.holdout["converted"].to_numpy()
    return f"{p.mean():.4f} / {y.mean():.4f} = {p.mean() / y.mean():.2f}x"


def calibration_figure(review: Review):
    y, p = review.holdout["converted"].to_numpy(), review.probability
    frame = pd.DataFrame({"y": y, "p": p})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), 10, labels=False)
    table = frame.groupby("bin").agg(predicted=("p", "mean"), observed=("y", "mean"))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(table["predicted"], table["observed"], "o-", label="model (deciles)")
    top = max(table["predicted"].max(), table["observed"].max()) * 1.1
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="predicted probability",
        ylabel="observed conversion rate",
        title=f"Calibration on the time-ordered holdout\nmean predicted / observed: {mean_predicted_text(review)}",
    )
    ax.legend()
    return fig


DECILE_LABEL = "decile of the probability (10 = highest)"  # one meaning in every chart and table of the report


def calibration_by_decile(review: Review) -> pd.DataFrame:
    """The calibration figure's points as a table, its deciles numbered as every chart numbers them."""
    from leadscore.models.evaluation import calibration_table

    table = calibration_table(review.holdout["converted"], review.probability)
    return table.set_index("decile").rename_axis(DECILE_LABEL)


def gains_figure(review: Review):
    y = review.holdout["converted"].to_numpy()
    order = np.argsort(-review.probability, kind="stable")
    captured = np.cumsum(y[order]) / max(y.sum(), 1)
    share = np.arange(1, len(y) + 1) / len(y)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(share, captured, label="model")
    left.plot([0, 1], [0, 1], "--", color="grey", label="random")
    left.set(
        xlabel="share of leads contacted (highest score first)",
        ylabel="share of conversions captured",
        title="Cumulative gains",
    )
    left.legend()
    # decile 10 = the highest probabilities, as in the calibration table and the live record
    deciles = np.array_split(y[order][::-1], 10)
    right.bar(range(1, 11), [d.mean() / y.mean() for d in deciles])
    right.axhline(1, color="grey", linestyle="--")
    right.set(xlabel=DECILE_LABEL, ylabel="lift", title="Lift by decile")
    fig.tight_layout()
    return fig


# -- plain words ---------------------------------------------------------------------------------------------------
MISSING_LABEL = "not known"


def feature_labels(names: list[str], *, specs: dict | None = None) -> dict[str, str]:
    """Feature -> the words the reasons use (its description in `specs`, default the lead registry); a column
    outside them keeps its name."""
    specs = all_features() if specs is None else specs
    labels = {n: specs[n].description if n in specs else n for n in names}
    repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    return {n: f"{label} ({n})" if label in repeated else label for n, label in labels.items()}


def natural_units(X: pd.DataFrame, *, specs: dict | None = None) -> pd.DataFrame:
    """Numbers as sales reads them: company size in employees rather than its log10."""
    specs = all_features() if specs is None else specs
    out = X.copy()
    for column in X.columns:
        if column in specs and specs[column].unit == "log10 employees":
            out[column] = 10 ** pd.to_numeric(X[column], errors="coerce") - 1
    return out


def said_values(X: pd.DataFrame, *, specs: dict | None = None) -> np.ndarray:
    """Each value as the reasons say it: natural units and sensible precision, "not known" when missing."""
    from leadscore.models.reasons import format_value

    specs = all_features() if specs is None else specs
    columns = []
    for column in X.columns:
        spec = specs.get(column)
        codes, distinct = pd.factorize(X[column], use_na_sentinel=True)
        words = np.array([format_value(v, spec) for v in distinct] + [MISSING_LABEL], dtype=object)
        columns.append(words[codes])
    return np.column_stack(columns) if columns else np.empty((len(X), 0), dtype=object)


# -- SHAP ------------------------------------------------------------------------------------------------------------
def shap_explanation(review: Review, *, max_rows: int = 2000):
    """Exact TreeSHAP (log-odds) on up to `max_rows` holdout leads, as a shap.Explanation whose feature names are
    the plain-language descriptions and whose data is in natural units (categories as codes, missing as NaN)."""
    import shap

    X = review.X_holdout.head(max_rows)
    specs = review.level.feature_specs
    contributions = review.model.contributions(X)
    numeric = natural_units(X, specs=specs)
    for column in review.model.categories_:
        numeric[column] = pd.Categorical(X[column].astype("string"), categories=review.model.categories_[column]).codes
        numeric[column] = numeric[column].where(numeric[column] >= 0)
    labels = feature_labels(list(X.columns), specs=specs)
    return shap.Explanation(
        values=contributions.drop(columns="base_value").to_numpy(),
        base_values=contributions["base_value"].to_numpy(),
        data=numeric.astype("float64").to_numpy(),
        display_data=said_values(X, specs=specs),
        feature_names=[labels[c] for c in X.columns],
    )


def importance_tables(explanation, *, specs: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean |SHAP| by feature (indexed by its plain-language description, with the column name) and by group."""
    specs = all_features() if specs is None else specs
    by_label = {label: name for name, label in feature_labels(list(specs), specs=specs).items()}
    mean_abs = pd.Series(np.abs(explanation.values).mean(axis=0), index=explanation.feature_names)
    by_feature = mean_abs.sort_values(ascending=False).rename("mean_abs_shap").to_frame()
    by_feature.index.name = "feature"
    by_feature["column"] = [by_label.get(label, label) for label in by_feature.index]
    by_feature["group"] = [specs[n].group if n in specs else "flat" for n in by_feature["column"]]
    by_group = by_feature.groupby("group")["mean_abs_shap"].sum().sort_values(ascending=False).to_frame()
    return by_feature, by_group


def beeswarm_figure(explanation, *, max_display: int = 15):
    import shap

    plt.figure()  # shap draws on the current figure: start a fresh one
    shap.plots.beeswarm(explanation, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.suptitle("What drives the score (SHAP, log-odds)")
    return fig


def bar_figure(explanation, *, max_display: int = 15):
    import shap

    plt.figure()
    shap.plots.bar(explanation, max_display=max_display, show=False)
    return plt.gcf()


def dependence_figures(explanation, by_feature: pd.DataFrame, *, top: int = 6) -> dict[str, object]:
    """SHAP value against the feature's value for the top features; missing values drawn apart and labelled."""
    figures = {}
    names = list(explanation.feature_names)
    for label in by_feature.index[:top]:
        j = names.index(label)
        figures[label] = _dependence(
            label, explanation.data[:, j], explanation.display_data[:, j], explanation.values[:, j]
        )
    return figures


def _is_number(value: object) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _dependence(label: str, data: np.ndarray, display: np.ndarray, shap_values: np.ndarray):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    data = np.asarray(data, dtype="float64")
    known = ~np.isnan(data)
    categorical = any(not _is_number(v) for v in display[known][:50])
    if categorical:  # one column per level, named
        levels = sorted({str(v) for v in display[known]})
        position = {level: i for i, level in enumerate(levels)}
        x = np.array([position.get(str(v), -1) for v in display], dtype="float64")
        ticks, tick_labels = list(range(len(levels))), levels
    else:
        x = data.copy()
        ticks, tick_labels = [], []
    ax.scatter(x[known], shap_values[known], s=6, alpha=0.4, color="#1f77b4", label="known")
    if (~known).any():  # missing values get their own labelled column left of the known ones
        span = (np.nanmax(x[known]) - np.nanmin(x[known])) if known.any() else 1.0
        spot = (np.nanmin(x[known]) if known.any() else 0.0) - max(span * 0.12, 1.0)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, (~known).sum()) * max(span * 0.12, 1.0) / 2
        ax.scatter(
            spot + jitter,
            shap_values[~known],
            s=6,
            alpha=0.4,
            color="#d62728",
            label=f"{MISSING_LABEL} ({(~known).sum():,})",
        )
        if not categorical and known.any():  # keep the automatic ticks over the known values
            lowest, highest = np.nanmin(x[known]), np.nanmax(x[known])
            ticks = [t for t in ax.get_xticks() if lowest <= t <= highest]
            tick_labels = [f"{t:g}" for t in ticks]
        ticks, tick_labels = [spot, *ticks], [MISSING_LABEL, *tick_labels]
        ax.legend(fontsize=7, loc="best")
    if ticks:
        slanted = {"rotation": 45, "ha": "right"} if categorical else {}
        ax.set_xticks(ticks, tick_labels, fontsize=7, **slanted)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set(xlabel=label, ylabel="SHAP value (log-odds)")
    ax.set_title(label if len(label) <= 60 else label[:57] + "...", fontsize=9)
    return fig


def example_picks(review: Review, rows: int) -> dict[str, int]:
    """Holdout positions of one high-, one mid- and one low-scoring lead among the first `rows`."""
    order = np.argsort(review.probability[:rows], kind="stable")
    return {"high": int(order[-1]), "mid": int(order[len(order) // 2]), "low": int(order[0])}


def waterfall_figures(review: Review, explanation) -> dict[str, object]:
    """One high-, one mid- and one low-scoring holdout lead (`example_picks`)."""
    import shap

    p, scores = review.probability, holdout_scores(review)
    figures = {}
    for label, i in example_picks(review, len(explanation.values)).items():
        plt.figure()
        shap.plots.waterfall(explanation[i], max_display=10, show=False)
        fig = plt.gcf()
        row = review.holdout[review.level.key].iloc[i]
        fig.suptitle(f"{label}-scoring {review.level.subject} {row}: score {scores[i]}, probability {p[i]:.1%}")
        figures[label] = fig
    return figures


def example_leads(review: Review, rows: int) -> pd.DataFrame:
    """The waterfalls' leads in the words of the scores file: score, probability and grouped reasons."""
    picks = example_picks(review, rows)
    positions = np.asarray(list(picks.values()), dtype="int64")
    reasons = lead_reasons(review, positions)
    return pd.DataFrame(
        {
            review.level.subject: review.holdout[review.level.key].astype(str).to_numpy()[positions],
            "score": holdout_scores(review)[positions],
            "probability": review.probability[positions],
            "why (up)": reasons["reasons_positive"].to_numpy(),
            "why (down)": reasons["reasons_negative"].to_numpy(),
        },
        index=pd.Index(list(picks), name="example"),
    )


SCORE_BANDS = ((70, 99), (50, 69), (30, 49), (1, 29))  # 70+: four times the base odds; 50+: at least the base rate


def holdout_scores(review: Review) -> np.ndarray:
    """The 1-99 score of each holdout lead's probability against the model's base rate (as `predict` gives it)."""
    from leadscore.models.scores import score_1_99

    return score_1_99(review.probability, base_rate(review))


def lead_reasons(review: Review, rows: np.ndarray) -> pd.DataFrame:
    """The grouped reasons the scores file gives, for the given holdout rows."""
    from leadscore.models.reasons import top_reasons

    X = review.X_holdout.iloc[rows]
    reference = getattr(review.wrapper, "reason_reference", None)
    specs, subject = review.level.feature_specs, review.level.subject
    return top_reasons(review.model.contributions(X), X, specs, reference=reference, subject=subject)


def why_this_lead(review: Review) -> pd.DataFrame:
    """One holdout lead per score band, with the grouped reasons the scores file gives: the lead nearest the middle
    of the band (the earliest such row on a tie)."""
    scores = holdout_scores(review)
    picks, bands = [], []
    for low, high in SCORE_BANDS:
        inside = np.flatnonzero((scores >= low) & (scores <= high))
        if len(inside):
            picks.append(int(inside[np.argmin(np.abs(scores[inside] - (low + high) / 2), axis=0)]))
            bands.append(f"{low}-{high}")
    reasons = lead_reasons(review, np.asarray(picks, dtype="int64"))
    holdout = review.holdout.iloc[picks]
    return pd.DataFrame(
        {
            "score band": bands,
            review.level.subject: holdout[review.level.key].astype(str).to_numpy(),
            "score": scores[picks],
            "probability": review.probability[picks],
            "converted": holdout["converted"].to_numpy(),
            "why (up)": reasons["reasons_positive"].to_numpy(),
            "why (down)": reasons["reasons_negative"].to_numpy(),
        }
    ).set_index("score band")


# -- rules, permutation importance, warnings -------------------------------------------------------------------------
def grade_comparison(review: Review) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Conversion and mean model probability per cell A1..D4 on the holdout, and the model's lift inside each
    fit grade (how the model re-ranks leads the rules put together)."""
    if review.graded is None:
        return None
    from leadscore.models.grade_analysis import conversion_table

    holdout = review.graded.iloc[review.split.holdout].assign(probability=review.probability)
    by_cell = conversion_table(holdout, by="cell")
    rows = []
    for grade, part in holdout.groupby("fit_grade"):
        if part["converted"].nunique() == 2:
            rows.append(
                {
                    "fit_grade": grade,
                    "leads": len(part),
                    "conversion_rate": part["converted"].mean(),
                    "model_auc_within_grade": roc_auc_score(part["converted"], part["probability"]),
                }
            )
    return by_cell, pd.DataFrame(rows).set_index("fit_grade")


def permutation_table(review: Review, *, max_rows: int = 3000, repeats: int = 3) -> pd.DataFrame:
    """Drop in holdout ROC AUC when each feature is shuffled (a model-agnostic check beside SHAP)."""
    X = review.X_holdout.head(max_rows)
    y = review.holdout["converted"].head(max_rows)
    result = permutation_importance(review.model, X, y, scoring="roc_auc", n_repeats=repeats, random_state=0, n_jobs=1)
    labels = feature_labels(list(X.columns), specs=review.level.feature_specs)
    table = pd.DataFrame(
        {"auc_drop_mean": result.importances_mean, "auc_drop_std": result.importances_std},
        index=pd.Index([labels[c] for c in X.columns], name="feature"),
    )
    return table.sort_values("auc_drop_mean", ascending=False)


def leakage_warnings(training: TrainingSet, split: Split, *, thresholds: LeakThresholds | None = None) -> list[str]:
    """Features whose value or missingness alone separates the outcomes (the check `train` runs before promoting;
    models/leakage.py): one line per feature."""
    suspects = separating_features(
        training.frame,
        features=training.feature_names,
        categorical=training.categorical,
        dev=split.dev,
        holdout=split.holdout,
        thresholds=thresholds or LeakThresholds(),
        weights=training.frame.get("sample_weight"),
    )
    return [s.text for s in suspects]


def drift_between_training_and_holdout(review: Review) -> pd.Series:
    names = list(review.model.feature_names_in_)
    reference = profile(review.training.frame.iloc[review.split.dev][names], categorical=review.training.categorical)
    drift = population_stability(reference, review.X_holdout)
    return drift.rename(index=feature_labels(names, specs=review.level.feature_specs))


def feature_descriptions(review: Review) -> pd.DataFrame:
    from leadscore.pipelines.verbs.train import feature_table

    return feature_table(list(review.model.feature_names_in_), specs=review.level.feature_specs)


# -- HTML ------------------------------------------------------------------------------------------------------------
def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _img(data: bytes, alt: str) -> dict:
    return {"kind": "image", "alt": alt, "data": base64.b64encode(data).decode()}


def _table(frame: pd.DataFrame, digits: int = 4) -> dict:
    html_table = frame.to_html(float_format=lambda v: f"{v:.{digits}f}", na_rep="-", border=0, classes="t")
    return {"kind": "table", "html": _breakable_headers(html_table)}


def _breakable_headers(html_text: str) -> str:
    """Column names may break after an underscore (`holdout_<wbr>brier`): a wide table of metrics fits the page
    without breaking words anywhere else."""
    return re.sub(r"<thead>.*?</thead>", lambda m: m.group(0).replace("_", "_<wbr>"), html_text, flags=re.S)


def _heading(text: str) -> dict:
    return {"kind": "heading", "text": text}


def _text(text: str, css: str | None = None) -> dict:
    return {"kind": "text", "text": text, "css": css}


def _section(anchor: str, title: str, *blocks: dict) -> dict:
    return {"id": anchor, "title": title, "blocks": list(blocks)}


def render_page(title: str, sections: list[dict]) -> str:
    """The report's HTML from the package's Jinja2 template: a table of contents, then one anchored section each."""
    import jinja2

    source = (
        resources.files("leadscore.pipelines.reports").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    )
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(source)
    return template.render(title=title, sections=sections)


def _live(html_text: str, images: list[dict]) -> dict:
    """The live-record section `pipelines.verbs.monitor.live_section` renders, under the report's own heading."""
    match = re.match(r"<h2 id='([^']+)'>(.*?)</h2>", html_text, flags=re.S)
    if match is None:
        return _section("live", "The live record", {"kind": "html", "html": html_text}, *images)
    title = re.sub(r"<[^>]+>", "", match.group(2))
    body = re.sub(r"(<table\b.*?</table>)", r'<div class="scroll">\1</div>', html_text[match.end() :], flags=re.S)
    body = _breakable_headers(body)
    return _section(match.group(1), title, {"kind": "html", "html": body}, *images)


def _account_section(review: Review, tables: dict[str, pd.DataFrame]) -> dict:
    """Account grades (fit A-D x engagement 1-4 from the lead rules rolled up to the account) against outcomes."""
    from leadscore.pipelines.verbs.accounts import account_grade_conversion

    by_cell, matrix = account_grade_conversion(review.settings, review.data)
    tables["account_grade_conversion_by_cell"], tables["account_grade_matrix"] = by_cell, matrix
    about = (
        "Every account row of the account spine (an account with an open lead at its cutoff, labelled 1 when "
        "any of its leads wins a deal within the horizon), graded as <code>grade --level account</code> "
        "grades: conversion rate (rows) per cell, fit A..D down, engagement 1..4 across."
    )
    return _section(
        "accounts",
        "Account grades A1..D4 and how they convert",
        {"kind": "html", "html": f"<p>{about}</p>"},
        _table(matrix),
        _table(by_cell),
    )


LEADS_NOTE = (
    "Three holdout {subject}s, first in the words of the scores file (the grouped reasons), then as SHAP waterfalls: "
    "every feature's exact push in log-odds, one feature at a time, as predict --contributions writes them."
)


def baseline_warning(metrics: pd.DataFrame, metric: str) -> str | None:
    """A line when logistic regression beats the shipped model on the holdout by the gate's metric, else None."""
    from leadscore.models.evaluation import is_better

    if not {"logistic_regression", "lightgbm_calibrated"} <= set(metrics.index) or metric not in metrics:
        return None
    lr, model = metrics.loc["logistic_regression", metric], metrics.loc["lightgbm_calibrated", metric]
    if pd.isna(lr) or pd.isna(model) or not is_better(lr, model, metric, min_improvement=0.0):
        return None
    return (
        f"logistic regression beats the shipped model on the holdout: {metric} {lr:.4f} against {model:.4f}. "
        "The simpler model does better on these leads: check the features and the drift before trusting the "
        "LightGBM model's extra complexity."
    )


def build_report(review: Review) -> tuple[str, dict[str, bytes], dict[str, pd.DataFrame]]:
    """The report's HTML, its images (PNG bytes by name) and its tables (by name)."""
    images: dict[str, bytes] = {}
    tables: dict[str, pd.DataFrame] = {}
    sections: list[dict] = []
    tables["summary"] = summary_table(review)
    tables["metrics"] = metrics_vs_baselines(review)
    beaten = baseline_warning(tables["metrics"], review.settings.model.gate_metric)
    tables["calibration_by_decile"] = calibration_by_decile(review)
    images["calibration"] = png(calibration_figure(review))
    images["gains_lift"] = png(gains_figure(review))
    sections.append(
        _section(
            "summary",
            "Model summary",
            _table(tables["summary"]),
            _heading("Time-ordered holdout: model and baselines"),
            _table(tables["metrics"]),
            *([_text(beaten, "warn")] if beaten else []),
            _img(images["calibration"], "calibration"),
            _table(tables["calibration_by_decile"]),
            _img(images["gains_lift"], "gains and lift"),
        )
    )

    explanation = shap_explanation(review)
    by_feature, by_group = importance_tables(explanation, specs=review.level.feature_specs)
    tables["shap_importance"], tables["shap_importance_by_group"] = by_feature, by_group
    images["shap_beeswarm"] = png(beeswarm_figure(explanation))
    images["shap_bar"] = png(bar_figure(explanation))
    sections.append(
        _section(
            "importance",
            "Global importance (mean |SHAP|, log-odds)",
            _table(by_group),
            _table(by_feature.head(25)),
            _img(images["shap_beeswarm"], "beeswarm"),
            _img(images["shap_bar"], "bar"),
        )
    )
    parts = []
    for name, fig in dependence_figures(explanation, by_feature).items():
        images[f"dependence_{name}"] = png(fig)
        parts.append(_img(images[f"dependence_{name}"], f"dependence {name}"))
    sections.append(_section("dependence", "Dependence: the top 6 features", *parts))
    tables["example_leads"] = example_leads(review, len(explanation.values))
    subject = review.level.subject
    parts = [_text(LEADS_NOTE.format(subject=subject)), _table(tables["example_leads"], 3)]
    for label, fig in waterfall_figures(review, explanation).items():
        images[f"waterfall_{label}"] = png(fig)
        parts.append(_img(images[f"waterfall_{label}"], f"waterfall {label}"))
    sections.append(_section("leads", f"Single {subject}s: high, mid and low score", *parts))
    tables["why_this_lead"] = why_this_lead(review)
    why = (
        "<p>The same grouped reasons as the scores file (<code>reasons_positive</code> / "
        "<code>reasons_negative</code>); the score (1-99) reads the probability against the base rate: 50 is as "
        f"likely as the average {subject}, every 10 points double the odds.</p>"
    )
    sections.append(
        _section(
            "why",
            f"Why this {subject}: one holdout {subject} per score band",
            {"kind": "html", "html": why},
            _table(tables["why_this_lead"]),
        )
    )

    comparison = grade_comparison(review)
    if comparison is not None:
        by_cell, within = comparison
        tables["grade_conversion_by_cell"], tables["model_within_fit_grade"] = by_cell, within
        sections.append(
            _section(
                "grades",
                "Grades A1..D4 on the holdout, and the model beside the rules",
                _table(by_cell),
                _text("How well the model ranks leads inside each fit grade:"),
                _table(within),
            )
        )
    if review.level.name == "lead":  # the grades' capacity, the account grades and the live record are the leads'
        sections += _lead_sections(review, images, tables)
    tables["permutation_importance"] = permutation_table(review)
    sections.append(
        _section(
            "permutation",
            "Permutation importance on the holdout (beside SHAP)",
            _table(tables["permutation_importance"].head(20)),
        )
    )
    tables["features"] = feature_descriptions(review)
    sections.append(_section("features", "Features", _table(tables["features"])))

    drift = drift_between_training_and_holdout(review)
    tables["drift_psi"] = drift.to_frame()
    warnings = leakage_warnings(review.training, review.split, thresholds=review.settings.features.leak_thresholds())
    warnings += [beaten] if beaten else []
    warnings += [
        f"drift: {name} PSI {value:.2f} between training rows and the holdout"
        for name, value in drift[drift > review.settings.output.drift_threshold].items()
    ]
    notes = [_text(w, "warn") for w in warnings] or [_text("No warnings.")]
    sections.insert(0, _section("warnings", "Warnings", *notes))
    title = f"{review.level.name.capitalize()} scoring review: {review.model_name} v{review.model_version}"
    return render_page(title, sections), images, tables


def _lead_sections(review: Review, images: dict[str, bytes], tables: dict[str, pd.DataFrame]) -> list[dict]:
    """Capture at capacity, and in CRM mode the account grades and the live record."""
    sections = [_capture_section(review, images, tables)]
    if review.data is None:
        return sections
    from leadscore.pipelines.verbs.monitor import live_section

    sections.append(_account_section(review, tables))
    live_html, live_figures, live_tables = live_section(review.settings, review.data)
    tables.update(live_tables)
    images.update({name: png(fig) for name, fig in live_figures.items()})
    sections.append(_live(live_html, [_img(images[name], name) for name in live_figures]))
    return sections


def _capture_section(review: Review, images: dict[str, bytes], tables: dict[str, pd.DataFrame]) -> dict:
    """Capture at capacity on the holdout: the curve, and a small table with the configured capacity marked."""
    from leadscore.pipelines.reports.capacity import capture_section_parts

    curve, table, fig, highlight = capture_section_parts(review)
    tables["capture_curve"], tables["capture_at_capacity"] = curve, table
    images["capture_at_capacity"] = png(fig)
    note = (
        "<p>Sales takes the top N leads of each ISO week (holdout rows grouped by the week of their cutoff) by "
        "each policy: the model's probability, the rules-only grade (each cell's conversion rate on the earlier "
        "rows) or a random pick; ties are split at random (their exact expectation). Captured = conversions "
        "within the horizon among the leads taken. "
        + (
            "No <code>[grades.capacity]</code> is configured."
            if highlight is None
            else f"The configured capacity is {highlight:,} a week."
        )
        + "</p>"
    )
    return _section(
        "capacity",
        "Capture at capacity",
        {"kind": "html", "html": note},
        _table(table, 3),
        _img(images["capture_at_capacity"], "capture at capacity"),
    )


def log_to_run(review: Review, images: dict[str, bytes], tables: dict[str, pd.DataFrame]) -> str | None:
    """Attach the report's images and tables to the MLflow run that produced the model."""
    from leadscore.pipelines.outputs import tracking

    if not review.model_version:
        return None
    mlflow = tracking.mlflow_module()
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(review.model_name, review.model_version).run_id
    for name, data in images.items():
        client.log_image(run_id, _png_array(data), f"report/{name}.png")
    for name, frame in tables.items():
        client.log_text(run_id, frame.to_csv(lineterminator="\n"), f"report/{name}.csv")
    return run_id


def _png_array(data: bytes) -> np.ndarray:
    return plt.imread(io.BytesIO(data), format="png")
