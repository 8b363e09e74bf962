"""Discovery as a workflow stage: from UDE fits to refitted equations and their scores.

A model entry of a workflow may carry a ``discovery`` section::

    models:
      ude:
        mechanistic: fitzhugh_nagumo
        neural_terms: [{name: cubic_network, replaces: cubic_nonlinearity}]
        discovery:
          terms: {cubic_nonlinearity: {degree: 5}}
          threshold: 0.05
          compare_with: mechanistic
          forecast_fraction: 0.75

After the workflow's fits, for every subject this stage

1. regresses each listed term's posterior draws onto its library (inclusion
   probabilities, coefficient intervals, a sensitivity table over libraries
   and thresholds);
2. refits the discovered mechanistic model with the workflow's sampler; the fit
   is saved as ``fits/<subject>__<model>_discovered.nc``, so the summary and
   the report's LOO comparison include it;
3. fits the original mechanistic model (``compare_with``), the UDE and the
   discovered model to the first ``forecast_fraction`` of the series, the last
   one with its equation discovered from the truncated UDE fit only, and scores
   each on the rest (leave-future-out);
4. writes everything to ``discovery/<subject>__<model>.json`` for the report.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pydantic

from bayesude.core.specification import ModelSpecification, specification_from_dict
from bayesude.diagnostics import compare_models
from bayesude.files import atomic_path
from bayesude.results import load_fit
from bayesude.symbolic.forecast import (
    forecast_log_density,
    split_time,
    training_data,
    with_training_ranges,
)
from bayesude.symbolic.library import CandidateLibrary, polynomial_library
from bayesude.symbolic.regression import (
    TermDiscovery,
    discover_term,
    discovered_specification,
    learned_term,
    sensitivity_table,
)

logger = logging.getLogger(__name__)

DISCOVERY_FOLDER = "discovery"
DISCOVERED_SUFFIX = "_discovered"
TRAINING_SUFFIX = "@training"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class TermLibrarySettings(_Strict):
    """The candidate library of one replaced term.

    ``degree`` sets the polynomial library in the term's arguments;
    ``include_constant`` keeps its constant; ``exclude`` drops candidates by
    label (``x`` when the model already has a parameter multiplying x);
    ``extra`` adds user expressions ``{label: expression}``; and
    ``mechanistic_form`` adds the model's own form of the term.
    """

    degree: int = pydantic.Field(default=3, ge=1, le=8)
    include_constant: bool = True
    exclude: list[str] = []
    extra: dict[str, str] = {}
    mechanistic_form: bool = False


class SensitivitySettings(_Strict):
    """Libraries (polynomial degrees) and thresholds of the sensitivity table."""

    degrees: list[int] = [3, 5]
    thresholds: list[float] = [0.01, 0.02, 0.05, 0.1, 0.2]


class DiscoverySettings(_Strict):
    """A model entry's ``discovery`` section (see the module docstring)."""

    terms: dict[str, TermLibrarySettings]
    threshold: float = pydantic.Field(default=0.05, ge=0)
    num_draws: int = pydantic.Field(default=400, ge=10)
    num_points: int = pydantic.Field(default=200, ge=10)
    compare_with: str | None = None
    forecast_fraction: float | None = pydantic.Field(default=0.75, gt=0, lt=1)
    sensitivity: SensitivitySettings = SensitivitySettings()
    inference: dict[str, Any] = {}


def parse_discovery(
    description: Any, spec: ModelSpecification, models: list[str], where: str
) -> DiscoverySettings:
    """Validate a ``discovery`` section against its model and the workflow's models."""
    try:
        settings = DiscoverySettings.model_validate(description)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors()
        )
        raise ValueError(f"{where}.discovery: {problems}.") from None
    replaced = set(spec.replaced_terms)
    for term in settings.terms:
        if term not in replaced:
            raise ValueError(
                f"{where}.discovery.terms: {term!r} is not replaced by a network in "
                f"this model; it replaces {sorted(replaced) or 'nothing'}."
            )
    if settings.compare_with is not None and settings.compare_with not in models:
        raise ValueError(
            f"{where}.discovery.compare_with names {settings.compare_with!r}, which "
            f"is not a model of this workflow ({', '.join(models)})."
        )
    return settings


def term_library(
    spec: ModelSpecification, term: str, settings: TermLibrarySettings, degree=None
) -> CandidateLibrary:
    """The candidate library of ``term`` described by ``settings``."""
    from bayesude.symbolic.library import mechanistic_form

    arguments = spec.model.replaceable_term(term).arguments
    library = polynomial_library(
        arguments, degree or settings.degree, settings.include_constant
    )
    library = library.without(
        [label for label in settings.exclude if label in library.labels]
    )
    extra = dict(settings.extra)
    if settings.mechanistic_form:
        label, expression = mechanistic_form(spec.model, term)
        extra[label] = str(expression)
    return library.plus(extra) if extra else library


