"""MLflow: the tracking store, the model logged as one pyfunc, the registry with champion / challenger aliases.

mlflow is imported lazily (it takes seconds) and its usage telemetry is switched off unless the user set it:
this tool handles customers' CRM data.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings

log = logging.getLogger(__name__)
PYFUNC_OUTPUT = ("probability", "raw_score")


def mlflow_module():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def use_store(settings: Settings) -> str:
    """Point MLflow at the configured store and experiment; return the experiment id."""
    mlflow = mlflow_module()
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = settings.resolve(settings.mlflow.artifact_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(settings.mlflow.experiment, artifact_location=artifacts.resolve().as_uri())


def _python_model_class():
    mlflow = mlflow_module()

    class LeadScoreModel(mlflow.pyfunc.PythonModel):
        """The fitted ConversionModel behind MLflow's pyfunc interface: plain columns in, probability out."""

        def __init__(
            self,
            model,
            *,
            reference_profile: dict | None = None,
            feature_set: str = "",
            reason_reference: dict | None = None,
            base_rate: dict | None = None,
        ) -> None:
            self.model = model
            self.reference_profile = reference_profile or {}
            self.feature_set = feature_set
            # how leads like each one converted in training, quoted in the reasons (models registered before issue
            # 28 also carry a `score_reference`, no longer read: the score reads the model's base rate)
            self.reason_reference = reason_reference or {}
            self.base_rate = base_rate or {}  # the base rate of new leads the priority bands are set against

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            probability = self.model.predict_proba(model_input)[:, 1]
            return pd.DataFrame({"probability": probability, "raw_score": self.model.raw_score(model_input)})

    return LeadScoreModel


def plain_columns(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categoricals as plain text and numbers as float: what a CSV or a JSON request carries."""
    out = frame.copy()
    for column in out.columns:
        if column in categorical:
            out[column] = out[column].astype("string").astype(object).where(out[column].notna(), None)
        else:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    return out


def _requirements() -> list[str]:
    names = ["lightgbm", "scikit-learn", "pandas", "numpy"]
    pins = [f"{name}=={metadata.version(name)}" for name in names]
    return [*pins, f"mlflow=={metadata.version('mlflow')}"]


def log_conversion_model(
    model,
    example: pd.DataFrame,
    categorical: list[str],
    *,
    reference_profile: dict,
    feature_set: str,
    name: str = "model",
    reason_reference: dict | None = None,
    base_rate: dict | None = None,
):
    """Log the fitted model as one pyfunc with signature and input example; return the ModelInfo.

    The training population's profile travels with the model, so that scoring can measure drift against it; so do
    the conversion rates of similar leads that the reasons quote and the base rate of new leads (the yardstick of the
    priority bands; the score reads the model's own base rate).
    """
    mlflow = mlflow_module()
    from mlflow.models import infer_signature

    example = plain_columns(example, categorical)
    output = pd.DataFrame({"probability": model.predict_proba(example)[:, 1], "raw_score": model.raw_score(example)})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=_python_model_class()(
            model,
            reference_profile=reference_profile,
            feature_set=feature_set,
            reason_reference=reason_reference,
            base_rate=base_rate,
        ),
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=_requirements(),
    )


def load_conversion_model(uri: str):
    """The ConversionModel behind a registered or logged pyfunc model URI, and the wrapper that carries it.

    A model registered before the code moved under the `leadscore` import name refers to its classes as
    `models.conversion...`: those names are read as `leadscore.models...` while it loads.
    """
    mlflow = mlflow_module()
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _OLD_TOP_LEVEL:
            raise
        with _old_import_names():
            pyfunc = mlflow.pyfunc.load_model(uri)
    wrapper = pyfunc.unwrap_python_model()
    return wrapper.model, wrapper


_OLD_TOP_LEVEL = ("features", "models", "pipelines")


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `models.x` as the module `leadscore.models.x` itself (one module object, not a second copy)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _OLD_TOP_LEVEL:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"leadscore.{spec.name}")

    def exec_module(self, module) -> None:
        pass


@contextlib.contextmanager
def _old_import_names():
    finder = _OldNames()
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:  # the old names leave with the loading
            if name.split(".")[0] in _OLD_TOP_LEVEL:
                del sys.modules[name]


def resolve_version(uri: str) -> tuple[str, str]:
    """(registered name, version) of a models:/NAME@alias or models:/NAME/VERSION URI; ('', '') otherwise."""
    if not uri.startswith("models:/"):
        return "", ""
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, _, version = rest.partition("/")
    return name, version


def register(settings: Settings, model_uri: str, *, run_id: str) -> str:
    """Register a new version under the configured name with alias `challenger`; return the version."""
    mlflow = mlflow_module()
    name = settings.mlflow.registered_model
    version = mlflow.register_model(model_uri, name).version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "challenger", version)
    client.set_model_version_tag(name, version, "run_id", run_id)
    return str(version)


def champion_version(settings: Settings) -> str | None:
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    try:
        return str(client.get_model_version_by_alias(settings.mlflow.registered_model, "champion").version)
    except mlflow.exceptions.MlflowException:
        return None


def is_champion(settings: Settings, name: str, version: str) -> bool:
    """The registered version is this project's champion now: its scores are the ones routed to sales."""
    return name == settings.mlflow.registered_model and version == champion_version(settings)


def version_param(settings: Settings, version: str, key: str) -> str | None:
    """A parameter of the run that logged a registered model version (e.g. its training-set fingerprint)."""
    client = mlflow_module().MlflowClient()
    run_id = client.get_model_version(settings.mlflow.registered_model, version).run_id
    return client.get_run(run_id).data.params.get(key) if run_id else None


def version_manifest(settings: Settings, version: str) -> dict:
    """The training-set manifest logged with a registered version's run (as-of, content key, rows), or {} when its
    run has none."""
    mlflow = mlflow_module()
    run_id = mlflow.MlflowClient().get_model_version(settings.mlflow.registered_model, version).run_id
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/training_set/manifest.json")
    except Exception:  # MLflow raises several types for a missing artifact
        log.warning("no training-set manifest logged with %s v%s", settings.mlflow.registered_model, version)
        return {}


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    """Tag one registered model version (e.g. with the gate's decision)."""
    client = mlflow_module().MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(settings.mlflow.registered_model, version, key, value)


def promote(settings: Settings, version: str) -> None:
    mlflow = mlflow_module()
    mlflow.MlflowClient().set_registered_model_alias(settings.mlflow.registered_model, "champion", version)


def log_frame(frame: pd.DataFrame, path: str) -> None:
    """Log a table as a CSV artifact at `path` inside the run."""
    mlflow = mlflow_module()
    mlflow.log_text(frame.to_csv(index=True, lineterminator="\n"), path)


def log_figure(figure, path: str) -> None:
    mlflow_module().log_figure(figure, path)


def store_location(settings: Settings) -> str:
    uri = settings.tracking_uri
    return str(Path(uri.removeprefix("sqlite:///"))) if uri.startswith("sqlite:///") else uri


def run_name(verb: str, as_of=None, *details: object) -> str:
    """An MLflow run name that says what ran: the verb, the data's date, then e.g. the feature set or model."""
    parts = [verb]
    if as_of is not None and not pd.isna(as_of):
        parts.append(f"{pd.Timestamp(as_of):%Y-%m-%d}")
    parts += [str(d) for d in details if d not in (None, "")]
    return " ".join(parts)


HOLDOUT_FIGURES = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "predicted_to_observed",
    "lift_top10",
    "capture_top20",
)


def describe_version(
    settings: Settings, version: str, metrics: pd.DataFrame, *, decision: str, scorer: str = "lightgbm_calibrated"
) -> None:
    """Give a registered version a one-line description (its holdout figures and the gate's decision line, which
    `tag_version` also sets as the `gate.*` tags) and its holdout figures as `holdout.*` tags."""
    client = mlflow_module().MlflowClient()
    name = settings.mlflow.registered_model
    row = metrics.loc[scorer] if scorer in metrics.index else pd.Series(dtype="float64")
    figures = {k: float(row[k]) for k in HOLDOUT_FIGURES if k in row.index and pd.notna(row[k])}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
    client.update_model_version(name, version, description=f"holdout: {shown or 'no figures'}; {decision}")
    for key, value in figures.items():
        client.set_model_version_tag(name, version, f"holdout.{key}", f"{value:.6f}")


def champion_uri(settings: Settings) -> str:
    return f"models:/{settings.mlflow.registered_model}@champion"


def load_model(settings: Settings, uri: str | None = None):
    """(model, its pyfunc wrapper, registered name, version) for a model URI (default: the champion); a DataError
    saying how to get one when it cannot be loaded."""
    from leadscore.pipelines.errors import DataError

    uri = uri or champion_uri(settings)
    try:
        use_store(settings)
        model, wrapper = load_conversion_model(uri)
        name, version = resolve_version(uri)
    except Exception as exc:  # MLflow raises several types for a missing model
        cause, hint = why_not_loaded(exc, settings)
        raise DataError(
            f"cannot load model {uri}: {cause}", where=f"MLflow store {settings.tracking_uri}", hint=hint
        ) from None
    return model, wrapper, name or uri, version


def why_not_loaded(exc: Exception, settings: Settings) -> tuple[str, str]:
    """The real cause of a failed model load, and its fix: a locked store, deleted artifacts, or no model yet."""
    text = str(exc)
    suffix = settings.mlflow.registered_model.rsplit("-", 1)[-1]
    level = f" --level {suffix}" if suffix in ("account", "opportunity") else ""
    if "database is locked" in text:
        return "the store is locked by another process", "retry when the other leadscore or mlflow process is done"
    if "No such artifact" in text or isinstance(exc, FileNotFoundError | IsADirectoryError):
        return (
            f"the model's files are missing from the artifact store ({text.strip() or type(exc).__name__})",
            f"restore the artifact folder ({settings.mlflow.artifact_dir}) or retrain: `leadscore train{level}`",
        )
    if "not found" in text.lower() or "RESOURCE_DOES_NOT_EXIST" in text or "alias" in text.lower():
        return "no such registered model or version yet", f"train one first: `leadscore train{level}`"
    return text.splitlines()[0] if text else type(exc).__name__, f"train one: `leadscore train{level}`"


def lead_champion(settings: Settings):
    """((model, wrapper), "name vN") of the lead champion, or (None, "") when there is none."""
    try:
        model, wrapper, name, version = load_model(settings)
    except Exception:  # no champion yet: the account level lists leads by id
        return None, ""
    return (model, wrapper), f"{name} v{version}"