def discover(
    idata: az.InferenceData, data, settings: DiscoverySettings
) -> tuple[dict[str, TermDiscovery], pd.DataFrame]:
    """Every listed term's discovery on one fit, and the sensitivity table."""
    from bayesude.results import specification_of

    spec = specification_of(idata)
    discoveries, tables = {}, []
    for term, library_settings in settings.terms.items():
        learned = learned_term(
            idata,
            data,
            term,
            num_draws=settings.num_draws,
            num_points=settings.num_points,
        )
        library = term_library(spec, term, library_settings)
        discoveries[term] = discover_term(learned, library, settings.threshold)
        libraries = [
            term_library(spec, term, library_settings, degree)
            for degree in settings.sensitivity.degrees
        ]
        tables.append(
            sensitivity_table(learned, libraries, settings.sensitivity.thresholds)
        )
    return discoveries, pd.concat(tables, ignore_index=True)


def run_discovery(
    workflow, tasks: list, outcomes: list, output_dir: pathlib.Path, run_tasks
) -> tuple[list, list]:
    """The discovery stage of a workflow (see the module docstring).

    Parameters
    ----------
    workflow
        The validated workflow; ``workflow.discovery`` maps model names to
        :class:`DiscoverySettings`.
    tasks, outcomes
        The workflow's fit tasks and what came back.
    output_dir
        The results directory.
    run_tasks
        ``run_tasks(tasks, folder) -> outcomes``: runs fit tasks and stores
        their NetCDF files in ``folder/fits``.

    Returns
    -------
    tasks, outcomes
        The discovered models' full-data fits, to join the summary and report.
    """
    from bayesude.batch import FITS_FOLDER, FitTask

    succeeded = {(o.subject, o.model_name) for o in outcomes if o.error is None}
    data_of = {t.subject: t.data for t in tasks if isinstance(t, FitTask)}
    folder = output_dir / DISCOVERY_FOLDER
    training_folder = folder / FITS_FOLDER
    jobs = [
        (subject, model, settings)
        for model, settings in workflow.discovery.items()
        for subject in data_of
        if (subject, model) in succeeded
    ]

    # Stage one: the full-data discovery and the training-window fits of the
    # UDE and of the model it is compared with.
    refit_tasks, training_tasks, results = [], [], {}
    for subject, model, settings in jobs:
        data = data_of[subject]
        idata = load_fit(output_dir / FITS_FOLDER / f"{subject}__{model}.nc")
        result = _discovery_record(idata, data, settings)
        results[(subject, model)] = result
        if result["discovered_model"] is not None:
            refit_tasks.append(
                FitTask(
                    subject,
                    model + DISCOVERED_SUFFIX,
                    result.pop("specification"),
                    data,
                    _inference(workflow, model, settings),
                )
            )
        if settings.forecast_fraction is not None:
            until = split_time(data, settings.forecast_fraction)
            result["training_until"] = until
            train = training_data(data, until)
            for name in filter(None, (settings.compare_with, model)):
                spec = with_training_ranges(workflow.specifications[name], train)
                training_tasks.append(
                    FitTask(
                        subject,
                        name + TRAINING_SUFFIX,
                        spec.as_dict(),
                        train,
                        workflow.inference[name],
                    )
                )
    refit_outcomes = run_tasks(refit_tasks + _unique(training_tasks), folder)
    stored = [o for o in refit_outcomes if o.model_name.endswith(DISCOVERED_SUFFIX)]
    for outcome in stored:
        if outcome.error is None:
            name = f"{outcome.subject}__{outcome.model_name}.nc"
            with atomic_path(output_dir / FITS_FOLDER / name) as temporary:
                shutil.copyfile(training_folder / name, temporary)

    # Stage two: the equation discovered from the training-window UDE, refitted
    # on the training window.
    second = []
    for subject, model, settings in jobs:
        result = results[(subject, model)]
        path = training_folder / f"{subject}__{model}{TRAINING_SUFFIX}.nc"
        if "training_until" not in result or not path.exists():
            continue
        train = training_data(data_of[subject], result["training_until"])
        record = _discovery_record(load_fit(path), train, settings)
        result["training_discovered_model"] = record["discovered_model"]
        if record["discovered_model"] is not None:
            second.append(
                FitTask(
                    subject,
                    model + DISCOVERED_SUFFIX + TRAINING_SUFFIX,
                    record["specification"],
                    train,
                    _inference(workflow, model, settings),
                )
            )
    run_tasks(second, folder)

    for (subject, model), result in results.items():
        settings = workflow.discovery[model]
        result["loo"] = _loo_table(output_dir, subject, model, settings)
        result["leave_future_out"] = _forecast_table(
            training_folder, data_of[subject], subject, model, settings, result
        )
        _write_json(folder / f"{subject}__{model}.json", result)
    return refit_tasks, stored


def _unique(tasks: list) -> list:
    seen, unique = set(), []
    for task in tasks:
        if (task.subject, task.model_name) not in seen:
            seen.add((task.subject, task.model_name))
            unique.append(task)
    return unique


def _inference(workflow, model: str, settings: DiscoverySettings) -> dict:
    base = dict(workflow.inference[settings.compare_with or model])
    base.update(settings.inference)
    return base


def _discovery_record(idata, data, settings: DiscoverySettings) -> dict:
    from bayesude.results import specification_of

    discoveries, sensitivity = discover(idata, data, settings)
    table = pd.concat([d.table() for d in discoveries.values()], ignore_index=True)
    record = {
        "subject": str(idata.posterior.attrs.get("subject", "")),
        "model": str(idata.posterior.attrs.get("model_name", "")),
        "threshold": settings.threshold,
        "inclusion": table.to_dict("records"),
        "sensitivity": sensitivity.to_dict("records"),
        "median_r2": {
            term: float(np.median(d.explained)) for term, d in discoveries.items()
        },
        "discovered_model": None,
        "specification": None,
    }
    try:
        spec = discovered_specification(specification_of(idata), discoveries)
    except ValueError as error:
        record["discovery_problem"] = str(error)
        return record
    record["discovered_model"] = spec.mechanistic
    record["specification"] = spec.as_dict()
    return record


def _loo_table(output_dir, subject, model, settings) -> list[dict]:
    from bayesude.batch import FITS_FOLDER

    names = [n for n in (settings.compare_with, model, model + DISCOVERED_SUFFIX) if n]
    fits = {}
    for name in names:
        path = output_dir / FITS_FOLDER / f"{subject}__{name}.nc"
        if path.exists():
            fits[name] = load_fit(path)
    if len(fits) < 2:
        return []
    try:
        table = compare_models(fits)
    except ValueError as error:
        logger.warning("LOO comparison of %s failed: %s", subject, error)
        return []
    return _records(table.rename_axis("model").reset_index())


def _forecast_table(folder, data, subject, model, settings, result) -> list[dict]:
    if "training_until" not in result:
        return []
    rows = []
    names = [n for n in (settings.compare_with, model, model + DISCOVERED_SUFFIX) if n]
    for name in names:
        path = folder / f"{subject}__{name}{TRAINING_SUFFIX}.nc"
        if not path.exists():
            rows.append({"model": name, "elpd_lfo": None, "problem": "no fit"})
            continue
        scores = forecast_log_density(load_fit(path), data, result["training_until"])
        rows.append({"model": name, **scores})
    return rows


def _records(table: pd.DataFrame) -> list[dict]:
    return json.loads(table.to_json(orient="records"))


def _write_json(path: pathlib.Path, record: dict) -> None:
    record = {k: v for k, v in record.items() if k != "specification"}
    with atomic_path(path) as temporary:
        temporary.write_text(
            json.dumps(record, indent=1, default=_plain, allow_nan=True)
        )


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in a discovery record.")


def load_discoveries(results_dir: pathlib.Path) -> list[dict]:
    """Every discovery record in ``results_dir/discovery``, sorted by file name."""
    folder = pathlib.Path(results_dir) / DISCOVERY_FOLDER
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def specification_of_record(record: dict) -> ModelSpecification:
    """The discovered model's specification stored in a record (for reuse)."""
    return specification_from_dict(record["specification"], "discovery record")


def rerun_discovery(
    workflow, output_dir: pathlib.Path, workers: int | None = None
) -> pd.DataFrame:
    """Run only the discovery stage on fits already in ``output_dir/fits``.

    The workflow's own fits are not repeated; its discovery refits are, and
    ``summary.csv`` and ``report.html`` are rewritten.

    Raises
    ------
    ValueError
        The workflow has no model with a ``discovery`` section.
    """
    from bayesude.batch import (
        FITS_FOLDER,
        FitOutcome,
        _run_tasks,
        build_tasks,
        write_outputs,
    )

    if not workflow.discovery:
        raise ValueError(
            f"{workflow.path}: no model has a discovery section; add one to a model "
            f"with a neural term that replaces a term."
        )
    workers = workflow.settings.execution.workers if workers is None else workers
    output_dir = pathlib.Path(output_dir)
    tasks = build_tasks(workflow)
    outcomes = [
        FitOutcome(t.subject, t.model_name, None, None, float("nan"))
        if (output_dir / FITS_FOLDER / t.filename).exists()
        else FitOutcome(t.subject, t.model_name, None, "no saved fit", float("nan"))
        for t in tasks
    ]
    more_tasks, more_outcomes = run_discovery(
        workflow,
        tasks,
        outcomes,
        output_dir,
        lambda extra, folder: _run_tasks(extra, workers, folder, False),
    )
    return write_outputs(
        output_dir, workflow.name, tasks + more_tasks, outcomes + more_outcomes
    )
